"""The reference backend: the documented semantics in plain NumPy, float64 throughout.

Every other backend is tested against this one. It favours clarity over speed: it makes
float64 temporaries the size of the input.
"""

import numpy as np

name = "numpy"


def moments(x, axes, want_m2=True):
    mean = np.mean(x, axis=axes, dtype=np.float64, keepdims=True)
    m2 = None
    if want_m2:
        deviation = x.astype(np.float64) - mean
        m2 = np.sum(deviation * deviation, axis=axes)
    return np.squeeze(mean, axis=axes), m2


def affine(x, mean, std, out, channels_first):
    result = (x.astype(np.float64) - mean) / std
    if channels_first:
        result = np.moveaxis(result, -1, -3)
    out[...] = result


def set_num_threads(n):
    """The reference backend is single-threaded."""
