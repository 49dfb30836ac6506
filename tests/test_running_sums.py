"""Exact running sums: the streaming path of ``StandardScaler.partial_fit`` for 8- and
16-bit integer batches reduced over leading axes (zmfast._stats.RunningSums).

* the backends' ``add_sums`` kernel against int64 NumPy sums, in place, on every dtype and on
  shapes that take each threading split;
* any chunking of ``partial_fit`` gives bit-identical statistics to ``fit``, and both are
  within a few ulp of the exact rational mean and variance (Python fractions);
* the totals fold into float moments before they could overflow, and batches that cannot
  take the fast path (non-contiguous, other shapes) still count or raise.
"""

import math
import pickle
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from strategies import PROFILES, make_values

import zmfast as zm
from zmfast import _config, _stats

INTEGER_DTYPES = [np.uint8, np.int8, np.uint16, np.int16]


def exact_stats(x, axes):
    """Correctly rounded mean and variance from exact integer sums (Python integers)."""
    wide = np.moveaxis(x.astype(object), axes, tuple(range(len(axes))))
    n = math.prod(x.shape[ax] for ax in axes)
    flat = wide.reshape((n, -1))
    s1 = flat.sum(axis=0)
    s2 = (flat * flat).sum(axis=0)
    mean = np.array([float(Fraction(int(a), n)) for a in s1])
    var = np.array([float(Fraction(n * int(b) - int(a) ** 2, n * n)) for a, b in zip(s1, s2)])
    kept = tuple(x.shape[ax] for ax in range(x.ndim) if ax not in axes)
    return mean.reshape(kept), var.reshape(kept)


