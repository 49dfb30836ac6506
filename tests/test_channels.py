"""The float32 channel form of uint8 standardization (csrc/channels.hpp).

uint8 input with per-channel or scalar statistics into float32 or float16 runs
``fma(x - k, r, fma(x - k, r_low, b))`` in float32 on AVX-512 and AVX2, once every one of a
channel's 256 possible values has been checked against the float64 formula. These tests hold
it to the documented bounds (float32 within an ulp, float16 equal to NumPy's rounding) on every
input value, both layouts, streaming and normal stores, threads and the float64 fallback.
"""

import numpy as np
import pytest

import zmfast as zm
from zmfast import _plan
from zmfast._normalize import aligned_empty

core = pytest.importorskip("zmfast._core")

LEVEL_RANK = {"baseline": 0, "avx2": 1, "avx512": 2}


@pytest.fixture(autouse=True, params=["avx2", "avx512"])
def channel_level(request):
    """Every test at each SIMD level that has the channel kernels, on the cpp backend."""
    if LEVEL_RANK[core.best_simd_level()] < LEVEL_RANK[request.param]:
        pytest.skip(f"this CPU supports SIMD up to {core.best_simd_level()}")
    before = core.simd_level()
    core.set_simd_level(request.param)
    with zm.use_backend("cpp"):
        yield request.param
    core.set_simd_level(before)


def skip_without_pixel_form(dtype=np.float32):
    """The per-pixel form (pixel_form) exists on AVX-512 and AVX2; elsewhere per-pixel
    statistics take the float64 kernels (tests/test_normalize.py)."""
    if core.pixel_form(np.zeros(16), np.ones(16), dtype == np.float16, 0) is None:
        pytest.skip(f"no per-pixel form into {np.dtype(dtype).name} at {core.simd_level()}")


