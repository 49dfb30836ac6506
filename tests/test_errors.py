"""Errors: the same exception types as NumPy for mean/var/std, and for center/standardize
the documented errors, all raised before anything is written to ``out``."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import capture

import zmfast as zm

# --- mean / var / std: NumPy's exceptions ------------------------------------------------

BAD_AXES = [2, -3, 5, (0, 2), (0, 0), (1, -1), (-3,), 1.5, "a", [0], (0.0,), True, False,
            np.True_, (0, True), (False,), 2**31, -2**31 - 1, 2**63, (0, 2**64)]


@pytest.mark.parametrize("name", ["mean", "var", "std"])
@pytest.mark.parametrize("axis", BAD_AXES, ids=repr)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.int32])
def test_bad_axis_raises_like_numpy(backend, name, axis, dtype):
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    _, np_exc, _ = capture(getattr(np, name), x, axis=axis)
    assert np_exc is not None
    with pytest.raises(type(np_exc)):
        getattr(zm, name)(x, axis=axis)


@pytest.mark.parametrize("name", ["mean", "var", "std"])
@pytest.mark.parametrize("shape", [(), (4,), (2, 3)])
@pytest.mark.parametrize("axis,keepdims", [(True, False), (np.True_, False), (False, False),
                                           ((0, True), False), (-1, np.True_), (2, None)],
                         ids=repr)
def test_checks_in_numpys_order(backend, name, shape, axis, keepdims):
    """A Python bool axis is range-checked as an int (AxisError), then a TypeError; a NumPy
    bool is a TypeError; the axis is checked before keepdims."""
    x = np.zeros(shape, np.uint8)
    _, np_exc, _ = capture(getattr(np, name), x, axis=axis, keepdims=keepdims)
    assert np_exc is not None
    _, exc, _ = capture(getattr(zm, name), x, axis=axis, keepdims=keepdims)
    assert isinstance(exc, type(np_exc)), exc


@pytest.mark.parametrize("name", ["mean", "var", "std"])
def test_axis_error_is_numpys(backend, name):
    for shape, axis in [((2, 3), 2), ((2, 3), -3), ((), 0), ((4,), (0, 1))]:
        with pytest.raises(np.exceptions.AxisError):
            getattr(zm, name)(np.zeros(shape, np.uint8), axis=axis)
        # AxisError is both a ValueError and an IndexError, as NumPy's.
        with pytest.raises(ValueError):
            getattr(zm, name)(np.zeros(shape, np.float64), axis=axis)
        with pytest.raises(IndexError):
            getattr(zm, name)(np.zeros(shape, np.int16), axis=axis)


@pytest.mark.parametrize("name", ["mean", "var", "std"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float64, np.float16])
def test_bad_out_raises_like_numpy(backend, name, dtype):
    x = np.arange(12, dtype=dtype).reshape(3, 4)
    for axis, out in [(0, np.zeros(3)), (0, np.zeros((1, 4))), (None, np.zeros(2)),
                      (1, [0.0, 0.0, 0.0]), (0, np.zeros(4)[None])]:
        kwargs = {"axis": axis, "out": out}
        _, np_exc, _ = capture(getattr(np, name), x, **kwargs)
        assert np_exc is not None, (axis, out)
        with pytest.raises(type(np_exc)):
            getattr(zm, name)(x, **kwargs)
    read_only = np.zeros(4)
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        np.mean(x, axis=0, out=read_only)
    with pytest.raises(ValueError):
        getattr(zm, name)(x, axis=0, out=read_only)


@pytest.mark.parametrize("name", ["mean", "var", "std"])
def test_non_numeric_inputs_raise_like_numpy(backend, name):
    for value in (np.array(["a", "b"]), np.array([1, "a"], dtype=object), "abc",
                  np.array([b"x"])):
        _, np_exc, _ = capture(getattr(np, name), value)
        if np_exc is None:
            continue
        with pytest.raises(type(np_exc)):
            getattr(zm, name)(value)


@pytest.mark.parametrize("name", ["mean", "var", "std"])
def test_signatures_are_numpys(name):
    """The same parameters, in the same order and of the same kinds (keyword-only where,
    mean and correction), as NumPy's function."""
    import inspect
    ours = inspect.signature(getattr(zm, name)).parameters
    theirs = inspect.signature(getattr(np, name)).parameters
    assert [(p.name, p.kind) for p in ours.values()] == [
        (p.name, p.kind) for p in theirs.values()]