def assert_ulps(actual, expected, ulps, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    tolerance = ulps * np.spacing(np.abs(expected))
    bad = ~(np.abs(actual - expected) <= tolerance)
    assert not bad.any(), f"{what}: {actual[bad][:5]} != {expected[bad][:5]}"


@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
@pytest.mark.parametrize("rows,lanes", [(1, 1), (7, 3), (5, 192), (130, 2500), (300, 700),
                                         (2000, 100), (70000, 3)],
                         ids=lambda v: str(v))
def test_add_sums_is_exact_and_in_place(backend, dtype, rows, lanes):
    info = np.iinfo(dtype)
    rng = np.random.default_rng([rows, lanes, info.bits])
    x = rng.integers(info.min, int(info.max) + 1, size=(rows, lanes), dtype=dtype)
    x[0] = info.max  # extremes: the largest squares and the most negative value
    x[-1] = info.min
    s1 = rng.integers(-1000, 1000, size=lanes, dtype=np.int64)
    s2 = rng.integers(0, 1000, size=lanes, dtype=np.int64)
    want1 = s1 + x.astype(np.int64).sum(axis=0)
    want2 = s2 + (x.astype(np.int64) ** 2).sum(axis=0)
    _config.backend().add_sums(x, rows, lanes, s1, s2)
    np.testing.assert_array_equal(s1, want1)
    np.testing.assert_array_equal(s2, want2)


@st.composite
def integer_streams(draw):
    """(x, axis, cuts): an integer batch reduced over leading axes and a chunking of it."""
    dtype = np.dtype(draw(st.sampled_from(INTEGER_DTYPES)))
    n = draw(st.integers(1, 40))
    shape, axis = draw(st.sampled_from([
        ((n, 5), 0), ((n, 3, 2, 3), 0), ((n, 4, 5, 3), (0, 1, 2)), ((n, 2, 3, 1), (0, 1, 2)),
        ((n, 70), 0), ((n, 3, 3), None)]))
    profile = draw(st.sampled_from(PROFILES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = make_values(rng, dtype, math.prod(shape), profile).astype(dtype).reshape(shape)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    note(f"dtype={dtype} shape={shape} axis={axis} profile={profile} cuts={cuts}")
    return x, axis, cuts


@given(stream=integer_streams())
def test_integer_partial_fit_is_bit_identical_to_fit(backend, stream):
    x, axis, cuts = stream
    whole = zm.StandardScaler(axis=axis).fit(x)
    parts = zm.StandardScaler(axis=axis)
    for chunk in np.split(x, cuts):
        parts.partial_fit(chunk)
    assert parts._sums is not None and parts._merged is None  # the exact path was taken
    np.testing.assert_array_equal(parts.mean_, whole.mean_)
    np.testing.assert_array_equal(parts.var_, whole.var_)
    axes = tuple(range(x.ndim)) if axis is None else (axis,) if isinstance(axis, int) else axis
    mean, var = exact_stats(x, axes)
    assert_ulps(whole.mean_, mean, 1, "mean")
    assert_ulps(whole.var_, var, 4, "var")


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8])
def test_large_offset_small_spread_is_exact(backend, dtype):
    """The worst case of float merges: values at the top of the range, a spread of a few."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(5)
    x = (int(info.max) - rng.integers(0, 3, size=(999, 4, 3))).astype(dtype)
    scaler = zm.StandardScaler(axis=(0, 1)).fit(x[:500]).partial_fit(x[500:])
    mean, var = exact_stats(x, (0, 1))
    assert_ulps(scaler.mean_, mean, 1, "mean")
    assert_ulps(scaler.var_, var, 4, "var")


def test_totals_fold_into_float_moments_before_overflow(backend, monkeypatch):
    """With a tiny limit, the totals fold into float moments often, and a batch larger than
    the limit takes the general path; the statistics stay right."""
    monkeypatch.setitem(_stats._SUMS_LIMITS, np.dtype(np.uint8), 50)
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, size=(300, 2, 3), dtype=np.uint8)
    scaler = zm.StandardScaler(axis=0)
    for start, size in [(0, 20), (20, 20), (40, 20), (60, 100), (160, 7), (167, 133)]:
        scaler.partial_fit(x[start:start + size])
    assert scaler._merged is not None and scaler._sums.count == 0 or scaler._sums.count <= 50
    assert scaler.n_samples_seen_ == 300
    mean, var = exact_stats(x, (0,))
    np.testing.assert_allclose(scaler.mean_, mean, rtol=1e-14)
    np.testing.assert_allclose(scaler.var_, var, rtol=1e-13)


def test_mixed_fast_and_general_batches(backend):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(64, 6, 4, 3), dtype=np.uint8)
    scaler = zm.StandardScaler(axis=(0, 1, 2))
    scaler.partial_fit(x[:10, :, ::-1])  # not contiguous: float moments
    scaler.partial_fit(x[10:30])  # contiguous: exact sums
    scaler.partial_fit(x[30:40].tolist())  # a list becomes int64: float moments
    scaler.partial_fit(x[40:].copy())  # exact sums again
    scaler.partial_fit(np.asfortranarray(x[:0]))  # empty: nothing
    assert scaler._merged is not None and scaler._sums.count == 44 * 24
    assert scaler.n_samples_seen_ == 64
    mean, var = exact_stats(x, (0, 1, 2))
    np.testing.assert_allclose(scaler.mean_, mean, rtol=1e-14)
    np.testing.assert_allclose(scaler.var_, var, rtol=1e-13)


def test_fast_path_still_rejects_another_shape(backend):
    scaler = zm.StandardScaler(axis=0).partial_fit(np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="statistics of shape"):
        scaler.partial_fit(np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(ValueError, match="statistics of shape"):
        scaler.partial_fit(np.zeros((4, 15), np.uint8))
    scaler.partial_fit(np.zeros((4, 5, 3), np.int16))  # another dtype: the general path
    assert scaler.n_samples_seen_ == 8 and scaler._merged is not None


def test_save_load_continues_exactly(backend, tmp_path):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, size=(50, 3, 3), dtype=np.uint8)
    zm.StandardScaler(axis=0).fit(x[:20]).save(tmp_path / "s.npz")
    loaded = zm.StandardScaler.load(tmp_path / "s.npz").partial_fit(x[20:])
    mean, var = exact_stats(x, (0,))
    np.testing.assert_allclose(loaded.mean_, mean, rtol=1e-14)
    np.testing.assert_allclose(loaded.var_, var, rtol=1e-13)


def exact_column_sums(batches):
    s1 = s2 = 0
    for batch in batches:
        wide = batch.reshape(len(batch), -1).astype(np.int64)
        s1 = s1 + wide.sum(axis=0)
        s2 = s2 + (wide * wide).sum(axis=0)
    return s1, s2


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch_rows,row_shape,count", [
    (64, (32, 32, 3), 9),  # cifar batches: short rows, split by rows (a pending set each)
    (40, (64, 64, 3), 3),  # wide rows, split by lanes across threads
    (17000, (8, 64), 4),  # past the 65536 rows that pending 32-bit sums may hold
    (70000, (64,), 1),  # one batch larger than that
    (5, (7, 3), 3),  # tiny: one thread, lane tails
], ids=str)
def test_streams_of_batches_are_exact(backend, threads, batch_rows, row_shape, count):
    """The streaming path (the cpp backend keeps uint8 sums pending in 32-bit form between
    calls) against exact int64 sums, across threads and the pending limit."""
    rng = np.random.default_rng([batch_rows, count])
    batches = [rng.integers(0, 256, (batch_rows,) + row_shape, dtype=np.uint8)
               for _ in range(count)]
    batches[0][:] = 255  # the largest squares
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        scaler = zm.StandardScaler(axis=0)
        for batch in batches:
            scaler.partial_fit(batch)
    finally:
        zm.set_num_threads(before)
    s1, s2 = exact_column_sums(batches)
    n = batch_rows * count
    assert scaler.moments_.count == n
    features = math.prod(row_shape)
    for total, want in zip(scaler._sums._totals(), (s1, s2)):  # lanes folded to features
        np.testing.assert_array_equal(total.reshape(-1, features).sum(axis=0), want)
    np.testing.assert_allclose(scaler.mean_.ravel(), s1 / n, rtol=1e-15)


def test_pending_sums_at_their_limit(backend):
    """The VNNI kernel keeps S1 and the signed T = sum x (x - 128) pending (S2 = T + 128 S1):
    65,536 rows of 255 (T just below 2**31) and of 64 (T most negative) in one stream, then
    one more batch, which flushes them first."""
    rows, lanes = 8192, 320  # rows wide enough for the VNNI kernel, batches not widened
    pattern = np.where(np.arange(lanes) % 2, 255, 64).astype(np.uint8)
    batches = [np.broadcast_to(pattern, (rows, lanes)).copy() for _ in range(8)]
    batches.append(np.random.default_rng(3).integers(0, 256, (7, lanes), dtype=np.uint8))
    scaler = zm.StandardScaler(axis=0)
    for batch in batches:
        scaler.partial_fit(batch)
    s1, s2 = exact_column_sums(batches)
    assert scaler._sums.lanes == lanes
    for total, want in zip(scaler._sums._totals(), (s1, s2)):
        np.testing.assert_array_equal(total, want)


# --- zm.moments / mean / var on integers: column reductions from exact int64 sums ----------

def _column_cases():
    return [
        ("lanes split across threads", lambda x: x, 0),
        ("narrow lanes: rows split", lambda x: x, (0, 1, 2)),
        ("several outputs", lambda x: x, 1),
        ("runs of a strided view", lambda x: x[:, ::2], (0, 1)),
        ("short runs", lambda x: x[:, :, ::5], (0, 1, 2)),
        ("lane tail", lambda x: x[:, :, :, :2], 0),
        ("reversed rows", lambda x: x[::-1], 0),
    ]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
@pytest.mark.parametrize("name,view,axis", _column_cases(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_integer_moments_are_exact(backend, threads, dtype, name, view, axis):
    info = np.iinfo(dtype)
    values = np.random.default_rng(21).integers(0, 256, (40, 12, 14, 3))
    # 0..255 spread over the dtype's whole range, the extremes included.
    full = (values * ((int(info.max) - int(info.min)) // 255) + int(info.min)).astype(dtype)
    x = view(full)
    axes = (axis,) if isinstance(axis, int) else axis
    mean, var = exact_stats(x, axes)
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        m = zm.moments(x, axis=axis)
        got_mean, got_var = zm.mean(x, axis=axis), zm.var(x, axis=axis)
    finally:
        zm.set_num_threads(before)
    if zm.get_backend() == "numpy":
        # NumPy's float64 sums (the reference backend): relative to the data's scale, since a
        # signed mean near zero has tiny ulps.
        scale = float(max(abs(int(info.min)), int(info.max)))
        for got, want in [(m.mean, mean), (got_mean, mean)]:
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * scale)
        for got, want in [(m.var(), var), (got_var, var)]:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13 * scale**2)
        return
    assert_ulps(m.mean, mean, 1, f"{name} mean")
    assert_ulps(m.var(), var, 4, f"{name} var")
    assert_ulps(got_mean, mean, 1, f"{name} zm.mean")
    assert_ulps(got_var, var, 4, f"{name} zm.var")


def test_samples_seen_through_the_fast_path(backend):
    scaler = zm.StandardScaler(axis=(0, 1))
    with pytest.raises(AttributeError):
        scaler.n_samples_seen_  # noqa: B018  (not fitted: no attribute, as scikit-learn)
    x = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    scaler.partial_fit(x)
    scaler.partial_fit(x[:2])
    scaler.partial_fit(np.zeros((3, 0, 3), np.uint8))  # empty: adds nothing, counts nothing
    scaler.partial_fit(x[:0])
    assert scaler.n_samples_seen_ == 7 and scaler.moments_.count == 28
    mean_before = scaler.mean_.copy()
    scaler.partial_fit(x[4:])  # the cached statistics follow the new batch
    assert scaler.n_samples_seen_ == 8
    assert not np.array_equal(scaler.mean_, mean_before)
    np.testing.assert_allclose(scaler.mean_, np.concatenate([x, x[:2], x[4:]]).mean((0, 1)))
    scaler.fit(x[:1])
    assert scaler.n_samples_seen_ == 1


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_streaming_scaler_pickles_and_continues(backend, how):
    import copy
    import pickle
    rng = np.random.default_rng(12)
    x = rng.integers(0, 256, (90, 16, 16, 3), dtype=np.uint8)
    scaler = zm.StandardScaler(axis=0)
    for start in range(0, 50, 10):
        scaler.partial_fit(x[start:start + 10])
    clone = pickle.loads(pickle.dumps(scaler)) if how == "pickle" else copy.deepcopy(scaler)
    for part in (scaler, clone):
        for start in range(50, 90, 10):
            part.partial_fit(x[start:start + 10])
    whole = zm.StandardScaler(axis=0).fit(x)
    for part in (scaler, clone):
        assert part.n_samples_seen_ == 90
        np.testing.assert_array_equal(part.mean_, whole.mean_)
        np.testing.assert_array_equal(part.var_, whole.var_)


@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
@given(shape=st.sampled_from([(1, 224, 224, 3), (32, 32, 32, 3), (5, 7, 4), (999, 1),
                              (3, 65, 33), (1, 1)]),
       leading=st.integers(1, 3), wide=st.booleans(), data=st.data())
def test_one_call_moments_equal_running_sums(dtype, threads, shape, leading, wide, data):
    """The cpp backend's one-call ``exact_moments`` (zm.moments per channel) gives the same
    bits as RunningSums, with values from the whole range of the dtype, over the lanes of
    small and of large batches (a pickled copy keeps its lanes)."""
    core = pytest.importorskip("zmfast._core")
    info = np.iinfo(dtype)
    seed = data.draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).integers(info.min, info.max, shape, endpoint=True,
                                             dtype=dtype)
    leading = min(leading, x.ndim)
    features = math.prod(shape[leading:])
    lanes = _stats.RunningSums.lanes_for(features, _stats.WIDE_SUMS_BYTES if wide else 0)
    sums = _stats.RunningSums(x.dtype, x.ndim, shape[leading:], stream=False, lanes=lanes)
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        with zm.use_backend("cpp"):
            sums.add(x)
            mean, m2 = core.exact_moments(x, features, lanes)
            got = zm.moments(x, axis=tuple(range(leading)))
    finally:
        zm.set_num_threads(before)
    expected = sums.moments()
    copy = pickle.loads(pickle.dumps(sums))
    assert copy.lanes == lanes
    np.testing.assert_array_equal(copy.moments().m2, expected.m2)
    np.testing.assert_array_equal(mean.reshape(expected.mean.shape), expected.mean)
    np.testing.assert_array_equal(m2.reshape(expected.m2.shape), expected.m2)
    if features <= 32:  # zm.moments takes this path for a few statistics
        np.testing.assert_array_equal(got.mean, expected.mean)
        np.testing.assert_array_equal(got.m2, expected.m2)


def large_odd_squares(dtype, shape, seed):
    """Values whose column sums of squares pass 2**24 (float32's exact integers) within 256
    rows with odd, varied terms, so that a missed or misplaced flush of the float32 squares
    shows: near the maximum in even lanes, the minimum in every fourth, random elsewhere."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    x = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    x[..., ::2] = rng.integers(info.max - 40, info.max, x[..., ::2].shape, dtype=dtype,
                               endpoint=True)
    x[..., 1::4] = info.min
    return x


@pytest.mark.parametrize("dtype,shape", [(np.uint8, (300, 100, 91)), (np.int8, (1100, 8200)),
                                         (np.uint16, (40, 9000)), (np.uint8, (261, 33000))],
                         ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_numba_column_statistics_are_exact(dtype, shape, threads):
    """numba's column reductions: the squares of 8-bit values in float32 (flushed every 256
    rows, exact), the means alone of 8-bit values in 16-bit lanes (256 rows), each thread on
    its own lanes when there are many, in passes of LANE_BLOCK lanes; extremes of the dtype."""
    pytest.importorskip("numba")
    x = large_odd_squares(dtype, shape, threads)
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        with zm.use_backend("numba"):
            got = zm.moments(x, axis=0)
            means_alone = zm.mean(x, axis=0)  # 8-bit sums in 16-bit lanes, no squares
    finally:
        zm.set_num_threads(before)
    mean, var = exact_stats(x, (0,))
    assert_ulps(got.mean, mean, 2, "mean")
    assert_ulps(got.var(), var, 4, "var")
    assert_ulps(means_alone, mean, 2, "mean alone")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16])
