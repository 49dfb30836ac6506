"""Exact (or as good as float64 can be) references, and tolerance checks against them.

Integer data: exact sums in Python ints / int64, then one correct rounding.
Float data: ``math.fsum`` (correctly rounded sums) in two passes, float64 throughout.
"""

import math
import warnings
from fractions import Fraction

import numpy as np

EPS64 = np.finfo(np.float64).eps


class Reference:
    """Moments of ``x`` over ``axes`` with float64 results of the kept shape."""

    def __init__(self, x, axes):
        x = np.asarray(x)
        self.axes = tuple(axes)
        self.kept = [ax for ax in range(x.ndim) if ax not in self.axes]
        self.kept_shape = tuple(x.shape[ax] for ax in self.kept)
        self.count = math.prod(x.shape[ax] for ax in self.axes)
        rows = np.transpose(x, self.kept + list(self.axes)).reshape(-1, self.count) \
            if x.size else np.empty((math.prod(self.kept_shape), self.count), x.dtype)
        self.exact_int = x.dtype.kind in "iub"
        # zmfast sums 8- and 16-bit integers exactly and hands wider ones to NumPy, whose
        # float64 sums are exact only below 2**53: 64-bit values past that round as floats do.
        self.rounded_sums = x.dtype.kind in "iu" and x.dtype.itemsize == 8
        n = self.count
        means, m2s, self._num = [], [], []
        if self.exact_int:
            # Exact integer sums: int64 where they cannot overflow, Python ints otherwise.
            top = max(abs(int(rows.min())), abs(int(rows.max()))) if rows.size else 0
            small = n * n * top * top < 2**62
            wide = rows.astype(np.int64 if small else object)
            s1 = wide.sum(axis=1) if n else np.zeros(len(rows), wide.dtype)
            s2 = (wide * wide).sum(axis=1) if n else np.zeros(len(rows), wide.dtype)
            self._s1, self._s2, self._small = s1, s2, small
            if small and n:
                num = n * s2 - s1 * s1  # n * M2, exactly (int64)
                self._num = num
                means = s1 / n if top * n < 2**53 else [float(Fraction(int(a), n)) for a in s1]
                m2s = [float(Fraction(int(v), n)) for v in num] if num.size and (
                    int(np.max(num)) >= 2**53 or n >= 2**53) else num / n
            else:
                for a, b in zip(s1, s2):
                    a, b = int(a), int(b)
                    num = n * b - a * a
                    self._num.append(num)
                    means.append(float(Fraction(a, n)) if n else math.nan)
                    m2s.append(float(Fraction(num, n)) if n else 0.0)
        elif n == 0:
            means = [math.nan] * len(rows)
            m2s = [0.0] * len(rows)
        elif len(rows) <= 256:
            # Few outputs: correctly rounded sums (math.fsum), two passes.
            for row in rows.astype(np.float64):
                mean = math.fsum(row) / n
                dev = row - mean
                means.append(mean)
                m2s.append(math.fsum(dev * dev))
        else:
            # Many outputs: pairwise float64 sums along contiguous rows, the mean refined by
            # the mean of the deviations; errors far below the tolerances used with it.
            data = np.ascontiguousarray(rows, dtype=np.float64)
            with np.errstate(invalid="ignore", over="ignore"):
                mean = data.sum(axis=1) / n
                mean = mean + (data - mean[:, None]).sum(axis=1) / n
                dev = data - mean[:, None]
                means, m2s = mean, (dev * dev).sum(axis=1)
        self.mean = np.array(means, dtype=np.float64).reshape(self.kept_shape)
        self.m2 = np.array(m2s, dtype=np.float64).reshape(self.kept_shape)
        finite = np.asarray(x[np.isfinite(x)] if x.dtype.kind == "f" else x, dtype=np.float64)
        self.scale = float(np.max(np.abs(finite))) if finite.size else 0.0
        self.spread = float(np.ptp(finite)) if finite.size else 0.0

    def var(self, ddof=0):
        divisor = self.count - ddof
        if self.exact_int:
            num = self._num
            if isinstance(num, np.ndarray) and (num.size == 0 or int(np.max(num)) < 2**53) \
                    and self.count * abs(divisor) < 2**53:
                return (num / (self.count * divisor)).reshape(self.kept_shape)
            values = [float(Fraction(int(v), self.count * divisor)) for v in num]
            return np.array(values, dtype=np.float64).reshape(self.kept_shape)
        return self.m2 / divisor

    def std(self, ddof=0):
        # sqrt of the (correctly rounded) variance: within one rounding of the exact value.
        return np.sqrt(self.var(ddof))

    # Absolute error budgets of float64 accumulation (on top of the final rounding). NumPy
    # itself (the numpy backend) sums along a non-contiguous axis naively, so the budget for
    # float sums grows like n * eps; integer sums are exact in every backend.
    def _terms(self):
        return max(64.0, 4.0 * self.count)

    def mean_atol(self):
        if self.exact_int and not self.rounded_sums:
            return 16 * EPS64 * self.scale
        return EPS64 * self.scale * self._terms()

    def var_atol(self, ddof=0):
        # The last term: Chan's merge of float64 means (blocks, lanes, threads, Moments.merge)
        # costs about eps * scale * spread when the data sit far from zero (65530 + U{0..7}).
        divisor = max(self.count - ddof, 1)
        ratio = max(1.0, self.count / divisor)
        return (EPS64 * self.spread ** 2 * self._terms() * ratio
                + (EPS64 * self.scale * self._terms()) ** 2
                + EPS64 * self.scale * self.spread * ratio)


