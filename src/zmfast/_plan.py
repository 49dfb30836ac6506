"""Canonical problems for the compiled backends.

The public layer has validated the arguments; this module turns one call into a few calls of
two kernel shapes that see only a base offset, extents and byte strides:

* ``moments``: a reduction over ``red`` dims for every index of the ``kept`` dims;
* ``affine``: ``out = (x - mean) * inv`` over ``shape`` with separate strides for ``x``, the
  statistics and ``out``.

On the way it drops length-1 axes, merges axes that are contiguous with each other, removes
zero-stride reduced axes (they repeat values, so they only scale M2), and widens tiny inner
extents (per-channel C=3) into vector-friendly lanes that are folded back afterwards.
Each backend with compiled kernels (cpp, numba) calls the same plan, so they agree on it.
"""

import math

import numpy as np

# Lanes for a tiny innermost extent (C=3 channels): a multiple of every small C and of the
# vector width, so the hot loop is a plain contiguous column reduction or multiply-add. The
# elementwise transform takes longer runs (its tiled statistics, 16 bytes a lane, stay in L1).
WIDE_LANES = 192
WIDE_RUN = 1536
TINY_EXTENT = 32


def merge_moments(count_a, mean_a, m2_a, count_b, mean_b, m2_b):
    """Chan et al.'s pairwise update of (count, mean, M2); works elementwise on arrays."""
    if count_a == 0:
        return count_b, mean_b, m2_b
    if count_b == 0:
        return count_a, mean_a, m2_a
    count = count_a + count_b
    with np.errstate(invalid="ignore", over="ignore"):
        delta = mean_b - mean_a
        mean = mean_a + delta * (count_b / count)
        m2 = m2_a + m2_b + delta * delta * (count_a / count * count_b)
        # An infinite mean makes delta inf - inf; the weighted average gives NumPy's answer
        # (inf, or nan for +inf with -inf) and the spread is undefined.
        infinite = ~np.isfinite(delta)
        if np.any(infinite):
            weighted = mean_a * (count_a / count) + mean_b * (count_b / count)
            mean = np.where(infinite, weighted, mean)
            m2 = np.where(infinite, np.nan, m2)
    return count, mean, m2


def _c_strides(shape):
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= extent
    return strides[::-1]


def _merge_adjacent(dims):
    """Merge neighbouring dims (n, s0, s1, ...) whose every stride is contiguous."""
    merged = []
    for dim in dims:
        if merged:
            prev = merged[-1]
            if all(p == dim[0] * s for p, s in zip(prev[1:], dim[1:])):
                merged[-1] = (prev[0] * dim[0],) + tuple(dim[1:])
                continue
        merged.append(tuple(dim))
    return merged


# Plans of recent moments reductions, keyed on the input's geometry and the axes: repeated
# calls on small arrays (a drop-in mean of one image) then skip the planning, which costs
# more than the kernel there.
_MOMENTS_PLANS = {}
_MOMENTS_PLANS_MAX = 64


def moments(x, axes, want_m2, kernel, wide_lanes=WIDE_LANES, spread=None):
    """Run ``kernel`` on the canonical form of a moments reduction of ``x`` over ``axes``
    (a sorted tuple of distinct axes).

    ``kernel(x, offset, kept_shape, kept_strides, out_strides, red_shape, red_strides,
    mean_out, m2_out)`` fills flat float64 outputs (m2_out may be None) for a reduction
    whose counts it derives from ``red_shape``. Returns float64 (mean, m2) of the kept shape.

    ``spread``, ``(divisor, root)`` with ``want_m2``: m2 comes back as the variance
    ``M2 / divisor``, or its square root (the standard deviation) where ``root``. The plain
    plan (one kernel call whose outputs are the results, no zero-stride reduced axis) passes
    them on to the kernel as two more arguments, so that it finishes each value as it stores
    it: give ``spread`` only with a kernel that takes them. The other plans (folded wide
    lanes, repeated values, copies along a zero-stride axis) finish M2 in NumPy.
    """
    key = (x.shape, x.strides, x.itemsize, tuple(axes), wide_lanes)
    plan = _MOMENTS_PLANS.get(key)
    if plan is None:
        plan = _moments_plan(x.shape, x.strides, x.itemsize, axes, wide_lanes)
        if len(_MOMENTS_PLANS) >= _MOMENTS_PLANS_MAX:
            _MOMENTS_PLANS.clear()
        _MOMENTS_PLANS[key] = plan
    return plan(x, want_m2, kernel, spread)


