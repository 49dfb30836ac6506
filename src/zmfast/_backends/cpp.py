"""The C++ backend: the extension's kernels on the canonical plans of zmfast._plan."""

import functools
import math

import numpy as np

import zmfast._core as _core
from zmfast import _plan

name = "cpp"
finishes_spread = True  # moments(..., spread=) gives var or std from its kernels


def moments(x, axes, want_m2=True, spread=None):
    """(mean, M2) over ``axes``; with ``spread=(divisor, root)``, the variance or standard
    deviation in place of M2, finished in the kernels where they can (see _plan.moments)."""
    return _plan.moments(x, axes, want_m2, _core.moments, spread=spread)


def finish_spread(m2, divisor, root):
    """In place: ``m2 / divisor`` (var), then its square root where ``root`` (std)."""
    _core.finish_spread(m2, divisor, root)


def all_finite(values):
    """Whether every value of the float64 result ``values`` is finite (any layout)."""
    return _core.all_finite(values.ravel(order="K"))


def add_sums(x, rows, lanes, s1, s2):
    _core.add_sums(x, rows, lanes, s1, s2)


def add_channel_sums(x, features, s1, s2):
    """``S1[c] += `` the sum and ``S2[c] += `` the sum of squares of channel ``c`` of the
    C-contiguous pixels ``x`` (``features`` channels), in one linear pass; False, adding
    nothing, where there is no such kernel (see ``_core.add_channel_sums``)."""
    return _core.add_channel_sums(x, features, s1, s2)


def exact_moments(x, features, lanes, want_m2=True):
    """(mean, M2) of integer ``x`` over its leading axes, as ``RunningSums(stream=False)``
    would give them, in one call; M2 is None without ``want_m2``."""
    return _core.exact_moments(x, features, lanes, want_m2)


def moments_from_sums(n, s1, s2, features):
    """(mean, M2) of each statistic from exact int64 sums over lanes (lane ``j`` holds
    statistic ``j % features``), as ``RunningSums.moments`` computes them in NumPy."""
    return _core.moments_from_sums(n, s1, s2, features)


def column_sums(dtype, ndim, kept, features, limit, s1, s2, counter, samples):
    """The streaming accumulator of zmfast._stats.RunningSums: ``.add(x)`` checks and adds a
    batch in one call (uint8 sums may wait in 32-bit form until ``.flush()``)."""
    return _core.ColumnSums(dtype, ndim, list(kept), features, limit, s1, s2, counter, samples)


# Per-pixel statistics seen recently, as [mean, inv, (half, head, SIMD level), form]: the
# float32 form (see _pixel_form) is checked only for statistics that come back, since the
# check costs about one float64 standardize of 256 images.
_PIXEL_FORMS = []
_PIXEL_FORMS_MAX = 2
PIXEL_FORM_MIN_COLUMNS = 1024  # fewer statistics (per channel) take the channel form
PIXEL_FORM_MIN_ROWS = 16  # a call of fewer images does not pay for comparing the statistics


_PIXEL_FORM_KERNELS = {}  # (SIMD level, half) -> whether _core.pixel_form has a kernel


def _pixel_form_available(level, half):
    """Whether ``_core.pixel_form`` gives forms at this SIMD level and output type (AVX-512;
    AVX2 into float32), probed once: elsewhere the statistics are not compared at all (two
    ``array_equal`` of per-pixel statistics cost about 0.5 ms an imagenet call)."""
    available = _PIXEL_FORM_KERNELS.get((level, half))
    if available is None:
        probe = _core.pixel_form(np.zeros(16), np.ones(16), half, 0)
        available = _PIXEL_FORM_KERNELS[level, half] = probe is not None
    return available


def _pixel_form(mean, inv, half, head):
    """The per-pixel float32 form of ``(mean, inv)`` (``_core.pixel_form``, its groups from
    column ``head``) if these statistics were seen before, else None (and remember them)."""
    level = _core.simd_level()
    if not _pixel_form_available(level, half):
        return None
    variant = (half, head, level)
    for entry in _PIXEL_FORMS:
        if entry[2] == variant and (
                (entry[0] is mean and entry[1] is inv)  # a cached plan's own arrays
                or (np.array_equal(entry[0], mean) and np.array_equal(entry[1], inv))):
            if entry[3] is None:
                entry[3] = _core.pixel_form(mean.reshape(-1), inv.reshape(-1), half,
                                            head) or False
            return entry[3] or None
    # The plan's arrays, which nothing writes to after planning.
    _PIXEL_FORMS.append([mean, inv, variant, None])
    del _PIXEL_FORMS[:-_PIXEL_FORMS_MAX]
    return None


def _affine_kernel(fresh):
    """``_core.affine`` for ``_plan.affine``, with the per-pixel float32 form where it
    applies: uint8 into float32/float16, contiguous per-pixel statistics repeated over many
    images (mean.image in cs231n's sense)."""
    def kernel(x, x_offset, mean, inv, extent, x_strides, stats_strides, out, out_offset,
               out_strides):
        form = None
        if (x.dtype == np.uint8 and out.dtype.char in "fe"
                and PIXEL_FORM_MIN_COLUMNS <= mean.size == extent[-1]
                and stats_strides[-1] == 8 and not any(stats_strides[:-1])
                and math.prod(extent) >= PIXEL_FORM_MIN_ROWS * mean.size):
            # Streaming stores need lines: then the groups start where out's rows reach one
            # (if they do). Normal stores take any address, and a head costs a step a row.
            head = 0
            streams = math.prod(extent) * (x.itemsize + out.itemsize) >= _core.stream_bytes()
            if not fresh and streams:  # as the kernel's streams_output decides
                address = out.__array_interface__["data"][0] + out_offset
                head = (-address % 64) // out.itemsize if address % out.itemsize == 0 else 0
            form = _pixel_form(mean, inv, out.dtype == np.float16, head)
        _core.affine(x, x_offset, mean, inv, extent, x_strides, stats_strides, out, out_offset,
                     out_strides, fresh, form)
    return kernel


def affine(x, mean, std, out, layout, fresh=False):
    """``fresh``: ``out`` was just allocated (normal stores then beat streaming ones)."""
    kernel = _affine_kernel(fresh)
    channel_kernel = (functools.partial(_core.affine_channels, fresh=True) if fresh
                      else _core.affine_channels)
    _plan.affine(x, mean, std, out, layout, kernel,
                 channels=(_core.channel_coefficients, channel_kernel, _core.simd_level()))


def repeat_plan(x, mean, std, out, layout, fresh):
    """A ``_core.ChannelPlan`` of ``_plan.affine``'s call for validated arguments, for
    zmfast._normalize's repeat plans; None where the channel kernels do not apply."""
    call = _plan._channel_calls(x, mean, std, out, layout, _core.channel_coefficients)
    if call is None:
        return None
    _, coefficients, extents, x_strides, out_strides, planar = call
    return _core.ChannelPlan(x, out, coefficients, extents, x_strides, out_strides, planar,
                             fresh)


def set_num_threads(n):
    _core.set_num_threads(n)
