"""Every SIMD level of the C++ kernels that this CPU supports, against the NumPy reference.

The extension picks the best level at import (capped by ZMFAST_SIMD); these tests force each
supported level in turn, so the baseline, AVX2 and AVX-512 loops are all held to one answer.
"avx512" is the AVX-512 level with its VNNI kernels switched off, as on a CPU without them
(Skylake-X), and "avx512-vnni" with them (uint8 column, per-channel and row sums) allowed.
"""

from fractions import Fraction

import numpy as np
import pytest

import zmfast as zm

core = pytest.importorskip("zmfast._core")  # the cpp backend's own tests fail if it is lost

LEVELS = ("baseline", "avx2", "avx512", "avx512-vnni")
ORDER = {name: rank for rank, name in enumerate(LEVELS)}


@pytest.fixture(params=LEVELS)
def simd_level(request):
    level, *extensions = request.param.split("-")
    best = core.best_simd_level()
    if ORDER[level] > ORDER[best]:
        pytest.skip(f"this CPU supports SIMD up to {best}")
    before = core.simd_level()
    assert core.set_simd_level(level) == level
    vnni = "vnni" in extensions
    if core.set_vnni(vnni) != vnni:
        core.set_vnni(True)  # the default: allowed where the CPU has them
        pytest.skip("this CPU has no AVX512-VNNI")
    with zm.use_backend("cpp"):
        yield level
    core.set_simd_level(before)
    core.set_vnni(True)


@pytest.fixture(scope="module")
def batch():
    # Large enough for threads and streaming stores (outputs over 8 MB), odd enough for tails.
    return np.random.default_rng(7).integers(0, 256, (83, 61, 67, 3), dtype=np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.float32,
                                   np.float64])
@pytest.mark.parametrize("axis", [0, (0, 1, 2), None, (1, 2, 3), -1, (0, 2)])
def test_moments_every_level(simd_level, dtype, axis):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((37, 13, 11, 3)) * 90).astype(dtype)
    reference = x.astype(np.float64)
    rtol = 4e-7 if dtype == np.float32 else 1e-12  # float32 results are rounded to float32
    np.testing.assert_allclose(zm.mean(x, axis=axis), reference.mean(axis=axis), rtol=rtol,
                               atol=rtol)
    np.testing.assert_allclose(zm.var(x, axis=axis), reference.var(axis=axis),
                               rtol=max(rtol, 1e-9))


@pytest.mark.parametrize("out_dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("stats", ["channel", "pixel", "scalar"])
@pytest.mark.parametrize("channels_first", [False, True])
def test_standardize_every_level(simd_level, batch, out_dtype, stats, channels_first):
    x = batch
    mean, std = {"channel": (x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))),
                 "pixel": (x.mean(axis=0), x.std(axis=0) + 0.5),
                 "scalar": (127.5, 64.0)}[stats]
    got = zm.standardize(x, mean, std, dtype=out_dtype, channels_first=channels_first)
    expected = ((x - np.asarray(mean)) / np.asarray(std)).astype(out_dtype)
    if channels_first:
        expected = expected.transpose(0, 3, 1, 2)
    if out_dtype == np.float16:  # correctly rounded from float64, as NumPy's astype
        np.testing.assert_array_equal(got, expected)
    else:  # float64 arithmetic: within an ulp of the float64 formula
        np.testing.assert_array_max_ulp(got, expected, maxulp=1)


