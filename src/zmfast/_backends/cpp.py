"""The C++ backend: the extension's kernels on the canonical plans of zmfast._plan."""

import zmfast._core as _core
from zmfast import _plan

name = "cpp"


def moments(x, axes, want_m2=True):
    return _plan.moments(x, axes, want_m2, _core.moments)


def add_sums(x, rows, lanes, s1, s2):
    _core.add_sums(x, rows, lanes, s1, s2)


def affine(x, mean, std, out, layout):
    _plan.affine(x, mean, std, out, layout, _core.affine)


def set_num_threads(n):
    _core.set_num_threads(n)
