"""zm.mean / zm.var / zm.std / zm.moments against NumPy (dtype, shape, errors, warnings) and
against exact references (values).

Fast-path calls (uint8, int8, uint16, int16, float32, float64; native, aligned; no integer
``dtype=``) are compared with an exact reference rounded to NumPy's result dtype. Everything
else must be NumPy's own answer, bit for bit, warnings included.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st
from reference import Reference, assert_close_to_reference, capture, rounded, warning_kinds
from strategies import (
    ALL_DTYPES,
    DTYPE_ARGS,
    FAST_DTYPES,
    LAYOUTS,
    arrays,
    axes,
    is_fast,
    normalize_axes,
)

import zmfast as zm

FUNCTIONS = ("mean", "var", "std")
SENTINEL = -12345.0


def keepdims_shape(shape, axes_):
    return tuple(1 if ax in axes_ else n for ax, n in enumerate(shape))


def expected_values(name, ref, ddof):
    if name == "mean":
        return ref.mean, ref.mean_atol()
    var, var_atol = ref.var(ddof), ref.var_atol(ddof)
    if name == "var":
        return var, var_atol
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        atol = np.where(std > 0, var_atol / (2 * std), np.sqrt(var_atol))
    atol = np.minimum(atol, np.sqrt(var_atol))
    return std, atol


def assert_same_as_numpy(got, expected, what=""):
    """Bitwise NumPy equality (NaNs equal), same dtype, same scalar-or-array type."""
    assert isinstance(got, np.ndarray) == isinstance(expected, np.ndarray), \
        (what, type(got), type(expected))
    got_a, exp_a = np.asarray(got), np.asarray(expected)
    assert got_a.dtype == exp_a.dtype, (what, got_a.dtype, exp_a.dtype)
    assert got_a.shape == exp_a.shape, (what, got_a.shape, exp_a.shape)
    np.testing.assert_array_equal(got_a, exp_a, err_msg=what, strict=True)


def _layout(a):
    """The strides of the axes that have more than one element (a length-1 axis's stride is
    arbitrary)."""
    return tuple(s for s, n in zip(a.strides, a.shape) if n > 1)


def check_reduction(name, x, axis, keepdims, dtype, ddof, out_factory=None, ref_x=None):
    """Call zm.<name> and np.<name> the same way and hold zm to NumPy's dtype/shape/errors
    and to the exact reference's values. ``out_factory(shape, dtype)`` makes ``out``."""
    kwargs = {"axis": axis, "dtype": dtype, "keepdims": keepdims}
    if name != "mean":
        kwargs["ddof"] = ddof
    np_function, zm_function = getattr(np, name), getattr(zm, name)
    expected, np_exc, np_warnings = capture(np_function, x, **kwargs)
    if np_exc is not None:
        got, zm_exc, _ = capture(zm_function, x, **kwargs)
        assert isinstance(zm_exc, type(np_exc)), (np_exc, zm_exc, got)
        return
    out = out_np = None
    exp_array = np.asarray(expected)
    if out_factory is not None:
        out, out_np = out_factory(exp_array.shape, exp_array.dtype)
        kwargs_np = dict(kwargs, out=out_np)
        expected, np_exc, np_warnings = capture(np_function, x, **kwargs_np)
        assert np_exc is None, np_exc
        assert expected is out_np
        kwargs["out"] = out
    got, zm_exc, zm_warnings = capture(zm_function, x, **kwargs)
    assert zm_exc is None, f"zm.{name} raised {zm_exc!r} where NumPy returned {expected!r}"
    if out is not None:
        assert got is out, "zm must fill and return out"
    # Same result type, dtype and shape as NumPy.
    assert isinstance(got, np.ndarray) == isinstance(expected, np.ndarray), \
        (type(got), type(expected))
    got_a, exp_a = np.asarray(got), np.asarray(expected)
    assert got_a.dtype == exp_a.dtype, (got_a.dtype, exp_a.dtype)
    assert got_a.shape == exp_a.shape, (got_a.shape, exp_a.shape)

    axes_ = normalize_axes(axis, x.ndim)
    count = math.prod(x.shape[ax] for ax in axes_)
    degenerate = count == 0 or (name != "mean" and count - ddof <= 0)
    fast = is_fast(x) and (dtype is None or np.dtype(dtype).kind == "f")
    note(f"fast={fast} degenerate={degenerate} count={count} axes={axes_}")
    if not fast or degenerate:
        # NumPy's own answer: the same values (bit for bit) and the same warnings.
        assert_same_as_numpy(got, expected, f"zm.{name} vs np.{name}")
        assert warning_kinds(zm_warnings) == warning_kinds(np_warnings), \
            ([str(w.message) for w in zm_warnings], [str(w.message) for w in np_warnings])
        return
    if out is None and got_a.ndim and not any(s == 0 for s in x.strides):
        # NumPy lays its result out as the input's kept axes are (order "K"), and so does
        # zmfast (its kernels merge those axes): F-ordered, transposed and flipped inputs.
        assert _layout(got_a) == _layout(exp_a), (x.strides, got_a.strides, exp_a.strides)
    ref = Reference(x if ref_x is None else ref_x, axes_)
    values, atol = expected_values(name, ref, ddof)
    if np.any(np.abs(values) > np.finfo(got_a.dtype).max):
        # The exact result overflows the result dtype (float16): inf, and NumPy's overflow
        # warning is fine.
        assert all(issubclass(w.category, RuntimeWarning) for w in zm_warnings)
    else:
        assert not zm_warnings, [str(w.message) for w in zm_warnings]
    if keepdims:
        values = values.reshape(keepdims_shape(x.shape, axes_))
        atol = np.reshape(atol, np.shape(atol) if np.ndim(atol) == 0 else values.shape)
    ulps = 2.0 if got_a.dtype == np.float64 else 1.0
    via = dtype if out is not None and dtype is not None and np.dtype(dtype) != out.dtype \
        else None
    assert_close_to_reference(got_a, values, got_a.dtype, atol=atol, ulps=ulps, via=via,
                              what=f"zm.{name}(axis={axis}, dtype={dtype}, ddof={ddof}, "
                                   f"keepdims={keepdims})")