@pytest.mark.parametrize("name", ["mean", "var", "std"])
@pytest.mark.parametrize("keepdims", [None, "yes", np.True_, np.array(True), [1]], ids=repr)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.int64])
def test_bad_keepdims_raise_like_numpy(backend, name, keepdims, dtype):
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    _, np_exc, _ = capture(getattr(np, name), x, axis=0, keepdims=keepdims)
    assert np_exc is not None
    with pytest.raises(type(np_exc)):
        getattr(zm, name)(x, axis=0, keepdims=keepdims)


@pytest.mark.parametrize("name", ["mean", "var", "std"])
@pytest.mark.parametrize("dtype", [">f8", ">f4", np.dtype(">f8")], ids=str)
def test_non_native_dtype_argument_raises_like_numpy(backend, name, dtype):
    x = np.arange(6, dtype=np.uint8).reshape(2, 3)
    _, np_exc, _ = capture(getattr(np, name), x, axis=0, dtype=dtype)
    assert np_exc is not None
    with pytest.raises(type(np_exc)):
        getattr(zm, name)(x, axis=0, dtype=dtype)


@pytest.mark.parametrize("out_dtype", [np.int64, np.uint8, np.bool_])
def test_std_into_integer_out_raises_like_numpy(backend, out_dtype):
    """NumPy's std casts its square root same_kind (an error for an integer out) and its
    mean and var unsafely (the value truncated): zmfast does the same, writing nothing."""
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    _, np_exc, _ = capture(np.std, x, axis=0, out=np.zeros(4, out_dtype))
    assert np_exc is not None
    out = np.full(4, 7, out_dtype)
    with pytest.raises(type(np_exc)):
        zm.std(x, axis=0, out=out)
    assert np.all(out == out_dtype(7))
    for name in ("mean", "var"):
        want = getattr(np, name)(x, axis=0, out=np.zeros(4, out_dtype))
        np.testing.assert_array_equal(getattr(zm, name)(x, axis=0, out=np.zeros(4, out_dtype)),
                                      want)


@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("ddof", [2**63, -2**70, "1", None], ids=repr)
def test_bad_ddof_raises_like_numpy(backend, name, ddof):
    x = np.arange(6, dtype=np.uint8).reshape(2, 3)
    _, np_exc, _ = capture(getattr(np, name), x, axis=0, ddof=ddof)
    assert np_exc is not None
    _, exc, _ = capture(getattr(zm, name), x, axis=0, ddof=ddof)  # NumPy warns, then raises
    assert isinstance(exc, type(np_exc)), exc


def test_ddof_and_correction_together_raise_like_numpy(backend):
    x = np.arange(6, dtype=np.uint8)
    for name in ("var", "std"):
        _, np_exc, _ = capture(getattr(np, name), x, ddof=1, correction=1)
        assert np_exc is not None
        with pytest.raises(type(np_exc)):
            getattr(zm, name)(x, ddof=1, correction=1)


# --- center / standardize: documented errors, out untouched ------------------------------

SENTINEL = 3.25


def _x():
    return np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)


def _out(shape=(2, 4, 5, 3), dtype=np.float32):
    return np.full(shape, SENTINEL, dtype)


def _call(function, x, mean, std, **kwargs):
    if function == "center":
        return zm.center(x, mean, **kwargs)
    return zm.standardize(x, mean, std, **kwargs)


def _assert_untouched(out, x_before, x):
    assert np.all(out == SENTINEL), "out was written before the error"
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("function", ["center", "standardize"])
@pytest.mark.parametrize("mean_shape", [(4,), (2,), (4, 1), (4, 5, 1, 3), (3, 1, 1, 1, 1),
                                        (1, 2, 4, 5, 3), (5, 1, 3)])
def test_mean_not_broadcastable(backend, function, mean_shape):
    x, out = _x(), _out()
    mean = np.ones(mean_shape)
    with pytest.raises(ValueError) as info:
        _call(function, x, mean, 1.0, out=out)
    message = str(info.value)
    assert str(mean_shape) in message and str(x.shape) in message, message
    _assert_untouched(out, _x(), x)


@pytest.mark.parametrize("std_shape", [(4,), (5, 2), (1, 1, 1, 2, 5, 3)])
def test_std_not_broadcastable(backend, std_shape):
    x, out = _x(), _out()
    with pytest.raises(ValueError) as info:
        zm.standardize(x, 0.0, np.ones(std_shape), out=out)
    assert str(std_shape) in str(info.value)
    _assert_untouched(out, _x(), x)