def test_floor_kernels_every_level(simd_level, batch):
    flat = np.ascontiguousarray(batch).reshape(-1)
    for n in {0, 1, 127, 255, 257, flat.size // 3, flat.size}:  # vector tails of each level
        assert core.floor_read(flat[:n]) == int(flat[:n].sum(dtype=np.uint64))
    for stream in (False, True):
        out = np.empty(flat.shape, np.float32)
        core.floor_convert(flat, out, stream)
        np.testing.assert_array_equal(out, flat.astype(np.float32))


def test_show_config_reports_the_level(capsys):
    zm.show_config()
    out = capsys.readouterr().out
    assert f"simd: {core.simd_level()}" in out
    assert ("with VNNI" in out) == core.vnni()
    # Only .ci/test-build's test build runs AVX-512 on SIMDe, and says so; its portable build
    # says that it has the baseline loops alone.
    emulated = core.avx512_emulated and core.simd_level() == "avx512"
    assert ("emulated by SIMDe" in out) == emulated
    assert ("baseline loops only" in out) == (not core.simd_dispatch)
    assert (f"streaming stores: out= calls that read and write {core.stream_bytes() / 2**20:g}"
            " MiB or more") in out


def test_streaming_threshold_is_settable_and_the_last_level_cache():
    """The default is read in a fresh process (this session's tests lower it to 8 MB)."""
    import subprocess
    import sys
    code = "from zmfast import _core; print(_core.stream_bytes())"
    default = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout)
    size = "/sys/devices/system/cpu/cpu0/cache/index3/size"
    try:
        with open(size) as f:
            expected = int(f.read().strip().rstrip("K")) * 1024
    except (OSError, ValueError):
        expected = 32 << 20
    assert default == expected
    before = core.stream_bytes()
    try:
        core.set_stream_bytes(1 << 30)
        assert core.stream_bytes() == 1 << 30
        core.set_stream_bytes(-5)
        assert core.stream_bytes() == 0
    finally:
        core.set_stream_bytes(before)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
@pytest.mark.parametrize("rows,lanes", [(1, 5), (3, 64), (1027, 3), (515, 1100), (40, 4097),
                                       (70, 8200)],
                         ids=str)
