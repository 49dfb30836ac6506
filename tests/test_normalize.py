"""zm.center / zm.standardize against float64 references rounded to the output dtype.

Reference: ``((x.astype(float64) - mean) / std).astype(dtype)`` (then channels-first), so
float32 and float16 results must be within 1 ulp of it (in practice equal or 1 ulp off),
float64 within a few ulp; ``center`` must equal ``(x - mean).astype(dtype)`` exactly.
"""

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from reference import rounded, ulp_distance
from strategies import FAST_DTYPES, LAYOUTS, arrays

import zmfast as zm

X_DTYPES = FAST_DTYPES + tuple(np.dtype(t) for t in (np.int32, np.uint32, np.int64,
                                                     np.float16, ">f8", ">u2"))
OUT_DTYPES = (np.float32, np.float32, np.float64, np.float16)
MAX_ULPS = {np.dtype(np.float16): 1, np.dtype(np.float32): 1, np.dtype(np.float64): 4}
SENTINEL = 77.0


def output_shape(shape, channels_first):
    if channels_first:
        return shape[:-3] + (shape[-1],) + shape[-3:-1]
    return shape


def reference(x, mean, std, dtype, channels_first):
    """float64 (x - mean) / std, channels moved, and its rounding to ``dtype``."""
    with np.errstate(over="ignore"):
        exact = (np.asarray(x).astype(np.float64) - np.asarray(mean, dtype=np.float64)) \
            / np.asarray(std, dtype=np.float64)
    if channels_first:
        exact = np.moveaxis(exact, -1, -3)
    return exact, rounded(exact, dtype)


