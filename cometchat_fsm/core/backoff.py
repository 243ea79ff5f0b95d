"""Reconnection delay (D6, D6a): exponential backoff with full jitter, cap before jitter.

Pure: the random draw `u` in [0, 1) is an argument, so the Simulation, the oracle and the
tests can reproduce every delay from a seed.
"""

from __future__ import annotations


def backoff_ceiling(retry: int, base: float, cap: float) -> float:
    """The upper end of the n-th retry's delay: min(cap, base x 2^n)."""
    if retry < 0:
        raise ValueError(f"retry index must be >= 0, not {retry}")
    # 2**retry grows without bound; past 64 doublings every sane cap has been reached.
    return min(cap, base * 2.0 ** min(retry, 64))


def backoff_delay(retry: int, u: float, *, base: float = 1.0, cap: float = 30.0,
                  retry_after: float | None = None) -> float:
    """Delay before the n-th retry: uniform in [0, ceiling] drawn as u x ceiling; a server's
    retry-after hint is a floor (D6: honoured)."""
    if not 0.0 <= u < 1.0:
        raise ValueError(f"u must be in [0, 1), not {u}")
    delay = u * backoff_ceiling(retry, base, cap)
    if retry_after is not None and retry_after > delay:
        return float(retry_after)
    return delay
