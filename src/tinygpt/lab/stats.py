"""Statistics across seeds: mean and spread per configuration, and Welch's t-test against a
baseline, so a lab claim says how sure it is."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """A configuration's values over its seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single value."""
        if self.n < 2:
            return 0.0
        return math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (self.n - 1))

    def __str__(self) -> str:
        return self.format(3)

    def format(self, digits: int) -> str:
        """`mean ± std` to `digits` decimals; the mean alone for one value or equal values."""
        if self.n > 1 and self.std > 0:
            return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"
        return f"{self.mean:.{digits}f}"


def welch_p(a: Summary, b: Summary) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances) that a and b share a mean; None
    with fewer than two values on a side or no spread at all."""
    from scipy.stats import ttest_ind

    if a.n < 2 or b.n < 2 or (a.std == 0 and b.std == 0):
        return None
    return float(ttest_ind(a.values, b.values, equal_var=False).pvalue)


def verdict(p: float | None, alpha: float = 0.05) -> str:
    """How a claim may be worded from a p-value."""
    if p is None:
        return "not tested"
    return "differs" if p < alpha else "no clear difference"


def format_p(p: float) -> str:
    """A p-value to three decimals; one too small for them reads "< 0.001", not "0.000"."""
    return "< 0.001" if p < 0.0005 else f"{p:.3f}"