def assert_within_ulps(got, expected, dtype, max_ulps=None, what=""):
    dtype = np.dtype(dtype)
    max_ulps = MAX_ULPS[dtype] if max_ulps is None else max_ulps
    assert got.dtype == dtype, (got.dtype, dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    nan_got, nan_exp = np.isnan(got), np.isnan(expected)
    assert np.array_equal(nan_got, nan_exp), f"{what}: NaN pattern differs"
    distance = ulp_distance(np.where(nan_got, 0, got).astype(dtype),
                            np.where(nan_exp, 0, expected).astype(dtype))
    if np.any(distance > max_ulps):
        idx = np.unravel_index(int(np.argmax(distance > max_ulps)), distance.shape)
        raise AssertionError(f"{what}: {int(np.sum(distance > max_ulps))} of {distance.size} "
                             f"values more than {max_ulps} ulp off; first at {idx}: got "
                             f"{got[idx]!r}, expected {expected[idx]!r} "
                             f"({int(distance[idx])} ulp)")


@st.composite
def stats_for(draw, x, positive, out_dtype, label):
    """Statistics broadcasting against the trailing axes of x: a scalar, (C,), (H, W, C),
    (1, 1, C), (N, 1, 1, 1), ... as float64/float32/int arrays, lists or Python numbers."""
    k = draw(st.integers(0, x.ndim), label=f"{label} ndim")
    shape = tuple(1 if draw(st.integers(0, 3)) == 0 else n for n in x.shape[x.ndim - k:])
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    finite = x[np.isfinite(x)] if x.dtype.kind == "f" else x
    scale = float(np.max(np.abs(finite.astype(np.float64)))) if finite.size else 1.0
    scale = max(scale, 1.0)
    if positive:
        values = np.exp(rng.uniform(np.log(1e-2), np.log(1e3), shape)) * max(1.0, scale / 1e3)
        if np.dtype(out_dtype) == np.float16:
            values = values + 3 * scale / 6e4  # keeps |result| inside float16's range
    else:
        values = rng.uniform(-scale, scale, shape)
    kind = draw(st.sampled_from(["f8", "f8", "f4", "int", "list", "scalar"]), label=label)
    if kind == "f4":
        values = values.astype(np.float32)
    elif kind == "int":
        values = np.maximum(np.round(values), 1) if positive else np.round(values)
        values = values.astype(np.int64)
    elif kind == "list" and np.size(values):  # (tolist() of an empty array loses its shape)
        values = values.tolist()
    elif kind == "scalar":
        values = float(np.asarray(values).reshape(-1)[0]) if np.size(values) else 1.0
    return values


@st.composite
def normalize_calls(draw, dtypes=X_DTYPES, layouts=LAYOUTS):
    out_dtype = np.dtype(draw(st.sampled_from(OUT_DTYPES), label="dtype"))
    channels_first = draw(st.booleans(), label="channels_first")
    case = draw(arrays(dtypes=dtypes, layouts=layouts, min_dims=3 if channels_first else 0,
                       small=out_dtype == np.float16), label="x")
    x = case.array
    mean = draw(stats_for(x, False, out_dtype, "mean"))
    std = draw(stats_for(x, True, out_dtype, "std"))
    return case, mean, std, out_dtype, channels_first


def make_out(draw, shape, dtype):
    kind = draw(st.sampled_from(["none", "none", "c", "f", "strided", "reversed"]),
                label="out")
    if kind == "none":
        return None, None
    if kind == "c" or not shape:
        out = np.full(shape, SENTINEL, dtype)
        return out, out
    if kind == "f":
        out = np.full(shape, SENTINEL, dtype, order="F")
        return out, out
    holder = np.full(tuple(2 * n + 1 for n in shape), SENTINEL, dtype)
    out = holder[tuple(slice(1, 1 + 2 * n, 2) for n in shape)]
    if kind == "reversed":
        out = out[tuple(slice(None, None, -1) for _ in shape)]
    return out, holder


@pytest.mark.parametrize("function", ["standardize", "center"])
@given(call=normalize_calls(), data=st.data())
def test_matches_reference(backend, function, call, data):
    case, mean, std, dtype, channels_first = call
    x = case.array
    shape = output_shape(x.shape, channels_first)
    out, holder = make_out(data.draw, shape, dtype)
    kwargs = {"dtype": dtype, "channels_first": channels_first}
    if out is not None:
        kwargs["out"] = out
    if function == "center":
        got = zm.center(x, mean, **kwargs)
        exact, expected = reference(x, mean, 1.0, dtype, channels_first)
        max_ulps = 0  # one rounding in float64, one to dtype: exactly NumPy's
    else:
        got = zm.standardize(x, mean, std, **kwargs)
        exact, expected = reference(x, mean, std, dtype, channels_first)
        max_ulps = None
    note(f"x.strides={x.strides} out={None if out is None else (out.shape, out.strides)}")
    if out is not None:
        assert got is out
        if holder is not out:
            # Nothing written around out's elements in its holder.
            mask = np.ones(holder.shape, bool)
            mask[tuple(slice(1, 1 + 2 * n, 2) for n in shape)] = False
            assert np.all(holder[mask] == SENTINEL)
    assert isinstance(got, np.ndarray)
    assert_within_ulps(got, expected, dtype, max_ulps, what=f"zm.{function}")


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("x_dtype", FAST_DTYPES)
def test_every_input_value_is_within_one_ulp(backend, x_dtype, out_dtype):
    """Every uint8/int8 value (a sample of the wider types) against many (mean, std)."""
    rng = np.random.default_rng(42)
    x_dtype = np.dtype(x_dtype)
    if x_dtype.itemsize == 1:
        info = np.iinfo(x_dtype)
        x = np.arange(info.min, info.max + 1, dtype=x_dtype)
    elif x_dtype.kind in "iu":
        info = np.iinfo(x_dtype)
        x = rng.integers(info.min, info.max, 4096, endpoint=True, dtype=x_dtype)
    else:
        x = (rng.standard_normal(4096) * 1000).astype(x_dtype)
    x = np.tile(x, (3, 1)).T.copy()  # (n, 3): per-channel statistics
    scale = float(np.max(np.abs(x.astype(np.float64))))
    for _ in range(8):
        mean = rng.uniform(-scale, scale, 3)
        std = np.exp(rng.uniform(-3, 5, 3))
        if np.dtype(out_dtype) == np.float16:
            std = std + 2 * scale / 6e4
        got = zm.standardize(x, mean, std, dtype=out_dtype)
        _, expected = reference(x, mean, std, out_dtype, False)
        assert_within_ulps(got, expected, out_dtype)
        if np.dtype(out_dtype) != np.float64:
            # Equal or 1 ulp off: nearly all values are exactly the rounded reference.
            equal = np.mean(got == expected)
            assert equal > 0.9, f"only {equal:.1%} correctly rounded"


def test_float32_standardize_is_correctly_rounded_mostly(backend):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    for channels_first in (False, True):
        got = zm.standardize(x, mean, std, channels_first=channels_first)
        _, expected = reference(x, mean, std, np.float32, channels_first)
        assert got.dtype == np.float32
        assert_within_ulps(got, expected, np.float32)
        # uint8 with per-channel statistics takes the float32 channel form on AVX-512
        # (channels.hpp): 98.4% equal here, the float64 kernels over 99%.
        assert np.mean(got == expected) > 0.98


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stats", ["scalar", "C", "11C", "HWC", "N111"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_channels_first(backend, channels, stats, dtype):
    """NHWC in, NCHW out, per-channel / per-pixel / per-image statistics, and a strided x."""
    rng = np.random.default_rng(channels)
    n, h, w = 3, 9, 13
    base = rng.integers(0, 256, (n, h, 2 * w, channels)).astype(dtype)
    shapes = {"scalar": (), "C": (channels,), "11C": (1, 1, channels),
              "HWC": (h, w, channels), "N111": (n, 1, 1, 1)}
    mean = rng.uniform(0, 255, shapes[stats])
    std = rng.uniform(1, 80, shapes[stats])
    for x in (base[:, :, :w], base[:, :, ::2], base[::-1, :, w:][:, ::-1]):
        got = zm.standardize(x, mean, std, channels_first=True)
        assert got.shape == (n, channels, h, w)
        _, expected = reference(x, mean, std, np.float32, True)
        assert_within_ulps(got, expected, np.float32, what=f"{stats} strides={x.strides}")
        np.testing.assert_array_equal(
            zm.center(x, mean, channels_first=True),
            rounded(np.moveaxis(x.astype(np.float64) - mean, -1, -3), np.float32))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_large_batches_use_every_path(backend, dtype):
    """Sizes above the kernels' per-thread minimum, with tails that do not divide evenly."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 65536, (7, 67, 71, 3), dtype=np.uint16)
    mean = rng.uniform(0, 65535, 3)
    std = rng.uniform(4000, 20000, 3)
    for channels_first in (False, True):
        for view in (x, x[:, 1:, :-1], x[::2]):
            got = zm.standardize(view, mean, std, dtype=dtype, channels_first=channels_first)
            _, expected = reference(view, mean, std, dtype, channels_first)
            assert_within_ulps(got, expected, dtype)


def test_float64_precision(backend):
    rng = np.random.default_rng(9)
    x = 1e9 + rng.uniform(0, 1, (1000, 7))
    mean = 1e9 + rng.uniform(0, 1, 7)
    std = rng.uniform(1e-3, 1, 7)
    got = zm.standardize(x, mean, std, dtype=np.float64)
    exact, _ = reference(x, mean, std, np.float64, False)
    np.testing.assert_allclose(got, exact, rtol=1e-15, atol=1e-300)
    assert_within_ulps(got, exact, np.float64)


# --- out overlapping x -------------------------------------------------------------------

def test_out_is_x_in_place(backend):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 5, 6, 3)).astype(np.float32)
    mean, std = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    _, expected = reference(x.copy(), mean, std, np.float32, False)
    got = zm.standardize(x, mean, std, out=x)
    assert got is x
    assert_within_ulps(x, expected, np.float32)


def test_out_overlaps_x_shifted(backend):
    rng = np.random.default_rng(1)
    buf = rng.uniform(-100, 100, 1001)
    x, out = buf[1:], buf[:-1]
    _, expected = reference(x.copy(), 3.0, 7.0, np.float64, False)
    got = zm.standardize(x, 3.0, 7.0, out=out, dtype=np.float64)
    assert got is out
    assert_within_ulps(out, expected, np.float64)
    # The other way round.
    buf = rng.uniform(-100, 100, 1001)
    x, out = buf[:-1], buf[1:]
    _, expected = reference(x.copy(), 3.0, 7.0, np.float64, False)
    zm.standardize(x, 3.0, 7.0, out=out, dtype=np.float64)
    assert_within_ulps(out, expected, np.float64)


def test_out_is_x_reversed(backend):
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    out = x[::-1, ::-1]
    zm.center(x, 1.5, out=out)
    _, expected = reference(np.arange(20, dtype=np.float32).reshape(4, 5), 1.5, 1.0,
                            np.float32, False)
    assert_within_ulps(out, expected, np.float32, 0)


def test_channels_first_out_shares_x_memory(backend):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    mean, std = [10.0, 20.0, 30.0], [2.0, 3.0, 4.0]
    _, expected = reference(x.copy(), mean, std, np.float32, True)
    out = x.reshape(2, 3, 4, 4)
    assert np.shares_memory(out, x)
    got = zm.standardize(x, mean, std, out=out, channels_first=True)
    assert got is out
    assert_within_ulps(out, expected, np.float32)


def test_out_overlaps_integer_x_bytes(backend):
    """x (uint8) and out (float32) alias the same bytes."""
    rng = np.random.default_rng(3)
    buf = np.zeros(4 * 300, np.uint8)
    buf[:300] = rng.integers(0, 256, 300)
    x = buf[:300].reshape(100, 3)
    out = buf.view(np.float32).reshape(100, 3)
    _, expected = reference(x.copy(), [1.0, 2.0, 3.0], [3.0, 2.0, 1.0], np.float32, False)
    zm.standardize(x, [1.0, 2.0, 3.0], [3.0, 2.0, 1.0], out=out)
    assert_within_ulps(out, expected, np.float32)


# --- special values ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonfinite_x_propagates(backend, dtype):
    x = np.array([[0.0, np.nan, np.inf], [-np.inf, 1.0, 2.0]] * 50, dtype=dtype)
    for out_dtype in (np.float16, np.float32, np.float64):
        got = zm.standardize(x, [1.0, 2.0, 3.0], [2.0, 4.0, 8.0], dtype=out_dtype)
        _, expected = reference(x, [1.0, 2.0, 3.0], [2.0, 4.0, 8.0], out_dtype, False)
        assert np.array_equal(np.isnan(got), np.isnan(expected))
        assert np.array_equal(got[np.isinf(expected)], expected[np.isinf(expected)])
        finite = np.isfinite(expected)
        assert_within_ulps(got[finite], expected[finite], out_dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_empty_and_zero_dimensional(backend, dtype):
    for shape in [(0,), (0, 3), (2, 0, 3), (4, 0, 0, 3)]:
        x = np.zeros(shape, np.uint8)
        got = zm.standardize(x, 1.0, 2.0, dtype=dtype)
        assert got.shape == shape and got.dtype == np.dtype(dtype)
    got = zm.standardize(np.zeros((2, 0, 5, 3), np.uint8), [1, 2, 3], 2.0, dtype=dtype,
                         channels_first=True)
    assert got.shape == (2, 3, 0, 5)
    x = np.array(200, np.uint8)
    got = zm.standardize(x, 100.0, 50.0, dtype=dtype)
    assert got.shape == () and got.dtype == np.dtype(dtype) and float(got) == 2.0
    got = zm.center(np.float64(2.5), 0.5, dtype=dtype)
    assert got.shape == () and float(got) == 2.0


def test_subnormal_and_tiny_results(backend):
    x = np.array([1.0, 1.0 + 2**-40, 1.0 - 2**-30, 3.0], dtype=np.float64)
    for dtype in (np.float16, np.float32, np.float64):
        got = zm.standardize(x, 1.0, 1e3, dtype=dtype)
        _, expected = reference(x, 1.0, 1e3, dtype, False)
        assert_within_ulps(got, expected, dtype)


def test_docstring_examples(backend):
    x = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    y = zm.standardize(x, [124, 116, 104], [58, 57, 57], channels_first=True)
    assert y.shape == (2, 3, 4, 4) and y.dtype == np.float32
    np.testing.assert_array_equal(y[:, 0], np.float32(-124 / 58))
    x = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    np.testing.assert_array_equal(zm.center(x, zm.mean(x, axis=0)),
                                  np.array([[-1, -1], [1, 1]], np.float32))


def test_repeated_calls_follow_changed_statistics_and_outputs(backend):
    """Small statistics' checks and plans are cached on their values: a caller who edits
    its mean in place, or passes out arrays at other cache-line offsets, gets fresh results,
    and bad statistics still raise after good ones of the same shape."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 256, (6, 40, 33, 3), dtype=np.uint8)
    mean, std = np.array([100.0, 120.0, 130.0]), np.array([50.0, 60.0, 70.0])
    raw = np.empty(x.size + 16, np.float32)
    for step in range(3):
        mean[step] += 7.5  # edited in place between calls
        for skip in (0, 1, 5):
            out = raw[skip:skip + x.size].reshape(x.shape)
            zm.standardize(x, mean, std, out=out)
            assert_within_ulps(out, ((x - mean) / std).astype(np.float32), np.float32,
                               what=f"step {step} skip {skip}")
    std[1] = 0.0
    with pytest.raises(ValueError, match="std must be finite and > 0"):
        zm.standardize(x, mean, std)