@pytest.mark.parametrize("rows,lanes", [(403, 3072), (1100, 960), (60, 3072), (27, 40000)])
@pytest.mark.parametrize("threads", [1, 2])
def test_numba_add_sums_are_exact(dtype, rows, lanes, threads):
    """numba's add_sums, eight rows a pass with the rest one at a time, split by rows (a
    large batch of short rows) or by lanes (small batches, wide rows): the exact integer
    sums of values and squares, across the float32 squares' 256-row flushes."""
    pytest.importorskip("numba")
    nb = _config._load("numba")  # registered, so that zm.set_num_threads reaches it
    x = large_odd_squares(dtype, (rows, lanes), rows + threads)
    s1 = np.full(lanes, 5, dtype=np.int64)  # added into, not overwritten
    s2 = np.full(lanes, 7, dtype=np.int64)
    before = zm.get_num_threads()
    zm.set_num_threads(threads)
    try:
        assert nb._num_threads == threads
        nb.add_sums(x.reshape(-1), rows, lanes, s1, s2)
    finally:
        zm.set_num_threads(before)
    wide = x.astype(np.int64)
    np.testing.assert_array_equal(s1, 5 + wide.sum(axis=0))
    np.testing.assert_array_equal(s2, 7 + (wide * wide).sum(axis=0))


