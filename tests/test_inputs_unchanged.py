"""No function ever writes to its inputs (bottleneck's input_modification_test): x, the
buffer behind a view of x, mean and std are byte-for-byte the same afterwards."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import FAST_DTYPES, REAL_DELEGATED_DTYPES, arrays, axes

import zmfast as zm

DTYPES = FAST_DTYPES + REAL_DELEGATED_DTYPES


def snapshot(*arrays_):
    return [(a.copy(), a.tobytes()) for a in arrays_ if isinstance(a, np.ndarray)]


def assert_unchanged(before, arrays_):
    arrays_ = [a for a in arrays_ if isinstance(a, np.ndarray)]
    for (copy, raw), a in zip(before, arrays_):
        assert a.tobytes() == raw, "an input was modified"
        np.testing.assert_array_equal(a, copy)


@given(case=arrays(dtypes=DTYPES), data=st.data())
def test_reductions_leave_inputs_alone(backend, case, data):
    x = case.array
    axis = data.draw(axes(x.ndim))
    watched = [x, case.base]
    before = snapshot(*watched)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty slices: not this test's job
        zm.mean(x, axis=axis)
        zm.var(x, axis=axis, ddof=data.draw(st.sampled_from([0, 1])))
        zm.std(x, axis=axis, keepdims=True)
        if x.dtype.kind != "b":
            zm.moments(x, axis=axis)
    assert_unchanged(before, watched)


@pytest.mark.parametrize("function", ["center", "standardize"])
@given(case=arrays(dtypes=tuple(d for d in DTYPES if d.kind != "b"), min_dims=3),
       data=st.data())
def test_normalize_leaves_inputs_alone(backend, function, case, data):
    x = case.array
    channels = x.shape[-1]
    mean = np.linspace(-3, 3, channels)
    std = np.linspace(1, 4, channels)
    mean_f4 = mean.astype(np.float32)
    per_pixel = np.full(x.shape[-3:], 2.0)
    channels_first = data.draw(st.booleans())
    dtype = data.draw(st.sampled_from([np.float16, np.float32, np.float64]))
    watched = [x, case.base, mean, std, mean_f4, per_pixel]
    before = snapshot(*watched)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float16 overflow: not this test's job
        for m, s in ((mean, std), (mean_f4, per_pixel), (1.0, std)):
            if function == "center":
                zm.center(x, m, dtype=dtype, channels_first=channels_first)
            else:
                zm.standardize(x, m, s, dtype=dtype, channels_first=channels_first)
    assert_unchanged(before, watched)