def reference(x, mean, std, dtype, channels_first):
    exact = (x.astype(np.float64) - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
    if channels_first:
        exact = np.moveaxis(exact, -1, -3)
    return exact.astype(dtype)


def assert_bound(got, expected):
    """float32: within one ulp; float16: equal (NumPy's rounding of the float64 value)."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if got.dtype == np.float16:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_array_max_ulp(got, expected, maxulp=1)


def every_value_batch(channels, rng):
    """(4, 8, 8, C) uint8: each channel holds every value 0..255 once, shuffled."""
    values = np.stack([rng.permutation(256) for _ in range(channels)], axis=-1)
    return values.astype(np.uint8).reshape(4, 8, 8, channels)


def random_stats(rng, channels):
    """Means anywhere in 0..255 (some on or next to an integer), stds from 0.05 to 2000."""
    mean = rng.uniform(0, 255, channels)
    mean[rng.random(channels) < 0.3] = np.round(mean[0]) + rng.choice([0, 1e-9, 0.5, -1e-6])
    std = np.exp(rng.uniform(-3, 7.6, channels))
    return mean, std


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("channels_first", [False, True])
def test_every_input_value(dtype, channels, channels_first):
    rng = np.random.default_rng(channels)
    for _ in range(25):
        x = every_value_batch(channels, rng)
        mean, std = random_stats(rng, channels)
        if channels == 1 and rng.random() < 0.5:
            mean, std = float(mean[0]), float(std[0])  # scalar statistics
        got = zm.standardize(x, mean, std, dtype=dtype, channels_first=channels_first)
        assert_bound(got, reference(x, mean, std, dtype, channels_first))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("channels_first", [False, True])
def test_the_plan_takes_the_channel_form(dtype, channels_first):
    """So that the other tests here do test it: per channel, uint8, float32/16 out."""
    x = np.zeros((2, 8, 8, 3), np.uint8)
    out = np.empty((2, 3, 8, 8) if channels_first else x.shape, dtype)
    plan = _plan._channel_calls(x, np.array([120.3, 110.7, 99.1]), np.array([58.1, 57.3, 57.6]),
                                out, "channels_first" if channels_first else "same",
                                core.channel_coefficients)
    assert plan is not None and plan[0] == "channels" and plan[-1] == channels_first


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("placement", ["aligned", "unaligned", "fresh", "strided-x"])
@pytest.mark.parametrize("threads", [1, 2])
def test_large_batches(dtype, channels_first, placement, threads):
    """Over 8 MB of output: streaming stores into a reused out, normal ones into a new one;
    pixel counts that are not a multiple of 16, and threads splitting mid-image."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (67, 151, 139, 4 if channels_first else 3), dtype=np.uint8)
    if placement == "strided-x":
        x = x[::2, :, :101]
    mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    shape = x.shape[:-3] + (x.shape[-1],) + x.shape[-3:-1] if channels_first else x.shape
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        if placement in ("aligned", "unaligned"):
            holder = aligned_empty((int(np.prod(shape)) + 16,), dtype)
            out = holder[5 if placement == "unaligned" else 0:][:int(np.prod(shape))]
            out = out.reshape(shape)
            got = zm.standardize(x, mean, std, dtype=dtype, channels_first=channels_first,
                                 out=out)
            assert got is out
        else:
            got = zm.standardize(x, mean, std, dtype=dtype, channels_first=channels_first)
    finally:
        zm.set_num_threads(before)
    assert got.nbytes >= (8 << 20) or placement == "strided-x"
    assert_bound(got, reference(x, mean, std, dtype, channels_first))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("offset", [0, 16, 2])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("images, height, width", [(3, 160, 256), (5, 16, 97)])
def test_channels_first_streams_from_any_start(dtype, channels, offset, threads, images,
                                               height, width):
    """Channels-first into an out= that streams, with planes a whole number of lines (160 x
    256 pixels: 80 KB of float16 or more, so off-line starts stream too on AVX2): out on a
    line, 16 bytes past one (as np.empty places a large array) and two bytes past one; three
    images, so that two threads split one mid-plane. Planes of 16 x 97 pixels (1,552: three
    chunks of AVX2's plane-at-a-time loop and a part, 8-pixel steps and single pixels
    after them) stream from a line; off a line, AVX2 streams the lines two planes share as
    one (five images: each thread's first head and last tail take normal stores)."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 256, (images, height, width, channels), dtype=np.uint8)
    mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    shape = (images, channels, height, width)
    size = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    holder = aligned_empty((size * itemsize + 64,), np.uint8)
    out = holder[offset:offset + size * itemsize].view(dtype).reshape(shape)
    assert out.ctypes.data % 64 == offset
    before, stream_before = zm.get_num_threads(), core.stream_bytes()
    zm.set_num_threads(threads)
    core.set_stream_bytes(min(1 << 20, x.size))  # the batch reads and writes 1.5 to 3.2 MB
    try:
        out[...] = np.nan  # every value must be written
        got = zm.standardize(x, mean, std, dtype=dtype, channels_first=True, out=out)
    finally:
        zm.set_num_threads(before)
        core.set_stream_bytes(stream_before)
    assert got is out
    assert_bound(got, reference(x, mean, std, dtype, True))


def test_a_channel_that_misses_falls_back_to_float64():
    """Statistics whose float16 channel form would round one value differently: the call
    runs the float64 kernels and still equals NumPy's rounding."""
    rng = np.random.default_rng(11)
    for _ in range(2000):
        mean, std = random_stats(rng, 3)
        if core.channel_coefficients(mean, 1.0 / std, True) is None:
            break
    else:
        pytest.fail("no statistics found whose float16 channel form misses")
    x = every_value_batch(3, rng)
    for channels_first in (False, True):
        got = zm.standardize(x, mean, std, dtype=np.float16, channels_first=channels_first)
        assert_bound(got, reference(x, mean, std, np.float16, channels_first))


def test_no_channel_form_at_baseline(channel_level):
    mean, inv = np.array([1.5]), np.array([0.5])
    assert core.channel_coefficients(mean, inv, False) is not None
    assert core.pixel_form(mean, inv, False, 0) is not None  # AVX-512 and AVX2 alike
    assert core.pixel_form(mean, inv, True, 0) is not None
    core.set_simd_level("baseline")
    assert core.channel_coefficients(mean, inv, False) is None
    assert core.pixel_form(mean, inv, False, 0) is None


def test_channel_coefficients_rejects_what_it_cannot_bound():
    assert core.channel_coefficients(np.array([np.nan]), np.array([1.0]), False) is None
    assert core.channel_coefficients(np.array([1.0]), np.array([np.inf]), False) is None
    assert core.channel_coefficients(np.array([3e6]), np.array([1.0]), False) is None
    with pytest.raises(ValueError):
        core.channel_coefficients(np.zeros(3), np.zeros(2), False)


def test_affine_channels_checks_its_arguments():
    x = np.zeros((4, 16, 3), np.uint8)
    out = np.empty(x.shape, np.float32)
    coefficients = core.channel_coefficients(np.array([1.5, 2.5, 3.5]), np.ones(3), False)
    args = dict(x_offset=0, extent=[4, 48], x_strides=[48, 1], out_offset=0,
                out_strides=[192, 4], planar=False)
    core.affine_channels(x, coefficients=coefficients, out=out, **args)
    np.testing.assert_array_equal(out, x - np.array([1.5, 2.5, 3.5], np.float32))
    with pytest.raises(TypeError):
        core.affine_channels(x.astype(np.uint16), coefficients=coefficients, out=out, **args)
    with pytest.raises(TypeError):
        core.affine_channels(x, coefficients=coefficients, out=out.astype(np.float64), **args)
    with pytest.raises(ValueError):
        core.affine_channels(x, coefficients=coefficients[:3], out=out, **args)
    with pytest.raises(ValueError):  # a run that is not whole pixels
        core.affine_channels(x, coefficients=coefficients, out=out,
                             **{**args, "extent": [4, 47]})
    with pytest.raises(ValueError):  # planar needs (C, P) strides
        core.affine_channels(x, coefficients=coefficients, out=out, **{**args, "planar": True})


# --- per-pixel statistics: the same float32 form per column (normalize.hpp's PixelForm) ----

@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("placement", ["reused", "off-line", "fresh"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("streams", [True, False])
def test_per_pixel_statistics_seen_again(dtype, placement, threads, streams):
    """The second call with equal per-pixel statistics checks their float32 form and the
    third uses it; every call stays within the bounds. 9,150 columns: more than one column
    block of the kernel and a tail that is not a whole group of 16; in float16 about a fifth
    of the groups have a column whose one missed value is fixed. An ``out=`` that streams
    starts the groups where its rows reach a cache line; one that does not, and a fresh
    output (written in row order), start them at column 0."""
    skip_without_pixel_form(dtype)
    from zmfast._backends import cpp
    cpp._PIXEL_FORMS.clear()  # statistics of earlier tests (other levels) may be cached
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (300, 50, 61, 3), dtype=np.uint8)
    mean, std = x.mean(axis=0), x.std(axis=0) + 0.25
    expected = reference(x, mean, std, dtype, False)
    out = None
    if placement != "fresh":  # off-line: the form's groups start 15 or 31 columns in
        skip = 1 if placement == "off-line" else 0
        out = aligned_empty((x.size + 1,), dtype)[skip:skip + x.size].reshape(x.shape)
    before, stream_before = zm.get_num_threads(), core.stream_bytes()
    zm.set_num_threads(threads)
    core.set_stream_bytes(1 << 20 if streams else 1 << 40)
    try:
        for _ in range(3):
            if out is not None:
                out[...] = np.nan  # every value must be written again
            got = zm.standardize(x, mean.copy(), std.copy(), dtype=dtype, out=out)
            assert_bound(got, expected)
    finally:
        zm.set_num_threads(before)
        core.set_stream_bytes(stream_before)
    assert cpp._PIXEL_FORMS[-1][3] is not None  # the form was checked and used
    head = 0 if out is None or not streams else (-out.ctypes.data % 64) // out.itemsize
    assert cpp._PIXEL_FORMS[-1][2][1] == head
    form = core.pixel_form(mean.reshape(-1), 1.0 / std.reshape(-1), dtype == np.float16, head)
    assert form is not None and form[0].shape == ((9150 - head) // 16, 6, 16)
    states = np.bincount(form[1], minlength=3) / form[1].size
    assert states[0] < 0.05  # nearly every group takes the form
    if dtype == np.float16:
        assert states[2] > 0.05  # some with a value fixed: those are exercised above


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("skip", [0, 5, 15, 25])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("width", [32, 64])
def test_per_pixel_rows_that_share_lines(dtype, skip, threads, width):
    """Rows of a whole number of lines, streamed into an out= that starts ``skip`` values
    past a line: a row's last values and the next row's first share a line, which a thread
    streams as one step (float32), so the next row leaves its head. With ``skip=25`` the
    groups start 7 columns in, so a block holds an odd number of groups and float16's last
    one takes the one-group step after the two-group line loop. 37 rows (threads start
    and end mid-way), 1,536 or 9,216 columns (one column block of the kernel, or two), one
    group outside the form (float64) between groups that take it; in float16 some groups
    have a fixed value, and the last row (which one thread does alone) holds every fixed
    value. Every value is checked after the out= was filled with NaN."""
    skip_without_pixel_form(dtype)
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (37, width // 2 if width == 32 else 48, width, 3), np.uint8)
    mean, std = x.mean(axis=0), x.std(axis=0) + 0.25
    mean[0, 13, 1] = 3e6  # column 40: its group (past any head) takes float64
    out = aligned_empty((x.size + skip,), dtype)[skip:skip + x.size].reshape(x.shape)
    head = (-out.ctypes.data % 64) // out.itemsize
    coef, state, _ = core.pixel_form(mean.reshape(-1), 1.0 / std.reshape(-1),
                                     dtype == np.float16, head)
    # fix_x of each group, after all groups' k, r, r_low, b (normalize.hpp's PixelForm)
    fix_x = coef.reshape(-1)[64 * state.size:].reshape(-1, 2, 16)[:, 0].view(np.int32)
    fixed = (state[:, None] == 2) & (fix_x >= 0)
    x.reshape(37, -1)[-1, head:head + fix_x.size][fixed.reshape(-1)] = fix_x[fixed]
    assert state[(40 - head) // 16] == 0
    if dtype == np.float16:
        assert np.count_nonzero(fixed) > 10
    expected = reference(x, mean, std, dtype, False)
    before, stream_before = zm.get_num_threads(), core.stream_bytes()
    zm.set_num_threads(threads)
    core.set_stream_bytes(1 << 16)
    try:
        for _ in range(3):  # the third call takes the form
            out[...] = np.nan
            zm.standardize(x, mean, std, dtype=dtype, out=out)
            assert_bound(out, expected)
    finally:
        zm.set_num_threads(before)
        core.set_stream_bytes(stream_before)


def test_per_pixel_statistics_edited_in_place():
    """Statistics the caller edits between calls are compared by value, so the result
    follows the edit."""
    skip_without_pixel_form()
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (64, 20, 20, 3), dtype=np.uint8)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1.0
    for step in range(4):
        got = zm.standardize(x, mean, std)
        assert_bound(got, reference(x, mean, std, np.float32, False))
        mean[step, step] += 7.25  # in place, same object
        std[:, step] *= 1.5


def test_many_per_pixel_statistics_in_turn():
    """More distinct statistics than the caches hold, each used twice in turn."""
    skip_without_pixel_form()
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    stats = [(x.mean(axis=0) + shift, x.std(axis=0) + 1 + shift) for shift in range(5)]
    for _ in range(2):
        for mean, std in stats:
            for dtype in (np.float32, np.float16):
                got = zm.standardize(x, mean, std, dtype=dtype)
                assert_bound(got, reference(x, mean, std, dtype, False))


def test_affine_checks_the_pixel_form():
    skip_without_pixel_form()
    x = np.zeros((16, 64), np.uint8)
    out = np.empty(x.shape, np.float32)
    mean, inv = np.full(64, 1.5), np.ones(64)
    form = core.pixel_form(mean, inv, False)
    args = (x, 0, mean, inv, [16, 64], [64, 1], [0, 8], out, 0, [256, 4], False)
    core.affine(*args, form)
    np.testing.assert_array_equal(out, np.full(x.shape, -1.5, np.float32))
    with pytest.raises(ValueError):  # statistics of another length
        core.affine(*args, core.pixel_form(np.full(48, 1.5), np.ones(48), False))
    with pytest.raises(ValueError):  # statistics that are not per column
        core.affine(x, 0, mean, inv, [16, 64], [64, 1], [8, 0], out, 0, [256, 4], False, form)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_group_outside_the_form_takes_float64(dtype):
    """A column whose mean is too far from uint8 values for the form (|mean| > 2**20) sends
    its group of 16 to the float64 loop; its neighbours keep the form."""
    skip_without_pixel_form(dtype)
    rng = np.random.default_rng(8)
    x = rng.integers(0, 256, (40, 16, 24, 3), dtype=np.uint8)
    mean, std = x.mean(axis=0), x.std(axis=0) + 0.5
    mean[3, 7, 1] = 3e6  # column 3 * 72 + 7 * 3 + 1 = 238, in group 14
    expected = reference(x, mean, std, dtype, False)
    for _ in range(3):
        assert_bound(zm.standardize(x, mean, std, dtype=dtype), expected)
    form = core.pixel_form(mean.reshape(-1), 1.0 / std.reshape(-1), dtype == np.float16)
    assert form[1][238 // 16] == 0 and np.count_nonzero(form[1] == 0) <= 3  # of 108


# --- repeat plans (zmfast._normalize): a data loader's repeated calls skip the planning ------

def _repeat_plans():
    from zmfast import _normalize
    return _normalize._REPEAT_PLANS


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("stats", ["array", "list", "scalar"])
@pytest.mark.parametrize("with_out", [True, False])
def test_repeat_plans_give_the_first_calls_results(dtype, channels_first, stats, with_out):
    """The first call plans; the repeats run the plan (one extension call) and return the
    same values, into out= or a fresh array each time."""
    rng = np.random.default_rng(21)
    mean, std = {"array": (np.array([124.3, 116.2, 104.1]), np.array([58.4, 57.1, 57.4])),
                 "list": ([124.3, 116, 104.1], [58.4, 57.1, 57]),
                 "scalar": (127.5, 64)}[stats]
    _repeat_plans().clear()
    out_shape = (8, 3, 20, 24) if channels_first else (8, 20, 24, 3)
    out = np.empty(out_shape, dtype) if with_out else None
    results = []
    for _ in range(3):
        x = rng.integers(0, 256, (8, 20, 24, 3), dtype=np.uint8)
        if out is not None:
            out[...] = np.nan
        got = zm.standardize(x, mean, std, out=out, dtype=dtype, channels_first=channels_first)
        # into out=, or a new array each time
        assert got is out if with_out else all(got is not r for r in results)
        assert_bound(got, reference(x, mean, std, dtype, channels_first))
        results.append(got)
        assert len(_repeat_plans()) == 1  # planned by the first call, used by the others


def test_repeat_plans_decline_what_they_were_not_made_for(channel_level):
    """Same statistics, other arrays: each call that the plan does not fit takes the full
    path and is still right, or raises as it would without the plan."""
    rng = np.random.default_rng(22)
    mean, std = np.array([100.0, 120.0, 140.0]), np.array([50.0, 60.0, 70.0])
    x = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    out = np.empty(x.shape, np.float32)
    _repeat_plans().clear()
    zm.standardize(x, mean, std, out=out)
    assert len(_repeat_plans()) == 1

    def check(x, out=None):
        got = zm.standardize(x, mean, std, out=out)
        assert_bound(got, reference(x, mean, std, np.float32, False))
        return got

    wide = rng.integers(0, 256, (6, 16, 32, 3), dtype=np.uint8)
    check(wide[:, :, ::2], out=out)  # same shape, other strides
    check(wide[:, :, ::2])
    check(x, out=np.empty((6, 16, 16, 3), np.float32)[:, :, ::-1][:, :, ::-1])  # a view
    strided_out = np.empty((6, 16, 32, 3), np.float32)[:, :, ::2]
    assert check(x, out=strided_out) is strided_out
    # x inside out's memory: the full path goes through a temporary
    raw = np.empty(x.size * 4, np.uint8)
    overlapping_x = raw[:x.size].reshape(x.shape)
    overlapping_x[...] = x
    overlapping_out = raw.view(np.float32).reshape(x.shape)
    got = zm.standardize(overlapping_x, mean, std, out=overlapping_out)
    assert_bound(got, reference(x, mean, std, np.float32, False))
    # errors still raise before anything is written
    read_only = np.zeros(x.shape, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        zm.standardize(x, mean, std, out=read_only)
    with pytest.raises(TypeError, match="dtype"):
        zm.standardize(x, mean, std, out=np.empty(x.shape, np.float16))
    with pytest.raises(ValueError, match="shape"):
        zm.standardize(x, mean, std, out=np.empty((6, 16, 16, 4), np.float32))
    # statistics edited in place are new statistics
    mean[1] += 3.5
    check(x, out=out)
    mean[1] -= 3.5
    # another SIMD level or backend: the plan declines, the other kernels answer
    core.set_simd_level("baseline")
    np.testing.assert_array_max_ulp(zm.standardize(x, mean, std, out=out),
                                    reference(x, mean, std, np.float32, False), maxulp=1)
    core.set_simd_level(channel_level)
    with zm.use_backend("numpy"):
        np.testing.assert_array_max_ulp(zm.standardize(x, mean, std, out=out),
                                        reference(x, mean, std, np.float32, False), maxulp=1)
    check(x, out=out)


def test_channel_plan_checks_its_arrays():
    """The extension's plan runs only on arrays of the planned layout, writable and apart."""
    x = np.arange(4 * 16 * 3, dtype=np.uint8).reshape(4, 16, 3)
    out = np.empty(x.shape, np.float32)
    mean, inv = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.25, 0.125])
    coefficients = core.channel_coefficients(mean, inv, False)
    args = dict(coefficients=coefficients, extent=[4 * 16 * 3], x_strides=[1], out_strides=[4],
                planar=False, fresh=False)
    plan = core.ChannelPlan(x, out, **args)
    assert plan.run(x, out)
    np.testing.assert_array_max_ulp(out, ((x - mean) * inv).astype(np.float32), maxulp=1)
    assert not plan.run(x[:2], out[:2])
    assert not plan.run(x, np.empty(x.shape, np.float16))
    assert not plan.run(x.astype(np.int8), out)
    assert not plan.run(np.asfortranarray(x), out)
    read_only = np.empty(x.shape, np.float32)
    read_only.flags.writeable = False
    assert not plan.run(x, read_only)
    raw = np.empty(x.size * 4, np.uint8)
    assert not plan.run(raw[:x.size].reshape(x.shape), raw.view(np.float32).reshape(x.shape))
    with pytest.raises(ValueError, match="outside"):
        core.ChannelPlan(x[:2], out[:2], **args)
    with pytest.raises(TypeError):
        core.ChannelPlan(x.astype(np.int8), out, **args)
    with pytest.raises(ValueError, match="read-only"):
        core.ChannelPlan(x, read_only, **args)
