"""The Numba backend: the C++ kernels' loops and numerics, compiled by Numba.

It runs the same canonical plans as the cpp backend (zmfast._plan), so both see the same
extents and strides; here strides are converted from bytes to elements of a flat view that
spans the array's memory. Integer inputs accumulate exactly in int64 blocks short enough that
``n*S2 - S1**2`` cannot overflow; float inputs in float64 shifted by each block's first
value; blocks, lanes and threads merge with Chan's formula. No fastmath, which changes results,
but for contraction into fused multiply-adds where it is exact (the float32 squares of 8-bit
values, integers below 2**24).
"""

import math

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from zmfast import _plan

name = "numba"

# Lanes per pass, so the accumulators stay in L2 (per-pixel imagenet statistics: 16,384
# lanes 1.08x faster than 4,096, 2 threads); threads split a column reduction by lanes from
# LANES_PER_THREAD lanes each.
LANE_BLOCK, LANES_PER_THREAD = 16384, 4096
VIRTUAL_LANES = 32  # independent partial sums of a row reduction, so the loop vectorises
FLOAT_BLOCK = 4096  # values per float block: bounds the rounding of shifted sums
MIN_ELEMENTS_PER_THREAD = 1 << 16
# Batches of rows up to SHORT_ROW_LANES wide, of BY_ROWS_MIN_BYTES or more, are split across
# threads by rows, not lanes. Smaller ones (partial_fit's batches) split by lanes where each
# thread gets 256 lanes or more: partial totals cost more there than they save (64 CIFAR
# images: 32 against 23 us a batch).
SHORT_ROW_LANES, BY_ROWS_MIN_BYTES = 4096, 1 << 20

# Integer accumulators: 8-bit values in 32-bit lanes for blocks of 2**16 (S2 < 2**32), 16-bit
# values in 64-bit lanes for blocks short enough that n * S2 < 2**63. The kernels get each as
# an empty array of its dtype, not as its class: Numba's dispatcher types a class argument in
# Python, about 10 us a call (as long as the kernel takes for 64 CIFAR images), an array in C.
INT_ACCUMULATOR = {np.dtype(np.uint8): (np.empty(0, np.uint32), 1 << 16),
                   np.dtype(np.int8): (np.empty(0, np.int32), 1 << 16),
                   np.dtype(np.uint16): (np.empty(0, np.int64), 1 << 15),
                   np.dtype(np.int16): (np.empty(0, np.int64), 1 << 16)}
FLOAT_ACCUMULATOR = np.empty(0, np.float64)
# 8-bit columns square in float32 (exact below 2**24: 256 rows of 255**2) and flush the
# squares into the integer lanes every SQUARES_BLOCK rows: LLVM's float32 multiply-adds run
# 1.6x faster here than 32-bit integer multiplies (per-pixel uint8 statistics).
SQUARES_BLOCK = 256

_num_threads = 1


def set_num_threads(n):
    global _num_threads
    _num_threads = max(1, min(n, numba.config.NUMBA_NUM_THREADS))


