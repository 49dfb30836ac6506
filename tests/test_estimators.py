"""The estimators: StandardScaler, MinMaxScaler, minmax_scale, normalize, fit_stream,
dataset_stats, and the inverse transform zm.destandardize.

* against scikit-learn on 2-D float data (``dtype=np.float64`` on zmfast's side, so the
  comparison can be tight), inside a Pipeline and through ``sklearn.base.clone``;
* against NumPy on NHWC image batches, over several axes (non-trailing ones included),
  channels-first and float16 outputs;
* Hypothesis: any chunking of ``partial_fit`` and any sharding with ``merge`` equal ``fit``;
  ``standardize`` then ``destandardize`` gives the original integers back;
* persistence (``save``/``load``, ``to_dict``), streaming (generators, arrays, memory-mapped
  files in constant memory, progress bars), constant features and the errors.

Every test of values takes the ``backend`` fixture (tests/conftest.py), so it runs once per
backend of ``zmfast._backends.NAMES``.
"""

import io
import json
import math
import sys
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from strategies import PROFILES, make_values

import zmfast as zm

try:
    import sklearn  # noqa: F401
    from sklearn.exceptions import NotFittedError
except ImportError:  # the estimators then raise a plain ValueError
    sklearn = None
    NotFittedError = ValueError

needs_sklearn = pytest.mark.skipif(sklearn is None, reason="scikit-learn is not installed")

EPS64 = np.finfo(np.float64).eps
RTOL64 = 1e-12  # zmfast in float64 against scikit-learn / NumPy / itself in float64


def rng_for(*key):
    """A NumPy generator seeded from the test's parameters (reproducible, independent)."""
    return np.random.default_rng([zlib.crc32(repr(k).encode()) for k in key])


def features_2d(rng, n=60, constant_column=True):
    """Float features of very different scales and offsets; one column exactly constant."""
    scales = np.array([1.0, 10.0, 1e-3, 250.0, 0.5])
    offsets = np.array([0.0, -40.0, 3.0, 1e4, 0.25])
    x = rng.normal(size=(n, len(scales))) * scales + offsets
    if constant_column:
        x[:, 2] = 7.0
    return x


def images(rng, shape=(24, 5, 6, 3), dtype=np.uint8):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def numpy_standardized(x, axis, ddof=0):
    """float64 ``(x - mean) / scale`` with NumPy's statistics (scale 1 where std is 0)."""
    mean = x.mean(axis=axis, keepdims=True, dtype=np.float64)
    std = x.std(axis=axis, keepdims=True, dtype=np.float64, ddof=ddof)
    scale = np.where(std == 0, 1.0, std)
    return (x - mean) / scale, mean, std, scale


def squeeze_axes(stats, ndim, axis):
    """NumPy keepdims statistics reshaped as the estimators store them (reduced axes gone)."""
    axes = tuple(range(ndim)) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    axes = tuple(ax % ndim for ax in axes)
    return np.squeeze(stats, axis=axes)


def assert_stats_close(got, want, x, what):
    """``got`` equals ``want`` to RTOL64 relative, with an absolute floor scaled to the data
    (a constant float column has a variance of a few ulps, not exactly 0, in a float64 sum)."""
    x = np.asarray(x, dtype=np.float64)
    scale = float(np.max(np.abs(x))) if x.size else 0.0
    spread = float(np.ptp(x)) if x.size else 0.0
    atol = {"mean": 1e-14 * scale, "var": 1e-14 * scale * spread + (1e-14 * scale) ** 2}[what]
    np.testing.assert_allclose(got, want, rtol=RTOL64, atol=atol, err_msg=what)


# --- against scikit-learn (2-D float data) ----------------------------------------------

@needs_sklearn
@pytest.mark.parametrize("with_mean", [True, False])
@pytest.mark.parametrize("with_std", [True, False])
def test_standard_scaler_matches_sklearn(backend, with_mean, with_std):
    from sklearn.preprocessing import StandardScaler

    x = features_2d(rng_for("std-sk", with_mean, with_std))
    ours = zm.StandardScaler(with_mean=with_mean, with_std=with_std, dtype=np.float64).fit(x)
    theirs = StandardScaler(with_mean=with_mean, with_std=with_std).fit(x)
    for name in ("mean_", "var_", "scale_"):
        got, want = getattr(ours, name), getattr(theirs, name)
        assert (got is None) == (want is None), (name, got, want)
        if want is not None:
            assert got.dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=RTOL64, atol=0, err_msg=name)
    assert ours.n_samples_seen_ == theirs.n_samples_seen_ == len(x)
    assert ours.n_features_in_ == theirs.n_features_in_

    y = ours.transform(x)
    assert y.dtype == np.float64 and y.shape == x.shape
    np.testing.assert_allclose(y, theirs.transform(x), rtol=RTOL64, atol=1e-13)
    np.testing.assert_allclose(ours.fit_transform(x), y, rtol=0, atol=0)
    back = ours.inverse_transform(y)
    assert back.dtype == np.float64
    np.testing.assert_allclose(back, theirs.inverse_transform(theirs.transform(x)),
                               rtol=RTOL64, atol=1e-10)
    np.testing.assert_allclose(back, x, rtol=RTOL64, atol=1e-10)

    # New data, and the float32 default.
    new = features_2d(rng_for("std-sk-new"), n=7)
    np.testing.assert_allclose(ours.transform(new), theirs.transform(new), rtol=RTOL64,
                               atol=1e-13)
    single = zm.StandardScaler(with_mean=with_mean, with_std=with_std).fit(x).transform(new)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, theirs.transform(new), rtol=1e-6, atol=1e-6)


@needs_sklearn
def test_standard_scaler_partial_fit_matches_sklearn(backend):
    from sklearn.preprocessing import StandardScaler

    x = features_2d(rng_for("std-sk-partial"), n=100)
    ours, theirs = zm.StandardScaler(dtype=np.float64), StandardScaler()
    for batch in np.array_split(x, [3, 4, 40, 41, 99]):
        ours.partial_fit(batch)
        theirs.partial_fit(batch)
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=RTOL64)
    np.testing.assert_allclose(ours.var_, theirs.var_, rtol=1e-10)  # sklearn's own drift
    np.testing.assert_array_equal(ours.scale_ == 1, theirs.scale_ == 1)
    assert ours.n_samples_seen_ == 100


