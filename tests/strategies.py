"""Hypothesis strategies: arrays of every dtype, shape and memory layout zmfast must take.

After pydata/bottleneck's ``array_generator`` idea: every dtype x every axis x 0-d, empty,
strided, transposed, broadcast (zero strides) and overlapping (``as_strided``) views, and
Fortran order. Values come from a NumPy generator seeded by Hypothesis (fast for arrays of
thousands of elements) following one of a few value *profiles* that stress different things:
full range (accumulator overflow), extremes only, few distinct values (ties, exact zeros),
a constant (variance exactly 0), a large offset with a small spread (cancellation).
"""

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

# Dtypes with compiled fast paths, and dtypes the library hands to NumPy itself.
FAST_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16,
                                          np.float32, np.float64))
REAL_DELEGATED_DTYPES = tuple(np.dtype(t) for t in (np.bool_, np.int32, np.uint32, np.int64,
                                                    np.uint64, np.float16, ">f8", ">u2",
                                                    ">i2", ">f4"))
COMPLEX_DTYPES = (np.dtype(np.complex64), np.dtype(np.complex128))
ALL_DTYPES = FAST_DTYPES + REAL_DELEGATED_DTYPES + COMPLEX_DTYPES

LAYOUTS = ("c", "f", "transpose", "slice", "broadcast", "as_strided", "readonly",
           "unaligned")
PROFILES = ("full", "extremes", "few", "constant", "offset")


def is_fast(a):
    """Whether the tests expect zmfast's own fast path (the others go to NumPy)."""
    return (type(a) is np.ndarray and a.dtype in FAST_DTYPES and a.dtype.isnative
            and a.flags.aligned)


# --- shapes ------------------------------------------------------------------------------

# Mostly small sides, some 1s, a few 0s, some odd sizes.
_SIDES = st.sampled_from([0, 1, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 7, 7, 9, 11, 13, 1, 2, 3])


@st.composite
def small_shapes(draw, min_dims=0, max_dims=4):
    ndim = draw(st.integers(min_dims, max_dims))
    return tuple(draw(_SIDES) for _ in range(ndim))


@st.composite
def image_shapes(draw, min_dims=2, max_dims=4):
    """(..., H, W, C)-like shapes with a small last axis and enough reduced rows that the
    compiled backends take their wide-lane paths (e.g. (150, 3) over axis 0)."""
    ndim = draw(st.integers(min_dims, max_dims))
    channels = draw(st.sampled_from([1, 2, 3, 3, 4, 5, 8, 31, 33]))
    if ndim == 2:
        return (draw(st.integers(60, 700)), channels)
    lead = [draw(st.sampled_from([1, 2, 3, 5, 7, 16, 67])) for _ in range(ndim - 1)]
    while np.prod(lead) * channels > 6000:
        lead[int(np.argmax(lead))] //= 2
    return tuple(int(n) for n in lead) + (channels,)


def shapes(min_dims=0, max_dims=4):
    return st.one_of(small_shapes(min_dims, max_dims), small_shapes(min_dims, max_dims),
                     image_shapes(max(2, min_dims), max(2, max_dims)))


# --- values ------------------------------------------------------------------------------