def test_add_sums_every_level(simd_level, dtype, rows, lanes):
    """Exact column sums (StandardScaler.partial_fit's kernel): lane tails, odd rows, more
    rows than one 512-row block of the AVX-512 uint8 loop, and batches large enough for two
    threads, split by rows (short rows) and by lanes (wide ones)."""
    info = np.iinfo(dtype)
    x = np.random.default_rng([rows, lanes]).integers(info.min, int(info.max) + 1,
                                                       (rows, lanes), dtype=dtype)
    x[: rows // 2 + 1] = info.max  # the 16-bit pair sums reach their largest values
    s1, s2 = np.ones(lanes, np.int64), np.zeros(lanes, np.int64)
    core.add_sums(x, rows, lanes, s1, s2)
    np.testing.assert_array_equal(s1, 1 + x.astype(np.int64).sum(axis=0))
    np.testing.assert_array_equal(s2, (x.astype(np.int64) ** 2).sum(axis=0))


@pytest.mark.parametrize("rows,shape", [(1, (7, 5, 3)), (2, (224, 224, 3)), (3, (1, 1, 1100)),
                                        (511, (9, 11, 3)), (512, (4097,)), (513, (5, 7, 3)),
                                        (520, (130, 130))],
                         ids=str)
def test_uint8_column_moments_are_correctly_rounded(simd_level, rows, shape):
    """Per-pixel uint8 moments: up to one 512-row block they come straight from the 32-bit
    sums, where n S2 - S1^2 is exact in float64, so mean and M2 are each rounded once; past
    it, from the int64 totals, within a few ulp. Lane tails, threads and extreme values."""
    x = np.random.default_rng([rows, *shape]).integers(0, 256, (rows, *shape), dtype=np.uint8)
    x[: rows // 2 + 1, ..., :2] = 255  # the largest sums a block can reach
    s1 = x.astype(np.int64).sum(axis=0)
    s2 = (x.astype(np.int64) ** 2).sum(axis=0)
    moments = zm.moments(x, axis=0)
    np.testing.assert_array_equal(moments.mean, s1 / rows)
    exact_m2 = (rows * s2 - s1 * s1) / rows  # the numerator is below 2**53: exact
    if rows <= 512:
        np.testing.assert_array_equal(moments.m2, exact_m2)
    else:
        np.testing.assert_array_max_ulp(moments.m2, exact_m2, maxulp=4)
    np.testing.assert_array_equal(zm.mean(x, axis=0), s1 / rows)
    # var and std: M2 / (n - ddof), then its square root, each rounded once more (finished
    # in the kernels as they store each lane, or after them for a divisor below 1).
    for ddof in (0, 1, rows - 0.5):
        if rows - ddof <= 0:
            continue
        var = zm.var(x, axis=0, ddof=ddof)
        std = zm.std(x, axis=0, ddof=ddof)
        if rows <= 512:
            np.testing.assert_array_equal(var, exact_m2 / (rows - ddof), err_msg=f"ddof={ddof}")
            np.testing.assert_array_equal(std, np.sqrt(exact_m2 / (rows - ddof)))
        else:
            np.testing.assert_array_max_ulp(var, exact_m2 / (rows - ddof), maxulp=4)
            np.testing.assert_array_max_ulp(std, np.sqrt(exact_m2 / (rows - ddof)), maxulp=4)


@pytest.mark.parametrize("rows", [1, 3, 255, 256, 511, 512])
def test_uint8_block_means_are_correctly_rounded_for_every_sum(simd_level, rows):
    """Every column sum a block of uint8 rows can have, 0 to 255 n, once: the AVX2 and
    AVX-512 kernels divide by n without the divider (a product with 1 / n, corrected once),
    which must give the bits of S1 / n and of (n S2 - S1^2) / n for each of them. (The
    baseline loops take M2 from the int64 totals, within a few ulp.)"""
    sums = np.arange(255 * rows + 1)
    # Column k holds k as full rows of 255, one remainder and zeros: every sum once.
    row = np.arange(rows)[:, None]
    x = np.clip(sums[None, :] - 255 * row, 0, 255).astype(np.uint8)
    s1 = x.astype(np.int64).sum(axis=0)
    s2 = (x.astype(np.int64) ** 2).sum(axis=0)
    assert np.array_equal(s1, sums)
    moments = zm.moments(x, axis=0)
    np.testing.assert_array_equal(moments.mean, s1 / rows)
    exact_m2 = (rows * s2 - s1 * s1) / rows
    if simd_level == "baseline":
        np.testing.assert_array_max_ulp(moments.m2, exact_m2, maxulp=4)
        np.testing.assert_array_max_ulp(zm.std(x, axis=0), np.sqrt(exact_m2 / rows), maxulp=4)
    else:
        np.testing.assert_array_equal(moments.m2, exact_m2)
        np.testing.assert_array_equal(zm.std(x, axis=0), np.sqrt(exact_m2 / rows))


def test_spread_of_a_broadcast_batch_per_pixel():
    """Per-pixel var and std of a batch repeated along a zero-stride axis: M2 scaled by the
    copies before it is finished (the kernels do not finish such a reduction themselves)."""
    x = np.random.default_rng(5).integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)
    repeated = np.broadcast_to(x, (4,) + x.shape)
    wide = repeated.astype(np.float64)
    for ddof in (0, 1):
        np.testing.assert_allclose(zm.var(repeated, axis=(0, 1), ddof=ddof),
                                   wide.var(axis=(0, 1), ddof=ddof), rtol=1e-13)
        np.testing.assert_allclose(zm.std(repeated, axis=(0, 1), ddof=ddof),
                                   wide.std(axis=(0, 1), ddof=ddof), rtol=1e-13)


@pytest.mark.parametrize("size", [1, 7, 150_529])
def test_finish_spread_matches_numpy_bits(simd_level, size):
    """var and std from M2 (divide, then square root) in the extension, threaded: each step
    correctly rounded, so the bits are NumPy's."""
    m2 = np.random.default_rng(size).random(size) * 1e6
    m2[::5] = 0.0
    for root in (False, True):
        got = m2.copy()
        core.finish_spread(got, 255, root)
        expected = m2 / 255
        np.testing.assert_array_equal(got, np.sqrt(expected) if root else expected)
    with pytest.raises(ValueError, match="writable C-contiguous"):
        core.finish_spread(np.zeros((3, 2)).T, 2, True)


def test_vnni_follows_the_level():
    """The VNNI kernels run at the AVX-512 level only, and only where the CPU has them."""
    before = core.simd_level()
    try:
        for level in LEVELS[:3]:
            if core.set_simd_level(level) == level:
                assert core.vnni() == (level == "avx512" and core.set_vnni(True))
        core.set_simd_level(before)
        assert not core.set_vnni(False) and not core.vnni()
    finally:
        core.set_simd_level(before)
        core.set_vnni(True)


def test_streaming_sums_survive_a_vnni_switch():
    """The VNNI and plain AVX-512 kernels keep pending uint8 sums in different lane orders;
    switching between them within a stream still sums exactly."""
    if not core.set_vnni(True):
        pytest.skip("this CPU has no AVX512-VNNI")
    rng = np.random.default_rng(12)
    # 19,200 lanes: more than one 16,384-lane tile of the kernels
    batches = [rng.integers(0, 256, (64, 80, 80, 3), dtype=np.uint8) for _ in range(5)]
    batches[2][:] = 255  # the largest 32-bit pending sums
    scaler = zm.StandardScaler(axis=0)
    try:
        with zm.use_backend("cpp"):
            for vnni, batch in zip((True, False, True, True, False), batches):
                core.set_vnni(vnni)
                scaler.partial_fit(batch)
    finally:
        core.set_vnni(True)
    x = np.concatenate(batches).astype(np.int64)
    np.testing.assert_array_equal(scaler._sums._totals()[0], x.sum(axis=0).ravel())
    np.testing.assert_array_equal(scaler._sums._totals()[1], (x * x).sum(axis=0).ravel())


def test_per_channel_sums_switch_kernels_by_size():
    """Per-channel sums (short rows) take the VNNI kernel up to a few MB a batch and the
    vpmaddwd kernel above; a stream that mixes both sizes still sums exactly."""
    rng = np.random.default_rng(13)
    sizes = (8, 120, 8, 3, 120)  # 120 images of 128 x 128 x 3: 5.6 MB
    batches = [rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8) for n in sizes]
    batches[1][:60] = 255
    scaler = zm.StandardScaler(axis=(0, 1, 2))
    with zm.use_backend("cpp"):
        for batch in batches:
            scaler.partial_fit(batch)
        x = np.concatenate(batches).astype(np.int64).reshape(-1, 3)
        np.testing.assert_array_equal(scaler._sums._totals()[0].reshape(-1, 3).sum(axis=0),
                                      x.sum(axis=0))
        np.testing.assert_array_equal(scaler._sums._totals()[1].reshape(-1, 3).sum(axis=0),
                                      (x * x).sum(axis=0))
        big = batches[1].reshape(-1, 3).astype(np.int64)
        n = len(big)
        exact = [float(Fraction(n * int((c * c).sum()) - int(c.sum()) ** 2, n * n))
                 for c in big.T]
        np.testing.assert_allclose(zm.var(batches[1], axis=(0, 1, 2)), exact, rtol=1e-15)


