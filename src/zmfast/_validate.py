"""Argument checks and NumPy's axis and dtype rules, shared by the public functions."""

import operator

import numpy as np

# Input dtypes the compiled backends handle; anything else goes to the reference backend.
FAST_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16,
                                                np.float32, np.float64))
OUTPUT_DTYPES = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64))


def normalize_axes(axis, ndim):
    """Return ``axis`` as a sorted tuple of non-negative ints; raise NumPy's AxisError."""
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is tuple:  # already canonical (sorted, distinct, in range): the usual case
        previous = -1
        for ax in axis:
            if type(ax) is not int or not previous < ax < ndim:
                break
            previous = ax
        else:
            return axis
    axes = axis if isinstance(axis, tuple) else (axis,)
    result = []
    for ax in axes:
        try:
            if isinstance(ax, bool):  # NumPy checks its range as an int's, then rejects it
                if not -ndim <= ax < ndim:
                    raise np.exceptions.AxisError(int(ax), ndim)
                raise TypeError
            ax = operator.index(ax)
        except TypeError:
            raise TypeError(f"axis must be an int, a tuple of ints or None, got {ax!r}") from None
        if not -2**31 <= ax < 2**31:  # NumPy reads axes as C ints
            raise OverflowError(f"axis {ax} is too large to convert to C int")
        if not -ndim <= ax < ndim:
            raise np.exceptions.AxisError(ax, ndim)
        result.append(ax % ndim)
    if len(set(result)) != len(result):
        raise ValueError("duplicate value in 'axis'")
    return tuple(sorted(result))


def is_fast(a):
    """Whether the compiled backends take ``a`` directly (dtype, byte order, alignment)."""
    return a.dtype in FAST_DTYPES and a.dtype.isnative and a.flags.aligned


def real_array(a, what):
    """``a`` as an ndarray of real numbers, or a TypeError naming ``what``: for non-numbers,
    and for masked arrays, whose mask zmfast's kernels would drop without a word."""
    if type(a) is not np.ndarray:  # plain ndarrays (the usual case) need neither check
        if isinstance(a, np.ma.MaskedArray):
            raise TypeError(f"{what} is a masked array, whose mask would be ignored; pass "
                            f"{what}.filled(value) or {what}.compressed() (np.ma's own "
                            "functions honour masks)")
        a = np.asarray(a)
    require_real_numeric(a, what)
    return a


def require_real_numeric(a, what):
    """Reject bool, complex, string, object and other non-numbers with a TypeError."""
    if a.dtype.kind not in "uif":
        raise TypeError(f"{what} must be an array of real numbers (integer or float), "
                        f"got dtype {a.dtype}")


def output_dtype(dtype):
    """The float dtype of a centred/standardized result: float16, float32 or float64."""
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    if dtype not in OUTPUT_DTYPES:
        raise TypeError(f"dtype must be float16, float32 or float64, got {dtype}")
    return dtype


def check_out(out, shape, dtype):
    """Check a user's ``out`` array before anything is written."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape}, expected {tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