def finish_spread(m2, spread):
    """M2 in place as ``moments``' ``spread``, ``(divisor, root)``, asks (nothing for None):
    NumPy's divide, then its sqrt where ``root``."""
    if spread is not None:
        divisor, root = spread
        np.divide(m2, divisor, out=m2)
        if root:
            np.sqrt(m2, out=m2)
    return m2


def _columns(dims):
    """The kernels' argument lists (extents, then each stride) of (n, stride, ...) dims."""
    return [list(column) for column in zip(*dims)] if dims else [[] for _ in range(3)]


def _moments_plan(shape, strides, itemsize, axes, wide_lanes):
    """A function ``plan(x, want_m2, kernel, spread)`` that runs the kernel calls of a
    moments reduction over ``axes`` of arrays of this geometry (see ``moments``)."""
    ndim = len(shape)
    kept_axes = [ax for ax in range(ndim) if ax not in axes]
    out_shape = tuple(shape[ax] for ax in kept_axes)
    if 0 in shape:  # no outputs (a kept extent is 0) or nothing to reduce: no kernel call
        def empty(x, want_m2, kernel, spread):
            with np.errstate(invalid="ignore"):
                return np.full(out_shape, np.nan), (np.zeros(out_shape) if want_m2 else None)
        return empty
    # The outputs laid out as the input's kept axes are (NumPy's order "K": by decreasing
    # stride, ties in axis order), so that kept axes contiguous in the input merge for the
    # kernels: channels of an F-ordered batch as one run of 8,192 lanes, not 4,096 of two.
    order = sorted(range(len(kept_axes)), key=lambda i: -abs(strides[kept_axes[i]]))
    laid_out = tuple(out_shape[i] for i in order)
    out_strides = [0] * len(order)
    for i, stride in zip(order, _c_strides(laid_out)):
        out_strides[i] = stride
    inverse = tuple(np.argsort(order))
    # Kept axes of negative stride (a BGR <-> RGB view x[..., ::-1]) are read forward from
    # their last element, so that the kernels see contiguous lanes (per-channel statistics of
    # such a view had taken 37x the time of the contiguous batch's); their outputs are then
    # flipped back.
    flipped = tuple(i for i, ax in enumerate(kept_axes) if strides[ax] < 0 and shape[ax] > 1)

    def laid(flat):
        """The flat outputs as an array of the kept shape, in the layout above."""
        return flat.reshape(laid_out).transpose(inverse)

    def shaped(flat):
        """The kernels' flat outputs as the results (flipped axes back in order, in NumPy's
        positive layout)."""
        return np.flip(laid(flat), flipped).copy(order="K") if flipped else laid(flat)
    kept = _merge_adjacent(
        (shape[kept_axes[i]], abs(strides[kept_axes[i]]), out_strides[i])
        for i in order if shape[kept_axes[i]] != 1)

    offset, repeat, red = sum((shape[kept_axes[i]] - 1) * strides[kept_axes[i]]
                              for i in flipped), 1, []
    for ax in axes:
        extent, stride = shape[ax], strides[ax]
        if extent == 1:
            continue
        if stride == 0:
            repeat *= extent
            continue
        if stride < 0:
            offset += (extent - 1) * stride
            stride = -stride
        red.append((extent, stride))
    red = _merge_adjacent(sorted(red, key=lambda d: -d[1]))

    if not red:
        # Every reduced value repeats one value: the mean is that value and M2 is zero, or
        # NaN for inf and NaN as NumPy's x - mean gives (with its warning for inf - inf).
        index = tuple(0 if ax in axes else slice(None) for ax in range(ndim))

        def repeated(x, want_m2, kernel, spread):
            # One buffer, each step in place: a third fresh array of this size (np.square of
            # a temporary) cost page faults, 1.7 ms against 60 us for one 224x224x3 image.
            both = np.empty((2 if want_m2 else 1, math.prod(out_shape)))
            mean = laid(both[0])
            mean[...] = x[index]
            if not want_m2:
                return mean, None
            m2 = laid(both[1])
            np.subtract(mean, mean, out=m2)
            return mean, finish_spread(np.square(m2, out=m2), spread)
        return repeated

    size = math.prod(out_shape)
    lane = min(kept, key=lambda d: abs(d[1])) if kept else None
    inner_extent, inner_stride = red[-1]
    if (lane is kept[-1] if kept else False) and lane[1] == itemsize and lane[0] <= TINY_EXTENT \
            and inner_stride == lane[0] * itemsize:
        lanes_per_row = lane[0]
        group = -(-wide_lanes // lanes_per_row)
        rows, tail = divmod(inner_extent, group)
        if rows >= 2:
            outer = [(n, s, o // lanes_per_row * lanes_per_row * group) for n, s, o in kept[:-1]]
            outer_size = size // lanes_per_row
            wide = lanes_per_row * group
            wide_kept = _columns(outer + [(wide, itemsize, 1)])
            wide_red = _columns(red[:-1] + [(rows, inner_stride * group)])
            others = math.prod(d[0] for d in red[:-1])
            tail_offset = offset + rows * group * inner_stride
            tail_kept = _columns(kept)
            tail_red = _columns(red[:-1] + [(tail, inner_stride)])

            def wide_lanes_plan(x, want_m2, kernel, spread):
                mean = np.empty(outer_size * wide)
                m2 = np.empty(outer_size * wide) if want_m2 else None
                kernel(x, offset, *wide_kept, *wide_red, mean, m2)
                count, mean, m2 = _fold_lanes(mean, m2, outer_size, group, lanes_per_row,
                                              rows * others)
                if tail:
                    tail_mean, tail_m2 = np.empty(size), (np.empty(size) if want_m2 else None)
                    kernel(x, tail_offset, *tail_kept, *tail_red, tail_mean, tail_m2)
                    count, mean, m2 = merge_moments(count, mean, m2 if want_m2 else 0.0,
                                                    tail * others, tail_mean,
                                                    tail_m2 if want_m2 else 0.0)
                if want_m2 and repeat != 1:  # m2 is this call's own array: scaled in place
                    m2 *= repeat
                return shaped(mean), (shaped(finish_spread(m2, spread)) if want_m2 else None)
            return wide_lanes_plan

    kept_args, red_args = _columns(kept), _columns(red)

    def plain(x, want_m2, kernel, spread):
        # One buffer for both outputs: a fresh multi-MB array costs a page fault per 4 KB (as
        # much as the kernel, for per-pixel statistics), and glibc returns a freed pair of
        # them to the OS more eagerly than one of twice the size.
        both = np.empty((2 if want_m2 else 1, size))
        mean, m2 = both[0], (both[1] if want_m2 else None)
        if want_m2 and spread is not None and repeat == 1:  # finished in the kernel
            kernel(x, offset, *kept_args, *red_args, mean, m2, *spread)
        else:
            kernel(x, offset, *kept_args, *red_args, mean, m2)
            if want_m2 and repeat != 1:
                m2 *= repeat
            if want_m2:
                finish_spread(m2, spread)
        return shaped(mean), (shaped(m2) if want_m2 else None)
    return plain


def _fold_lanes(mean, m2, outer_size, group, lanes_per_row, count_per_lane):
    """Fold ``group`` equal-count copies of each lane back into one (Chan, equal counts)."""
    mean = mean.reshape(outer_size, group, lanes_per_row)
    # Shifted by the first copy, so equal copies (a constant feature) fold to exactly their
    # value and a zero spread.
    first = mean[:, :1, :]
    folded_mean = first[:, 0, :] + (mean - first).mean(axis=1)
    folded_m2 = None
    if m2 is not None:
        spread = mean - folded_mean[:, None, :]
        folded_m2 = (m2.reshape(outer_size, group, lanes_per_row).sum(axis=1)
                     + count_per_lane * np.sum(spread * spread, axis=1))
        folded_m2 = folded_m2.reshape(-1)
    return count_per_lane * group, folded_mean.reshape(-1), folded_m2


def channels_last_view(x, layout):
    """``x`` seen channels-last: the layout in which the statistics broadcast."""
    return np.moveaxis(x, -3, -1) if layout == "channels_last" else x


def _peel_to_line(out, extent, out_stride, line=64):
    """The fewest whole pixels (of ``extent`` values) after which ``out`` is at a line
    boundary, or 0 if none is (then nothing is gained by peeling)."""
    address = out.__array_interface__["data"][0]
    pixel = extent * out_stride
    for peel in range(line // math.gcd(pixel, line)):
        if (address + peel * pixel) % line == 0:
            return peel
    return 0


# Plans of recent calls with small statistics (per channel, scalar), keyed on everything the
# plan depends on, the statistics' values included: a data loader's repeated calls then skip
# the planning, which costs more than the kernel on one image.
_AFFINE_PLANS = {}
_AFFINE_PLANS_MAX = 64
_LARGE_PLANS = []  # (key, mean, std, calls) of recent large read-only statistics
_LARGE_PLANS_MAX = 4
SMALL_STATS = 256


def affine(x, mean, std, out, layout, kernel, channels=None):
    """Run ``kernel`` on the canonical form of ``out = (x - mean) / std``.

    ``layout`` is ``"same"``, ``"channels_first"`` (the last axis of ``x`` goes to -3 of
    ``out``) or ``"channels_last"`` (axis -3 of ``x`` goes last); the statistics broadcast
    against the channels-last layout. ``kernel(x, x_offset, mean, inv, shape, x_strides,
    stats_strides, out, out_offset, out_strides)`` computes ``out = (x - mean) * inv``
    elementwise; ``mean`` and ``inv`` share ``stats_strides``. ``out`` is C-contiguous.

    ``channels``, where the backend has them, is ``(coefficients, channel_kernel, tag)``: the
    float32 channel form of uint8 input with per-channel or scalar statistics (see
    ``_channel_calls``); ``tag`` names what ``coefficients`` depends on besides its
    arguments (the SIMD level), for the plan cache.
    """
    mean, std = np.asarray(mean), np.asarray(std)
    if mean.size <= SMALL_STATS and std.size <= SMALL_STATS:
        key = (x.shape, x.strides, x.dtype.char, out.shape, out.strides, out.dtype.char,
               layout, mean.shape, mean.dtype.char, mean.tobytes(), std.shape, std.dtype.char,
               std.tobytes(), channels[2] if channels else None)
        calls = _AFFINE_PLANS.get(key)  # a channel plan: it does not depend on alignment
        if calls is None:
            # The float64 plans also depend on out's alignment (reading it costs a
            # microsecond, which the channel plans skip).
            aligned_key = key + (out.__array_interface__["data"][0] % 64,)
            calls = _AFFINE_PLANS.get(aligned_key)
            if calls is None:
                calls = _affine_plan(x, mean, std, out, layout, channels)
                if len(_AFFINE_PLANS) >= _AFFINE_PLANS_MAX:
                    _AFFINE_PLANS.clear()
                _AFFINE_PLANS[key if calls[0] == "channels" else aligned_key] = calls
    elif not (mean.flags.writeable or std.flags.writeable or mean.base is not None
              or std.base is not None):
        # Large read-only statistics that own their data: zmfast's validated copies
        # (check_stats returns the same ones for equal statistics), so their identity stands
        # for their values while this cache holds them.
        key = (id(mean), id(std), x.shape, x.strides, x.dtype.char, out.shape, out.strides,
               out.dtype.char, out.__array_interface__["data"][0] % 64, layout,
               channels[2] if channels else None)
        for entry_key, entry_mean, entry_std, entry_calls in _LARGE_PLANS:
            if entry_key == key and entry_mean is mean and entry_std is std:
                calls = entry_calls
                break
        else:
            calls = _affine_plan(x, mean, std, out, layout, channels)
            _LARGE_PLANS.append((key, mean, std, calls))
            del _LARGE_PLANS[:-_LARGE_PLANS_MAX]
    else:
        calls = _affine_plan(x, mean, std, out, layout, channels)
    if calls and calls[0] == "channels":
        _, coefficients, extents, x_strides, out_strides, planar = calls
        channels[1](x, 0, coefficients, extents, x_strides, out, 0, out_strides, planar)
        return
    for x_offset, call_mean, call_inv, extents, x_strides, stats_strides, out_offset, \
            out_strides in calls:
        kernel(x, x_offset, call_mean, call_inv, extents, x_strides, stats_strides, out,
               out_offset, out_strides)


def _affine_plan(x, mean, std, out, layout, channels):
    """A channel-kernel call ("channels", ...) where one applies, else ``_affine_calls``."""
    if channels is not None:
        call = _channel_calls(x, mean, std, out, layout, channels[0])
        if call is not None:
            return call
    return _affine_calls(x, mean, std, out, layout)


def _inverse(mean, std):
    """The statistics broadcast together, as the float64 mean and 1 / std the kernels take."""
    mean, std = np.broadcast_arrays(mean, std)
    mean = np.array(mean, dtype=np.float64, order="C")  # (ascontiguousarray makes 0-d 1-d)
    inv = np.array(1.0 / std, dtype=np.float64, order="C")
    return mean, inv


def _channel_calls(x, mean, std, out, layout, coefficients):
    """The channel-kernel call for uint8 ``x`` whose statistics vary at most along the channel
    axis (C <= 4), into float32 or float16 ``out``: ("channels", coefficients, extents,
    x_strides, out_strides, planar), or None where the form does not apply.

    Interleaved ("same" layout): the innermost dim is a contiguous run of whole pixels.
    Planar ("channels_first"): (..., C, H*W) out planes from contiguous (..., H*W, C) pixels.
    ``coefficients(mean, inv, half)`` returns None where the float32 form misses its
    accuracy bound for some channel; the float64 kernels then run.
    """
    if (x.dtype != np.uint8 or out.dtype.char not in "fe" or layout == "channels_last"
            or mean.size > 4 or std.size > 4):
        return None
    mean, inv = _inverse(mean, std)
    if mean.size == 1:
        channels = 1
    elif 2 <= mean.shape[-1] <= 4 and mean.size == mean.shape[-1]:
        channels = mean.shape[-1]
    else:
        return None
    if layout == "same":
        dims = _merge_adjacent((n, xs, os) for n, xs, os in zip(out.shape, x.strides, out.strides)
                               if n != 1)
        if not dims or dims[-1][1:] != (1, out.itemsize) or dims[-1][0] < 16:
            return None
        planar = False
    else:
        height, width, extent = x.shape[-3:]
        hs, ws, cs = x.strides[-3:]
        cos, hos, wos = out.strides[-3:]
        outer = zip(x.shape[:-3], x.strides[:-3], out.strides[:-3])
        pixels, item = height * width, out.itemsize
        if (extent not in (3, 4) or pixels < 16 or cs != 1 or ws != extent or hs != width * extent
                or wos != item or hos != width * item or cos != pixels * item):
            return None
        dims = [d for d in outer if d[0] != 1] + [(extent, 1, cos), (pixels, extent, item)]
        planar = True
    coefs = coefficients(mean.reshape(-1), inv.reshape(-1), out.dtype == np.float16)
    if coefs is None:
        return None
    if planar and channels == 1:
        coefs = np.ascontiguousarray(np.repeat(coefs, dims[-2][0], axis=1))
    return ("channels", coefs, [d[0] for d in dims], [d[1] for d in dims],
            [d[2] for d in dims], planar)


def _affine_calls(x, mean, std, out, layout):
    """The kernel calls of ``affine``: (x_offset, mean, inv, extents, x_strides,
    stats_strides, out_offset, out_strides) tuples."""
    calls = []
    mean, inv = _inverse(mean, std)
    x_view = channels_last_view(x, layout)
    stats_view = np.broadcast_to(mean, x_view.shape)
    if layout == "channels_first":
        x_view = np.moveaxis(x_view, -1, -3)
        stats_view = np.moveaxis(stats_view, -1, -3)
    dims = _merge_adjacent(
        (n, xs, ss, os)
        for n, xs, ss, os in zip(out.shape, x_view.strides, stats_view.strides, out.strides)
        if n != 1) or [(1, 0, 0, out.itemsize)]

    def call(dims, x_offset, mean, inv, out_offset):
        calls.append((x_offset, mean, inv, [d[0] for d in dims], [d[1] for d in dims],
                      [d[2] for d in dims], out_offset, [d[3] for d in dims]))

    extent, x_stride, stats_stride, out_stride = dims[-1]
    if (len(dims) >= 2 and extent <= TINY_EXTENT and x_stride == x.itemsize
            and stats_stride == 8 and out_stride == out.itemsize
            and dims[-2][1:] == (extent * x.itemsize, 0, extent * out.itemsize)
            and all(d[2] == 0 for d in dims[:-2])):
        group = -(-WIDE_RUN // extent)
        pixels = dims[-2][0]
        # Peel the first few pixels so that the wide rows start on a cache line of out: then
        # the kernel's streaming stores cover whole lines (a line shared between two rows
        # costs a stall per row).
        peel = _peel_to_line(out, extent, out_stride) if len(dims) == 2 else 0
        rows, tail = divmod(pixels - peel, group)
        if rows >= 1:
            period = np.lib.stride_tricks.as_strided(mean, shape=(extent,), strides=(8,))
            period_inv = np.lib.stride_tricks.as_strided(inv, shape=(extent,), strides=(8,))
            wide = [(rows, x_stride * extent * group, 0, out_stride * extent * group),
                    (extent * group, x_stride, 8, out_stride)]
            pixel_x, pixel_out = extent * x_stride, extent * out_stride
            if peel:
                call([(peel,) + dims[-2][1:], dims[-1]], 0, mean, inv, 0)
            call(dims[:-2] + wide, peel * pixel_x, np.tile(period, group),
                 np.tile(period_inv, group), peel * pixel_out)
            if tail:
                done = peel + rows * group
                call(dims[:-2] + [(tail,) + dims[-2][1:], dims[-1]], done * pixel_x, mean, inv,
                     done * pixel_out)
            return calls
    call(dims, 0, mean, inv, 0)
    return calls