def _exact_channel_moments(flat, features):
    """(mean, M2) per channel from exact integer sums (value histograms), with the integer
    shift and float64 steps of RunningSums.moments, which exact_moments follows bit for bit."""
    sums = zm._stats.RunningSums(flat.dtype, 1, (features,), stream=False, lanes=features)
    values = np.arange(256, dtype=np.int64)
    for c in range(features):
        counts = np.bincount(flat[c::features], minlength=256).astype(np.int64)
        sums.s1[c], sums.s2[c] = counts @ values, counts @ (values * values)
    sums.counter[0] = flat.size // features
    moments = sums.moments()
    return moments.mean, moments.m2


@pytest.fixture(scope="module")
def channel_batches():
    """Flat uint8 pixels of 1 and 3 channels: partial 64-pixel steps, starts off the vector,
    and 140,000 steps of values near 255, past the 32-bit lanes' limit (16,577 steps of
    4 * 255 * 127) even for two threads that each keep four sets of lanes, past the VNNI RGB
    kernel's (4,096 192-byte segments of four rows between folds, 4,168 at these values), and
    past the AVX2 kernel's (4,096 192-byte steps between folds, 64 between its 16-bit words'
    folds)."""
    rng = np.random.default_rng(14)
    batches = {}
    for features in (1, 3):
        cases = [rng.integers(0, 256, n * features, dtype=np.uint8)
                 for n in (1, 21, 63, 64, 65, 127, 128, 129, 200, 1000, 50_177)]
        offset = rng.integers(0, 256, 3 * 4099, dtype=np.uint8)
        cases += [offset[3 * k:] for k in (1, 5, 7)]  # whole pixels, unaligned starts
        big = 140_000 * 64 * features + 7 * features
        cases += [rng.integers(254, 256, big, dtype=np.uint8)]
        batches[features] = [(flat, _exact_channel_moments(flat, features)) for flat in cases]
    return batches


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("features", [1, 3])
def test_channel_sums_every_level(simd_level, channel_batches, features, threads):
    """Per-channel and global uint8 moments (with VNNI: one linear pass, three channels as
    four streams of 192-byte segments interleaved into one-channel dwords; at AVX2, and at
    AVX-512 without VNNI, three channels in two streams of 96-byte segments, and one channel
    as three) equal exact integer arithmetic, in one call (also the means alone) and in the
    streaming accumulator of StandardScaler."""
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        for flat, (want_mean, want_m2) in channel_batches[features]:
            mean, m2 = core.exact_moments(flat, features, 64 * features)
            np.testing.assert_array_equal(mean, want_mean)
            np.testing.assert_array_equal(m2, want_m2)
            mean, m2 = core.exact_moments(flat, features, 64 * features, False)  # zm.mean
            np.testing.assert_array_equal(mean, want_mean)
            assert m2 is None
        images = np.random.default_rng(15).integers(0, 256, (40, 31, 29, features),
                                                    dtype=np.uint8)
        scaler = zm.StandardScaler(axis=(0, 1, 2))
        for start in range(0, 40, 7):
            scaler.partial_fit(images[start:start + 7])
        fitted = zm.StandardScaler(axis=(0, 1, 2)).fit(images)  # one batch: RunningSums.add
        want_mean, want_m2 = _exact_channel_moments(images.reshape(-1), features)
        for fit in (scaler, fitted):
            np.testing.assert_array_equal(fit.moments_.mean, want_mean)
            np.testing.assert_array_equal(fit.moments_.m2, want_m2)
    finally:
        zm.set_num_threads(before)