def test_mean_and_std_not_broadcastable_together(backend):
    x, out = _x(), _out()
    with pytest.raises(ValueError) as info:
        zm.standardize(x, np.zeros(3), np.ones((5, 2)), out=out)
    assert "(3,)" in str(info.value) and "(5, 2)" in str(info.value)
    _assert_untouched(out, _x(), x)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf, -np.inf, -0.0, 1e-310, 5e-324])
@pytest.mark.parametrize("where", ["scalar", "one channel", "one pixel"])
def test_bad_std(backend, bad, where):
    """Zero, negative and non-finite std, and subnormal std (whose reciprocal overflows),
    are rejected before anything is written."""
    x, out = _x(), _out()
    if where == "scalar":
        std = bad
    elif where == "one channel":
        std = np.array([1.0, bad, 2.0])
    else:
        std = np.ones((4, 5, 3))
        std[3, 4, 2] = bad
    with pytest.raises(ValueError, match="std"):
        zm.standardize(x, [1.0, 2.0, 3.0], std, out=out)
    _assert_untouched(out, _x(), x)
    with pytest.raises(ValueError, match="std"):
        zm.standardize(x, 0.0, std, channels_first=True)


@pytest.mark.parametrize("function", ["center", "standardize"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_bad_mean(backend, function, bad):
    x, out = _x(), _out()
    for mean in (bad, np.array([1.0, 2.0, bad]), np.full((4, 5, 3), bad)):
        with pytest.raises(ValueError):
            _call(function, x, mean, 1.0, out=out)
        _assert_untouched(out, _x(), x)


@pytest.mark.parametrize("function", ["center", "standardize"])
@pytest.mark.parametrize("out_dtype", [np.float64, np.float16, np.int32, np.uint8,
                                       np.complex64])
def test_out_wrong_dtype(backend, function, out_dtype):
    x = _x()
    out = np.full(x.shape, SENTINEL, out_dtype) if out_dtype != np.uint8 else \
        np.full(x.shape, 3, out_dtype)
    before = out.copy()
    with pytest.raises(TypeError):
        _call(function, x, 1.0, 2.0, out=out)  # dtype float32 (default) expected
    np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize("function", ["center", "standardize"])
@pytest.mark.parametrize("shape", [(2, 4, 5), (2, 4, 5, 3, 1), (2, 3, 4, 5), (1, 2, 4, 5, 3),
                                   (2, 4, 5, 4), ()])
def test_out_wrong_shape(backend, function, shape):
    x, out = _x(), _out(shape)
    with pytest.raises(ValueError):
        _call(function, x, 1.0, 2.0, out=out)
    _assert_untouched(out, _x(), x)


@pytest.mark.parametrize("function", ["center", "standardize"])
def test_out_wrong_shape_channels_first(backend, function):
    x, out = _x(), _out()  # NHWC given where NCHW is expected
    with pytest.raises(ValueError):
        _call(function, x, 1.0, 2.0, out=out, channels_first=True)
    _assert_untouched(out, _x(), x)


@pytest.mark.parametrize("function", ["center", "standardize"])
def test_out_read_only(backend, function):
    x, out = _x(), _out()
    out.flags.writeable = False
    with pytest.raises(ValueError):
        _call(function, x, 1.0, 2.0, out=out)
    _assert_untouched(out, _x(), x)
    view = np.broadcast_to(np.float32(SENTINEL), x.shape)
    with pytest.raises(ValueError):
        _call(function, x, 1.0, 2.0, out=view)


@pytest.mark.parametrize("function", ["center", "standardize"])
@pytest.mark.parametrize("x", [np.zeros((2, 3), np.complex64), np.array(["a", "b"]),
                               np.array([1.0, None], dtype=object), np.zeros(3, bool),
                               np.zeros((2, 2, 2, 3), np.complex128), "abc",
                               np.array([1.0, 2.0], dtype=object)],
                         ids=["complex64", "str", "object", "bool", "complex128", "pystr",
                              "object-floats"])
def test_bad_x_dtype(backend, function, x):
    out = np.full(np.shape(x), SENTINEL, np.float32)
    with pytest.raises(TypeError):
        _call(function, x, 0.0, 1.0, out=out)
    assert np.all(out == SENTINEL)


@pytest.mark.parametrize("function", ["center", "standardize"])
@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.complex64, np.bool_, object, "U3",
                                   np.int64, np.clongdouble])