def _use_threads(elements):
    """Threads for a kernel over ``elements``: one below the size where threads pay. Numba's
    thread count is per calling thread, so it is set here, just before the kernel runs."""
    threads = int(max(1, min(_num_threads, elements // MIN_ELEMENTS_PER_THREAD)))
    numba.set_num_threads(threads)
    return threads


def _flat(a):
    """A 1-D view from the lowest address of ``a`` over its whole span, and the element index
    of ``a``'s own first element in it."""
    index = tuple(slice(None, None, -1) if s < 0 else slice(None) for s in a.strides)
    lowest = a[index + (Ellipsis,)]  # the Ellipsis keeps a 0-d view an array, not a scalar
    span = 1 + sum((n - 1) * abs(s) for n, s in zip(a.shape, a.strides)) // a.itemsize
    flat = np.lib.stride_tricks.as_strided(lowest, shape=(span,), strides=(a.itemsize,),
                                           writeable=a.flags.writeable)
    origin = (a.__array_interface__["data"][0] - lowest.__array_interface__["data"][0])
    return flat, origin // a.itemsize


def _elements(strides, itemsize):
    return np.array([s // itemsize for s in strides], dtype=np.int64)


# --- multi-index counter over (extent, stride) in elements ------------------------------

@njit(cache=True)
def _seek(extent, stride, index, flat):
    offset = 0
    for i in range(extent.size - 1, -1, -1):
        index[i] = flat % extent[i]
        flat //= extent[i]
        offset += index[i] * stride[i]
    return offset


@njit(cache=True)
def _next(extent, stride, index, offset):
    for i in range(extent.size - 1, -1, -1):
        offset += stride[i]
        index[i] += 1
        if index[i] < extent[i]:
            return offset
        offset -= stride[i] * extent[i]
        index[i] = 0
    return offset


@njit(cache=True)
def _split(n, parts, part):
    part = np.int64(part)  # prange indices may be unsigned; int64 * uint64 would be float
    base, extra = n // parts, n % parts
    begin = part * base + min(part, extra)
    return begin, begin + base + (1 if part < extra else 0)


@njit(cache=True)
def _two_sum_error(a, b, total):
    """``a + b - total`` exactly, for ``total = a + b`` rounded (Knuth's TwoSum)."""
    b_part = total - a
    return (a - (total - b_part)) + (b - b_part)


@njit(cache=True)
def _chan(count_a, mean_a, m2_a, lo_a, count_b, mean_b, m2_b, lo_b):
    """Chan et al.'s merge of two (count, mean, M2, lo); returns (mean, m2, lo).

    ``lo`` is the rounding error of ``mean`` (the mean is about mean + lo): near a large
    offset (1e9 + U(0, 1)) the delta of two rounded means would carry their rounding (1e-7
    there) into M2, as the cpp backend's ``chan_merge``."""
    if count_a == 0:
        return mean_b, m2_b, lo_b
    n = count_a + count_b
    weight_b = count_b / n
    delta = (mean_b - mean_a) + (lo_b - lo_a)
    if math.isfinite(delta):
        step = delta * weight_b + lo_a
        mean = mean_a + step
        lo = _two_sum_error(mean_a, step, mean) if math.isfinite(mean) else 0.0
        return mean, m2_a + m2_b + delta * delta * (count_a * weight_b), lo
    return mean_a * (count_a / n) + mean_b * weight_b, np.nan, 0.0


@njit(cache=True)
def _block_moments(n, s1, s2, shift, exact):
    """Mean, M2 and the mean's rounding error of a block of n values from its (shifted)
    sums."""
    if exact:
        total, squares = np.int64(s1), np.int64(s2)
        return total / n, float(n * squares - total * total) / n, 0.0
    offset = s1 / n
    mean = shift + offset
    # Selects, not branches (the error is computed either way), so that loops over lanes
    # vectorise (see _first_block).
    error = _two_sum_error(shift, offset, mean)
    m2 = s2 - s1 * offset
    return mean, (0.0 if m2 <= 0 else m2), (error if abs(mean) < math.inf else 0.0)


@njit(cache=True)
def _first_block(n, s1, s2, shift, mean, m2, low, exact):
    """``_block_moments`` of each lane into ``mean``, ``m2`` and ``low``, in one loop: a call
    per lane with a merge had taken most of a column reduction over a few rows (an F-ordered
    batch over its channels: now 0.7x the time, the same bits)."""
    for k in range(mean.size):
        mean[k], m2[k], low[k] = _block_moments(n, s1[k], s2[k], shift[k], exact)


@njit(cache=True)
def _shift_of(value, exact):
    if exact or not math.isfinite(value):
        return 0.0
    return float(value)


# --- column reduction: rows x lanes into per-lane running moments -----------------------

# Contraction into fused multiply-adds is exact here: this runs on integer rows only, and the
# squares of 8-bit values and their sums stay integers below 2**24 (SQUARES_BLOCK); it saves
# an add per square.
@njit(cache=True, fastmath={"contract"})
def _add_rows8(a, b, c, d, e, f, g, h, s1, s2, squares, want_m2, acc_type):
    """Exact sums of eight integer rows into the lanes (and of their squares if wanted: into
    the float32 ``squares`` for 8-bit rows, see SQUARES_BLOCK, else into ``s2``). Eight rows a
    pass read and write the accumulators half as often as four (per-pixel imagenet sums 1.4x
    faster, one thread)."""
    if want_m2 and a.itemsize == 1:
        for k in range(a.size):
            va, vb, vc, vd = acc_type(a[k]), acc_type(b[k]), acc_type(c[k]), acc_type(d[k])
            ve, vf, vg, vh = acc_type(e[k]), acc_type(f[k]), acc_type(g[k]), acc_type(h[k])
            s1[k] += va + vb + vc + vd + ve + vf + vg + vh
            fa, fb, fc, fd = np.float32(va), np.float32(vb), np.float32(vc), np.float32(vd)
            fe, ff, fg, fh = np.float32(ve), np.float32(vf), np.float32(vg), np.float32(vh)
            squares[k] += (fa * fa + fb * fb + fc * fc + fd * fd
                           + fe * fe + ff * ff + fg * fg + fh * fh)
    elif want_m2:
        for k in range(a.size):
            va, vb, vc, vd = acc_type(a[k]), acc_type(b[k]), acc_type(c[k]), acc_type(d[k])
            ve, vf, vg, vh = acc_type(e[k]), acc_type(f[k]), acc_type(g[k]), acc_type(h[k])
            s1[k] += va + vb + vc + vd + ve + vf + vg + vh
            s2[k] += (va * va + vb * vb + vc * vc + vd * vd
                      + ve * ve + vf * vf + vg * vg + vh * vh)
    else:
        for k in range(a.size):
            s1[k] += (acc_type(a[k]) + acc_type(b[k]) + acc_type(c[k]) + acc_type(d[k])
                      + acc_type(e[k]) + acc_type(f[k]) + acc_type(g[k]) + acc_type(h[k]))


@njit(cache=True)
def _add_row(values, s1, s2, shift, want_m2, acc_type, exact):
    if exact:  # integers: unshifted, in the narrow accumulator type
        if want_m2:
            for k in range(values.size):
                v = acc_type(values[k])
                s1[k] += v
                s2[k] += v * v
        else:
            for k in range(values.size):
                s1[k] += acc_type(values[k])
    elif want_m2:
        for k in range(values.size):
            d = acc_type(values[k]) - shift[k]
            s1[k] += d
            s2[k] += d * d
    else:
        for k in range(values.size):
            s1[k] += acc_type(values[k]) - shift[k]


@njit(cache=True)
def _flush_into(part, wide, n, acc_type):
    """Move exact partial lane sums (the float32 squares of 8-bit rows, or their 16-bit sums)
    into the wider integer lanes, and clear them."""
    for k in range(n):
        wide[k] += acc_type(part[k])
        part[k] = 0


def _narrow_sums(n, x):
    """Zeroed 16-bit lanes for the sums of 8-bit ``x`` alone (uint16, or int16 for int8): a
    vector holds twice the lanes of the 32-bit sums, and 256 rows cannot overflow them."""


@overload(_narrow_sums)
def _narrow_sums_overload(n, x):
    if x.dtype == types.uint8:
        return lambda n, x: np.zeros(n, np.uint16)
    if x.dtype == types.int8:
        return lambda n, x: np.zeros(n, np.int16)
    return lambda n, x: np.zeros(0, np.int16)  # other types never use them


@njit(cache=True)
def _add_rows8_narrow(a, b, c, d, e, f, g, h, narrow):
    """The sums alone of eight 8-bit rows, into 16-bit lanes (``zm.mean``: 1.4x faster than
    into 32-bit lanes, a microbenchmark); exact for SQUARES_BLOCK rows between flushes."""
    for k in range(a.size):
        narrow[k] += a[k] + b[k] + c[k] + d[k] + e[k] + f[k] + g[k] + h[k]


@njit(cache=True)
def _column(x, base, row_ext, row_str, r0, r1, lane_stride, lanes, mean, m2, low, want_m2,
            accumulator, block, exact):
    """Moments of rows [r0, r1) per lane into ``mean``, ``m2`` and ``low`` (each mean's
    rounding error, see ``_chan``)."""
    acc_type = accumulator.dtype.type  # the class itself: see INT_ACCUMULATOR
    width = min(LANE_BLOCK, lanes)
    s1 = np.zeros(width, acc_type)
    s2 = np.zeros(width, acc_type)
    squares = np.zeros(width, np.float32)
    shift = np.zeros(width, acc_type)
    means_only = exact and x.itemsize == 1 and not want_m2
    narrow = _narrow_sums(width if means_only else 0, x)
    index = np.zeros(row_ext.size, np.int64)
    starts = np.empty(8, np.int64)  # the offsets of the rows of an eight-row pass
    for k0 in range(0, lanes, LANE_BLOCK):
        kn = min(LANE_BLOCK, lanes - k0)
        done = 0
        offset = _seek(row_ext, row_str, index, r0)
        b0 = r0
        while b0 < r1:
            bn = min(block, r1 - b0)
            first = base + offset + k0 * lane_stride
            for k in range(kn):
                s1[k] = 0
                s2[k] = 0
                shift[k] = _shift_of(x[first + k * lane_stride], exact)
            r = 0
            if exact and lane_stride == 1:
                # Eight rows a pass: the accumulators are read and written once per eight values.
                squares[:kn] = 0
                while r + 8 <= bn:
                    for i in range(8):
                        starts[i] = base + offset + k0
                        offset = _next(row_ext, row_str, index, offset)
                    p = starts
                    if means_only:
                        _add_rows8_narrow(x[p[0]:p[0] + kn], x[p[1]:p[1] + kn],
                                          x[p[2]:p[2] + kn], x[p[3]:p[3] + kn],
                                          x[p[4]:p[4] + kn], x[p[5]:p[5] + kn],
                                          x[p[6]:p[6] + kn], x[p[7]:p[7] + kn], narrow)
                    else:
                        _add_rows8(x[p[0]:p[0] + kn], x[p[1]:p[1] + kn], x[p[2]:p[2] + kn],
                                   x[p[3]:p[3] + kn], x[p[4]:p[4] + kn], x[p[5]:p[5] + kn],
                                   x[p[6]:p[6] + kn], x[p[7]:p[7] + kn], s1, s2, squares,
                                   want_m2, acc_type)
                    r += 8
                    if r % SQUARES_BLOCK == 0 or r + 8 > bn:
                        if means_only:
                            _flush_into(narrow, s1, kn, acc_type)
                        else:
                            _flush_into(squares, s2, kn, acc_type)
            for _ in range(r, bn):
                p = base + offset + k0 * lane_stride
                if lane_stride == 1:  # a slice lets LLVM drop index checks and vectorise
                    _add_row(x[p:p + kn], s1, s2, shift, want_m2, acc_type, exact)
                else:
                    for k in range(kn):
                        d = acc_type(x[p + k * lane_stride]) - shift[k]
                        s1[k] += d
                        s2[k] += d * d
                offset = _next(row_ext, row_str, index, offset)
            if done == 0:  # the first block is the lanes' moments so far: no merge
                _first_block(bn, s1, s2, shift, mean[k0:k0 + kn], m2[k0:k0 + kn],
                             low[k0:k0 + kn], exact)
            else:
                for k in range(kn):
                    bm, bm2, blo = _block_moments(bn, s1[k], s2[k], shift[k], exact)
                    mean[k0 + k], m2[k0 + k], low[k0 + k] = _chan(
                        done, mean[k0 + k], m2[k0 + k], low[k0 + k], bn, bm, bm2, blo)
            done += bn
            b0 += bn


@njit(cache=True, parallel=True)
def _column_outputs(x, base, out_ext, out_str, out_out, row_ext, row_str, count, lane_stride,
                    lanes, lane_out_stride, mean_out, m2_out, want_m2, accumulator, block, exact,
                    threads):
    """Many independent outputs: each thread takes whole column reductions."""
    n_outer = 1
    for e in out_ext:
        n_outer *= e
    for t in prange(threads):
        o0, o1 = _split(n_outer, threads, t)
        if o0 >= o1:
            continue
        mean = np.empty(lanes)
        m2 = np.empty(lanes)
        low = np.empty(lanes)
        index = np.zeros(out_ext.size, np.int64)
        xo = _seek(out_ext, out_str, index, o0)
        for _ in range(o0, o1):
            oo = 0
            for i in range(out_ext.size):
                oo += index[i] * out_out[i]
            _column(x, base + xo, row_ext, row_str, 0, count, lane_stride, lanes, mean, m2,
                    low, want_m2, accumulator, block, exact)
            for k in range(lanes):
                mean_out[oo + k * lane_out_stride] = mean[k] + low[k]
                m2_out[oo + k * lane_out_stride] = m2[k]
            xo = _next(out_ext, out_str, index, xo)


@njit(cache=True, parallel=True)
def _column_lanes(x, base, row_ext, row_str, count, lane_stride, lanes, lane_out_stride,
                  out_base, mean_out, m2_out, want_m2, accumulator, block, exact, threads):
    """One output block of many lanes: each thread reduces all rows of its own lanes, so
    nothing is merged afterwards (per-pixel statistics)."""
    for t in prange(threads):
        k0, k1 = _split(lanes, threads, t)
        if k0 >= k1:
            continue
        mean = np.empty(k1 - k0)
        m2 = np.empty(k1 - k0)
        low = np.empty(k1 - k0)
        _column(x, base + k0 * lane_stride, row_ext, row_str, 0, count, lane_stride, k1 - k0,
                mean, m2, low, want_m2, accumulator, block, exact)
        for k in range(k1 - k0):
            mean_out[out_base + (k0 + k) * lane_out_stride] = mean[k] + low[k]
            m2_out[out_base + (k0 + k) * lane_out_stride] = m2[k]


@njit(cache=True, parallel=True)
def _column_rows(x, base, row_ext, row_str, count, lane_stride, lanes, partial_mean,
                 partial_m2, partial_low, want_m2, accumulator, block, exact, chunks):
    """One output block: each thread reduces a chunk of the rows into its partial lanes."""
    for c in prange(chunks):
        r0, r1 = _split(count, chunks, c)
        _column(x, base, row_ext, row_str, r0, r1, lane_stride, lanes, partial_mean[c],
                partial_m2[c], partial_low[c], want_m2, accumulator, block, exact)


@njit(cache=True)
def _merge_chunks(partial_mean, partial_m2, partial_low, count, out_base, lane_out_stride,
                  mean_out, m2_out):
    chunks, lanes = partial_mean.shape
    for k in range(lanes):
        mean, m2, low = partial_mean[0, k], partial_m2[0, k], partial_low[0, k]
        done = _split(count, chunks, 0)[1]
        for c in range(1, chunks):
            r0, r1 = _split(count, chunks, c)
            mean, m2, low = _chan(done, mean, m2, low, r1 - r0, partial_mean[c, k],
                                  partial_m2[c, k], partial_low[c, k])
            done += r1 - r0
        mean_out[out_base + k * lane_out_stride] = mean + low
        m2_out[out_base + k * lane_out_stride] = m2


# --- row reduction: each output reduces runs along the innermost reduced dim -------------

@njit(cache=True)
def _add_runs(values, s1, s2, shift, acc_type, exact):
    """Add a contiguous run, whose length is a multiple of the lanes, lane by lane."""
    rows = values.reshape(-1, VIRTUAL_LANES)
    if exact:
        for r in range(rows.shape[0]):
            for j in range(VIRTUAL_LANES):
                v = acc_type(rows[r, j])
                s1[j] += v
                s2[j] += v * v
    else:
        for r in range(rows.shape[0]):
            for j in range(VIRTUAL_LANES):
                d = acc_type(rows[r, j]) - shift
                s1[j] += d
                s2[j] += d * d


@njit(cache=True)
def _row(x, base, outer_ext, outer_str, run, run_stride, lo, hi, want_m2, accumulator, block,
         exact):
    """Moments of flat reduced indices [lo, hi); returns (count, mean, m2, low), ``low`` the
    mean's rounding error (see ``_chan``)."""
    acc_type = accumulator.dtype.type  # the class itself: see INT_ACCUMULATOR
    if outer_ext.size == 0 and hi - lo < VIRTUAL_LANES:
        # One short run (the mean over channels of an NHWC batch): summed in order, as the
        # lanes below would hold it (one value each, added up from lane 0), with no lane
        # arrays to allocate (8,192 outputs of three bytes: 75 ns an output, NumPy's 25).
        if hi == lo:
            return 0, 0.0, 0.0, 0.0
        shift = acc_type(_shift_of(x[base + lo * run_stride], exact))
        t1, t2 = acc_type(0), acc_type(0)
        for v in range(lo, hi):
            d = acc_type(x[base + v * run_stride]) - shift
            t1 += d
            t2 += d * d
        mean, m2, low = _block_moments(hi - lo, t1, t2, shift, exact)
        return hi - lo, mean, m2, low
    s1 = np.zeros(VIRTUAL_LANES, acc_type)
    s2 = np.zeros(VIRTUAL_LANES, acc_type)
    limit = block if exact else block * VIRTUAL_LANES
    index = np.zeros(outer_ext.size, np.int64)
    offset = _seek(outer_ext, outer_str, index, lo // run)
    col = lo % run
    done, in_block = 0, 0
    mean, m2, low = 0.0, 0.0, 0.0
    shift = acc_type(0)
    while lo < hi:
        length = min(run - col, hi - lo)
        p = base + offset + col * run_stride
        i = 0
        while i < length:
            if in_block == 0:
                s1[:] = 0
                s2[:] = 0
                shift = acc_type(_shift_of(x[p + i * run_stride], exact))
            piece = min(length - i, limit - in_block)
            whole = piece - piece % VIRTUAL_LANES
            if run_stride == 1:
                _add_runs(x[p + i:p + i + whole], s1, s2, shift, acc_type, exact)
            else:
                for v0 in range(0, whole, VIRTUAL_LANES):
                    q = p + (i + v0) * run_stride
                    for j in range(VIRTUAL_LANES):
                        d = acc_type(x[q + j * run_stride]) - shift
                        s1[j] += d
                        s2[j] += d * d
            for v in range(whole, piece):
                d = acc_type(x[p + (i + v) * run_stride]) - shift
                s1[v - whole] += d
                s2[v - whole] += d * d
            in_block += piece
            i += piece
            if in_block == limit:
                bm, bm2, blo = _block_moments(in_block, s1.sum(), s2.sum(), shift, exact)
                mean, m2, low = _chan(done, mean, m2, low, in_block, bm, bm2, blo)
                done += in_block
                in_block = 0
        lo += length
        col = 0
        offset = _next(outer_ext, outer_str, index, offset)
    if in_block:
        bm, bm2, blo = _block_moments(in_block, s1.sum(), s2.sum(), shift, exact)
        mean, m2, low = _chan(done, mean, m2, low, in_block, bm, bm2, blo)
        done += in_block
    return done, mean, m2, low


@njit(cache=True, parallel=True)
def _row_outputs(x, base, kept_ext, kept_str, kept_out, outer_ext, outer_str, run,
                 run_stride, count, mean_out, m2_out, want_m2, accumulator, block, exact,
                 threads):
    outputs = 1
    for e in kept_ext:
        outputs *= e
    for t in prange(threads):
        o0, o1 = _split(outputs, threads, t)
        if o0 >= o1:
            continue
        index = np.zeros(kept_ext.size, np.int64)
        xo = _seek(kept_ext, kept_str, index, o0)
        for _ in range(o0, o1):
            oo = 0
            for i in range(kept_ext.size):
                oo += index[i] * kept_out[i]
            _, mean, m2, low = _row(x, base + xo, outer_ext, outer_str, run, run_stride, 0,
                                    count, want_m2, accumulator, block, exact)
            mean_out[oo] = mean + low
            m2_out[oo] = m2
            xo = _next(kept_ext, kept_str, index, xo)


@njit(cache=True, parallel=True)
def _row_split(x, base, outer_ext, outer_str, run, run_stride, count, want_m2, accumulator,
               block, exact, threads):
    counts = np.zeros(threads, np.int64)
    means = np.zeros(threads)
    m2s = np.zeros(threads)
    lows = np.zeros(threads)
    for t in prange(threads):
        lo, hi = _split(count, threads, t)
        counts[t], means[t], m2s[t], lows[t] = _row(x, base, outer_ext, outer_str, run,
                                                    run_stride, lo, hi, want_m2, accumulator,
                                                    block, exact)
    done, mean, m2, low = 0, 0.0, 0.0, 0.0
    for t in range(threads):
        if counts[t]:
            mean, m2, low = _chan(done, mean, m2, low, counts[t], means[t], m2s[t], lows[t])
            done += counts[t]
    return mean + low, m2


def _reduce(x, offset, kept_extent, kept_strides, out_strides, red_extent, red_strides,
            mean_out, m2_out):
    """The kernel interface of zmfast._plan.moments, as the extension's ``_core.moments``."""
    flat, origin = _flat(x)
    isz = x.itemsize
    base = origin + offset // isz
    want_m2 = m2_out is not None
    m2_out = m2_out if want_m2 else np.empty_like(mean_out)
    exact = x.dtype.kind in "iu"
    accumulator, block = INT_ACCUMULATOR[x.dtype] if exact else (FLOAT_ACCUMULATOR, FLOAT_BLOCK)
    kept_ext = np.array(kept_extent, np.int64)
    kept_str = _elements(kept_strides, isz)
    kept_out = np.array(out_strides, np.int64)
    red_ext = np.array(red_extent, np.int64)
    red_str = _elements(red_strides, isz)
    outputs = math.prod(kept_extent)
    count = math.prod(red_extent)
    threads = _use_threads(outputs * count)

    lane = int(np.argmin(np.abs(kept_str))) if kept_ext.size else -1
    if lane >= 0 and abs(kept_str[lane]) < abs(red_str[-1]):  # column shape
        others = [i for i in range(kept_ext.size) if i != lane]
        lanes, lane_stride, lane_out = int(kept_ext[lane]), int(kept_str[lane]), int(kept_out[lane])
        out_ext, out_str, out_out = kept_ext[others], kept_str[others], kept_out[others]
        n_outer = math.prod(out_ext.tolist())
        if n_outer >= threads:
            _column_outputs(flat, base, out_ext, out_str, out_out, red_ext, red_str, count,
                            lane_stride, lanes, lane_out, mean_out, m2_out, want_m2,
                            accumulator, block, exact, threads)
            return
        if lanes >= LANES_PER_THREAD * threads:
            index = np.zeros(out_ext.size, np.int64)
            for o in range(n_outer):
                xo = _seek(out_ext, out_str, index, o)
                oo = int(np.dot(index, out_out)) if out_ext.size else 0
                _column_lanes(flat, base + xo, red_ext, red_str, count, lane_stride, lanes,
                              lane_out, oo, mean_out, m2_out, want_m2, accumulator, block, exact,
                              threads)
            return
        chunks = max(1, min(threads, count))
        partial_mean = np.empty((chunks, lanes))
        partial_m2 = np.empty((chunks, lanes))
        partial_low = np.empty((chunks, lanes))
        index = np.zeros(out_ext.size, np.int64)
        for o in range(n_outer):
            xo = _seek(out_ext, out_str, index, o)
            oo = int(np.dot(index, out_out)) if out_ext.size else 0
            _column_rows(flat, base + xo, red_ext, red_str, count, lane_stride, lanes,
                         partial_mean, partial_m2, partial_low, want_m2, accumulator, block,
                         exact, chunks)
            _merge_chunks(partial_mean, partial_m2, partial_low, count, oo, lane_out, mean_out,
                          m2_out)
        return

    outer_ext, outer_str = red_ext[:-1], red_str[:-1]
    run, run_stride = int(red_ext[-1]), int(red_str[-1])
    if outputs >= threads:
        _row_outputs(flat, base, kept_ext, kept_str, kept_out, outer_ext, outer_str, run,
                     run_stride, count, mean_out, m2_out, want_m2, accumulator, block, exact,
                     threads)
        return
    index = np.zeros(kept_ext.size, np.int64)
    for o in range(outputs):
        xo = _seek(kept_ext, kept_str, index, o)
        oo = int(np.dot(index, kept_out)) if kept_ext.size else 0
        mean_out[oo], m2_out[oo] = _row_split(flat, base + xo, outer_ext, outer_str, run,
                                              run_stride, count, want_m2, accumulator, block,
                                              exact, threads)


# --- fused affine transform -------------------------------------------------------------

@njit(cache=True)
def _half_bits(value):
    """Round-to-nearest-even float64 -> IEEE binary16 bits (as NumPy's astype)."""
    d = np.float64(value).view(np.uint64)
    sign = np.uint16((d & np.uint64(0x8000000000000000)) >> np.uint64(48))
    exponent = d & np.uint64(0x7ff0000000000000)
    if exponent >= np.uint64(0x40f0000000000000):
        if exponent == np.uint64(0x7ff0000000000000):
            significand = d & np.uint64(0x000fffffffffffff)
            if significand != 0:
                nan = np.uint16(0x7c00 + (significand >> np.uint64(42)))
                if nan == 0x7c00:
                    nan += np.uint16(1)
                return np.uint16(sign + nan)
        return np.uint16(sign + np.uint16(0x7c00))
    if exponent <= np.uint64(0x3f00000000000000):
        if exponent < np.uint64(0x3e60000000000000):
            return sign
        shift = (exponent >> np.uint64(52)) - np.uint64(998)
        significand = np.uint64(0x0010000000000000) + (d & np.uint64(0x000fffffffffffff))
        significand <<= shift
        if (significand & np.uint64(0x003fffffffffffff)) != np.uint64(0x0010000000000000):
            significand += np.uint64(0x0010000000000000)
        return np.uint16(sign + np.uint16(significand >> np.uint64(53)))
    half_exponent = np.uint16((exponent - np.uint64(0x3f00000000000000)) >> np.uint64(42))
    significand = d & np.uint64(0x000fffffffffffff)
    if (significand & np.uint64(0x000007ffffffffff)) != np.uint64(0x0000020000000000):
        significand += np.uint64(0x0000020000000000)
    return np.uint16(sign + np.uint16(np.uint16(significand >> np.uint64(42)) + half_exponent))


@njit(cache=True)
def _clamp(value, high):
    value = value if value > 0.0 else 0.0  # NaN becomes 0, as in the C++ kernels
    return np.rint(value if value < high else high)


def _convert(value, out):
    """``value`` rounded to the element type of ``out``."""


@overload(_convert)
def _convert_overload(value, out):
    # Chosen at compile time from out's element type. float16 outputs arrive as their bits
    # in an int16 view, since Numba has no float16 arithmetic on the CPU.
    if out.dtype == types.int16:
        return lambda value, out: _half_bits(value)
    if out.dtype == types.uint8:
        return lambda value, out: np.uint8(_clamp(value, 255.0))
    if out.dtype == types.uint16:
        return lambda value, out: np.uint16(_clamp(value, 65535.0))
    return lambda value, out: value


@njit(cache=True)
def _affine_run(x, mean, inv, out):
    for i in range(x.size):
        out[i] = _convert((x[i] - mean[i]) * inv[i], out)


@njit(cache=True)
def _affine_run_constant(x, mean, inv, out):
    for i in range(x.size):
        out[i] = _convert((x[i] - mean) * inv, out)


@njit(cache=True, parallel=True)
def _affine(x, x0, mean, inv, extent, xs, ss, out, o0, os, threads):
    nd = extent.size
    run = extent[nd - 1]
    total = 1
    for e in extent:
        total *= e
    outer_ext, outer_xs, outer_ss, outer_os = extent[:-1], xs[:-1], ss[:-1], os[:-1]
    rx, rs, ro = xs[nd - 1], ss[nd - 1], os[nd - 1]
    for t in prange(threads):
        lo, hi = _split(total, threads, t)
        if lo >= hi:
            continue
        index = np.zeros(nd - 1, np.int64)
        _seek(outer_ext, outer_xs, index, lo // run)
        col = lo % run
        while lo < hi:
            length = min(run - col, hi - lo)
            px, ps, po = x0 + col * rx, col * rs, o0 + col * ro
            for i in range(nd - 1):
                px += index[i] * outer_xs[i]
                ps += index[i] * outer_ss[i]
                po += index[i] * outer_os[i]
            if rx == 1 and ro == 1 and rs <= 1:  # contiguous: plain slices, C layout
                if rs == 0:
                    _affine_run_constant(x[px:px + length], mean[ps], inv[ps],
                                         out[po:po + length])
                else:
                    _affine_run(x[px:px + length], mean[ps:ps + length], inv[ps:ps + length],
                                out[po:po + length])
            elif rx > 0 and rs >= 0 and ro > 0:
                # Slices (strided where need be) let LLVM drop index checks and vectorise.
                xv = x[px:px + (length - 1) * rx + 1:rx]
                ov = out[po:po + (length - 1) * ro + 1:ro]
                if rs == 0:
                    _affine_run_constant(xv, mean[ps], inv[ps], ov)
                else:
                    end = ps + (length - 1) * rs + 1
                    _affine_run(xv, mean[ps:end:rs], inv[ps:end:rs], ov)
            else:
                for i in range(length):
                    out[po + i * ro] = _convert((x[px + i * rx] - mean[ps + i * rs])
                                                * inv[ps + i * rs], out)
            lo += length
            col = 0
            _next(outer_ext, outer_xs, index, 0)


@njit(cache=True, parallel=True)
def _planes3(x, x0, mean, inv, images_ext, images_xs, images_ss, images_os, stats_step, plane,
             out, o0, threads):
    """Channels-first output of 3-channel pixels: each image's (P, 3) pixels are read once and
    written to three planes of P values, with per-channel (or scalar) statistics."""
    n_images = 1
    for e in images_ext:
        n_images *= e
    for t in prange(threads):
        lo, hi = _split(n_images * plane, threads, t)
        index = np.zeros(images_ext.size, np.int64)
        while lo < hi:
            image, p0 = lo // plane, lo % plane
            p1 = min(plane, p0 + hi - lo)
            _seek(images_ext, images_xs, index, image)
            xb, sb, ob = x0, 0, o0
            for i in range(images_ext.size):
                xb += index[i] * images_xs[i]
                sb += index[i] * images_ss[i]
                ob += index[i] * images_os[i]
            m0, m1, m2 = mean[sb], mean[sb + stats_step], mean[sb + 2 * stats_step]
            s0, s1, s2 = inv[sb], inv[sb + stats_step], inv[sb + 2 * stats_step]
            pixels = x[xb + 3 * p0:xb + 3 * p1]
            c0 = out[ob + p0:ob + p1]
            c1 = out[ob + plane + p0:ob + plane + p1]
            c2 = out[ob + 2 * plane + p0:ob + 2 * plane + p1]
            for p in range(p1 - p0):
                c0[p] = _convert((pixels[3 * p] - m0) * s0, out)
                c1[p] = _convert((pixels[3 * p + 1] - m1) * s1, out)
                c2[p] = _convert((pixels[3 * p + 2] - m2) * s2, out)
            lo += p1 - p0


def _affine_kernel(x, x_offset, mean, inv, extent, x_strides, stats_strides, out, out_offset,
                   out_strides):
    """The kernel interface of zmfast._plan.affine, as the extension's ``_core.affine``."""
    flat_x, x_origin = _flat(x)
    target = out.view(np.int16) if out.dtype == np.float16 else out
    flat_out, out_origin = _flat(target)
    flat_mean, mean_origin = _flat(mean)
    flat_inv, _ = _flat(inv)
    total = math.prod(extent)
    xs, ss = _elements(x_strides, x.itemsize), _elements(stats_strides, 8)
    os = _elements(out_strides, out.itemsize)
    if (len(extent) >= 2 and extent[-2] == 3 and xs[-1] == 3 and xs[-2] == 1 and ss[-1] == 0
            and os[-1] == 1 and os[-2] == extent[-1]):
        # (..., 3, P) planes from (..., P, 3) pixels: the cpp backend's channels-first loop.
        _planes3(flat_x, x_origin + x_offset // x.itemsize, flat_mean[mean_origin:],
                 flat_inv[mean_origin:], np.array(extent[:-2], np.int64), xs[:-2], ss[:-2],
                 os[:-2], int(ss[-2]), int(extent[-1]), flat_out,
                 out_origin + out_offset // out.itemsize, _use_threads(total))
        return
    _affine(flat_x, x_origin + x_offset // x.itemsize, flat_mean[mean_origin:],
            flat_inv[mean_origin:], np.array(extent, np.int64), _elements(x_strides, x.itemsize),
            _elements(stats_strides, 8), flat_out, out_origin + out_offset // out.itemsize,
            _elements(out_strides, out.itemsize), _use_threads(total))


@njit(cache=True)
def _column_sums(x, r0, r1, k0, k1, s1, s2, accumulator, block):
    """Rows [r0, r1) of lanes [k0, k1) of the 2-D ``x`` added into int64 ``s1``, ``s2``: in
    narrow exact block sums eight rows a pass, as ``_column``, flushed every ``block`` rows."""
    acc_type = accumulator.dtype.type  # the class itself: see INT_ACCUMULATOR
    width = min(LANE_BLOCK, k1 - k0)
    a1 = np.zeros(width, acc_type)
    a2 = np.zeros(width, acc_type)
    squares = np.zeros(width, np.float32)
    for t0 in range(k0, k1, LANE_BLOCK):
        kn = min(LANE_BLOCK, k1 - t0)
        for b0 in range(r0, r1, block):
            b1 = min(b0 + block, r1)
            a1[:kn] = 0
            a2[:kn] = 0
            squares[:kn] = 0
            r = b0
            while r + 8 <= b1:
                _add_rows8(x[r, t0:t0 + kn], x[r + 1, t0:t0 + kn], x[r + 2, t0:t0 + kn],
                           x[r + 3, t0:t0 + kn], x[r + 4, t0:t0 + kn], x[r + 5, t0:t0 + kn],
                           x[r + 6, t0:t0 + kn], x[r + 7, t0:t0 + kn], a1, a2, squares, True,
                           acc_type)
                r += 8
                if (r - b0) % SQUARES_BLOCK == 0 or r + 8 > b1:
                    _flush_into(squares, a2, kn, acc_type)
            for row in range(r, b1):
                _add_row(x[row, t0:t0 + kn], a1, a2, a1, True, acc_type, True)
            for k in range(kn):
                s1[t0 + k] += np.int64(a1[k])
                s2[t0 + k] += np.int64(a2[k])


@njit(cache=True, parallel=True)
def _add_sums_by_lanes(x, s1, s2, chunks, accumulator, block):
    for chunk in prange(chunks):
        k0, k1 = _split(x.shape[1], chunks, chunk)
        _column_sums(x, 0, x.shape[0], k0, k1, s1, s2, accumulator, block)


@njit(cache=True, parallel=True)
def _add_sums_by_rows(x, s1, s2, chunks, accumulator, block):
    lanes = x.shape[1]
    partial = np.zeros((chunks, 2, lanes), dtype=np.int64)
    for chunk in prange(chunks):
        r0, r1 = _split(x.shape[0], chunks, chunk)
        _column_sums(x, r0, r1, 0, lanes, partial[chunk, 0], partial[chunk, 1], accumulator,
                     block)
    for chunk in range(chunks):
        for k in range(lanes):
            s1[k] += partial[chunk, 0, k]
            s2[k] += partial[chunk, 1, k]


def add_sums(x, rows, lanes, s1, s2):
    """``S1 += x.sum(0)``, ``S2 += (x * x).sum(0)`` over the (rows, lanes) view, exactly:
    wide rows split by lanes across threads; large batches of rows of a few KB (per-channel
    sums over 3,072 lanes, CIFAR images), like narrow rows, by rows into partial totals, so
    that each thread reads one contiguous range (per-channel cifar sums 1.2x faster)."""
    x = x.reshape(rows, lanes)
    accumulator, block = INT_ACCUMULATOR[x.dtype]
    threads = _use_threads(rows * lanes)
    short_rows = lanes <= SHORT_ROW_LANES and x.nbytes >= BY_ROWS_MIN_BYTES
    if lanes >= 256 * threads and not short_rows:
        _add_sums_by_lanes(x, s1, s2, threads, accumulator, block)
    else:
        _add_sums_by_rows(x, s1, s2, threads, accumulator, block)


@njit(cache=True)
def _fold_sums(n, s1, s2, features, f0, f1, mean, m2):
    lanes = s1.shape[0]
    for f in range(f0, f1):
        a = np.int64(0)
        b = np.int64(0)
        for j in range(f, lanes, features):
            a += s1[j]
            b += s2[j]
        q = (2 * a + n) // (2 * n)  # floor division: the integer nearest the mean, halves up
        r = a - q * n
        # sum (x - q)**2, wrapping on the way as NumPy's int64 does (exact at the end).
        t = np.int64(np.uint64(b) - np.uint64(q) * (np.uint64(a) + np.uint64(r)))
        rn = r / n
        mean[f] = q + rn
        spread = t - r * rn
        m2[f] = spread if spread >= 0.0 else 0.0  # np.maximum(spread, 0.0)


@njit(cache=True, parallel=True)
def _fold_sums_parallel(n, s1, s2, features, mean, m2, chunks):
    for chunk in prange(chunks):
        f0, f1 = _split(features, chunks, chunk)
        _fold_sums(n, s1, s2, features, f0, f1, mean, m2)


def moments_from_sums(n, s1, s2, features):
    """(mean, M2) of each of ``features`` statistics from exact int64 sums over lanes (lane
    j holds statistic j % features) of ``n`` values each: the integer and float64 steps of
    zmfast._stats.RunningSums.moments, so the same bits, without its NumPy temporaries
    (per channel: 21 against 79 us for 3,072 lanes; per pixel of imagenet, 150,528
    statistics: 1.1 ms on two threads against 9.5 ms)."""
    if n < 1 or features < 1 or s1.shape != s2.shape or s1.ndim != 1 or s1.size % features:
        raise ValueError("moments_from_sums: n >= 1 and s1, s2 of equal length, whole periods "
                         "of features")
    mean, m2 = np.empty(features), np.empty(features)
    if features >= MIN_ELEMENTS_PER_THREAD:  # an integer division each: threads pay here
        _fold_sums_parallel(n, s1, s2, features, mean, m2, _use_threads(features))
    else:  # no parallel region to start (2-5 us)
        _fold_sums(n, s1, s2, features, 0, features, mean, m2)
    return mean, m2


@njit(cache=True)
def _all_finite(flat):
    for value in flat:
        if not np.isfinite(value):
            return False
    return True


def all_finite(values):
    """Whether every value of the float64 result ``values`` is finite (any layout)."""
    return _all_finite(values.ravel(order="K"))


# Numba's per-row cost is higher than the C++ loop's: wider lanes for a tiny channel axis
# (C=3) mean fewer, longer rows (measured: per-channel stats 1.3x faster than with 192).
WIDE_LANES = 1536


def moments(x, axes, want_m2=True):
    return _plan.moments(x, axes, want_m2, _reduce, wide_lanes=WIDE_LANES)


def affine(x, mean, std, out, layout, fresh=False):
    _plan.affine(x, mean, std, out, layout, _affine_kernel)