def _exact_row_moments(values):
    """mean and M2 of int64 values from exact sums (Fraction), rounded once."""
    n, s1, s2 = values.size, int(values.sum()), int((values * values).sum())
    return float(Fraction(s1, n)), float(Fraction(n * s2 - s1 * s1, n))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape,axis", [((5, 3, 37, 41), (0, 2, 3)),  # NCHW per channel
                                        ((7, 40, 40, 3), (1, 2, 3)),  # per image
                                        ((4, 3, 50, 50), (2, 3)),  # per image and channel
                                        ((3, 2, 1100), (0, 2)),  # two planes, three images
                                        ((9, 3, 20, 20), (0, 2, 3)),  # 400-byte planes
                                        ((7, 4, 30, 30), (0, 2, 3)),  # RGBA, odd images
                                        ((8, 2, 10, 10), (0, 2, 3)),  # planes of 1.6 steps
                                        ((9, 3, 5, 5), (0, 2, 3))],  # runs too short
                         ids=str)
def test_row_sums_every_level(simd_level, shape, axis, threads):
    """uint8 row reductions over contiguous runs of 64 bytes or more (with VNNI: the runs
    summed exactly by the row kernel, threads sharing (output, row) pairs) give the exact
    moments, rounded once: checked against rational arithmetic, extreme values included."""
    rng = np.random.default_rng(16)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    x.reshape(-1)[::7] = 255
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        got = zm.moments(x, axis=axis)
        mean_only = zm.mean(x, axis=axis)
    finally:
        zm.set_num_threads(before)
    kept = [ax for ax in range(x.ndim) if ax not in axis]
    rows = np.moveaxis(x, kept, list(range(len(kept)))).reshape(-1, got.count)
    for out, values in enumerate(rows.astype(np.int64)):
        mean, m2 = _exact_row_moments(values)
        index = np.unravel_index(out, got.mean.shape)
        np.testing.assert_allclose(got.mean[index], mean, rtol=2.3e-16)
        np.testing.assert_allclose(mean_only[index], mean, rtol=2.3e-16)
        np.testing.assert_allclose(got.m2[index], m2, rtol=1e-15)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1100, 2, 64, 64),
                                   (513, 2, 64, 64),  # a fold after 256 images, one odd
                                   (301, 4, 64, 64)], ids=str)