def test_numba_kernels_take_no_class_arguments():
    """Every jitted numba kernel that Python calls (statistics of each shape, add_sums) is
    compiled for arrays and scalars only: Numba's dispatcher types a class argument, such as
    an accumulator's np.uint32, in Python, about 10 us a call (as much as the kernel of a
    64-image partial_fit batch)."""
    numba = pytest.importorskip("numba")
    nb = _config._load("numba")
    x = large_odd_squares(np.uint8, (64, 8, 8, 3), 5)
    with zm.use_backend("numba"):
        for data in (x, x.astype(np.float32)):
            for axis in (0, (0, 1, 2), (1, 2, 3), None):
                zm.moments(data, axis=axis)
        zm.StandardScaler(axis=0).partial_fit(x).partial_fit(x)
    # The kernels that Python calls (the inner ones may take classes: jitted callers type
    # them at compile time).
    entries = (nb._column_outputs, nb._column_lanes, nb._column_rows, nb._row_outputs,
               nb._row_split, nb._add_sums_by_lanes, nb._add_sums_by_rows)
    called = [f for f in entries if f.signatures]
    assert len(called) >= 3
    for kernel in called:
        for signature in kernel.signatures:
            classes = [t for t in signature if isinstance(t, numba.types.NumberClass)]
            assert not classes, f"{kernel.__name__}{signature} takes a class: {classes}"