@st.composite
def reduction_calls(draw, dtypes=ALL_DTYPES, layouts=LAYOUTS):
    dtype = draw(st.sampled_from(DTYPE_ARGS), label="dtype")
    case = draw(arrays(dtypes=dtypes, layouts=layouts, small=dtype == np.float16), label="x")
    axis = draw(axes(case.array.ndim), label="axis")
    keepdims = draw(st.booleans(), label="keepdims")
    ddof = draw(st.sampled_from([0, 0, 0, 1, 1, 2, -1, 7]), label="ddof")
    return case, axis, keepdims, dtype, ddof


@pytest.mark.parametrize("name", FUNCTIONS)
@given(call=reduction_calls())
def test_reduction_matches_numpy_and_reference(backend, name, call):
    case, axis, keepdims, dtype, ddof = call
    check_reduction(name, case.array, axis, keepdims, dtype, ddof)


@pytest.mark.parametrize("name", FUNCTIONS)
@given(call=reduction_calls(dtypes=FAST_DTYPES))
def test_fast_dtypes_match_reference(backend, name, call):
    case, axis, keepdims, dtype, ddof = call
    check_reduction(name, case.array, axis, keepdims, dtype, ddof)


def _out_factory(data, strided, small):
    def make(shape, dtype):
        if dtype.kind == "f" and data.draw(st.booleans(), label="other out dtype"):
            choices = [np.float32, np.float64] + ([np.float16] if small else [])
            dtype = np.dtype(data.draw(st.sampled_from(choices), label="out dtype"))
        if strided and len(shape) >= 1:
            holders = [np.full(shape[:-1] + (2 * shape[-1] + 1,), SENTINEL, dtype)
                       for _ in range(2)]
            start = data.draw(st.sampled_from([0, 1]), label="out start")
            outs = [h[..., start::2][..., :shape[-1]] for h in holders]
            if data.draw(st.booleans(), label="reverse out"):
                outs = [o[..., ::-1] for o in outs]
            make.holders = holders
            make.start = start
            return outs[0], outs[1]
        if data.draw(st.booleans(), label="fortran out"):
            return (np.full(shape, SENTINEL, dtype, order="F"),
                    np.full(shape, SENTINEL, dtype, order="F"))
        make.holders = None
        return np.full(shape, SENTINEL, dtype), np.full(shape, SENTINEL, dtype)
    make.holders = None
    return make


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("strided", [False, True], ids=["out", "strided_out"])
@given(data=st.data())
def test_out_is_filled_and_returned(backend, name, strided, data):
    case, axis, keepdims, dtype, ddof = data.draw(reduction_calls(
        dtypes=FAST_DTYPES + (np.dtype(np.int32), np.dtype(np.float16))))
    assume(dtype is None or np.dtype(dtype).kind == "f")
    make = _out_factory(data, strided, small=dtype == np.float16)
    check_reduction(name, case.array, axis, keepdims, dtype, ddof, out_factory=make)
    if make.holders is not None:
        # Elements of the holder between the out view's elements stay untouched.
        holder = make.holders[0]
        other = holder[..., 1 - make.start::2]
        assert np.all(other == SENTINEL), "zm wrote outside out"


@pytest.mark.parametrize("name", FUNCTIONS)
@given(data=st.data())
def test_array_likes(backend, name, data):
    """Lists, nested lists, Python scalars and NumPy scalars work as NumPy's do."""
    kind = data.draw(st.sampled_from(["int", "float", "uint8-scalar", "float32-scalar"]))
    if kind in ("int", "float"):
        elements = (st.integers(-1000, 1000) if kind == "int"
                    else st.floats(-1e3, 1e3, allow_nan=False))
        shape = data.draw(st.sampled_from([(), (3,), (2, 3), (1, 4), (3, 1, 2)]))
        values = np.array(data.draw(st.lists(elements, min_size=math.prod(shape),
                                             max_size=math.prod(shape))), dtype=object)
        value = values.reshape(shape).tolist() if shape else values[0] if values.size else 0
    elif kind == "uint8-scalar":
        value = np.uint8(data.draw(st.integers(0, 255)))
    else:
        value = np.float32(data.draw(st.floats(-1e3, 1e3, width=32)))
    ndim = np.ndim(value)
    axis = data.draw(axes(ndim))
    ddof = data.draw(st.sampled_from([0, 1]))
    kwargs = {"axis": axis} if name == "mean" else {"axis": axis, "ddof": ddof}
    expected, np_exc, np_w = capture(getattr(np, name), value, **kwargs)
    got, zm_exc, zm_w = capture(getattr(zm, name), value, **kwargs)
    assert (np_exc is None) == (zm_exc is None), (np_exc, zm_exc)
    assert warning_kinds(np_w) == warning_kinds(zm_w)
    assert isinstance(got, np.ndarray) == isinstance(expected, np.ndarray)
    got_a, exp_a = np.asarray(got), np.asarray(expected)
    assert got_a.dtype == exp_a.dtype and got_a.shape == exp_a.shape
    array = np.asarray(value)
    axes_ = normalize_axes(axis, array.ndim)
    count = math.prod(array.shape[ax] for ax in axes_)
    if count == 0 or (name != "mean" and count - ddof <= 0):
        np.testing.assert_array_equal(got_a, exp_a)
        return
    ref = Reference(array, axes_)
    values, atol = expected_values(name, ref, ddof)
    assert_close_to_reference(got_a, values, got_a.dtype, atol=atol, ulps=2)