def test_row_sums_fold_across_runs(simd_level, threads, shape):
    """Many short runs of one output share the 32-bit lanes until they must be folded:
    channel planes of hundreds of images of values near 255 (past the lanes' limit of
    16,384 steps) still sum exactly, and the NCHW planes kernel folds each of its two streams
    every 256 images of 4 KB planes (AVX2: both streams every 64 pairs of images), then adds
    an odd last image and partial ones alone."""
    x = np.random.default_rng(17).integers(254, 256, shape, dtype=np.uint8)
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        got = zm.moments(x, axis=(0, 2, 3))
    finally:
        zm.set_num_threads(before)
    for c in range(shape[1]):
        mean, m2 = _exact_row_moments(x[:, c].astype(np.int64))
        # mean = q + r / n from the integer q nearest it: within an ulp (README, Numerics)
        np.testing.assert_allclose(got.mean[c], mean, rtol=2.3e-16)
        np.testing.assert_allclose(got.m2[c], m2, rtol=1e-15)


@pytest.mark.parametrize("threads", [1, 2])
def test_row_sums_fold_within_a_run(simd_level, threads):
    """The row kernel's 32-bit lanes are folded every 16,384 steps, also in the middle of a
    run: runs of 1,100 bytes (17 whole steps and a masked tail) over 2,000 images, and runs
    of 4.5 MB, of values near 255 (lanes left unfolded 4x too long would overflow); rows
    along a view whose two row dimensions cannot merge (a kernel call per inner row)."""
    rng = np.random.default_rng(18)
    near_top = rng.integers(250, 256, (2000, 2, 1100), dtype=np.uint8)
    long_runs = rng.integers(250, 256, (2, 4_500_000), dtype=np.uint8)
    base = rng.integers(0, 256, (3, 9, 2, 1100), dtype=np.uint8)
    view = base[:, ::2]  # strides 19,800 and 4,400: rows over two dimensions
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        cases = [(near_top, (0, 2), lambda c: near_top[:, c]),
                 (long_runs, (1,), lambda c: long_runs[c]),
                 (view, (0, 1, 3), lambda c: view[:, :, c])]
        for x, axis, values_of in cases:
            got = zm.moments(x, axis=axis)
            for c in range(got.mean.size):
                mean, m2 = _exact_row_moments(values_of(c).astype(np.int64))
                np.testing.assert_allclose(got.mean[c], mean, rtol=2.3e-16)
                np.testing.assert_allclose(got.m2[c], m2, rtol=1e-15)
    finally:
        zm.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_row_sums_of_back_to_back_runs(simd_level, threads):
    """Outputs that are each one contiguous run (per image) are summed in 32 bits up to
    65,536 bytes a run (AVX2: 524,288): runs of 254 and 255 at those limits and past them
    (then in int64), an odd number of outputs, and short runs with a masked last step."""
    near_top = [np.full((n, run), 255, dtype=np.uint8)
                for n, run in ((5, 65536), (3, 131072), (3, 524288), (2, 600000))]
    for x in near_top:
        x[:, ::2] = 254  # a spread to measure, at nearly the largest T
    cases = near_top + [
        np.random.default_rng(19).integers(0, 256, (11, 3, 7, 9), dtype=np.uint8)]
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        for x in cases:
            axis = tuple(range(1, x.ndim))
            got = zm.moments(x, axis=axis)
            for n in range(len(x)):
                mean, m2 = _exact_row_moments(x[n].astype(np.int64).ravel())
                np.testing.assert_allclose(got.mean[n], mean, rtol=2.3e-16)
                np.testing.assert_allclose(got.m2[n], m2, rtol=1e-15, atol=0)
    finally:
        zm.set_num_threads(before)


