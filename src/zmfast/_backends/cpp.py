"""The C++ backend: the extension's kernels on the canonical plans of zmfast._plan."""

import functools

import zmfast._core as _core
from zmfast import _plan

name = "cpp"


def moments(x, axes, want_m2=True):
    return _plan.moments(x, axes, want_m2, _core.moments)


def add_sums(x, rows, lanes, s1, s2):
    _core.add_sums(x, rows, lanes, s1, s2)


def column_sums(dtype, ndim, kept, features, limit, s1, s2, counter, samples):
    """The streaming accumulator of zmfast._stats.RunningSums: ``.add(x)`` checks and adds a
    batch in one call (uint8 sums may wait in 32-bit form until ``.flush()``)."""
    return _core.ColumnSums(dtype, ndim, list(kept), features, limit, s1, s2, counter, samples)


def affine(x, mean, std, out, layout, fresh=False):
    """``fresh``: ``out`` was just allocated (normal stores then beat streaming ones)."""
    kernel = functools.partial(_core.affine, fresh=True) if fresh else _core.affine
    _plan.affine(x, mean, std, out, layout, kernel)


def set_num_threads(n):
    _core.set_num_threads(n)