# --- special cases -----------------------------------------------------------------------

@pytest.mark.parametrize("name", FUNCTIONS)
def test_subclasses_keep_numpys_behaviour(backend, name):
    data = np.arange(12, dtype=np.uint8).reshape(3, 4)
    masked = np.ma.masked_array(data, mask=data % 5 == 0)
    for axis in (None, 0, 1):
        got, expected = getattr(zm, name)(masked, axis=axis), getattr(np, name)(masked, axis=axis)
        assert type(got) is type(expected)
        np.testing.assert_array_equal(np.ma.getdata(got), np.ma.getdata(expected))
        np.testing.assert_array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(expected))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_matrix_and_numpys_keyword_only_arguments(backend, name):
    """np.matrix (whose methods take no keepdims) as NumPy answers it; where=, mean= and
    correction= as NumPy's; keepdims given as an int as NumPy reads it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix itself
        matrix = np.matrix([[1.0, 2.0], [3.0, 5.0]])
    for axis in (None, 0, 1):
        got, expected = getattr(zm, name)(matrix, axis=axis), getattr(np, name)(matrix, axis=axis)
        assert type(got) is type(expected)
        np.testing.assert_array_equal(got, expected)
    x = np.arange(24, dtype=np.uint8).reshape(4, 6)
    where = (x % 5 != 0)  # two or more values in each column
    calls = [{"axis": 0, "where": where}, {"axis": 1, "where": True}, {"axis": 0, "keepdims": 1}]
    if name != "mean":
        calls += [{"axis": 0, "correction": 1}, {"correction": 0.5},
                  {"axis": 1, "mean": x.mean(axis=1, keepdims=True)}]
    for kwargs in calls:
        got, expected = getattr(zm, name)(x, **kwargs), getattr(np, name)(x, **kwargs)
        assert np.shape(got) == np.shape(expected), kwargs
        np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=str(kwargs))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64, np.int32,
                                   np.float16, np.complex128, np.bool_])
@pytest.mark.parametrize("shape,axis", [((0,), None), ((0,), 0), ((0, 3), 0),
                                        ((3, 0), 1), ((0, 0), None), ((2, 0, 3), (0, 1)),
                                        ((4, 0), (1,))])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_empty_reductions_warn_and_give_nan(backend, name, dtype, shape, axis):
    x = np.zeros(shape, dtype)
    with pytest.warns(RuntimeWarning):
        expected = getattr(np, name)(x, axis=axis)
    with pytest.warns(RuntimeWarning) as record:
        got = getattr(zm, name)(x, axis=axis)
    assert record, "zm must warn like NumPy"
    assert_same_as_numpy(got, expected)
    assert np.all(np.isnan(got))


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.float32,
                                   np.float64])
def test_empty_output_with_nonempty_reduction(backend, name, dtype):
    """Reducing a non-empty axis of an array with an empty kept axis: no warning, empty."""
    views = [(np.zeros((0, 3), dtype), 1), (np.zeros((3, 0), dtype), 0),
             (np.zeros((5, 0, 2), dtype), (0, 2)),
             # Empty views whose strides are not zero (slices of transposed arrays).
             (np.zeros((5, 7), dtype).T[:, :0], 0),
             (np.zeros((5, 2, 7), dtype).transpose(2, 1, 0)[:, :, :0], 0),
             (np.zeros((4, 6, 3), dtype)[:, :0, ::-1], (0, 2))]
    for x, axis in views:
        got = getattr(zm, name)(x, axis=axis)
        assert_same_as_numpy(got, getattr(np, name)(x, axis=axis), f"{x.strides} {axis}")


@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("ddof", [3, 4, 10])
def test_ddof_too_large_warns_like_numpy(backend, name, dtype, ddof):
    x = np.arange(12, dtype=dtype).reshape(3, 4)
    with pytest.warns(RuntimeWarning):
        expected = getattr(np, name)(x, axis=0, ddof=ddof)
    with pytest.warns(RuntimeWarning):
        got = getattr(zm, name)(x, axis=0, ddof=ddof)
    assert_same_as_numpy(got, expected)


@pytest.mark.parametrize("dtype", FAST_DTYPES)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_zero_dimensional_input(backend, name, dtype):
    for value in (0, 1, 7, 100):
        x = np.array(value, dtype=dtype)
        for axis in (None, (), 0, -1):
            kwargs = {"axis": axis}
            expected, np_exc, _ = capture(getattr(np, name), x, **kwargs)
            got, zm_exc, _ = capture(getattr(zm, name), x, **kwargs)
            if np_exc is not None:
                assert isinstance(zm_exc, type(np_exc)), (np_exc, zm_exc)
                continue
            assert zm_exc is None, zm_exc
            assert_same_as_numpy(got, expected, f"{name}({value}, axis={axis})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCTIONS)
@given(data=st.data())
def test_nan_propagates(backend, name, dtype, data):
    """A NaN in a reduced slice makes that result NaN; other results stay exact; no
    warnings (NumPy gives none for quiet NaNs either)."""
    case = data.draw(arrays(dtypes=(np.dtype(dtype),), min_dims=1,
                            layouts=("c", "f", "transpose", "slice")))
    x = case.array.copy(order=data.draw(st.sampled_from("CF")))
    assume(x.size > 0)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    flat = x.reshape(-1, order="A")
    holes = rng.choice(x.size, size=data.draw(st.integers(1, max(1, x.size // 3))),
                       replace=False)
    flat[holes] = np.nan
    x = flat.reshape(x.shape, order="A")
    axis = data.draw(axes(x.ndim))
    axes_ = normalize_axes(axis, x.ndim)
    count = math.prod(x.shape[ax] for ax in axes_)
    assume(count > 1)
    got = getattr(zm, name)(x, axis=axis)
    expected = getattr(np, name)(x, axis=axis)
    has_nan = np.isnan(x).any(axis=axes_) if axes_ else np.isnan(x)
    assert np.array_equal(np.isnan(got), has_nan), (got, has_nan)
    assert np.array_equal(np.isnan(expected), has_nan)
    ref = Reference(np.where(np.isnan(x), 0, x), axes_)
    values, atol = expected_values(name, ref, 0)
    values = np.where(has_nan, np.nan, values)
    assert_close_to_reference(got, values, np.dtype(dtype), atol=atol, ulps=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_infinities_give_numpys_values(backend, name, dtype):
    """+-inf propagate as NumPy's: mean inf (nan for inf and -inf), var/std nan.
    Floating-point warnings are not compared here (see the report)."""
    inf = np.inf
    rows = [[1, 2, inf, 4], [1, -inf, 3, 4], [inf, 1, -inf, 2], [inf, inf, inf, inf],
            [1, 2, 3, 4], [np.nan, inf, 1, 2], [-inf, -inf, 0, 0]]
    x = np.array(rows, dtype=dtype)
    # The last four reduce one value a slice (a length-1 axis, no axis, a repeated value):
    # x - mean is nan for inf and nan, so var and std are nan there, not 0.
    for axis, view in [(1, x), (0, x.T.copy()), (None, x[:1]), (1, np.asfortranarray(x)),
                       (1, np.repeat(x, 300, axis=1)), (1, x[:, 2:3]), (0, x[:1]), ((), x),
                       (0, np.broadcast_to(x[:1], (5, 4)))]:
        with np.errstate(all="ignore"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                expected = getattr(np, name)(view, axis=axis)
                got = getattr(zm, name)(view, axis=axis)
        assert_same_as_numpy(np.isnan(got), np.isnan(expected), f"nan pattern, axis={axis}")
        assert_same_as_numpy(np.isposinf(got), np.isposinf(expected), "+inf pattern")
        assert_same_as_numpy(np.isneginf(got), np.isneginf(expected), "-inf pattern")
        finite = np.isfinite(expected)
        np.testing.assert_allclose(np.asarray(got)[finite], np.asarray(expected)[finite],
                                   rtol=1e-6)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_overflow_on_the_way_gives_numpys_values(backend, name):
    """Finite data whose shifted sums or squares overflow float64 (the first value shifts a
    block: -1e308 - 1.5e308 is -inf) get NumPy's own values and warnings; a NaN elsewhere
    in the data keeps its own NaN result."""
    x = np.array([[1.5e308, -1e308, -1e308], [1.0, 2.0, 4.0], [np.nan, 1.0, 2.0]])
    for view, axis in [(x[:1], None), (x, 1), (x.T.copy(), 0), (x[:2], 1)]:
        expected, _, numpy_warnings = capture(getattr(np, name), view, axis=axis)
        got, _, zmfast_warnings = capture(getattr(zm, name), view, axis=axis)
        np.testing.assert_array_equal(got, expected)
        assert warning_kinds(zmfast_warnings) == warning_kinds(numpy_warnings)
    with pytest.warns(RuntimeWarning, match="overflow"):  # the squares, as NumPy's var
        mean = zm.moments(x[:1]).mean
    assert mean == np.mean(x[:1]) and np.isfinite(mean)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_overflow_check_of_many_results(backend, name):
    """Past the quick check's 4,096 results the backend's own all_finite check decides: one
    overflowing column among 5,000 (in any layout of the results) sends the call to NumPy,
    with its values and warnings; a NaN column alone keeps the fast result."""
    x = np.tile(np.array([[1.0], [2.0], [4.0]]), (1, 5000))
    x[:, 4321] = (1.5e308, -1e308, -1e308)
    with_nan = x.copy()
    with_nan[:, 4321] = (np.nan, 1.0, 2.0)
    for data, axis in [(x, 0), (x.T, 1), (np.asfortranarray(x).reshape(3, 50, 100), 0),
                       (with_nan, 0)]:
        expected, _, numpy_warnings = capture(getattr(np, name), data, axis=axis)
        got, _, zmfast_warnings = capture(getattr(zm, name), data, axis=axis)
        if data is with_nan:  # zmfast's own values (within an ulp or two of NumPy's)
            np.testing.assert_allclose(got, expected, rtol=1e-15)
            assert np.isnan(got[4321])
        else:
            np.testing.assert_array_equal(got, expected)
        assert warning_kinds(zmfast_warnings) == warning_kinds(numpy_warnings)


def test_large_finite_results_pass_the_quick_overflow_check(backend):
    """Means whose squares overflow (the quick check's dot product is inf) are still NumPy's
    values, without a warning NumPy does not give."""
    x = np.array([[1e200, -3e200, 2.0], [3e200, 1e200, 4.0]])
    single = np.array([[1e308, 1.5e308, 2.0]])  # means whose sum overflows too
    for data, axis in [(x, 0), (x, 1), (x, None), (single, 0)]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = zm.mean(data, axis=axis)
        np.testing.assert_allclose(got, np.mean(data, axis=axis), rtol=1e-15)


def test_moments_plans_are_shared_by_one_geometry_only(backend):
    """The plan cache (keyed on shape, strides and axes): arrays of one geometry but other
    values, and views of one shape but other strides, each get their own right results."""
    from zmfast import _plan

    rng = np.random.default_rng(11)
    base = rng.normal(size=(6, 5, 3)).astype(np.float32)
    views = [base, rng.normal(size=(6, 5, 3)).astype(np.float32), base[::-1], base[:, ::-1],
             np.asfortranarray(base), rng.normal(size=(12, 5, 3)).astype(np.float32)[::2],
             base.transpose(1, 0, 2)]
    for _ in range(2):  # the second round runs on cached plans
        for view in views:
            for axis in (0, (0, 1), (1, 2), None):
                np.testing.assert_allclose(zm.mean(view, axis=axis),
                                           np.mean(view, axis=axis, dtype=np.float64),
                                           rtol=1e-6, atol=1e-6)
                np.testing.assert_allclose(zm.var(view, axis=axis),
                                           np.var(view, axis=axis, dtype=np.float64),
                                           rtol=1e-5, atol=1e-6)
    assert len(_plan._MOMENTS_PLANS) <= _plan._MOMENTS_PLANS_MAX


def _exact_moments(x, axes_):
    """Mean and M2 of integer ``x`` over ``axes_``, each rounded once from exact integers."""
    from fractions import Fraction

    moved = np.moveaxis(x.astype(np.int64), axes_, range(len(axes_)))
    flat = moved.reshape(-1, int(np.prod(moved.shape[len(axes_):], dtype=np.int64)))
    n = flat.shape[0]
    s1 = [int(v) for v in flat.sum(axis=0)]
    s2 = [int(v) for v in (flat * flat).sum(axis=0)]
    mean = [float(Fraction(a, n)) for a in s1]
    m2 = [float(Fraction(n * b - a * a, n)) for a, b in zip(s1, s2)]
    kept = moved.shape[len(axes_):]
    return np.reshape(mean, kept), np.reshape(m2, kept)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16])
def test_exact_plans_are_checked_every_call(backend, dtype):
    """Integer reductions remember their kernel plan by dtype, shape and axes: later calls
    of that key with other values, other strides, an unaligned or byte-swapped buffer, a
    ddof past the count or another backend must each still get their own right answer."""
    from zmfast import _stats

    rng = np.random.default_rng(5)
    info = np.iinfo(dtype)
    shape = (6, 5, 3)

    def draw():
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)

    itemsize = np.dtype(dtype).itemsize
    raw = np.frombuffer(draw().tobytes() + b"\0", dtype=np.uint8)
    unaligned = np.frombuffer(raw.data[1:1 + raw.size - 1], dtype=dtype).reshape(shape)
    assert itemsize == 1 or not unaligned.flags.aligned
    swapped = draw().astype(np.dtype(dtype).newbyteorder())
    wide = rng.integers(info.min, int(info.max) + 1, size=(6, 10, 3), dtype=dtype)
    for axis in ((0, 1), 0, None):
        axes_ = normalize_axes(axis, 3)
        for x in (draw(), draw(), wide[:, ::2], draw()[::-1], unaligned, swapped, draw()):
            mean, m2 = _exact_moments(x, axes_)
            got = zm.moments(x, axis=axis)
            np.testing.assert_allclose(got.mean, mean, rtol=1e-15, atol=0)
            np.testing.assert_allclose(got.m2, m2, rtol=1e-14, atol=0)
            count = x.size // mean.size
            np.testing.assert_allclose(zm.var(x, axis=axis, ddof=1), m2 / (count - 1),
                                       rtol=1e-14, atol=0)
            with pytest.warns(RuntimeWarning):
                expected = np.var(x, axis=axis, ddof=count)
            with pytest.warns(RuntimeWarning):
                assert_same_as_numpy(zm.var(x, axis=axis, ddof=count), expected)
        if backend == "cpp":  # the remembered plans that these calls used
            assert (zm._config.backend(), np.dtype(dtype), shape, axes_) in _stats._EXACT_PLANS
        with zm.use_backend("numpy"):  # the same key in another backend: its own path
            np.testing.assert_allclose(zm.moments(x, axis=axis).m2, m2, rtol=1e-12, atol=0)


def test_std_of_subnormal_data_is_not_negative_zero(backend):
    """sqrt(-0.0) is -0.0: a spread rounded to -0.0 must come out as +0.0."""
    for x in (np.array([5e-324, 1e-320]), np.full(1000, 5e-324), np.array([-5e-324, 0.0])):
        for axis in (None, 0):
            got = zm.std(x, axis=axis)
            assert not np.signbit(got), (x, got)
            np.testing.assert_allclose(got, np.std(x, axis=axis), atol=1e-323)


# --- precision ---------------------------------------------------------------------------

def _exact_var_of_offset_data(x):
    """var of float64 data 1e9 + U(0,1): shift by 1e9 (exact, Sterbenz) and fsum."""
    d = x - 1e9
    assert np.all(d + 1e9 == x)
    mean = math.fsum(d) / d.size
    dev = d - mean
    return math.fsum(dev * dev) / d.size, mean + 1e9


def test_precision_large_offset_small_spread(backend):
    rng = np.random.default_rng(20240501)
    x = 1e9 + rng.uniform(0, 1, 10**5)
    var_ref, mean_ref = _exact_var_of_offset_data(x)
    got = zm.var(x)
    assert abs(got - var_ref) <= 1e-9 * var_ref, (got, var_ref)
    assert abs(zm.std(x) - math.sqrt(var_ref)) <= 1e-9 * math.sqrt(var_ref)
    assert abs(zm.mean(x) - mean_ref) <= 4 * np.spacing(mean_ref)
    m = zm.moments(x)
    assert abs(float(m.m2) - var_ref * x.size) <= 1e-9 * var_ref * x.size


@pytest.mark.parametrize("order", ["C", "F"])
def test_precision_large_offset_per_axis(backend, order):
    """Per-axis variances of 1e9 + U(0, 1) within 1e-9 relative of the exact values. For a
    reduction of only 3 values the variance may be tiny; there the error allowed is also
    the square of one rounding of the mean at 1e9 (what any float64 mean costs)."""
    rng = np.random.default_rng(7)
    x = np.asarray(1e9 + rng.uniform(0, 1, (300, 3, 40)), order=order)
    for axis in (0, 1, 2, (0, 2), (0, 1), (1, 2), None):
        got = np.asarray(zm.var(x, axis=axis))
        axes_ = normalize_axes(axis, x.ndim)
        kept = [ax for ax in range(3) if ax not in axes_]
        rows = np.transpose(x, kept + list(axes_)).reshape(-1, math.prod(
            x.shape[ax] for ax in axes_))
        ref = np.array([_exact_var_of_offset_data(row)[0] for row in rows]).reshape(got.shape)
        atol = np.spacing(1e9) ** 2 if rows.shape[1] < 10 else 0.0
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=atol, err_msg=f"axis={axis}")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_integer_sums_are_exact_at_extremes(backend, dtype):
    """Sums of many extreme values (accumulator overflow hunting) on the kernels' paths:
    columns (axis 0), rows (axis 1), everything, lanes (N, 3) over axis 0."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    for shape in [(70000, 3), (3, 70000), (300, 700), (131073,)]:
        for values in ([info.max], [info.min], [info.min, info.max]):
            x = rng.choice(np.array(values, dtype=dtype), shape)
            for axis in [None] + list(range(x.ndim)):
                axes_ = normalize_axes(axis, x.ndim)
                ref = Reference(x, axes_)
                assert_close_to_reference(zm.mean(x, axis=axis), ref.mean, np.float64,
                                          atol=ref.mean_atol(), ulps=2, what=f"{shape} mean")
                assert_close_to_reference(zm.var(x, axis=axis), ref.var(), np.float64,
                                          atol=ref.var_atol(), ulps=2, what=f"{shape} var")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_constant_data_has_zero_variance(backend, dtype):
    for value in (0.1, 1e9 + 0.5, -3.75e5, 1e-300 if dtype == np.float64 else 1e-30):
        x = np.full((513, 7), value, dtype=dtype)
        for axis in (None, 0, 1):
            ref = Reference(x, normalize_axes(axis, 2))
            var = np.asarray(zm.var(x, axis=axis))
            mean = np.asarray(zm.mean(x, axis=axis))
            assert np.all(var >= 0) and np.all(var <= ref.var_atol()), (value, var)
            assert_close_to_reference(mean, np.full(mean.shape, float(dtype(value))), dtype,
                                      atol=ref.mean_atol(), what=f"mean of {value}")


@pytest.mark.parametrize("pixels", [65536, 100003], ids=["whole_rows", "with_tail"])
def test_batch_broadcast_along_a_reduced_axis_counts_every_copy(backend, pixels):
    """Per-channel statistics of ``np.broadcast_to(x, (3,) + x.shape)``, whose reduced axis 0
    has stride 0: every copy counts (M2 three times that of one copy). Three float channels
    take the plan that spreads them over wide lanes and folds them back, with and without a
    tail of pixels past its whole rows."""
    x = np.random.default_rng(11).random((pixels, 3)).astype(np.float32)
    view = np.broadcast_to(x, (3,) + x.shape)
    axes_ = (0, 1)
    ref = Reference(view, axes_)
    for name in FUNCTIONS:
        want = ref.mean if name == "mean" else ref.var() if name == "var" else ref.std()
        atol = ref.mean_atol() if name == "mean" else ref.var_atol()
        assert_close_to_reference(getattr(zm, name)(view, axis=axes_), want, np.float32,
                                  atol=atol, ulps=2, what=name)
    m = zm.moments(view, axis=axes_)
    assert m.count == 3 * pixels
    np.testing.assert_allclose(m.m2, 3 * zm.moments(x, axis=0).m2, rtol=1e-9)


# --- moments -----------------------------------------------------------------------------

MOMENT_DTYPES = FAST_DTYPES + tuple(np.dtype(t) for t in (np.int32, np.int64, np.float16,
                                                          ">f8", np.uint32))


@given(case=arrays(dtypes=MOMENT_DTYPES), data=st.data())
def test_moments_match_reference(backend, case, data):
    x = case.array
    axis = data.draw(axes(x.ndim), label="axis")
    axes_ = normalize_axes(axis, x.ndim)
    m = zm.moments(x, axis=axis)
    ref = Reference(x, axes_)
    assert isinstance(m, zm.Moments)
    assert type(m.count) is int and m.count == ref.count
    assert m.mean.dtype == np.float64 and m.m2.dtype == np.float64
    assert m.mean.shape == ref.kept_shape and m.m2.shape == ref.kept_shape
    if ref.count == 0:
        return
    assert_close_to_reference(m.mean, ref.mean, np.float64, atol=ref.mean_atol(), ulps=2,
                              what="moments.mean")
    assert_close_to_reference(m.m2, ref.m2, np.float64, atol=ref.var_atol() * ref.count,
                              ulps=2, what="moments.m2")
    for ddof in (0, 1):
        if ref.count - ddof <= 0:
            with pytest.warns(RuntimeWarning):
                m.var(ddof)
            continue
        assert_close_to_reference(m.var(ddof), ref.var(ddof), np.float64,
                                  atol=ref.var_atol(ddof), ulps=2, what=f"var({ddof})")
        std, atol = expected_values("std", ref, ddof)
        assert_close_to_reference(m.std(ddof), std, np.float64, atol=atol, ulps=2,
                                  what=f"std({ddof})")


@given(case=arrays(dtypes=FAST_DTYPES + (np.dtype(np.int32),), min_dims=1), data=st.data())
def test_moments_merge_equals_whole(backend, case, data):
    """Moments of the parts, merged in any grouping, equal the moments of the whole."""
    x = case.array
    axis = data.draw(axes(x.ndim).filter(lambda a: not isinstance(a, tuple) or len(a) > 0),
                     label="axis")
    axes_ = normalize_axes(axis, x.ndim)
    split_axis = data.draw(st.sampled_from(axes_), label="split axis")
    n = x.shape[split_axis]
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3), label="cuts"))
    bounds = [0] + cuts + [n]
    parts = [np.take(x, np.arange(lo, hi), axis=split_axis) for lo, hi in zip(bounds, bounds[1:])]
    moments = [zm.moments(p, axis=axis) for p in parts]
    merged = moments[0]
    for other in moments[1:]:
        merged = merged.merge(other)
    # Also right-to-left, which groups the parts differently.
    right = moments[-1]
    for other in reversed(moments[:-1]):
        right = other.merge(right)
    ref = Reference(x, axes_)
    for result in (merged, right):
        assert result.count == ref.count
        if ref.count == 0:
            continue
        assert_close_to_reference(result.mean, ref.mean, np.float64,
                                  atol=4 * ref.mean_atol(), ulps=4, what="merged mean")
        assert_close_to_reference(result.m2, ref.m2, np.float64,
                                  atol=4 * ref.var_atol() * ref.count, ulps=4,
                                  what="merged m2")