def test_add_channel_sums_checks_its_arrays():
    """_core.add_channel_sums adds where its kernel applies and says so; it never reads past
    its arrays."""
    x = np.arange(12, dtype=np.uint8)
    s1, s2 = np.zeros(3, np.int64), np.zeros(3, np.int64)
    # One or three channels: at the AVX2 and AVX-512 levels (with VNNI or not).
    applies = core.simd_level() in ("avx2", "avx512")
    assert core.add_channel_sums(x, 3, s1, s2) == applies
    if applies:
        np.testing.assert_array_equal(s1, [18, 22, 26])
        np.testing.assert_array_equal(s2, [126, 166, 214])
    assert not core.add_channel_sums(x.astype(np.uint16), 3, s1[:3].copy(), s2[:3].copy())
    assert not core.add_channel_sums(np.zeros(8, np.uint8), 2, s1.copy(), s2.copy())
    one = np.zeros(1, np.int64)
    assert core.add_channel_sums(x, 1, one, one.copy()) == applies
    assert one[0] == (66 if applies else 0)
    with pytest.raises(ValueError):  # not whole pixels
        core.add_channel_sums(x[:11], 3, s1, s2)
    with pytest.raises(ValueError):  # strided
        core.add_channel_sums(np.zeros(24, np.uint8)[::2], 3, s1, s2)
    with pytest.raises(ValueError):  # sums shorter than the channels
        core.add_channel_sums(x, 3, s1[:2], s2)


def test_streaming_sums_survive_a_level_change(simd_level):
    """uint8 batches may wait in the AVX-512 kernel's pending sums; a stream that changes
    the SIMD level in between still sums exactly."""
    rng = np.random.default_rng(11)
    batches = [rng.integers(0, 256, (64, 40, 40, 3), dtype=np.uint8) for _ in range(4)]
    scaler = zm.StandardScaler(axis=0)
    for level, batch in zip(("avx512", simd_level, "avx512", "baseline"), batches):
        core.set_simd_level(level)  # capped at the CPU's best
        scaler.partial_fit(batch)
    core.set_simd_level(simd_level)
    x = np.concatenate(batches).astype(np.int64)
    np.testing.assert_array_equal(scaler._sums._totals()[0], x.sum(axis=0).ravel())
    np.testing.assert_array_equal(scaler._sums._totals()[1], (x * x).sum(axis=0).ravel())


@pytest.mark.parametrize("out_dtype", [np.float32, np.float16])
@pytest.mark.parametrize("placement", ["aligned", "unaligned", "fresh"])
@pytest.mark.parametrize("shape", [(37, 150, 140, 3), (7, 11, 13, 3)], ids=str)
def test_per_pixel_rows_share_statistics(simd_level, out_dtype, placement, shape):
    """Per-pixel statistics are loaded once for a group of images (AVX-512): group tails,
    block tails, outputs on and off cache lines, streaming (an 8 MB+ reused out) or not."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, shape, dtype=np.uint8)  # float32 out of the first: 9 MB
    mean, std = x.mean(axis=0), x.std(axis=0) + 0.5
    expected = ((x - mean) / std).astype(out_dtype)
    if placement == "fresh":
        got = zm.standardize(x, mean, std, dtype=out_dtype)
    else:
        from zmfast._normalize import aligned_empty
        raw = aligned_empty(x.size + 64, out_dtype)
        skip = 0 if placement == "aligned" else 3
        got = raw[skip:skip + x.size].reshape(x.shape)
        assert zm.standardize(x, mean, std, dtype=out_dtype, out=got) is got
    if out_dtype == np.float16:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_array_max_ulp(got, expected, maxulp=1)


def test_core_stub_lists_every_binding():
    """zmfast/_core.pyi names every function, class and attribute the extension has, and no
    other."""
    import ast
    from importlib.resources import files

    tree = ast.parse((files("zmfast") / "_core.pyi").read_text())
    stub = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    stub |= {node.target.id for node in tree.body if isinstance(node, ast.AnnAssign)}
    assert stub == {name for name in dir(core) if not name.startswith("__")}
