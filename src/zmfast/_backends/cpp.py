"""The C++ backend: the extension's kernels on the canonical plans of zmfast._plan."""

import functools

import zmfast._core as _core
from zmfast import _plan

name = "cpp"


def moments(x, axes, want_m2=True):
    return _plan.moments(x, axes, want_m2, _core.moments)


def add_sums(x, rows, lanes, s1, s2):
    _core.add_sums(x, rows, lanes, s1, s2)


def exact_moments(x, features, lanes):
    """(mean, M2) of integer ``x`` over its leading axes, as ``RunningSums(stream=False)``
    would give them, in one call."""
    return _core.exact_moments(x, features, lanes)


def column_sums(dtype, ndim, kept, features, limit, s1, s2, counter, samples):
    """The streaming accumulator of zmfast._stats.RunningSums: ``.add(x)`` checks and adds a
    batch in one call (uint8 sums may wait in 32-bit form until ``.flush()``)."""
    return _core.ColumnSums(dtype, ndim, list(kept), features, limit, s1, s2, counter, samples)


def affine(x, mean, std, out, layout, fresh=False):
    """``fresh``: ``out`` was just allocated (normal stores then beat streaming ones)."""
    kernel = functools.partial(_core.affine, fresh=True) if fresh else _core.affine
    channel_kernel = (functools.partial(_core.affine_channels, fresh=True) if fresh
                      else _core.affine_channels)
    _plan.affine(x, mean, std, out, layout, kernel,
                 channels=(_core.channel_coefficients, channel_kernel, _core.simd_level()))


def set_num_threads(n):
    _core.set_num_threads(n)
