"""Fused centering and standardization: one pass from the input dtype into float."""

import numpy as np

from zmfast import _config
from zmfast._validate import check_out, is_fast, output_dtype, require_real_numeric


def _stats_array(value, name):
    array = np.asarray(value)
    if array.dtype.kind not in "uif":
        raise TypeError(f"{name} must be real numbers, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _transform(x, mean, std, out, dtype, channels_first):
    x = np.asarray(x)
    require_real_numeric(x, "x")
    dtype = output_dtype(dtype)
    mean = _stats_array(mean, "mean")
    std = _stats_array(std, "std")
    try:
        stats_shape = np.broadcast_shapes(mean.shape, std.shape)
    except ValueError:
        raise ValueError(f"mean of shape {mean.shape} and std of shape {std.shape} do not "
                         "broadcast together") from None
    try:
        broadcast = np.broadcast_shapes(stats_shape, x.shape)
    except ValueError:
        broadcast = None
    if broadcast != x.shape:
        raise ValueError(f"statistics of shape {stats_shape} do not broadcast against the "
                         f"trailing axes of x of shape {x.shape}")
    if not np.all(np.isfinite(mean)):
        raise ValueError("mean must be finite (it has a NaN or infinite entry)")
    if not np.all(np.isfinite(std) & (std > 0)):
        raise ValueError("std must be finite and > 0 (it has a zero, negative, NaN or "
                         "infinite entry)")
    if channels_first:
        if x.ndim < 3:
            raise ValueError(f"channels_first needs x with at least 3 dimensions (..., H, W, C), "
                             f"got shape {x.shape}")
        shape = x.shape[:-3] + (x.shape[-1],) + x.shape[-3:-1]
    else:
        shape = x.shape
    if out is not None:
        check_out(out, shape, dtype)

    # The kernels write a C-contiguous destination that does not overlap x; anything else
    # goes through a temporary.
    direct = (out is not None and out.flags.c_contiguous
              and not np.may_share_memory(out, x))
    target = out if direct else np.empty(shape, dtype)
    backend = _config.backend()
    if not is_fast(x) or x.size == 0:
        backend = _config._load("numpy")
    backend.affine(x, mean, std, target, bool(channels_first))
    if out is None:
        return target
    if not direct:
        out[...] = target
    return out


def standardize(x, mean, std, *, out=None, dtype=np.float32, channels_first=False):
    """Return ``(x - mean) / std`` as float32 (or float16/float64) in one fused pass.

    ``x`` is an image batch of uint8, uint16, float32 or float64 (any shape and strides);
    ``mean`` and ``std`` broadcast against its trailing axes: a scalar, per channel
    ``(C,)``, per pixel ``(H, W, C)``, ... ``channels_first=True`` writes the last axis of
    ``x`` at position -3 (NHWC in, NCHW out, as PyTorch expects). ``out`` is filled and
    returned. Nothing is written unless every argument is valid: ``std`` must be finite and
    positive.

    NumPy equivalent: ``((x - mean) / std).astype(dtype)`` (then ``.transpose(0, 3, 1, 2)``).

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