def test_nearest_quotient_is_floor_division():
    """RunningSums.moments' NumPy path finds q = (2 s1 + n) // (2 n) from a float64 estimate
    and the exact remainder: equal to the floor division across the int64 range it meets."""
    from zmfast._stats import _nearest_quotient
    rng = np.random.default_rng(21)
    for high in (10**3, 10**9, 2**40, 2**55, 2**61):
        s1 = rng.integers(-min(high, 2**60), high, 20_000, dtype=np.int64)
        s1[:4] = [0, 1, high - 1, -1]
        for n in (1, 2, 3, 7, 255, 10**6, 2**31 - 1, 3 * 10**10, 2**50):
            if 2 * int(np.abs(s1).max()) + n >= 2**63:
                continue
            np.testing.assert_array_equal(_nearest_quotient(s1, n), (2 * s1 + n) // (2 * n))


def _moments_from_sums_of(backend):
    if backend == "cpp":
        return pytest.importorskip("zmfast._core").moments_from_sums
    pytest.importorskip(backend)
    return _config._load(backend).moments_from_sums


def _numpy_fold(n, s1, s2, features):
    """RunningSums.moments' own NumPy steps on these totals."""
    sums = _stats.RunningSums(np.int16, 2, (features,), stream=False, lanes=len(s1))
    sums.s1[...], sums.s2[...] = s1, s2
    sums.counter[0] = n
    with zm.use_backend("numpy"):
        return sums.moments()


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_moments_from_sums_match_numpy_and_check_arguments(backend):
    """The compiled moments of exact sums give the NumPy steps' bits, lanes folded to
    features: sums of every integer dtype (negative ones floor-divide), and totals near the
    limits (n * 65535**2 close to 2**63, where q * (S1 + r) is as large as S2), on one
    thread and, from 131,072 statistics, on two."""
    from_sums = _moments_from_sums_of(backend)
    rng = np.random.default_rng(22)
    cases = []
    for dtype in INTEGER_DTYPES:
        info = np.iinfo(dtype)
        for shape, axes in (((333, 4, 6), (0,)), ((50, 7, 3), (0, 1)), ((9, 1), (0,)),
                            ((3, 140_001), (0,))):  # statistics enough for threads
            x = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
            sums = _stats.RunningSums.for_batch(x, axes, stream=False)
            sums.add(x)
            cases.append((sums.count, *sums._totals(), sums.features))
    # n values, a fraction of them one below the top: exact int64 totals near 2**63.
    for top, n in ((65535, 2_000_000_000), (-32768, 8_000_000_000), (32767, 8_000_000_000)):
        s1, s2 = [], []
        for below in (0, 1, n // 3, n // 2, n - 1):
            s1.append(top * n - below)
            s2.append(top * top * (n - below) + (top - 1) ** 2 * below)
        assert max(s2) < 2**63
        cases.append((n, np.array(s1), np.array(s2), len(s1)))
    before = zm.get_num_threads()
    zm.set_num_threads(2)
    try:
        for n, s1, s2, features in cases:
            mean, m2 = from_sums(n, s1, s2, features)
            want = _numpy_fold(n, s1, s2, features)
            np.testing.assert_array_equal(mean, want.mean.reshape(-1))
            np.testing.assert_array_equal(m2, want.m2.reshape(-1))
    finally:
        zm.set_num_threads(before)
    n, s1, s2, features = cases[0]
    with pytest.raises(ValueError):
        from_sums(0, s1, s2, features)  # no values
    with pytest.raises(ValueError):
        from_sums(n, s1, s2[:-1], features)  # lengths differ
    with pytest.raises(ValueError):
        from_sums(n, s1, s2, 7)  # not whole periods
