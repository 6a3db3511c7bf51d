"""Medians and percentiles, with one definition used by every figure.

Why our own: ``statistics.quantiles`` needs two points and interpolates in a way
that differs from wrk's; here a percentile is linear interpolation between the
closest ranks (numpy's default), stated once.
"""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (0-100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def gaps(times: Sequence[float]) -> list[float]:
    """Differences between consecutive times."""
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