def rounded(values, dtype):
    """float64 values rounded to ``dtype`` (without overflow warnings)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values, dtype=np.float64).astype(dtype)


def ulp_of(values, dtype):
    """The spacing of ``dtype`` at ``|values|`` (as float64)."""
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.abs(rounded(values, dtype))
        return np.spacing(r).astype(np.float64)


def assert_close_to_reference(got, ref, dtype, atol=0.0, ulps=1.0, what="", via=None):
    """``got`` (of ``dtype``) is within ``ulps`` ulp of ``dtype`` at ``ref`` plus ``atol``
    (plus one ulp of ``via`` when the value was rounded to that dtype on the way).

    NaNs must match NaNs; infinities must match exactly.
    """
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    if dtype.kind != "f":
        np.testing.assert_array_equal(got, ref.astype(dtype), err_msg=what)
        return
    g = got.astype(np.float64)
    nan_ref, nan_got = np.isnan(ref), np.isnan(g)
    assert np.array_equal(nan_ref, nan_got), f"{what}: NaN mismatch\ngot={got!r}\nref={ref!r}"
    finite = ~nan_ref
    inf_ref = np.isinf(rounded(ref, dtype)) & finite
    assert np.array_equal(g[inf_ref], rounded(ref, dtype)[inf_ref].astype(np.float64)), \
        f"{what}: inf mismatch\ngot={got!r}\nref={ref!r}"
    check = finite & ~inf_ref
    tol = ulps * ulp_of(ref, dtype) + atol
    if via is not None and np.dtype(via).kind == "f":
        tol = tol + ulp_of(ref, via)
    err = np.abs(g - ref)
    bad = check & ~(err <= tol)
    if np.any(bad):
        idx = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise AssertionError(
            f"{what}: {int(np.sum(bad))} of {bad.size} values off; first at {idx}: "
            f"got {g[idx]!r}, reference {ref[idx]!r}, error {err[idx]!r} > tol "
            f"{np.broadcast_to(tol, ref.shape)[idx]!r} (dtype {dtype})\n"
            f"got={got!r}\nref={ref!r}")


def ulp_distance(a, b):
    """Elementwise distance in units of last place between float arrays of one dtype."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.dtype.kind == "f", (a.dtype, b.dtype)
    itype = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    mask = np.iinfo(itype).max

    def ordered(v):
        bits = np.ascontiguousarray(v).view(itype).astype(np.int64)
        return np.where(bits < 0, -(bits & mask), bits)

    return np.abs(ordered(a) - ordered(b))


def capture(function, *args, **kwargs):
    """Run ``function(*args, **kwargs)``; return (result or None, exception or None,
    warnings list)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return function(*args, **kwargs), None, caught
        except Exception as exc:  # noqa: BLE001 - compared against NumPy's
            return None, exc, caught


def warning_kinds(caught):
    return sorted({w.category.__name__ for w in caught})
