"""The one timing loop of benchmarks and evaluation."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["seconds_per_input", "alternated", "interleaved", "median_ratio"]


def seconds_per_input(fn: Callable[[Any], Any], inputs: Sequence, repeats: int = 3, warmup: int = 1) -> float:
    """Median over ``repeats`` passes of the mean seconds ``fn`` takes per input, after ``fn`` has run on
    the first ``warmup`` inputs once."""
    for x in inputs[:warmup]:
        fn(x)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for x in inputs:
            fn(x)
        runs.append((time.perf_counter() - start) / len(inputs))
    return statistics.median(runs)


def alternated(runs: dict[str, tuple[Callable[[Any], Any], Sequence]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Seconds per input of each ``name: (fn, inputs)``: the median of ``repeats`` passes, the functions taking
    turns pass by pass (each warmed up on its first ``warmup`` inputs before the first), so the machine's
    drift during the run hits them all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        for name, (fn, inputs) in runs.items():
            times[name].append(seconds_per_input(fn, inputs, repeats=1, warmup=0 if r else warmup))
    return {name: statistics.median(t) for name, t in times.items()}


def interleaved(runs: dict[str, Callable[[Any], Any]], inputs: Sequence, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per input of each ``name: fn`` on the same ``inputs``, in each of ``repeats`` passes, the functions
    taking turns input by input (who goes first rotating pass by pass; each warmed up on the first ``warmup`` inputs
    before the first pass). Drift on a shared machine moves even within a pass; run this way it hits all the
    functions alike, and the ratio of two functions' times in one pass (``median_ratio``) is far steadier than the
    ratio of their medians."""
    names = list(runs)
    for name in names:
        for x in inputs[:warmup]:
            runs[name](x)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        spent = dict.fromkeys(names, 0.0)
        for x in inputs:
            for name in order:
                start = time.perf_counter()
                runs[name](x)
                spent[name] += time.perf_counter() - start
        for name in names:
            times[name].append(spent[name] / len(inputs))
    return times


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """The median over passes of ``numerator[i] / denominator[i]`` (two functions' times in the same passes)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))