@needs_sklearn
def test_pipeline_clone_and_grid_search(backend):
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    rng = rng_for("pipeline")
    x = features_2d(rng, n=120)
    labels = (x[:, 0] + 0.01 * x[:, 3] > 100).astype(int)

    ours = make_pipeline(zm.StandardScaler(dtype=np.float64), LogisticRegression()).fit(x, labels)
    theirs = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, labels)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), atol=1e-8)

    ours = make_pipeline(zm.MinMaxScaler(dtype=np.float64), Ridge()).fit(x, x[:, 0])
    theirs = make_pipeline(MinMaxScaler(), Ridge()).fit(x, x[:, 0])
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x), rtol=1e-9, atol=1e-9)

    for estimator in (zm.StandardScaler(axis=(0, 1), with_mean=False, ddof=1,
                                        dtype=np.float16, channels_first=True),
                      zm.MinMaxScaler(axis=None, feature_range=(-1, 1), clip=True,
                                      dtype=np.float64)):
        fitted = estimator.fit(np.ones((4, 3, 5, 3)))
        copy = clone(fitted)
        assert type(copy) is type(estimator) and copy is not fitted
        assert copy.get_params() == estimator.get_params()
        assert repr(copy) == repr(estimator)
        with pytest.raises(NotFittedError):  # clone drops the fitted state
            copy.transform(np.ones((4, 3, 5, 3)))

    search = GridSearchCV(make_pipeline(zm.StandardScaler(), Ridge()),
                          {"standardscaler__with_mean": [True, False],
                           "standardscaler__ddof": [0, 1]}, cv=3).fit(x, x[:, 1])
    assert set(search.best_params_) == {"standardscaler__with_mean", "standardscaler__ddof"}