def test_moments_merge_with_empty_is_identity(backend):
    x = np.arange(24, dtype=np.uint8).reshape(4, 6)
    whole = zm.moments(x, axis=0)
    empty = zm.moments(x[:0], axis=0)
    assert empty.count == 0
    for merged in (whole.merge(empty), empty.merge(whole)):
        assert merged.count == 4
        np.testing.assert_array_equal(merged.mean, whole.mean)
        np.testing.assert_array_equal(merged.m2, whole.m2)
    np.testing.assert_allclose(whole.mean, x.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(whole.m2, x.var(axis=0) * 4, rtol=1e-14)


def test_moments_merge_rejects_mismatches(backend):
    a = zm.moments(np.ones((3, 4), np.uint8), axis=0)
    b = zm.moments(np.ones((3, 5), np.uint8), axis=0)
    with pytest.raises(ValueError):
        a.merge(b)
    with pytest.raises(TypeError):
        a.merge((3, a.mean, a.m2))


@pytest.mark.parametrize("value", [
    np.array([True, False]), np.array([1 + 2j, 3j]), np.array(["a", "b"]),
    np.array([1, "a", None], dtype=object), np.array([1.0, 2.0], dtype=object),
    np.zeros((2, 3), np.complex64), np.zeros(0, bool)])
def test_moments_rejects_non_real_input(backend, value):
    with pytest.raises(TypeError):
        zm.moments(value)
    with pytest.raises(TypeError):
        zm.moments(value, axis=0)


def test_moments_docstring_example(backend):
    x = np.random.default_rng(0).integers(0, 256, (8, 4, 4, 3), dtype=np.uint8)
    m = zm.moments(x, axis=(0, 1, 2))
    assert m.count == 128 and m.mean.shape == (3,)
    ref = Reference(x, (0, 1, 2))
    assert_close_to_reference(m.std(), np.sqrt(ref.var()), np.float64, ulps=2)
    assert_close_to_reference(m.mean, ref.mean, np.float64, ulps=1)


# --- float dtype arguments on fast inputs ------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_dtype_argument_rounds_the_exact_result(backend, name, dtype):
    """With dtype=float32/float16 NumPy accumulates in that type; zm rounds the exact result,
    so it is within 1 ulp of the exact value even where NumPy's float16 sum overflows."""
    rng = np.random.default_rng(11)
    x = rng.integers(90, 101, (4000, 3), dtype=np.uint8)
    for axis in (None, 0, 1):
        got = getattr(zm, name)(x, axis=axis, dtype=dtype)
        ref = Reference(x, normalize_axes(axis, 2))
        values, atol = expected_values(name, ref, 0)
        assert np.asarray(got).dtype == np.dtype(dtype)
        assert_close_to_reference(got, values, dtype, atol=atol, ulps=1,
                                  what=f"{name} axis={axis} dtype={dtype}")
        assert np.all(np.isfinite(got))


def test_rounded_helper_sanity():
    # The reference's own rounding helper: a float64 that rounds up in float32.
    assert rounded(1 + 2**-24 + 2**-40, np.float32) == np.float32(1 + 2**-23)


def test_float_variance_near_an_offset_is_thread_independent(backend, restore_threads):
    """Per-thread partial means of 1e9 + U(0, 1) merge with their rounding errors (cpp's
    Running.lo, numba's ``low``): two threads keep the one-thread accuracy (they lost it to
    6e-8), for columns split by rows between threads and for a full reduction."""
    if backend == "numpy":
        pytest.skip("the reference backend is NumPy's own single-threaded var")
    rng = np.random.default_rng(0)
    x = 1e9 + rng.random((100, 3072))
    exact = np.array([_exact_var_of_offset_data(column)[0] for column in x[:, :64].T])
    exact_all = _exact_var_of_offset_data(x[:20].ravel())[0]
    for threads in (1, 2):
        zm.set_num_threads(threads)
        np.testing.assert_allclose(zm.var(x, axis=0)[:64], exact, rtol=1e-13)
        np.testing.assert_allclose(zm.var(x[:20]), exact_all, rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_reductions_of_repeated_values(backend, dtype):
    """Where every reduced extent is 1 or a broadcast (stride 0), each result is the value
    itself and M2 zero, NaN for inf and NaN with NumPy's warning, from one buffer (plain
    NumPy temporaries cost 1.7 ms of page faults for one 224x224x3 image): one image over
    axis 0, a broadcast batch, and a single value."""
    rng = np.random.default_rng(31)
    image = rng.integers(0, 256, (1, 9, 7, 3)).astype(dtype)
    cases = [(image, 0), (np.broadcast_to(image[0], (5, 9, 7, 3)), 0),
             (image[:, :1, :1, :1], None)]
    if dtype == np.float32:  # in every case: they are views of the image
        image[0, 0, 0] = (np.inf, -np.inf, np.nan)
    for x, axis in cases:
        values = (x[0] if axis == 0 else x.reshape(())).astype(np.float64)
        moments, error, got_warnings = capture(zm.moments, x, axis=axis)
        assert error is None, error
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(moments.m2, values - values, strict=True)
        np.testing.assert_array_equal(moments.mean, values, strict=True)
        # inf - inf, as NumPy's var warns (the float cases all hold the inf)
        assert warning_kinds(got_warnings) == (["RuntimeWarning"] if dtype == np.float32
                                               else [])
        for name in FUNCTIONS:
            got, _, got_warnings = capture(getattr(zm, name), x, axis=axis)
            want, _, want_warnings = capture(getattr(np, name), x, axis=axis)
            assert_same_as_numpy(got, want, name)
            assert warning_kinds(got_warnings) == warning_kinds(want_warnings), name


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.float32,
                                   np.float64])
