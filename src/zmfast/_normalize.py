"""Fused centering and standardization: one pass from the input dtype into float."""

import numpy as np

from zmfast import _config, _plan
from zmfast._validate import check_out, is_fast, output_dtype, real_array

_SMALLEST_STD = np.finfo(np.float64).smallest_normal


def usable_std(std):
    """Where ``std`` can divide in the kernels, which multiply by ``1 / std``: finite and at
    least the smallest normal float64 (1 / std of a subnormal overflows, and x == mean would
    then give 0 * inf = NaN where (x - mean) / std is 0)."""
    return np.isfinite(std) & (std >= _SMALLEST_STD)

INVERSE_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.uint16, np.float16, np.float32,
                                                  np.float64))


def _stats_array(value, name):
    array = np.asarray(value)
    if array.dtype.kind not in "uif":
        raise TypeError(f"{name} must be real numbers, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


# Statistics validated recently, so a data loader's repeated calls skip the checks and get
# the same (read-only, private) arrays back, on which later stages cache their plans: small
# ones (per channel, scalar) keyed on their values and the input's shape; large ones (per
# pixel) compared with the last few whole.
_CHECKED = {}
_CHECKED_MAX = 64
_CHECKED_LARGE = []
_CHECKED_LARGE_MAX = 2


def _private(checked):
    """Read-only copies: later edits to the caller's arrays cannot reach them."""
    checked = tuple(a.copy() for a in checked)
    for array in checked:
        array.flags.writeable = False
    return checked


def check_stats(x_shape, mean, std):
    """Validate statistics against an input of (channels-last) shape ``x_shape``; return
    them as float64 arrays. Raises before anything is written."""
    mean = _stats_array(mean, "mean")
    std = _stats_array(std, "std")
    if mean.size > 256 or std.size > 256:
        x_shape = tuple(x_shape)
        for shape, checked in _CHECKED_LARGE:
            if (shape == x_shape and np.array_equal(checked[0], mean)
                    and np.array_equal(checked[1], std)):
                return checked
        checked = _private(_check_stats(x_shape, mean, std))
        _CHECKED_LARGE.append((x_shape, checked))
        del _CHECKED_LARGE[:-_CHECKED_LARGE_MAX]
        return checked
    key = (tuple(x_shape), mean.shape, mean.tobytes(), std.shape, std.tobytes())
    checked = _CHECKED.get(key)
    if checked is None:
        checked = _private(_check_stats(x_shape, mean, std))
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[key] = checked
    return checked


def _check_stats(x_shape, mean, std):
    try:
        stats_shape = np.broadcast_shapes(mean.shape, std.shape)
    except ValueError:
        raise ValueError(f"mean of shape {mean.shape} and std of shape {std.shape} do not "
                         "broadcast together") from None
    try:
        broadcast = np.broadcast_shapes(stats_shape, x_shape)
    except ValueError:
        broadcast = None
    if broadcast != tuple(x_shape):
        raise ValueError(f"statistics of shape {stats_shape} do not broadcast against the "
                         f"trailing axes of x of shape {tuple(x_shape)}")
    if not np.all(np.isfinite(mean)):
        raise ValueError("mean must be finite (it has a NaN or infinite entry)")
    if not np.all(usable_std(std)):
        raise ValueError(f"std must be finite and > 0, at least {_SMALLEST_STD:.4g} (the "
                         "smallest normal float64); it has a zero, negative, subnormal, NaN or "
                         "infinite entry")
    return mean, std


def _layout_shapes(shape, layout):
    """(channels-last shape of the input, output shape) for a layout."""
    if layout != "same" and len(shape) < 3:
        raise ValueError(f"channels_first needs an input with at least 3 dimensions, got "
                         f"shape {shape}")
    if layout == "channels_first":  # (..., H, W, C) -> (..., C, H, W)
        return shape, shape[:-3] + (shape[-1],) + shape[-3:-1]
    if layout == "channels_last":  # (..., C, H, W) -> (..., H, W, C)
        last = shape[:-3] + shape[-2:] + (shape[-3],)
        return last, last
    return shape, shape


def aligned_empty(shape, dtype, alignment=64):
    """``np.empty`` starting on a cache-line boundary, so the kernels' streaming stores cover
    whole lines from the first element (NumPy's allocator gives 16 bytes)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def run_affine(x, mean, std, out, dtype, layout):
    """Fill (or allocate) the output of ``(x - mean) / std`` in ``layout``; the arguments
    are already validated except ``out``."""
    _, shape = _layout_shapes(x.shape, layout)
    if out is not None:
        check_out(out, shape, dtype)
    # The kernels write a C-contiguous destination that does not overlap x; anything else
    # goes through a temporary.
    direct = (out is not None and out.flags.c_contiguous
              and not np.may_share_memory(out, x))
    target = out if direct else aligned_empty(shape, dtype)
    backend = _config.backend()
    if not is_fast(x) or x.size == 0:
        backend = _config._load("numpy")
    backend.affine(x, mean, std, target, layout, fresh=target is not out)
    if out is None:
        return target
    if not direct:
        out[...] = target
    return out


# Repeat plans: a data loader calls standardize on batches of one layout with the same
# statistics, again and again. The first call validates and plans; where it took the channel
# kernels (uint8 in, per-channel or scalar statistics), the backend returns a plan that a
# repeat reaches with one dictionary lookup and runs with one extension call, which checks
# the arrays against the plan (about 5 us of Python saved, as much as the kernel on 32 CIFAR
# images). The key holds the arguments that the validation depends on except the arrays'
# layouts: the plan itself checks those (x uint8 of the planned shape and strides, out of
# the planned dtype, shape and strides, writable, not overlapping x) and declines anything
# else, which then takes the full path.
_REPEAT_PLANS = {}
_REPEAT_PLANS_MAX = 64
_MAX_KEYED_STATS = 4


def _stats_key(value):
    """A hashable stand-in for small statistics (None where they are not keyed)."""
    kind = type(value)
    if kind is np.ndarray:
        return ((value.dtype, value.shape, value.tobytes())
                if value.size <= _MAX_KEYED_STATS else None)
    if kind is float or kind is int:
        return value
    if ((kind is list or kind is tuple) and len(value) <= _MAX_KEYED_STATS
            and all(type(v) is float or type(v) is int for v in value)):
        return tuple(value)
    return None


def _repeat_key(x, mean, std, out, dtype, channels_first):
    if type(x) is not np.ndarray or not (out is None or type(out) is np.ndarray):
        return None
    mean_key, std_key = _stats_key(mean), _stats_key(std)
    if mean_key is None or std_key is None:
        return None
    return (x.shape, mean_key, std_key, out is None, dtype, channels_first,
            _config.get_backend())


def _transform(x, mean, std, out, dtype, channels_first):
    key = _repeat_key(x, mean, std, out, dtype, channels_first)
    if key is not None:
        try:
            plan = _REPEAT_PLANS.get(key)
        except TypeError:  # an unhashable dtype argument: the checks below reject it
            plan = key = None
        if plan is not None:
            target = aligned_empty(plan[1], plan[2]) if out is None else out
            if plan[0].run(x, target):
                return target
    x = real_array(x, "x")
    dtype = output_dtype(dtype)
    layout = "channels_first" if channels_first else "same"
    last_shape, _ = _layout_shapes(x.shape, layout)
    mean, std = check_stats(last_shape, mean, std)
    result = run_affine(x, mean, std, out, dtype, layout)
    if key is not None and x.size and (out is None or out.flags.c_contiguous):
        make_plan = getattr(_config.backend(), "repeat_plan", None)
        plan = make_plan and make_plan(x, mean, std, result, layout, fresh=out is None)
        if plan is not None:
            if len(_REPEAT_PLANS) >= _REPEAT_PLANS_MAX:
                _REPEAT_PLANS.clear()
            _REPEAT_PLANS[key] = (plan, result.shape, result.dtype)
    return result


def standardize(x, mean, std, *, out=None, dtype=np.float32, channels_first=False):
    """Return ``(x - mean) / std`` as float32 (or float16/float64) in one fused pass.

    ``x`` is an image batch of uint8, uint16, float32 or float64 (any shape and strides);
    ``mean`` and ``std`` broadcast against its trailing axes: a scalar, per channel
    ``(C,)``, per pixel ``(H, W, C)``, ... ``channels_first=True`` writes the last axis of
    ``x`` at position -3 (NHWC in, NCHW out, as PyTorch expects). ``out`` is filled and
    returned. Nothing is written unless every argument is valid: ``std`` must be finite and
    at least the smallest normal float64 (so that ``1 / std`` is finite).

    NumPy equivalent: ``((x - mean) / std).astype(dtype)`` (then ``.transpose(0, 3, 1, 2)``).
    float32 results are within an ulp of it, float16 results equal to it (uint8 input on
    AVX-512 or AVX2 may take a float32 form checked on all 256 input values: README,
    Numerics).

    >>> import numpy as np, zmfast as zm
    >>> x = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    >>> y = zm.standardize(x, [124, 116, 104], [58, 57, 57], channels_first=True)
    >>> y.shape, y.dtype
    ((2, 3, 4, 4), dtype('float32'))
    """
    return _transform(x, mean, std, out, dtype, channels_first)


def center(x, mean, *, out=None, dtype=np.float32, channels_first=False):
    """Return ``x - mean`` as float32 (or float16/float64) in one fused pass.

    Arguments as :func:`standardize`; ``mean`` is typically the mean image
    ``zm.mean(x_train, axis=0)`` (cs231n's zero-centering).

    >>> import numpy as np, zmfast as zm
    >>> x = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    >>> zm.center(x, zm.mean(x, axis=0))
    array([[-1., -1.],
           [ 1.,  1.]], dtype=float32)
    """
    return _transform(x, mean, 1.0, out, dtype, channels_first)


def destandardize(y, mean, std, *, out=None, channels_first=False, dtype=np.uint8):
    """Return ``y * std + mean`` rounded (half to even) and clamped to ``dtype``: the inverse
    of :func:`standardize`, to look at a normalised batch. One fused pass.

    ``channels_first=True`` takes ``y`` as ``(..., C, H, W)`` and moves channels back to last.
    ``mean``/``std`` are the ones given to :func:`standardize` (they broadcast against the
    channels-last shape). ``dtype``: uint8 (default), uint16, float16, float32 or float64
    (floats are not rounded). NaN becomes 0.

    >>> import numpy as np, zmfast as zm
    >>> x = np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3)
    >>> y = zm.standardize(x, [1, 2, 3], [4, 5, 6], channels_first=True)
    >>> bool(np.array_equal(zm.destandardize(y, [1, 2, 3], [4, 5, 6], channels_first=True), x))
    True
    """
    y = real_array(y, "y")
    dtype = np.dtype(dtype)
    if dtype not in INVERSE_DTYPES:
        raise TypeError(f"dtype must be uint8, uint16, float16, float32 or float64, got {dtype}")
    layout = "channels_last" if channels_first else "same"
    last_shape, _ = _layout_shapes(y.shape, layout)
    mean, std = check_stats(last_shape, mean, std)
    # y * std + mean == (y - (-mean / std)) / (1 / std): the same kernel as standardize.
    with np.errstate(over="ignore"):
        shift, scale = -mean / std, 1.0 / std
    if np.isfinite(shift).all() and np.all(usable_std(scale)):
        return run_affine(y, shift, scale, out, dtype, layout)
    # A mean far larger than std (|mean / std| past float64's range): y * std + mean itself,
    # in float64 (no fused pass), then the kernels' rounding and clamping.
    scaled = _plan.channels_last_view(y, layout).astype(np.float64) * std
    return run_affine(scaled, -mean, np.ones_like(std), out, dtype, "same")
