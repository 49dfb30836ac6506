"""The reference backend: the documented semantics in plain NumPy, float64 throughout.

Every other backend is tested against this one. It favours clarity over speed: it makes
float64 temporaries the size of the input.
"""

import numpy as np

from zmfast import _plan

name = "numpy"


def moments(x, axes, want_m2=True):
    mean = np.mean(x, axis=axes, dtype=np.float64, keepdims=True)
    m2 = None
    if want_m2:
        deviation = x.astype(np.float64) - mean
        m2 = np.sum(deviation * deviation, axis=axes)
    return np.squeeze(mean, axis=axes), m2


def add_sums(x, rows, lanes, s1, s2):
    """``S1 += x.sum(0)``, ``S2 += (x * x).sum(0)`` over the (rows, lanes) view, in int64."""
    wide = x.reshape(rows, lanes).astype(np.int64)
    s1 += wide.sum(axis=0)
    s2 += np.einsum("ij,ij->j", wide, wide)


def affine(x, mean, std, out, layout, fresh=False):
    result = (_plan.channels_last_view(x, layout).astype(np.float64) - mean) / std
    if layout == "channels_first":
        result = np.moveaxis(result, -1, -3)
    if out.dtype.kind in "iu":
        info = np.iinfo(out.dtype)
        result = np.clip(np.rint(np.nan_to_num(result, nan=info.min)), info.min, info.max)
    with np.errstate(over="ignore"):  # float16 overflow gives inf, as the other backends
        out[...] = result


def set_num_threads(n):
    """The reference backend is single-threaded."""