@pytest.mark.parametrize("rows", [1, 2, 7, 31, 32])
def test_column_reductions_over_few_rows(backend, restore_threads, dtype, rows):
    """Column reductions of under 32 rows (the mean image of two images, F-ordered channels,
    lanes at a step) finish each lane straight into the outputs; 32 rows take the general
    loop. Many lanes (past one pass of 1,024), every layout that keeps lanes innermost or
    strided, one thread and two (split by lanes), near an offset, with inf and NaN."""
    rng = np.random.default_rng(rows)
    if np.dtype(dtype).kind == "f":
        base = (1e6 + rng.uniform(0, 1, (rows, 2500))).astype(dtype)
        # Column 3: a finite first value (each lane's shift), then inf. Finite values stay
        # near the offset, so that the tolerances (from the data's spread) stay tight.
        base[0, :4] = (np.inf, -np.inf, np.nan, 1e6 + 0.5)
        base[-1, 3] = np.inf
    else:
        info = np.iinfo(dtype)
        base = rng.integers(info.min, int(info.max) + 1, (rows, 2500), dtype=dtype)
        base[:, :3] = (info.min, info.max, info.min)
    cases = [(base, 0), (base[::-1], 0), (base[:, ::3], 0), (base[:, ::-2], 0),
             (np.asfortranarray(base).T, 1), (base.reshape(rows, 50, 50), (0,)),
             (base.reshape(rows, 50, 50).transpose(1, 2, 0), 2),
             (np.ascontiguousarray(base.reshape(rows, 50, 50).transpose(1, 0, 2)), 1)]
    for threads in (1, 2):
        zm.set_num_threads(threads)
        for x, axis in cases:
            what = f"{x.shape} {x.strides} axis={axis} threads={threads}"
            ref = Reference(x, normalize_axes(axis, x.ndim))
            with np.errstate(invalid="ignore"):
                m = zm.moments(x, axis=axis)
                var = zm.var(x, axis=axis)
                # The lanes holding inf or NaN: NumPy's values (the reference refines its
                # means by their deviations, which turns inf into NaN).
                want_mean = np.mean(x.astype(np.float64), axis=axis)
                want_var = np.var(x.astype(np.float64), axis=axis)
            special = ~np.isfinite(want_mean)
            assert np.any(special) == (x.dtype.kind == "f"), what
            np.testing.assert_array_equal(m.mean[special], want_mean[special], err_msg=what)
            np.testing.assert_array_equal(var[special], want_var[special], err_msg=what)
            assert_close_to_reference(m.mean[~special], ref.mean[~special], np.float64,
                                      atol=ref.mean_atol(), ulps=2, what=f"{what} mean")
            assert_close_to_reference(var[~special], ref.var()[~special],
                                      x.dtype if x.dtype.kind == "f" else np.float64,
                                      atol=ref.var_atol(), what=f"{what} var")
