"""The one timing loop of benchmarks and evaluation."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["seconds_per_input"]


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
