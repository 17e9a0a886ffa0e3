"""The one timing loop of benchmarks and evaluation."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["seconds_per_input", "alternated"]


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