def test_bad_output_dtype(backend, function, dtype):
    with pytest.raises(TypeError):
        _call(function, _x(), 1.0, 2.0, dtype=dtype)


@pytest.mark.parametrize("function", ["center", "standardize"])
@pytest.mark.parametrize("shape", [(), (3,), (4, 3)])
def test_channels_first_needs_three_dims(backend, function, shape):
    x = np.ones(shape, np.uint8)
    out = np.full(shape, SENTINEL, np.float32)
    with pytest.raises(ValueError):
        _call(function, x, 1.0, 2.0, channels_first=True, out=out)
    assert np.all(out == SENTINEL)


@pytest.mark.parametrize("function", ["center", "standardize"])
@given(data=st.data())
def test_any_invalid_argument_leaves_out_untouched(backend, function, data):
    """One invalid argument among valid ones (random choice) never writes to out."""
    x = _x()
    out = _out()
    kwargs = {"out": out}
    mean, std = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    problem = data.draw(st.sampled_from(
        ["mean shape", "mean nan", "std zero", "std neg", "out dtype", "out shape",
         "x complex", "dtype int", "cf ndim"]))
    expected = ValueError
    if problem == "mean shape":
        mean = np.ones(data.draw(st.sampled_from([(2,), (5, 3, 1), (7, 4, 5, 3)])))
    elif problem == "mean nan":
        mean = mean.copy()
        mean[data.draw(st.integers(0, 2))] = np.nan
    elif problem == "std zero" and function == "standardize":
        std = np.array([4.0, 0.0, 6.0])
    elif problem == "std neg" and function == "standardize":
        std = np.array([4.0, 5.0, -1e-300])
    elif problem == "out dtype":
        out = np.full(x.shape, SENTINEL, np.float64)
        kwargs["out"] = out
        expected = TypeError
    elif problem == "out shape":
        out = np.full(x.shape[:-1] + (4,), SENTINEL, np.float32)
        kwargs["out"] = out
    elif problem == "x complex":
        x = x.astype(np.complex64)
        expected = TypeError
    elif problem == "dtype int":
        kwargs["dtype"] = np.int16
        expected = TypeError
    elif problem == "cf ndim":
        x = x[0, 0]
        kwargs["channels_first"] = True
        out = np.full(x.shape, SENTINEL, np.float32)
        kwargs["out"] = out
    else:
        return
    with pytest.raises(expected):
        _call(function, x, mean, std, **kwargs)
    assert np.all(out == SENTINEL)


def _masked_calls():
    x = np.ma.masked_array(_x(), mask=_x() % 7 == 0)
    y = np.ma.masked_array(np.zeros((2, 4, 5, 3), np.float32), mask=_x() % 7 == 0)
    batch = np.ma.masked_array(np.ones((4, 3)), mask=[[0, 1, 0]] * 4)
    return {
        "moments": lambda: zm.moments(x, axis=0),
        "standardize": lambda: zm.standardize(x, 1.0, 2.0),
        "center": lambda: zm.center(x, 1.0),
        "destandardize": lambda: zm.destandardize(y, 1.0, 2.0),
        "StandardScaler.fit": lambda: zm.StandardScaler().fit(batch),
        "StandardScaler.partial_fit": lambda: zm.StandardScaler().partial_fit(batch),
        "StandardScaler.transform": lambda: zm.StandardScaler().fit(batch.data).transform(batch),
        "MinMaxScaler.fit": lambda: zm.MinMaxScaler().fit(batch),
        "minmax_scale": lambda: zm.minmax_scale(batch),
        "normalize": lambda: zm.normalize(batch),
        "dataset_stats": lambda: zm.dataset_stats(x),
    }


@pytest.mark.parametrize("name", list(_masked_calls()))
def test_masked_arrays_are_rejected(backend, name):
    """The kernels would drop a mask without a word: a TypeError names it instead (zm.mean,
    var and std hand masked arrays to NumPy, which honours the mask)."""
    with pytest.raises(TypeError, match="masked array"):
        _masked_calls()[name]()


def test_masked_arrays_keep_numpys_statistics(backend):
    x = np.ma.masked_array([1.0, 2.0, 100.0], mask=[0, 0, 1])
    assert zm.mean(x) == np.ma.mean(x) == 1.5
    assert zm.var(x) == np.ma.var(x) == 0.25