def value_bound(dtype, small=False):
    """Largest magnitude of generated values of a (real) dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        if small or dtype.itemsize == 2:
            return 100.0
        return 1e6
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if small:
            return min(100, int(info.max))
        return int(info.max)
    return 1


def make_values(rng, dtype, size, profile, small=False):
    """``size`` values of ``dtype`` (native byte order) following ``profile``."""
    dtype = np.dtype(dtype).newbyteorder("=")
    if dtype.kind == "b":
        if profile == "constant":
            return np.full(size, bool(rng.integers(2)))
        return rng.integers(0, 2, size).astype(bool)
    if dtype.kind == "c":
        real = make_values(rng, np.float64, size, profile, small)
        imag = make_values(rng, np.float64, size, profile, small)
        return (real + 1j * imag).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = int(info.min), int(info.max)
        if small:
            lo, hi = max(lo, -100), min(hi, 100)
        if profile == "full":
            return rng.integers(lo, hi, size, endpoint=True, dtype=dtype)
        if profile == "extremes":
            return rng.choice(np.array([lo, hi], dtype=dtype), size)
        if profile == "few":
            choices = np.array(sorted({lo, 0 if lo <= 0 else lo, 1, 2, hi}), dtype=dtype)
            return rng.choice(choices, size)
        if profile == "constant":
            return np.full(size, rng.integers(lo, hi, endpoint=True, dtype=dtype), dtype=dtype)
        # offset: values near the top of the range
        return rng.integers(max(lo, hi - 7), hi, size, endpoint=True, dtype=dtype)
    bound = value_bound(dtype, small)
    if profile == "full":
        scale = bound * rng.choice([1e-3, 0.1, 1.0])
        return rng.uniform(-scale, scale, size).astype(dtype)
    if profile == "extremes":
        return rng.choice(np.array([-bound, bound], dtype=dtype), size)
    if profile == "few":
        return rng.integers(-3, 4, size).astype(dtype)
    if profile == "constant":
        return np.full(size, rng.uniform(-bound, bound), dtype=dtype)
    # offset: a large offset and a spread of about 1
    offset = bound * 0.75
    return (offset + rng.uniform(0, 1, size)).astype(dtype)


# --- views -------------------------------------------------------------------------------

@dataclass
class Case:
    """An input array and how it was made (for readable failures)."""

    array: np.ndarray
    layout: str
    profile: str
    base: np.ndarray = field(repr=False, default=None)  # the buffer the view reads

    def __repr__(self):
        a = self.array
        return (f"Case(layout={self.layout!r}, profile={self.profile!r}, dtype={a.dtype}, "
                f"shape={a.shape}, strides={a.strides},\n     array={a!r})")


def _filled(rng, dtype, shape, profile, small):
    size = int(np.prod(shape, dtype=np.int64))
    return make_values(rng, dtype, size, profile, small).astype(dtype).reshape(shape)


@st.composite
def layout_view(draw, dtype, shape, layout, profile, small=False):
    """An array of logical ``shape`` and ``dtype`` laid out in memory as ``layout``."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ndim = len(shape)
    if layout == "c":
        base = _filled(rng, dtype, shape, profile, small)
        return Case(base, layout, profile, base)
    if layout == "readonly":
        base = _filled(rng, dtype, shape, profile, small)
        base.flags.writeable = False
        return Case(base, layout, profile, base)
    if layout == "f":
        base = _filled(rng, dtype, shape, profile, small).copy(order="F")
        return Case(base, layout, profile, base)
    if layout == "transpose":
        perm = draw(st.permutations(range(ndim)))
        base_shape = [0] * ndim
        for i, p in enumerate(perm):
            base_shape[p] = shape[i]
        base = _filled(rng, dtype, tuple(base_shape), profile, small)
        return Case(base.transpose(perm), layout, profile, base)
    if layout == "slice":
        steps = [draw(st.sampled_from([1, 2, 3, -1, -2])) for _ in range(ndim)]
        starts = [draw(st.integers(0, 2)) for _ in range(ndim)]
        base_shape = tuple(start + max(n - 1, 0) * abs(step) + 1 + draw(st.integers(0, 1))
                           for n, step, start in zip(shape, steps, starts))
        base = _filled(rng, dtype, base_shape, profile, small)
        view = base
        index = []
        for axis, (n, step, start) in enumerate(zip(shape, steps, starts)):
            if step < 0:
                view = np.flip(view, axis)
            index.append(slice(start, start + n * abs(step), abs(step)))
        view = view[tuple(index)] if ndim else view[...]
        assert view.shape == tuple(shape), (view.shape, shape)
        return Case(view, layout, profile, base)
    if layout == "broadcast":
        lead = draw(st.integers(0, ndim))
        base_shape = tuple(1 if draw(st.integers(0, 2)) == 0 else n for n in shape[lead:])
        base = _filled(rng, dtype, base_shape, profile, small)
        return Case(np.broadcast_to(base, shape), layout, profile, base)
    if layout == "as_strided":
        steps = [draw(st.integers(-3, 3)) for _ in range(ndim)]
        if 0 in shape:
            lo = hi = 0
        else:
            lo = sum(min(0, s * (n - 1)) for s, n in zip(steps, shape))
            hi = sum(max(0, s * (n - 1)) for s, n in zip(steps, shape))
        base = _filled(rng, dtype, (hi - lo + 1,), profile, small)
        view = np.lib.stride_tricks.as_strided(
            base[-lo:], shape=shape, strides=[s * dtype.itemsize for s in steps],
            writeable=False)
        return Case(view, layout, profile, base)
    if layout == "unaligned":
        size = int(np.prod(shape, dtype=np.int64))
        raw = np.zeros(size * dtype.itemsize + 1, dtype=np.uint8)
        view = raw[1:].view(dtype).reshape(shape)
        view[...] = _filled(rng, dtype, shape, profile, small)
        return Case(view, layout, profile, raw)
    raise AssertionError(layout)


@st.composite
def arrays(draw, dtypes=ALL_DTYPES, shape=None, layouts=LAYOUTS, profiles=PROFILES,
           small=False, min_dims=0, max_dims=4):
    """A :class:`Case` holding an array of one of ``dtypes`` in one of ``layouts``."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    if shape is None:
        shape = draw(shapes(min_dims, max_dims))
    layout = draw(st.sampled_from(layouts))
    profile = draw(st.sampled_from(profiles))
    case = draw(layout_view(dtype, shape, layout, profile, small))
    assert case.array.dtype == dtype and case.array.shape == tuple(shape)
    return case


# --- reduction arguments -----------------------------------------------------------------

def axes(ndim):
    """None, an int (possibly negative), or a tuple of distinct axes (possibly empty)."""
    if ndim == 0:
        return st.sampled_from([None, ()])
    plain = st.integers(-ndim, ndim - 1)
    # NumPy integers are axes too (operator.index).
    single = st.one_of(plain, plain, plain.map(np.int64), plain.map(np.intp))
    many = st.lists(single, unique_by=lambda ax: int(ax) % ndim, max_size=ndim).map(tuple)
    return st.one_of(st.none(), single, many)


def normalize_axes(axis, ndim):
    """The reduced axes as a sorted tuple of non-negative ints (the tests' own version)."""
    if axis is None:
        return tuple(range(ndim))
    if not isinstance(axis, tuple):
        axis = (axis,)
    return tuple(sorted(int(ax) % ndim for ax in axis))


DTYPE_ARGS = (None, None, None, np.float64, np.float32, np.float16, np.int64)