@needs_sklearn
def test_check_is_fitted_and_a_scaler_as_the_last_step(backend):
    """scikit-learn's check_is_fitted (which a Pipeline's transform calls on its last step)
    sees whether fit or partial_fit ran."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    from sklearn.utils.validation import check_is_fitted

    x = features_2d(rng_for("last step"), n=60)
    for ours, theirs in ((zm.StandardScaler(dtype=np.float64), StandardScaler()),
                         (zm.MinMaxScaler(dtype=np.float64), MinMaxScaler())):
        with pytest.raises(NotFittedError):
            check_is_fitted(ours)
        check_is_fitted(type(ours)(dtype=np.float64).partial_fit(x[:10]))
        pipeline = make_pipeline(PCA(2), ours).fit(x)
        check_is_fitted(pipeline)
        np.testing.assert_allclose(pipeline.transform(x),
                                   make_pipeline(PCA(2), theirs).fit(x).transform(x),
                                   rtol=1e-9, atol=1e-9)


def test_fitted_attributes_are_missing_before_fit(backend):
    """As scikit-learn's: reading a fitted attribute before fit raises AttributeError (so
    hasattr says whether the scaler is fitted); with_std=False gives None after fitting."""
    scaler = zm.StandardScaler()
    for name in ("mean_", "var_", "scale_", "moments_"):
        assert not hasattr(scaler, name)
        with pytest.raises(AttributeError, match=f"{name} is set by fit"):
            getattr(scaler, name)
    scaler.partial_fit(np.zeros((0, 3)))  # an empty batch fits nothing
    assert not hasattr(scaler, "mean_")
    x = np.arange(12, dtype=np.uint8).reshape(4, 3)
    scaler.partial_fit(x)
    np.testing.assert_array_equal(scaler.mean_, x.mean(axis=0))
    np.testing.assert_array_equal(scaler.var_, x.var(axis=0))
    unscaled = zm.StandardScaler(with_std=False).fit(x)
    assert unscaled.var_ is None and unscaled.scale_ is None
    np.testing.assert_array_equal(unscaled.mean_, x.mean(axis=0))
    assert zm.StandardScaler(with_mean=False, with_std=False).fit(x).mean_ is None


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_standard_scaler_refuses_nan_and_inf(backend, bad, dtype):
    """A float batch with NaN or inf raises ValueError before anything merges (NaN is not
    skipped as missing, unlike scikit-learn), in fit and in a partial_fit stream, whose
    statistics stay those of the good batches."""
    good = np.random.default_rng(7).random((20, 4, 3)).astype(dtype)
    x = good.copy()
    x[3, 2, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        zm.StandardScaler(axis=(0, 1)).fit(x)
    scaler = zm.StandardScaler(axis=(0, 1)).partial_fit(good)
    with pytest.raises(ValueError, match="NaN or infinite"):
        scaler.partial_fit(x)
    assert scaler.n_samples_seen_ == 20
    np.testing.assert_allclose(scaler.mean_, good.astype(np.float64).mean(axis=(0, 1)),
                               rtol=1e-12)


def test_get_and_set_params():
    scaler = zm.StandardScaler()
    assert scaler.get_params() == {"axis": 0, "with_mean": True, "with_std": True, "ddof": 0,
                                   "dtype": np.float32, "channels_first": False}
    assert scaler.set_params(axis=(0, 1, 2), ddof=1) is scaler
    assert scaler.axis == (0, 1, 2) and scaler.ddof == 1
    assert zm.MinMaxScaler().get_params() == {"axis": 0, "feature_range": (0, 1),
                                              "clip": False, "dtype": np.float32}
    for estimator in (zm.StandardScaler(), zm.MinMaxScaler()):
        with pytest.raises(ValueError, match="invalid parameter"):
            estimator.set_params(not_a_parameter=1)


@needs_sklearn
@pytest.mark.parametrize("feature_range", [(0, 1), (-1, 1), (-3.5, 10)])
@pytest.mark.parametrize("clip", [False, True])
def test_minmax_scaler_matches_sklearn(backend, feature_range, clip):
    from sklearn.preprocessing import MinMaxScaler

    x = features_2d(rng_for("mm-sk", feature_range, clip))
    ours = zm.MinMaxScaler(feature_range=feature_range, clip=clip, dtype=np.float64).fit(x)
    theirs = MinMaxScaler(feature_range=feature_range, clip=clip).fit(x)
    for name in ("data_min_", "data_max_", "data_range_", "scale_", "min_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=RTOL64,
                                   atol=0, err_msg=name)
    assert ours.n_samples_seen_ == theirs.n_samples_seen_ == len(x)
    new = np.concatenate([x, features_2d(rng_for("mm-sk-new"), n=20) * 3])  # out of range
    y = ours.transform(new)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, theirs.transform(new), rtol=RTOL64, atol=1e-12)
    np.testing.assert_allclose(ours.fit_transform(x), theirs.transform(x), rtol=RTOL64,
                               atol=1e-12)
    if not clip:
        np.testing.assert_allclose(ours.inverse_transform(y), new, rtol=RTOL64, atol=1e-9)
    low, high = feature_range
    assert np.all(y[: len(x)] >= low - 1e-12) and np.all(y[: len(x)] <= high + 1e-12)
    single = zm.MinMaxScaler(feature_range=feature_range, clip=clip).fit(x).transform(new)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, theirs.transform(new), rtol=1e-6, atol=1e-5)


@needs_sklearn
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("feature_range", [(0, 1), (-2, 5)])
def test_minmax_scale_matches_sklearn(backend, axis, feature_range):
    from sklearn.preprocessing import minmax_scale

    x = features_2d(rng_for("mms-sk", axis, feature_range))
    want = minmax_scale(x, feature_range, axis=axis)
    got = zm.minmax_scale(x, feature_range, axis=axis, dtype=np.float64)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=RTOL64, atol=1e-12)
    got32 = zm.minmax_scale(x, feature_range, axis=axis)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=1e-6, atol=1e-5)


@needs_sklearn
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.int16])
def test_normalize_matches_sklearn(backend, norm, axis, dtype):
    from sklearn.preprocessing import normalize

    rng = rng_for("normalize-sk", norm, axis, np.dtype(dtype).name)
    if np.dtype(dtype).kind == "f":
        x = (features_2d(rng, constant_column=False) - 3).astype(dtype)
    else:
        x = images(rng, (40, 6), dtype)
    x[3, :] = 0  # a zero row
    x[:, 4] = 0  # a zero column
    want = normalize(x.astype(np.float64), norm, axis=axis)  # sklearn's axis=1 is rows
    ours_axis = -1 if axis == 1 else 0
    got = zm.normalize(x, norm, axis=ours_axis, dtype=np.float64)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12 if dtype == np.float64 else 1e-6,
                               atol=1e-15)
    got32 = zm.normalize(x, norm, axis=ours_axis)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=1e-6, atol=1e-7)
    assert np.all(got[3] == 0) and np.all(got[:, 4] == 0)  # zero vectors stay zero


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_normalize_signed_integer_minimum(backend, norm, dtype):
    """|-128| is 128, not int8's wrapped -128: the norms must not overflow the input type."""
    low = np.iinfo(dtype).min
    x = np.array([[low, 1], [low, -low // 2], [3, -4]], dtype=dtype)
    xf = x.astype(np.float64)
    norms = {"l1": np.abs(xf).sum(axis=1), "l2": np.sqrt((xf * xf).sum(axis=1)),
             "max": np.abs(xf).max(axis=1)}[norm]
    np.testing.assert_allclose(zm.normalize(x, norm, dtype=np.float64), xf / norms[:, None],
                               rtol=1e-12)


# --- against NumPy on image batches -----------------------------------------------------

IMAGE_AXES = [0, (0, 1, 2), None, (0, 2), (0, 1), (0, 3), -4]


@pytest.mark.parametrize("axis", IMAGE_AXES, ids=str)
@pytest.mark.parametrize("ddof", [0, 1])
def test_standard_scaler_images(backend, axis, ddof):
    rng = rng_for("std-img", axis, ddof)
    x = images(rng)
    x[:, 0, 0, 1] = 17  # a constant pixel (zero variance over axis 0)
    scaler = zm.StandardScaler(axis=axis, ddof=ddof).fit(x)
    want, mean, std, scale = numpy_standardized(x, axis, ddof)
    np.testing.assert_allclose(scaler.mean_, squeeze_axes(mean, 4, axis), rtol=RTOL64)
    np.testing.assert_allclose(scaler.var_, squeeze_axes(std**2, 4, axis), rtol=RTOL64)
    np.testing.assert_allclose(scaler.scale_, squeeze_axes(scale, 4, axis), rtol=RTOL64)
    assert scaler.mean_.dtype == scaler.var_.dtype == scaler.scale_.dtype == np.float64
    assert scaler.n_samples_seen_ == len(x)

    y = scaler.transform(x)
    assert y.dtype == np.float32 and y.shape == x.shape and y.flags.c_contiguous
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    back = scaler.inverse_transform(y)
    assert back.dtype == np.float64 and back.shape == x.shape
    np.testing.assert_allclose(back, x, atol=1e-4)
    np.testing.assert_array_equal(np.rint(back), x)

    # A later batch of another size goes through the same statistics.
    new = images(rng, (3,) + x.shape[1:])
    np.testing.assert_allclose(scaler.transform(new), (new - mean) / scale, rtol=1e-6,
                               atol=1e-6)

    out = np.full(x.shape, np.nan, np.float32)
    assert scaler.transform(x, out=out) is out
    np.testing.assert_array_equal(out, y)

    half = zm.StandardScaler(axis=axis, ddof=ddof, dtype=np.float16).fit(x).transform(x)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float64), want, rtol=1e-3, atol=1e-3)

    wide = zm.StandardScaler(axis=axis, ddof=ddof, dtype=np.float64).fit(x).transform(x)
    np.testing.assert_allclose(wide, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("axis", [0, (0, 1, 2), None, (0, 2)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_standard_scaler_channels_first(backend, axis, dtype):
    x = images(rng_for("std-cf", axis), (6, 4, 7, 3))
    scaler = zm.StandardScaler(axis=axis, channels_first=True, dtype=dtype).fit(x)
    want = numpy_standardized(x, axis)[0].transpose(0, 3, 1, 2)
    y = scaler.transform(x)
    assert y.shape == (6, 3, 4, 7) and y.dtype == dtype and y.flags.c_contiguous
    tol = 1e-6 if dtype == np.float32 else 1e-3
    np.testing.assert_allclose(y.astype(np.float64), want, rtol=tol, atol=tol)
    back = scaler.inverse_transform(y)  # channels-first in, the input's layout out
    assert back.shape == x.shape and back.dtype == np.float64
    np.testing.assert_allclose(back, x, atol=0.1 if dtype == np.float16 else 1e-4)
    out = np.empty((6, 3, 4, 7), dtype)
    assert scaler.transform(x, out=out) is out
    np.testing.assert_array_equal(out, y)


@pytest.mark.parametrize("axis", [0, (0, 1, 2), None, (0, 2)], ids=str)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_minmax_images(backend, axis, dtype):
    rng = rng_for("mm-img", axis, np.dtype(dtype).name)
    if np.dtype(dtype).kind == "f":
        x = rng.normal(size=(12, 4, 5, 3)).astype(dtype) * 100
    else:
        x = images(rng, (12, 4, 5, 3), dtype)
        info = np.iinfo(dtype)
        x[0, 0, 0, 0], x[1, 0, 0, 0] = info.min, info.max  # the extremes, exactly
    x[:, 1, 1, :] = x[0, 1, 1, 0]  # constant pixels
    low, high = -1.0, 2.0
    data_min = x.min(axis=axis, keepdims=True).astype(np.float64)
    data_max = x.max(axis=axis, keepdims=True).astype(np.float64)
    span = np.where(data_max == data_min, 1.0, data_max - data_min)
    want = (x - data_min) / span * (high - low) + low

    scaler = zm.MinMaxScaler(axis=axis, feature_range=(low, high)).fit(x)
    assert scaler.data_min_.dtype == np.float64
    np.testing.assert_array_equal(scaler.data_min_, squeeze_axes(data_min, 4, axis))  # exact
    np.testing.assert_array_equal(scaler.data_max_, squeeze_axes(data_max, 4, axis))
    np.testing.assert_array_equal(scaler.data_range_, squeeze_axes(data_max - data_min, 4,
                                                                   axis))
    y = scaler.transform(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(scaler.inverse_transform(y), x,
                               rtol=1e-6, atol=1e-6 * float(np.max(span)))
    np.testing.assert_allclose(zm.minmax_scale(x, (low, high), axis=axis), want, rtol=1e-6,
                               atol=1e-6)
    out = np.empty(x.shape, np.float64)
    assert zm.minmax_scale(x, (low, high), axis=axis, out=out, dtype=np.float64) is out
    # One fused affine step, (x - (min - low / scale)) * scale, rounds its offset at the
    # data's magnitude: float64 error of a few ulps of max|x| times the scale.
    atol = 16 * EPS64 * float(np.max(np.abs(x))) * (high - low) / float(np.min(span))
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=atol)
    half = zm.minmax_scale(x, (low, high), axis=axis, dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float64), want, rtol=1e-3, atol=1e-3)
    if axis == 0:  # per-pixel statistics: the constant pixels map to the low end
        np.testing.assert_allclose(y[:, 1, 1, :], low, rtol=0, atol=1e-6)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_normalize_finite_data_whose_sums_overflow(backend, norm):
    """Squares (or sums) past float64's range, even norms past it (L1 of [1e308, 1e308]):
    the unit vectors of the values scaled by their largest magnitude; no warning, and NaN or
    inf data still raise."""
    x = np.array([[1e200, -1e200, 3e199], [1e308, 1e308, 0.0], [1.0, 2.0, 2.0]])
    scaled = x / np.abs(x).max(axis=1, keepdims=True)
    norms = (np.abs(scaled).sum(1, keepdims=True) if norm == "l1"
             else np.sqrt((scaled * scaled).sum(1, keepdims=True)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = zm.normalize(x, norm, dtype=np.float64)
    np.testing.assert_allclose(got, scaled / norms, rtol=1e-14)
    np.testing.assert_allclose(got[1, :2], 0.5 if norm == "l1" else np.sqrt(0.5), rtol=1e-15)
    with pytest.raises(ValueError, match="NaN or infinite"):
        zm.normalize(np.array([[1.0, np.inf]]), norm)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("axis", [-1, (1, 2, 3), (1, 2), 0], ids=str)
def test_normalize_images(backend, norm, axis):
    x = images(rng_for("norm-img", norm, axis), (6, 4, 5, 3))
    x[2] = 0  # an all-black image
    xf = x.astype(np.float64)
    norms = {"l1": np.abs(xf).sum(axis=axis, keepdims=True),
             "l2": np.sqrt((xf * xf).sum(axis=axis, keepdims=True)),
             "max": np.abs(xf).max(axis=axis, keepdims=True)}[norm]
    want = xf / np.where(norms == 0, 1.0, norms)
    got = zm.normalize(x, norm, axis=axis)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not np.isnan(got).any()
    out = np.empty(x.shape, np.float64)
    assert zm.normalize(x, norm, axis=axis, out=out, dtype=np.float64) is out
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-15)


# --- Hypothesis: chunkings and shards -----------------------------------------------------

@st.composite
def fit_inputs(draw, dtypes=(np.uint8, np.float64)):
    """(x, axis): a 2-D feature matrix or an NHWC batch, with values from strategies.py's
    profiles (full range, extremes, few values, constant, large offset)."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    n = draw(st.integers(1, 30))
    if draw(st.booleans()):
        shape, axis = (n, draw(st.integers(1, 6))), 0
    else:
        shape = (n, draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.sampled_from([1, 3])))
        axis = draw(st.sampled_from([0, (0, 1, 2), None, (0, 2), (0, 1, 2, 3)]))
    profile = draw(st.sampled_from(PROFILES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = make_values(rng, dtype, math.prod(shape), profile).astype(dtype).reshape(shape)
    note(f"dtype={dtype} shape={shape} axis={axis} profile={profile}")
    return x, axis


def cut_points(draw, n, max_cuts=6):
    """Sorted split indices in [0, n]; repeats make empty chunks."""
    return sorted(draw(st.lists(st.integers(0, n), max_size=max_cuts)))


@given(inputs=fit_inputs(), data=st.data())
def test_partial_fit_any_chunking_equals_fit(backend, inputs, data):
    x, axis = inputs
    cuts = cut_points(data.draw, len(x))
    note(f"cuts={cuts}")
    whole = zm.StandardScaler(axis=axis).fit(x)
    parts = zm.StandardScaler(axis=axis)
    for chunk in np.split(x, cuts):
        parts.partial_fit(chunk)
    assert parts.n_samples_seen_ == whole.n_samples_seen_ == len(x)
    assert parts.moments_.count == whole.moments_.count
    assert parts.mean_.shape == whole.mean_.shape
    assert_stats_close(parts.mean_, whole.mean_, x, "mean")
    assert_stats_close(parts.var_, whole.var_, x, "var")
    assert not np.isnan(parts.var_).any()
    # fit() starts afresh, whatever was fitted before.
    again = parts.fit(x)
    assert again.n_samples_seen_ == len(x)
    assert_stats_close(again.var_, whole.var_, x, "var")


@given(inputs=fit_inputs(), data=st.data())
def test_merge_of_shards_equals_fit(backend, inputs, data):
    x, axis = inputs
    cuts = sorted({c for c in cut_points(data.draw, len(x), max_cuts=4) if 0 < c < len(x)})
    shards = [zm.StandardScaler(axis=axis).fit(part) for part in np.split(x, cuts)]
    merged = shards[0]
    if data.draw(st.booleans(), label="right to left"):
        merged = shards[-1]
        for shard in reversed(shards[:-1]):
            merged = shard.merge(merged)
    else:
        for shard in shards[1:]:
            merged = merged.merge(shard)
    whole = zm.StandardScaler(axis=axis).fit(x)
    assert merged.n_samples_seen_ == len(x)
    assert_stats_close(merged.mean_, whole.mean_, x, "mean")
    assert_stats_close(merged.var_, whole.var_, x, "var")
    assert merged.get_params() == whole.get_params()
    # The shards themselves are unchanged, and a merged scaler transforms.
    assert shards[0].n_samples_seen_ == len(np.split(x, cuts)[0])
    y = merged.transform(x)
    assert y.shape == x.shape and np.all(np.isfinite(y))


@given(inputs=fit_inputs(dtypes=(np.uint8, np.int16, np.float64)), data=st.data())
def test_minmax_partial_fit_any_chunking_equals_fit(backend, inputs, data):
    x, axis = inputs
    cuts = sorted({c for c in cut_points(data.draw, len(x)) if 0 < c < len(x)})  # none empty
    whole = zm.MinMaxScaler(axis=axis).fit(x)
    chunks = np.split(x, cuts)
    # The first chunk by fit(): partial_fit on a new scaler has a test of its own below.
    parts = zm.MinMaxScaler(axis=axis).fit(chunks[0])
    for chunk in chunks[1:]:
        parts.partial_fit(chunk)
    np.testing.assert_array_equal(parts.data_min_, whole.data_min_)
    np.testing.assert_array_equal(parts.data_max_, whole.data_max_)
    assert parts.n_samples_seen_ == len(x)
    np.testing.assert_array_equal(parts.transform(x), whole.transform(x))


def test_minmax_partial_fit_on_a_new_scaler(backend):
    x = np.array([[0, 10], [5, 20], [10, 30]], dtype=np.uint8)
    scaler = zm.MinMaxScaler().partial_fit(x[:1]).partial_fit(x[1:])
    np.testing.assert_array_equal(scaler.data_min_, [0, 10])
    np.testing.assert_array_equal(scaler.data_max_, [10, 30])
    assert scaler.n_samples_seen_ == 3


# --- destandardize --------------------------------------------------------------------------

@st.composite
def round_trip_cases(draw):
    dtype = np.dtype(draw(st.sampled_from([np.uint8, np.uint8, np.uint16])))
    ndim = draw(st.integers(3, 5))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim - 1)) + \
        (draw(st.sampled_from([1, 3, 4])),)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = make_values(rng, dtype, math.prod(shape), draw(st.sampled_from(PROFILES)))
    x = x.astype(dtype).reshape(shape)
    kind = draw(st.sampled_from(["scalar", "channel", "pixel"]))
    stats_shape = {"scalar": (), "channel": shape[-1:], "pixel": shape[-3:]}[kind]
    top = float(np.iinfo(dtype).max)
    if draw(st.booleans()):  # the data's own statistics (what users do)
        axes = tuple(range(ndim - len(stats_shape)))
        mean = x.mean(axis=axes, dtype=np.float64)
        std = x.std(axis=axes, dtype=np.float64)
        std = np.where(std == 0, 1.0, std)
    else:  # arbitrary ones, far from the data included
        mean = rng.uniform(-0.5 * top, 1.5 * top, stats_shape)
        std = np.exp(rng.uniform(np.log(1e-2), np.log(4 * top), stats_shape))
    channels_first = draw(st.booleans())
    via = np.dtype(draw(st.sampled_from([np.float32, np.float64])))
    note(f"shape={shape} dtype={dtype} stats={kind} channels_first={channels_first} via={via}")
    return x, mean, std, channels_first, via


@given(case=round_trip_cases())
def test_standardize_then_destandardize_is_exact(backend, case):
    x, mean, std, channels_first, via = case
    y = zm.standardize(x, mean, std, channels_first=channels_first, dtype=via)
    back = zm.destandardize(y, mean, std, channels_first=channels_first, dtype=x.dtype)
    assert back.dtype == x.dtype and back.shape == x.shape and back.flags.c_contiguous
    np.testing.assert_array_equal(back, x)
    # The float64 inverse is the same value before rounding.
    wide = zm.destandardize(y, mean, std, channels_first=channels_first, dtype=np.float64)
    np.testing.assert_allclose(wide, x, rtol=0, atol=0.01)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_destandardize_rounds_half_to_even_and_clamps(backend, dtype):
    top = float(np.iinfo(dtype).max)
    y = np.array([0.5, 1.5, 2.5, 3.5, -0.5, -0.49, -3.0, 0.49999, 7.5000001, top - 0.5,
                  top + 0.5, top + 100, 1e12, -1e12, np.inf, -np.inf, np.nan])
    want = np.array([0, 2, 2, 4, 0, 0, 0, 0, 8, top - 1, top, top, top, 0, top, 0, 0])
    got = zm.destandardize(y, 0.0, 1.0, dtype=dtype)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want.astype(dtype))
    # With statistics: y * std + mean before the rounding.
    got = zm.destandardize(np.array([-1.0, 0.0, 0.25, 1.0]), 100.0, 2.0, dtype=dtype)
    np.testing.assert_array_equal(got, np.array([98, 100, 100, 102], dtype))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_destandardize_floats_are_not_rounded(backend, dtype):
    rng = rng_for("destd-float", np.dtype(dtype).name)
    y = rng.normal(size=(3, 4, 5, 2))
    mean, std = np.array([10.25, -3.5]), np.array([2.0, 0.75])
    got = zm.destandardize(y, mean, std, dtype=dtype)
    assert got.dtype == dtype
    tol = {np.float16: 1e-2, np.float32: 1e-6, np.float64: 1e-14}[dtype]
    np.testing.assert_allclose(got.astype(np.float64), y * std + mean, rtol=tol, atol=tol)
    assert np.any(got != np.rint(got))


@pytest.mark.parametrize("stats", ["scalar", "channel", "pixel"])
def test_destandardize_channels_first(backend, stats):
    rng = rng_for("destd-cf", stats)
    y = rng.normal(size=(2, 3, 4, 5))  # N, C, H, W
    mean = {"scalar": 120.0, "channel": np.array([120.0, 110.0, 100.0]),
            "pixel": rng.uniform(50, 200, (4, 5, 3))}[stats]  # channels-last shapes
    std = {"scalar": 60.0, "channel": np.array([60.0, 55.0, 50.0]),
           "pixel": rng.uniform(20, 80, (4, 5, 3))}[stats]
    last = y.transpose(0, 2, 3, 1)
    want = np.clip(np.rint(last * std + mean), 0, 255)
    got = zm.destandardize(y, mean, std, channels_first=True)
    assert got.shape == (2, 4, 5, 3) and got.dtype == np.uint8
    # Away from .5 ties the fused and the direct computations round the same way.
    np.testing.assert_array_equal(got, want.astype(np.uint8))
    out = np.empty((2, 4, 5, 3), np.float64)
    assert zm.destandardize(y, mean, std, channels_first=True, dtype=np.float64, out=out) is out
    np.testing.assert_allclose(out, last * std + mean, rtol=1e-12)


@pytest.mark.parametrize("channels_first", [False, True])
def test_destandardize_of_a_mean_far_beyond_std(backend, channels_first):
    """mean / std past float64's range (the kernel's form of y * std + mean overflows):
    y * std + mean itself, in every layout."""
    rng = rng_for("destd-far", str(channels_first))
    y = rng.normal(size=(2, 3, 4, 5)) if channels_first else rng.normal(size=(2, 4, 5, 3))
    mean, std = np.array([1e300, -1e300, 5.0]), np.array([1e-10, 1e-10, 2.0])
    last = y.transpose(0, 2, 3, 1) if channels_first else y
    got = zm.destandardize(y, mean, std, channels_first=channels_first, dtype=np.float64)
    np.testing.assert_allclose(got, last * std + mean, rtol=1e-15)
    out = np.empty((2, 4, 5, 3), np.uint8)
    zm.destandardize(y, mean, std, channels_first=channels_first, out=out)
    np.testing.assert_array_equal(out, np.clip(np.rint(last * std + mean), 0, 255))


def test_minmax_ranges_past_float64_are_rejected(backend):
    """A range max - min past float64's (or a subnormal one, whose scale overflows) has no
    affine form; a clear ValueError instead of inf and NaN."""
    for x in (np.array([-1e308, 1e308]), np.array([0.0, 5e-324, 1e-323])):
        with pytest.raises(ValueError, match="range"):
            zm.minmax_scale(x, dtype=np.float64)
        scaler = zm.MinMaxScaler(axis=0).fit(x[:, None])
        with pytest.raises(ValueError, match="range"):
            scaler.transform(x[:, None])


def test_destandardize_errors():
    y = np.zeros((2, 4, 4, 3))
    with pytest.raises(TypeError):
        zm.destandardize(y, 0, 1, dtype=np.int32)
    with pytest.raises(ValueError):
        zm.destandardize(y, [0, 0], 1)  # 2 means, 3 channels
    with pytest.raises(ValueError):
        zm.destandardize(y, 0, 0)  # std must be > 0
    with pytest.raises(ValueError):
        zm.destandardize(np.zeros((4, 3)), 0, 1, channels_first=True)  # needs 3 dimensions


# --- persistence ----------------------------------------------------------------------------

SAVE_PARAMS = [
    {},
    {"axis": (0, 1, 2), "ddof": 1},
    {"axis": None, "with_mean": False, "dtype": np.float16},
    {"axis": (0, 2), "channels_first": True, "dtype": np.float64},
    {"axis": -4, "with_std": False},
]


@pytest.mark.parametrize("params", SAVE_PARAMS, ids=lambda p: ",".join(map(str, p)) or "default")
def test_save_load_round_trip(backend, tmp_path, params):
    x = images(rng_for("save", repr(params)), (30, 4, 5, 3))
    first, rest = x[:11], x[11:]
    scaler = zm.StandardScaler(**params).fit(first)
    path = tmp_path / "scaler.npz"
    scaler.save(path)
    with np.load(path, allow_pickle=False) as data:  # no pickle anywhere in the file
        assert all(data[name].dtype != object for name in data.files)
    loaded = zm.StandardScaler.load(path)
    assert type(loaded) is zm.StandardScaler
    assert loaded.get_params() == scaler.get_params()
    assert np.dtype(loaded.dtype) == np.dtype(scaler.dtype)
    assert loaded.n_samples_seen_ == scaler.n_samples_seen_
    assert loaded.moments_.count == scaler.moments_.count
    np.testing.assert_array_equal(loaded.moments_.mean, scaler.moments_.mean)
    np.testing.assert_array_equal(loaded.moments_.m2, scaler.moments_.m2)
    for name in ("mean_", "var_", "scale_"):
        got, want = getattr(loaded, name), getattr(scaler, name)
        assert (got is None) == (want is None)
        if want is not None:
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.transform(rest), scaler.transform(rest))

    # Loaded, it goes on exactly as if it had seen everything.
    loaded.partial_fit(rest[:5]).partial_fit(rest[5:])
    whole = zm.StandardScaler(**params).fit(x)
    assert loaded.n_samples_seen_ == len(x)
    assert_stats_close(loaded.moments_.mean, whole.moments_.mean, x, "mean")
    assert_stats_close(loaded.moments_.var(), whole.moments_.var(), x, "var")
    with pytest.raises(ValueError):  # and keeps the fitted shape
        loaded.partial_fit(x[0])

    # A file object works too.
    buffer = io.BytesIO()
    scaler.save(buffer)
    buffer.seek(0)
    np.testing.assert_array_equal(zm.StandardScaler.load(buffer).moments_.m2,
                                  scaler.moments_.m2)


def test_save_load_2d_keeps_n_features_in(backend, tmp_path):
    x = features_2d(rng_for("save-2d"))
    scaler = zm.StandardScaler(dtype=np.float64).fit(x)
    scaler.save(tmp_path / "s.npz")
    loaded = zm.StandardScaler.load(tmp_path / "s.npz")
    assert loaded.n_features_in_ == scaler.n_features_in_ == x.shape[1]
    np.testing.assert_array_equal(loaded.transform(x), scaler.transform(x))


@pytest.mark.parametrize("axis", [(0, 1, 2), 0, None], ids=str)
def test_to_dict_is_json_ready(backend, axis):
    x = images(rng_for("to_dict", axis), (20, 4, 5, 3))
    scaler = zm.StandardScaler(axis=axis).fit(x)
    plain = scaler.to_dict()
    decoded = json.loads(json.dumps(plain))
    assert decoded == plain
    mean, std = x.mean(axis=axis), x.std(axis=axis)
    np.testing.assert_allclose(np.array(decoded["mean"]), mean, rtol=1e-12)
    np.testing.assert_allclose(np.array(decoded["std"]), std, rtol=1e-12)
    assert decoded["count"] == x.size // max(1, np.asarray(mean).size)
    assert decoded["n_samples_seen"] == len(x)

    unit = json.loads(json.dumps(scaler.to_dict(max_pixel_value=255)))
    assert unit["max_pixel_value"] == 255
    np.testing.assert_allclose(np.array(unit["mean"]), mean / 255, rtol=1e-12)
    np.testing.assert_allclose(np.array(unit["std"]), std / 255, rtol=1e-12)
    if axis == (0, 1, 2):
        assert len(unit["mean"]) == len(unit["std"]) == 3  # torchvision's Normalize(mean, std)
        # ToTensor() then Normalize(mean, std) is the scaler's transform.
        tensor = x.astype(np.float64) / 255
        normalized = (tensor - np.array(unit["mean"])) / np.array(unit["std"])
        np.testing.assert_allclose(scaler.transform(x), normalized, rtol=1e-5, atol=1e-5)


def test_numpy_integer_parameters_are_saved_and_json_ready(tmp_path):
    """Parameters coming from NumPy (np.int64 axes and ddof from a grid) still serialize."""
    x = images(rng_for("np-int-params"), (6, 2, 2, 3))
    scaler = zm.StandardScaler(axis=(np.int64(0), np.int64(1), np.int64(2)),
                               ddof=np.int64(1)).fit(x)
    json.dumps(scaler.to_dict())
    scaler.save(tmp_path / "s.npz")
    loaded = zm.StandardScaler.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(loaded.var_, scaler.var_)


# --- streaming ------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, (0, 1, 2)], ids=str)
def test_fit_stream_generator_list_and_array(backend, axis):
    x = images(rng_for("stream", axis), (50, 4, 5, 3))
    whole = zm.StandardScaler(axis=axis).fit(x)
    sources = {
        "generator": (batch for batch in np.array_split(x, 7)),
        "list": list(np.array_split(x, 3)),
        "iterator": iter(np.array_split(x, 4)),
        "array": x,
    }
    for name, source in sources.items():
        scaler = zm.fit_stream(source, axis=axis, batch_size=8)
        assert isinstance(scaler, zm.StandardScaler), name
        assert scaler.axis == axis and scaler.n_samples_seen_ == len(x), name
        assert_stats_close(scaler.mean_, whole.mean_, x, "mean")
        assert_stats_close(scaler.var_, whole.var_, x, "var")
    # An array is sliced batch_size samples at a time, the last batch shorter.
    sizes = [len(b) for b in zm.iter_batches(x, 16)]
    assert sizes == [16, 16, 16, 2]
    with pytest.raises(ValueError):
        list(zm.iter_batches(x, 0))


def test_fit_stream_progress_bar(backend, capfd):
    pytest.importorskip("tqdm")
    x = images(rng_for("progress"), (40, 3, 3, 3))
    scaler = zm.fit_stream(x, axis=(0, 1, 2), progress=True, batch_size=8)
    np.testing.assert_allclose(scaler.mean_, x.mean(axis=(0, 1, 2)), rtol=1e-12)
    err = capfd.readouterr().err
    assert "5/5" in err  # tqdm's bar, knowing the number of batches of an array
    scaler = zm.fit_stream((b for b in np.array_split(x, 3)), axis=(0, 1, 2), progress=True)
    assert scaler.n_samples_seen_ == 40
    assert "3batch" in capfd.readouterr().err


def test_fit_stream_progress_without_tqdm_warns(backend, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    x = images(rng_for("progress-no-tqdm"), (10, 2, 2, 3))
    with pytest.warns(RuntimeWarning, match="tqdm"):
        scaler = zm.fit_stream(x, axis=0, progress=True, batch_size=4)
    assert scaler.n_samples_seen_ == 10


def _traced_peak(function):
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("axis", [0, (0, 1, 2)], ids=str)
def test_memmap_streaming_in_constant_memory(backend, tmp_path, axis):
    """A .npy file much larger than a batch: np.load(mmap_mode="r") read in slices gives the
    in-memory answer, and nothing near the file's size is ever allocated (NumPy reports its
    allocations to tracemalloc; the pages of a memory map are not allocations)."""
    x = images(rng_for("memmap", axis), (5000, 16, 16, 3))  # 3.7 MiB
    path = tmp_path / "train.npy"
    np.save(path, x)
    whole = zm.StandardScaler(axis=axis).fit(x)
    want_mean, want_std = zm.dataset_stats(x, axis=axis, batch_size=len(x))
    per_image = zm.dataset_stats(x, axis=axis, std="mean_of_images", batch_size=len(x))[1]
    del x
    batch_size = 20  # 15 KiB of uint8 a batch; its float64 copy is 120 KiB
    budget = 1 << 20

    data = np.load(path, mmap_mode="r")
    zm.fit_stream(data[:2 * batch_size], axis=axis, batch_size=batch_size)  # JIT, warm-up
    zm.dataset_stats(data[:2 * batch_size], axis=axis, std="mean_of_images", batch_size=8)

    scaler, peak = _traced_peak(lambda: zm.fit_stream(data, axis=axis, batch_size=batch_size))
    assert peak < budget, f"fit_stream allocated {peak} bytes on a {data.nbytes}-byte file"
    assert scaler.n_samples_seen_ == len(data)
    np.testing.assert_allclose(scaler.mean_, whole.mean_, rtol=1e-12)
    np.testing.assert_allclose(scaler.var_, whole.var_, rtol=1e-11)

    scaler, peak = _traced_peak(lambda: zm.fit_stream(
        zm.iter_batches(data, batch_size), axis=axis))
    assert peak < budget
    np.testing.assert_allclose(scaler.var_, whole.var_, rtol=1e-11)

    for std, want in (("pooled", want_std), ("mean_of_images", per_image)):
        (mean, got), peak = _traced_peak(lambda std=std: zm.dataset_stats(
            data, axis=axis, std=std, batch_size=batch_size))
        assert peak < budget, f"dataset_stats({std!r}) allocated {peak} bytes"
        np.testing.assert_allclose(mean, want_mean, rtol=1e-12)
        np.testing.assert_allclose(got, want, rtol=1e-11)


@pytest.mark.parametrize("axis", [(0, 1, 2), None, (0, 1)], ids=str)
@pytest.mark.parametrize("ddof", [0, 1])
def test_dataset_stats_definitions(backend, axis, ddof):
    x = images(rng_for("dataset-stats", axis, ddof), (30, 5, 4, 3))
    x[3] = 200  # a flat image: its own std is 0, the pooled one is not
    image_axes = tuple(ax for ax in ((0, 1, 2, 3) if axis is None else axis) if ax != 0)
    pooled_want = x.std(axis=axis, ddof=ddof)
    per_image_want = x.std(axis=image_axes, ddof=ddof).mean(axis=0)
    sources = lambda: {"array": x, "list": list(np.array_split(x, 4)),  # noqa: E731
                       "generator": (b for b in np.array_split(x, 6))}
    for name, source in sources().items():
        mean, pooled = zm.dataset_stats(source, axis=axis, std="pooled", ddof=ddof,
                                        batch_size=7)
        assert mean.dtype == pooled.dtype == np.float64
        np.testing.assert_allclose(mean, x.mean(axis=axis), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(pooled, pooled_want, rtol=1e-12, err_msg=name)
    for name, source in sources().items():
        mean, per_image = zm.dataset_stats(source, axis=axis, std="mean_of_images",
                                           ddof=ddof, batch_size=7)
        np.testing.assert_allclose(mean, x.mean(axis=axis), rtol=1e-12, err_msg=name)
        assert per_image.shape == np.shape(pooled_want)
        np.testing.assert_allclose(per_image, per_image_want, rtol=1e-12, err_msg=name)
    assert np.all(per_image < pooled)  # it leaves out the spread between images
    # The default is per-channel and pooled.
    mean, pooled = zm.dataset_stats(x)
    np.testing.assert_allclose(pooled, x.std(axis=(0, 1, 2)), rtol=1e-12)


def test_dataset_stats_errors():
    x = np.zeros((4, 2, 2, 3), np.uint8)
    for bad in ("Pooled", "mean", "", None):
        with pytest.raises(ValueError, match="pooled"):
            zm.dataset_stats(x, std=bad)
    with pytest.raises(ValueError):
        zm.dataset_stats([], axis=(0, 1, 2))
    with pytest.raises(ValueError):
        zm.dataset_stats(x, axis=(1, 2))  # must reduce the batch axis


# --- constant features, zero variance, no NaN ----------------------------------------------

CONSTANTS = [(np.uint8, 0), (np.uint8, 255), (np.uint16, 1234), (np.float32, 0.1),
             (np.float32, np.float32(np.pi)), (np.float64, 0.1), (np.float64, 1e9 + 0.1)]


@pytest.mark.parametrize("dtype,value", CONSTANTS, ids=lambda v: getattr(v, "__name__", None)
                         or repr(v))
@pytest.mark.parametrize("shape,axis", [((100, 3), 0), ((1000, 3), 0), ((100, 2, 2, 3), 0),
                                        ((100, 2, 2, 3), (0, 1, 2))], ids=str)
def test_constant_features_standard_scaler(backend, dtype, value, shape, axis):
    """scale_ is 1 and the transform is 0 for a constant feature, as scikit-learn: the
    variance of a constant must come out 0 (or be recognised as a rounding error)."""
    x = np.full(shape, value, dtype)
    scaler = zm.StandardScaler(axis=axis, dtype=np.float64).fit(x)
    assert np.all(scaler.scale_ == 1.0), scaler.scale_
    y = scaler.transform(x)
    # x - mean_ divided by 1: what is left is the mean's rounding error, relative to |value|.
    assert np.all(np.abs(y) <= 1e-6 + 1e-13 * abs(float(value))), y.ravel()[:4]
    np.testing.assert_allclose(scaler.inverse_transform(y), x, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_zero_variance_columns_among_others(backend, dtype):
    rng = rng_for("zero-var", np.dtype(dtype).name)
    x = images(rng, (40, 5), np.uint8).astype(dtype)
    x[:, 1] = 7
    x[:, 3] = 0
    for ddof in (0, 1):
        scaler = zm.StandardScaler(ddof=ddof).fit(x)
        np.testing.assert_array_equal(scaler.var_[[1, 3]], 0)
        np.testing.assert_array_equal(scaler.scale_[[1, 3]], 1)
        y = scaler.transform(x)
        np.testing.assert_array_equal(y[:, [1, 3]], 0)
        assert np.all(np.isfinite(y))
    # One sample with ddof=1: no variance at all, still no NaN in the output.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        one = zm.StandardScaler(ddof=1).fit(x[:1])
    np.testing.assert_array_equal(one.scale_, 1)
    np.testing.assert_array_equal(one.transform(x[:1]), 0)
    assert np.all(np.isfinite(one.transform(x)))
    # Mean-only and std-only scalers on constant data.
    assert np.all(zm.StandardScaler(with_mean=False).fit(x).transform(x)[:, 1] == 7)
    assert np.all(zm.StandardScaler(with_std=False).fit(x).transform(x)[:, 1] == 0)


@pytest.mark.parametrize("feature_range", [(0, 1), (-2, 3), (0.5, 0.75)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_minmax_constant_feature_maps_to_low_end(backend, feature_range, dtype):
    x = np.zeros((20, 3), dtype)
    x[:, 0] = np.arange(20)
    x[:, 1] = 9
    x[:, 2] = dtype(0.1) if np.dtype(dtype).kind == "f" else 3
    low = feature_range[0]
    scaler = zm.MinMaxScaler(feature_range=feature_range).fit(x)
    y = scaler.transform(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[:, 1:], low, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y[:, 0], np.linspace(*feature_range, 20), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(scaler.data_range_[1:], 0)
    np.testing.assert_allclose(scaler.inverse_transform(y), x, rtol=1e-6, atol=1e-6)
    scaled = zm.minmax_scale(x, feature_range, axis=0)
    np.testing.assert_allclose(scaled[:, 1:], low, rtol=0, atol=1e-6)
    whole = zm.minmax_scale(np.full((3, 4), 5.0), feature_range)
    np.testing.assert_allclose(whole, low, rtol=0, atol=1e-6)
    clipped = zm.MinMaxScaler(feature_range=feature_range, clip=True).fit(x).transform(x)
    assert np.all(clipped >= feature_range[0]) and np.all(clipped <= feature_range[1])


# --- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("make", [zm.StandardScaler, zm.MinMaxScaler])
def test_not_fitted(make):
    scaler = make()
    x = np.ones((3, 2))
    for call in (lambda: scaler.transform(x), lambda: scaler.inverse_transform(x)):
        with pytest.raises(NotFittedError) as info:
            call()
        assert isinstance(info.value, ValueError)
    if make is zm.StandardScaler:
        for call in (lambda: scaler.save(io.BytesIO()), lambda: scaler.to_dict(),
                     lambda: zm.StandardScaler().fit(x).merge(scaler),
                     lambda: scaler.merge(zm.StandardScaler().fit(x)),
                     lambda: zm.fit_stream([])):
            with pytest.raises(NotFittedError):
                call()


@pytest.mark.parametrize("make", [zm.StandardScaler, zm.MinMaxScaler])
def test_mismatched_batches(backend, make):
    scaler = make().fit(np.ones((3, 2)))
    for bad in (np.ones((3, 3)), np.ones((3, 2, 1)), np.ones((3,))):
        with pytest.raises(ValueError):
            scaler.partial_fit(bad)
        with pytest.raises(ValueError):
            scaler.transform(bad)
    image_scaler = make(axis=(0, 1, 2)).fit(np.ones((2, 4, 4, 3), np.uint8))
    image_scaler.partial_fit(np.ones((5, 8, 2, 3), np.uint8))  # per channel: any image size
    with pytest.raises(ValueError):
        image_scaler.partial_fit(np.ones((2, 4, 4, 4), np.uint8))
    pixel_scaler = make(axis=0).fit(np.ones((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        pixel_scaler.partial_fit(np.ones((2, 4, 5, 3), np.uint8))
    assert scaler.n_samples_seen_ == 3  # a rejected batch changes nothing


@pytest.mark.parametrize("feature_range", [(1, 0), (1, 1), (0, np.nan), (np.inf, 1)],
                         ids=str)
def test_bad_feature_range(feature_range):
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="feature_range"):
        zm.MinMaxScaler(feature_range=feature_range).fit(x)
    with pytest.raises(ValueError, match="feature_range"):
        zm.minmax_scale(x, feature_range)


def test_bad_norm_and_bad_data():
    with pytest.raises(ValueError, match="norm"):
        zm.normalize(np.ones((3, 2)), "l3")
    with pytest.raises(ValueError, match="norm"):
        zm.normalize(np.ones((3, 2)), "L2")
    with pytest.raises(ValueError):
        zm.MinMaxScaler().fit(np.array([[np.nan, 1.0], [2.0, 3.0]]))
    with pytest.raises(ValueError):
        zm.minmax_scale(np.array([np.inf, 1.0]))
    with pytest.raises(TypeError):
        zm.StandardScaler().fit(np.ones((3, 2), bool))


def test_merge_of_mismatched_scalers():
    x = np.ones((3, 2, 2, 3), np.uint8)
    base = zm.StandardScaler(axis=0).fit(x)
    with pytest.raises(ValueError):  # other statistics' shape
        base.merge(zm.StandardScaler(axis=0).fit(np.ones((3, 2, 2, 4), np.uint8)))
    with pytest.raises(ValueError):  # other axis
        base.merge(zm.StandardScaler(axis=(0, 1, 2)).fit(x))
    with pytest.raises(ValueError):  # other parameters
        base.merge(zm.StandardScaler(axis=0, ddof=1).fit(x))
    with pytest.raises(ValueError):
        base.merge(zm.StandardScaler(axis=0, channels_first=True).fit(x))
    with pytest.raises(TypeError):
        base.merge(zm.MinMaxScaler(axis=0).fit(x))
    assert base.merge(zm.StandardScaler(axis=0).fit(x)).n_samples_seen_ == 6
