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


def welch_t(a: Summary, b: Summary) -> tuple[float, float] | None:
    """Welch's t statistic for mean(a) - mean(b) and its Welch-Satterthwaite degrees of freedom;
    None with fewer than two values on a side or no spread at all (nothing to test)."""
    if a.n < 2 or b.n < 2 or (a.std == 0 and b.std == 0):
        return None
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    return (a.mean - b.mean) / math.sqrt(va + vb), df


def t_tail(t: float, df: float) -> float:
    """P(T > |t|) for Student's t with df degrees of freedom, by the regularised incomplete beta
    function. mpmath (torch's dependency through sympy), not scipy: scipy installed makes every
    Lightning import load scipy.signal through torchmetrics, 0.8 s of each run's start-up."""
    import mpmath

    return float(mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True)) / 2


def welch_p(a: Summary, b: Summary) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances) that a and b share a mean; None
    where `welch_t` has nothing to test."""
    tested = welch_t(a, b)
    return None if tested is None else 2 * t_tail(*tested)


def welch_p_less(a: Summary, b: Summary) -> float | None:
    """One-sided p-value of Welch's t-test that a's mean is below b's; None as for `welch_p`."""
    tested = welch_t(a, b)
    if tested is None:
        return None
    t, df = tested
    return t_tail(t, df) if t < 0 else 1 - t_tail(t, df)


def verdict(p: float | None, alpha: float = 0.05) -> str:
    """How a claim may be worded from a p-value."""
    if p is None:
        return "not tested"
    return "differs" if p < alpha else "no clear difference"


def format_p(p: float) -> str:
    """A p-value to three decimals; one too small for them reads "< 0.001", not "0.000"."""
    return "< 0.001" if p < 0.0005 else f"{p:.3f}"
