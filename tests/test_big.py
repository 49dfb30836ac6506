"""Views with more than 2**31 elements: exact results (no 32-bit index or count overflow,
no accumulator overflow), without ever materialising the big array.

Skipped on the "numpy" backend, which is NumPy itself (minutes and tens of GB here).
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from reference import assert_close_to_reference

import zmfast as zm

BIG = 2**31 + 3
R, C = 2**16 + 1, 2**15 + 7  # R * C = 2_147_975_175 > 2**31
assert R * C > 2**31

RTOL_INT = 1e-12  # exact integer sums, then float64 Chan merges of blocks
RTOL_FLOAT = 1e-10


@pytest.fixture
def compiled(backend):
    if backend == "numpy":
        pytest.skip("the numpy backend is NumPy itself: minutes and tens of GB here")
    return backend


def exact_var(n, s1, s2):
    """Correctly rounded (n*s2 - s1**2) / n**2 for Python ints."""
    return float(Fraction(n * int(s2) - int(s1) ** 2, n * n))


def check(got, ref, rtol, what):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    assert_close_to_reference(got, ref, np.float64, atol=rtol * np.abs(ref), ulps=2, what=what)


# --- (a) zero strides ----------------------------------------------------------------------

@pytest.mark.parametrize("make", ["broadcast_to", "as_strided", "inner"])
def test_zero_stride_view(compiled, make):
    a, b = np.random.default_rng(17).integers(0, 256, 2)
    pair = np.array([a, b], dtype=np.uint8)
    if make == "broadcast_to":
        x, reduced = np.broadcast_to(pair, (BIG, 2)), 0
    elif make == "as_strided":
        x, reduced = np.lib.stride_tricks.as_strided(pair, shape=(BIG, 2), strides=(0, 1)), 0
    else:
        x, reduced = np.broadcast_to(pair[:, None], (2, BIG)), 1
    a, b = int(a), int(b)
    assert x.size > 2**31
    check(zm.mean(x), (a + b) / 2, 0, "mean, axis=None")
    check(zm.var(x), Fraction((a - b) ** 2, 4), 0, "var, axis=None")
    check(zm.std(x), abs(a - b) / 2, 0, "std, axis=None")
    check(zm.mean(x, axis=reduced), [a, b], 0, "mean over the big axis")
    check(zm.var(x, axis=reduced), [0.0, 0.0], 0, "var over the big axis")
    m = zm.moments(x, axis=reduced)
    assert m.count == BIG
    check(m.mean, [a, b], 0, "moments.mean")


# --- (b) an overlapping view: element (i, j) = buf[i + j] ------------------------------------

def overlapping(dtype, seed):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        buf = rng.integers(info.min, info.max, R + C - 1, endpoint=True, dtype=dtype)
    else:
        buf = rng.integers(0, 256, R + C - 1).astype(dtype)  # integer-valued floats
    x = np.lib.stride_tricks.as_strided(buf, shape=(R, C), strides=(buf.itemsize,) * 2,
                                        writeable=False)
    return buf, x


def window_sums(buf, length):
    """Sums and sums of squares of buf[k:k + length] for every k (exact, int64)."""
    values = buf.astype(np.int64)
    p1 = np.concatenate([[0], np.cumsum(values)])
    p2 = np.concatenate([[0], np.cumsum(values * values)])
    count = len(buf) - length + 1
    return p1[length:length + count] - p1[:count], p2[length:length + count] - p2[:count]


def per_window_reference(buf, length):
    s1, s2 = window_sums(buf, length)
    mean = s1 / length  # |s1| < 2**53: one correct rounding
    var = np.array([exact_var(length, a, b) for a, b in zip(s1.tolist(), s2.tolist())])
    return mean, var


def whole_reference(buf):
    """mean and var over all R*C elements: buf[k] appears min(k+1, R, C, R+C-1-k) times."""
    k = np.arange(R + C - 1, dtype=np.int64)
    counts = np.minimum(np.minimum(k + 1, R + C - 1 - k), min(R, C))
    assert int(counts.sum()) == R * C
    values = buf.astype(np.int64)
    s1 = int(np.dot(counts, values))
    s2 = sum(int(c) * int(v) * int(v) for c, v in zip(counts.tolist(), values.tolist()))
    n = R * C
    return float(Fraction(s1, n)), exact_var(n, s1, s2)


@pytest.mark.parametrize("dtype", [np.uint8])
def test_overlapping_view_axis_none(compiled, dtype):
    buf, x = overlapping(dtype, 1)
    mean, var = whole_reference(buf)
    check(zm.mean(x), mean, RTOL_INT, "mean, axis=None")
    check(zm.var(x), var, RTOL_INT, "var, axis=None")


def test_overlapping_view_axis_0(compiled):
    buf, x = overlapping(np.uint8, 2)
    mean, var = per_window_reference(buf, R)  # column j reduces buf[j:j + R]
    assert mean.shape == (C,)
    check(zm.mean(x, axis=0), mean, RTOL_INT, "mean, axis=0")
    check(zm.var(x, axis=0), var, RTOL_INT, "var, axis=0")


def test_overlapping_view_axis_1(compiled):
    buf, x = overlapping(np.uint8, 3)
    mean, var = per_window_reference(buf, C)  # row i reduces buf[i:i + C]
    assert mean.shape == (R,)
    check(zm.mean(x, axis=1), mean, RTOL_INT, "mean, axis=1")
    check(zm.var(x, axis=1), var, RTOL_INT, "var, axis=1")


def test_overlapping_view_int16_moments(compiled):
    """Full-range int16: sums of squares near 2**61 over > 2**31 values."""
    buf, x = overlapping(np.int16, 4)
    mean, var = whole_reference(buf)
    m = zm.moments(x)
    assert m.count == R * C
    check(m.mean, mean, RTOL_INT, "moments.mean")
    check(m.var(), var, RTOL_INT, "moments.var()")


def test_overlapping_view_float32_var_axis_1(compiled):
    """float32 (integer values): float64 accumulation over > 2**31 values."""
    buf, x = overlapping(np.float32, 5)
    mean, var = per_window_reference(buf.astype(np.int64), C)
    got = zm.var(x, axis=1)
    assert got.dtype == np.float32
    check(got, np.asarray(var, np.float32), 1e-6, "float32 var, axis=1")
    assert math.isfinite(float(np.max(got)))
