"""scikit-learn-style estimators and streaming statistics on top of the fused kernels."""

import json
import math
import os
import warnings

import numpy as np

from zmfast._normalize import check_stats, destandardize, run_affine, standardize, usable_std
from zmfast._stats import Moments, RunningSums, moments
from zmfast._validate import normalize_axes, output_dtype, real_array


class _Estimator:
    """get_params/set_params as scikit-learn's BaseEstimator, so ``sklearn.base.clone`` works:
    the constructor stores its arguments unchanged under their own names."""

    _param_names = ()

    def get_params(self, deep=True):
        """The constructor's arguments, as scikit-learn's ``get_params``."""
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params):
        """Set constructor arguments, as scikit-learn's ``set_params``; returns self."""
        for name, value in params.items():
            if name not in self._param_names:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                 f"valid ones are {self._param_names}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __sklearn_is_fitted__(self):
        """Whether fit or partial_fit has run, for scikit-learn's ``check_is_fitted``."""
        return getattr(self, "_fitted_ndim", None) is not None

    def __sklearn_tags__(self):
        """scikit-learn's tags of a transformer that takes no target: scikit-learn 1.6 and
        later ask for them in ``check_is_fitted`` (so in a Pipeline's ``transform`` when
        this scaler is its last step)."""
        from sklearn.utils import Tags, TargetTags, TransformerTags
        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags())

    def _check_fitted(self):
        if getattr(self, "_fitted_ndim", None) is None:
            raise _not_fitted_error()(f"this {type(self).__name__} is not fitted yet; call fit "
                                      "or partial_fit first")

    def _axes_for(self, x):
        """Reduced axes of ``x``; later batches must keep the fitted statistics' shape."""
        axes = normalize_axes(self.axis, x.ndim)
        kept = tuple(n for ax, n in enumerate(x.shape) if ax not in axes)
        fitted = getattr(self, "_fitted_kept", None)
        if fitted is not None and (kept != fitted or x.ndim != self._fitted_ndim):
            raise ValueError(f"x of shape {x.shape} gives statistics of shape {kept}, but this "
                             f"{type(self).__name__} was fitted with shape {fitted}")
        return axes, kept

    def _counted(self, x, kept, samples=None):
        """Record a fitted batch: samples seen (``samples``, or all of ``x``'s) and the shape
        the statistics must keep."""
        self.n_samples_seen_ += x.shape[0] if samples is None else samples
        self._fitted_ndim, self._fitted_kept = x.ndim, kept
        self.n_features_in_ = x.shape[1] if x.ndim == 2 else None
        return self

    def _stats_shape(self):
        """The statistics reshaped with the reduced axes kept as 1, for broadcasting."""
        axes = normalize_axes(self.axis, self._fitted_ndim)
        shape = iter(self._fitted_kept)
        return tuple(1 if ax in axes else next(shape) for ax in range(self._fitted_ndim))

    def _trailing(self, stats):
        """Statistics shaped to broadcast against the trailing axes of a transformed batch:
        the leading reduced axes (the batch axis) are dropped."""
        shape = self._stats_shape()
        lead = 0
        while lead < len(shape) and shape[lead] == 1:
            lead += 1
        return np.reshape(stats, shape[lead:])


def _not_fitted_error():
    try:
        from sklearn.exceptions import NotFittedError
        return NotFittedError
    except ImportError:
        return ValueError


class StandardScaler(_Estimator):
    """Standardize image batches with statistics fitted over a training set.

    A fused, image-aware version of :class:`sklearn.preprocessing.StandardScaler`: ``axis``
    names the reduced axes (0: the per-pixel mean image over the batch; ``(0, 1, 2)``:
    per-channel statistics of NHWC batches; None: one global mean and std). ``partial_fit``
    adds 8- and 16-bit integer batches into exact integer sums (bit-identical to ``fit`` on
    the concatenation, whatever the batching) and merges other batches' moments (Chan et
    al.); ``transform`` is one pass from uint8 to float32 (or float16 or float64, optionally
    channels-first).

    Attributes after fitting: ``mean_``, ``var_``, ``scale_`` (float64 arrays of the
    statistics' shape; ``scale_`` is 1 where the variance is 0, as scikit-learn),
    ``n_samples_seen_`` (samples along axis 0) and ``moments_`` (a :class:`Moments`).

    >>> import numpy as np, zmfast as zm
    >>> x = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    >>> scaler = zm.StandardScaler(axis=(0, 1, 2))
    >>> for batch in np.array_split(x, 5):
    ...     _ = scaler.partial_fit(batch)
    >>> bool(np.allclose(scaler.mean_, x.mean(axis=(0, 1, 2))))
    True
    >>> scaler.transform(x).dtype
    dtype('float32')
    """

    _param_names = ("axis", "with_mean", "with_std", "ddof", "dtype", "channels_first")

    def __init__(self, axis=0, *, with_mean=True, with_std=True, ddof=0, dtype=np.float32,
                 channels_first=False):
        self.axis = axis
        self.with_mean = with_mean
        self.with_std = with_std
        self.ddof = ddof
        self.dtype = dtype
        self.channels_first = channels_first

    def _reset(self):
        self._merged = None  # float moments of batches that took the general path
        self._sums = None  # exact integer sums of the batches that allow them
        self._try_add = None  # the sums' streaming call, once there are sums
        self._samples = np.zeros(1, dtype=np.int64)  # n_samples_seen_ (the sums add to it)
        self._combined = None  # both merged, cached ...
        self._combined_count = 0  # ... while the sums hold this many values
        self._fitted_ndim = None
        self._fitted_kept = None

    def __getstate__(self):  # pickle, copy and joblib: _try_add is rebuilt from _sums
        state = self.__dict__.copy()
        state.pop("_try_add", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "_sums" in state:
            self._try_add = None if self._sums is None else self._sums.try_add

    @property
    def n_samples_seen_(self):
        """Samples seen along axis 0."""
        if "_samples" not in self.__dict__:
            raise AttributeError("n_samples_seen_ is set by fit or partial_fit")
        return int(self._samples[0])

    @n_samples_seen_.setter
    def n_samples_seen_(self, value):
        if "_samples" not in self.__dict__:
            self._samples = np.zeros(1, dtype=np.int64)
        self._samples[0] = value

    def fit(self, x, y=None):
        """Compute the statistics of ``x`` (``y`` is ignored, as in scikit-learn)."""
        x = real_array(x, "x")
        if x.size == 0:
            raise ValueError(f"cannot fit on an empty array of shape {x.shape}")
        self._reset()
        return self._add_batch(x, stream=False)

    def partial_fit(self, x, y=None):
        """Merge the statistics of the batch ``x`` into the fitted ones.

        8- and 16-bit integer batches reduced over leading axes (``axis=0``, or ``(0, 1, 2)``
        of NHWC) add into exact running integer sums, so a stream of small batches costs
        about what one ``fit`` does and gives bit-identical statistics; other batches merge
        float64 moments (Chan et al.), equal to ``fit`` up to rounding.
        """
        try_add = self.__dict__.get("_try_add")
        if try_add is not None and try_add(x):  # the streaming fast path: checks, sums and
            return self                         # samples seen in one call
        return self._add_batch(x, stream=True)

    def _add_batch(self, x, stream):
        """``partial_fit`` past its fast path. ``stream``: more batches will follow, so the
        first batch of new integer sums takes the streaming call too (cifar in 64-image
        batches: 0.96x the time); ``fit``'s single batch does not (the cpp backend's pending
        32-bit sums would cost it a set-up and a flush: 1.3x-1.6x the time per pixel)."""
        x = real_array(x, "x")
        if x.ndim == 0:
            raise ValueError("x must have at least one dimension (the samples)")
        if "_sums" not in self.__dict__:
            self._reset()
        axes, kept = self._axes_for(x)
        if x.size == 0:  # an empty batch of a stream adds nothing
            return self
        if self._sums is None:
            self._sums = RunningSums.for_batch(x, axes, self._samples)
            self._try_add = None if self._sums is None else self._sums.try_add
            if stream and self._try_add is not None and self._try_add(x):
                self._combined = None
                return self._counted(x, kept, samples=0)  # try_add counted the samples
        if self._sums is not None and self._sums.accepts(x):
            if not self._sums.has_room(x):  # keep the integers exact: fold them in first
                self._merged = self._current_moments()
                self._sums.clear()
            self._sums.add(x)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                batch = moments(x, axis=axes)
            # A NaN or inf value makes its mean non-finite (checked before anything merges;
            # NumPy's warnings for inf - inf are then noise). scikit-learn skips NaN as
            # missing; per-lane counts would cost these kernels a second pass, so NaN is
            # refused, as by MinMaxScaler, not turned into a NaN mean.
            if not np.all(np.isfinite(batch.mean)):
                raise ValueError("x has NaN or infinite values; StandardScaler needs finite "
                                 "data (it does not skip NaN as missing, as scikit-learn's "
                                 "does): drop or fill them first")
            for warning in caught:  # finite data's own warnings (overflowing squares)
                warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                       warning.lineno)
            self._merged = batch if self._merged is None else self._merged.merge(batch)
        self._combined = None
        return self._counted(x, kept)

    def _fitted_attribute(self, name):
        """AttributeError for a fitted attribute read before fitting, as scikit-learn's
        (so ``hasattr(scaler, "mean_")`` says whether it is fitted)."""
        if self.__dict__.get("_fitted_ndim") is None:
            raise AttributeError(f"{name} is set by fit or partial_fit; this "
                                 f"{type(self).__name__} is not fitted yet")

    @property
    def moments_(self):
        """The fitted :class:`Moments` (count, mean, M2)."""
        self._fitted_attribute("moments_")
        return self._current_moments()

    def _current_moments(self):
        """The merged and summed batches' Moments, or None before any."""
        sums = self.__dict__.get("_sums")
        count = 0 if sums is None else sums.count
        if self.__dict__.get("_combined") is None or self._combined_count != count:
            parts = [part for part in (self.__dict__.get("_merged"),
                                       sums.moments() if count else None)
                     if part is not None]
            self._combined = parts[0] if len(parts) == 1 else \
                parts[0].merge(parts[1]) if parts else None
            self._combined_count = count
        return self._combined

    @moments_.setter
    def moments_(self, value):
        self._merged, self._sums, self._try_add = value, None, None
        self._combined, self._combined_count = value, 0

    @property
    def mean_(self):
        """Fitted mean (None where ``with_mean`` and ``with_std`` are both False, as
        scikit-learn)."""
        self._fitted_attribute("mean_")
        if not (self.with_mean or self.with_std):
            return None
        return self.moments_.mean

    @property
    def var_(self):
        """Fitted variance (None where ``with_std`` is False, as scikit-learn)."""
        self._fitted_attribute("var_")
        if not self.with_std:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self.moments_.var(self.ddof)

    @property
    def scale_(self):
        """Fitted standard deviation, 1 where the feature is constant (None where
        ``with_std`` is False), as scikit-learn."""
        self._fitted_attribute("scale_")
        var = self.var_
        if var is None:
            return None
        # scikit-learn's test for a constant feature: a variance within the rounding error
        # of a float mean (integer statistics are exact, so there it is var == 0).
        eps = np.finfo(np.float64).eps
        count = self.moments_.count
        bound = count * eps * var + (count * self.moments_.mean * eps) ** 2
        constant = (var <= bound) | ~np.isfinite(var)
        return np.where(constant, 1.0, np.sqrt(var))

    def _mean_and_scale(self):
        self._check_fitted()
        mean = self.moments_.mean if self.with_mean else np.zeros_like(self.moments_.mean)
        scale = self.scale_ if self.with_std else np.ones_like(self.moments_.mean)
        return self._trailing(mean), self._trailing(scale)

    def transform(self, x, out=None):
        """Return ``(x - mean_) / scale_`` in one pass (dtype and layout from the scaler)."""
        mean, scale = self._mean_and_scale()
        return standardize(x, mean, scale, out=out, dtype=self.dtype,
                           channels_first=self.channels_first)

    def fit_transform(self, x, y=None):
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def inverse_transform(self, y):
        """Return ``y * scale_ + mean_`` as float64, in the input's (channels-last) layout."""
        mean, scale = self._mean_and_scale()
        return destandardize(y, mean, scale, channels_first=self.channels_first,
                             dtype=np.float64)

    def merge(self, other):
        """A new scaler with the statistics of ``self`` and ``other`` (fitted on different
        shards) combined."""
        if not isinstance(other, StandardScaler):
            raise TypeError(f"can only merge a StandardScaler, not {type(other).__name__}")
        if self.get_params() != other.get_params():
            raise ValueError("cannot merge scalers with different parameters: "
                             f"{self.get_params()} and {other.get_params()}")
        self._check_fitted()
        other._check_fitted()
        if (self._fitted_ndim, self._fitted_kept) != (other._fitted_ndim, other._fitted_kept):
            raise ValueError(f"cannot merge statistics of shapes {self._fitted_kept} and "
                             f"{other._fitted_kept}")
        merged = StandardScaler(**self.get_params())
        merged._reset()
        merged.moments_ = self.moments_.merge(other.moments_)
        merged.n_samples_seen_ = self.n_samples_seen_ + other.n_samples_seen_
        merged._fitted_ndim, merged._fitted_kept = self._fitted_ndim, self._fitted_kept
        merged.n_features_in_ = self.n_features_in_
        return merged

    def save(self, path):
        """Write the fitted moments and parameters to an ``.npz`` file (no pickle), so that a
        loaded scaler can continue ``partial_fit`` exactly."""
        self._check_fitted()
        params = dict(self.get_params(), dtype=np.dtype(self.dtype).name,
                      axis=_axis_to_json(self.axis))
        np.savez(path, count=np.int64(self.moments_.count), mean=self.moments_.mean,
                 m2=self.moments_.m2, n_samples_seen=np.int64(self.n_samples_seen_),
                 input_ndim=np.int64(self._fitted_ndim),
                 stats_shape=np.array(self._fitted_kept, dtype=np.int64),
                 params=np.array(json.dumps(params, default=_json_default)))

    @classmethod
    def load(cls, path):
        """Read a scaler written by :meth:`save`."""
        if isinstance(path, (str, os.PathLike)) and not os.path.exists(path) \
                and os.path.exists(f"{os.fspath(path)}.npz"):
            path = f"{os.fspath(path)}.npz"  # np.savez added the suffix
        with np.load(path, allow_pickle=False) as data:
            params = json.loads(str(data["params"]))
            params["axis"] = _axis_from_json(params["axis"])
            params["dtype"] = np.dtype(params["dtype"])
            scaler = cls(**params)
            scaler._reset()
            scaler.moments_ = Moments(int(data["count"]), data["mean"], data["m2"])
            scaler.n_samples_seen_ = int(data["n_samples_seen"])
            scaler._fitted_ndim = int(data["input_ndim"])
            scaler._fitted_kept = tuple(int(n) for n in data["stats_shape"])
            scaler.n_features_in_ = (scaler._fitted_kept[0] if scaler._fitted_ndim == 2
                                     and len(scaler._fitted_kept) == 1 else None)
        return scaler

    def to_dict(self, max_pixel_value=None):
        """JSON-ready statistics: ``{"mean": [...], "std": [...], ...}``.

        With ``max_pixel_value=255`` the mean and std are divided by it, giving the 0-1 scale
        that ``torchvision.transforms.Normalize(mean, std)`` expects after ``ToTensor()``;
        by default they are in the input's units (0-255 for uint8).
        """
        self._check_fitted()
        divisor = 1.0 if max_pixel_value is None else float(max_pixel_value)
        std = np.sqrt(self.moments_.var(self.ddof)) if self.moments_.count > self.ddof else None
        return {"mean": (self.moments_.mean / divisor).tolist(),
                "std": None if std is None else (std / divisor).tolist(),
                "count": self.moments_.count, "n_samples_seen": self.n_samples_seen_,
                "axis": _axis_to_json(self.axis),
                "ddof": self.ddof.item() if isinstance(self.ddof, np.generic) else self.ddof,
                "max_pixel_value": max_pixel_value}


def _axis_to_json(axis):
    if axis is None:
        return None
    return [int(a) for a in axis] if isinstance(axis, tuple) else int(axis)


def _json_default(value):
    """NumPy scalars (from grid searches, np.argmax, ...) as plain numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _axis_from_json(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def iter_batches(x, batch_size):
    """Yield consecutive slices of ``x`` along axis 0 (views: a memory-mapped array is read
    batch by batch, in constant memory)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size]


def _progress(batches, progress, total=None):
    if not progress:
        return batches
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn("progress=True needs tqdm (pip install tqdm); continuing without a bar",
                      RuntimeWarning, stacklevel=3)
        return batches
    return tqdm(batches, total=total, unit="batch")


def _batches_of(data, batch_size):
    """Batches from an array (sliced along axis 0) or any iterable of arrays."""
    if isinstance(data, np.ndarray):
        return iter_batches(data, batch_size), math.ceil(len(data) / batch_size)
    return data, (len(data) if hasattr(data, "__len__") else None)


def fit_stream(batches, axis=0, progress=False, *, batch_size=256):
    """Fit a :class:`StandardScaler` on an iterable of batches (or an array, memory-mapped
    included, read ``batch_size`` samples at a time) in constant memory.

    >>> import numpy as np, zmfast as zm
    >>> x = np.random.default_rng(0).integers(0, 256, (100, 4, 4, 3), dtype=np.uint8)
    >>> scaler = zm.fit_stream(np.array_split(x, 7), axis=(0, 1, 2))
    >>> bool(np.allclose(scaler.scale_, x.std(axis=(0, 1, 2))))
    True
    """
    scaler = StandardScaler(axis=axis)
    iterable, total = _batches_of(batches, batch_size)
    for batch in _progress(iterable, progress, total):
        scaler.partial_fit(batch)
    scaler._check_fitted()
    return scaler


def dataset_stats(x_or_batches, axis=(0, 1, 2), std="pooled", *, ddof=0, batch_size=256):
    """Dataset mean and std (float64 arrays) over ``axis``, for an array or batches.

    Two definitions are in use, and they differ:

    * ``std="pooled"`` (default, correct): the std of all pixels of the dataset together,
      i.e. ``x.std(axis)``. This is what standardizing by it makes unit-variance.
    * ``std="mean_of_images"``: the std of each image over its own pixels, averaged over
      images. It is smaller (it leaves out the spread between image means); some published
      constants were computed this way (see torchvision issues 1965 and 3657).

    The mean is the same under both.

    >>> import numpy as np, zmfast as zm
    >>> x = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    >>> mean, pooled = zm.dataset_stats(x)
    >>> _, per_image = zm.dataset_stats(x, std="mean_of_images")
    >>> bool(np.all(per_image <= pooled))
    True
    """
    if std not in ("pooled", "mean_of_images"):
        raise ValueError(f"std must be 'pooled' or 'mean_of_images', got {std!r}")
    iterable, _ = _batches_of(x_or_batches, batch_size)
    total, std_sum, images = None, None, 0
    for batch in iterable:
        batch = real_array(batch, "batch")
        axes = normalize_axes(axis, batch.ndim)
        if 0 not in axes:
            raise ValueError(f"axis must include the batch axis 0, got {axis!r}")
        part = moments(batch, axis=axes)
        total = part if total is None else total.merge(part)
        if std == "mean_of_images":
            per_image = moments(batch, axis=tuple(ax for ax in axes if ax != 0))
            image_std = per_image.std(ddof).reshape(len(batch), -1).sum(axis=0)
            std_sum = image_std if std_sum is None else std_sum + image_std
            images += len(batch)
    if total is None:
        raise ValueError("no data: the batches were empty")
    if std == "pooled":
        return total.mean, total.std(ddof)
    return total.mean, (std_sum / images).reshape(total.mean.shape)


# --- min-max scaling and normalisation -------------------------------------------------

def _range_transform(x, data_min, data_max, feature_range, out, dtype):
    """``(x - data_min) / (data_max - data_min) * (high - low) + low`` in one pass, with a
    constant feature (zero range) mapped to ``low``."""
    low, high = _check_range(feature_range)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        data_range = data_max - data_min
        scale = (high - low) / np.where(data_range == 0, 1.0, data_range)
        # (x - m) * scale + low == (x - (m - low / scale)) * scale: the standardize kernel.
        shift, inverse = data_min - low / scale, 1.0 / scale
    if not (np.isfinite(shift).all() and np.all(usable_std(inverse))):
        raise ValueError("the data range (max - min) or the scale (high - low) / range "
                         "overflows float64 (or is subnormal); rescale x first")
    return run_affine(x, shift, inverse, out, output_dtype(dtype), "same")


def _check_range(feature_range):
    low, high = (float(v) for v in feature_range)
    if not low < high:
        raise ValueError(f"feature_range must be (low, high) with low < high, got "
                         f"{feature_range!r}")
    return low, high


def _min_max(x, axes):
    return (np.min(x, axis=axes, keepdims=True).astype(np.float64),
            np.max(x, axis=axes, keepdims=True).astype(np.float64))


def minmax_scale(x, feature_range=(0, 1), axis=None, *, out=None, dtype=np.float32):
    """Scale ``x`` to ``feature_range`` by its min and max over ``axis``, in one pass.

    Like :func:`sklearn.preprocessing.minmax_scale` (whose default is ``axis=0``); a constant
    feature maps to the low end. Min and max are exact for integers.

    >>> import numpy as np, zmfast as zm
    >>> zm.minmax_scale(np.array([[0, 10], [5, 10], [10, 10]], dtype=np.uint8), axis=0)
    array([[0. , 0. ],
           [0.5, 0. ],
           [1. , 0. ]], dtype=float32)
    """
    x = real_array(x, "x")
    _check_range(feature_range)
    axes = normalize_axes(axis, x.ndim)
    if x.size == 0:
        raise ValueError(f"cannot min-max scale an empty array of shape {x.shape}")
    data_min, data_max = _min_max(x, axes)
    _check_finite(data_min, data_max)
    return _range_transform(x, data_min, data_max, feature_range, out, dtype)


def _check_finite(data_min, data_max):
    if not (np.all(np.isfinite(data_min)) and np.all(np.isfinite(data_max))):
        raise ValueError("x has NaN or infinite values; min-max scaling needs finite data")


class MinMaxScaler(_Estimator):
    """Scale features to ``feature_range`` by the min and max seen in fitting, as
    :class:`sklearn.preprocessing.MinMaxScaler`, over any ``axis`` of image batches.

    Attributes: ``data_min_``, ``data_max_``, ``data_range_``, ``scale_``, ``min_`` (so that
    ``transform(x) = x * scale_ + min_``) and ``n_samples_seen_``.

    >>> import numpy as np, zmfast as zm
    >>> x = np.array([[0, 10], [5, 20], [10, 30]], dtype=np.uint8)
    >>> zm.MinMaxScaler(axis=0).fit(x).transform(x)
    array([[0. , 0. ],
           [0.5, 0.5],
           [1. , 1. ]], dtype=float32)
    """

    _param_names = ("axis", "feature_range", "clip", "dtype")

    def __init__(self, axis=0, feature_range=(0, 1), clip=False, dtype=np.float32):
        self.axis = axis
        self.feature_range = feature_range
        self.clip = clip
        self.dtype = dtype

    def fit(self, x, y=None):
        """Compute the min and max of ``x``."""
        self._fitted_ndim = None
        self._fitted_kept = None
        self.data_min_ = self.data_max_ = None
        self.n_samples_seen_ = 0
        return self.partial_fit(x)

    def partial_fit(self, x, y=None):
        """Update the min and max with the batch ``x``."""
        x = real_array(x, "x")
        _check_range(self.feature_range)
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"x must hold at least one sample, got shape {x.shape}")
        if getattr(self, "data_min_", None) is None:
            self._fitted_ndim = self._fitted_kept = None
            self.data_min_ = self.data_max_ = None
            self.n_samples_seen_ = 0
        axes, kept = self._axes_for(x)
        data_min, data_max = (a.reshape(kept) for a in _min_max(x, axes))
        _check_finite(data_min, data_max)
        if self.data_min_ is not None:
            data_min = np.minimum(self.data_min_, data_min)
            data_max = np.maximum(self.data_max_, data_max)
        self.data_min_, self.data_max_ = data_min, data_max
        return self._counted(x, kept)

    @property
    def data_range_(self):
        return self.data_max_ - self.data_min_

    @property
    def scale_(self):
        low, high = _check_range(self.feature_range)
        data_range = self.data_range_
        return (high - low) / np.where(data_range == 0, 1.0, data_range)

    @property
    def min_(self):
        return _check_range(self.feature_range)[0] - self.data_min_ * self.scale_

    def transform(self, x, out=None):
        """Return ``x * scale_ + min_`` in one pass (clipped to the range if ``clip``)."""
        self._check_fitted()
        x = real_array(x, "x")
        data_min = self._trailing(self.data_min_)
        data_max = self._trailing(self.data_max_)
        check_stats(x.shape, data_min, np.ones_like(data_min))
        result = _range_transform(x, data_min, data_max, self.feature_range, out, self.dtype)
        if self.clip:
            low, high = _check_range(self.feature_range)
            np.clip(result, low, high, out=result)
        return result

    def fit_transform(self, x, y=None):
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def inverse_transform(self, y):
        """Return ``(y - min_) / scale_`` as float64."""
        self._check_fitted()
        scale = self._trailing(self.scale_)
        return destandardize(y, -self._trailing(self.min_) / scale, 1.0 / scale,
                             dtype=np.float64)


def _scaled(x, norm, axes):
    """For finite ``x`` whose squares or sums along ``axes`` pass float64's range: ``x`` over
    each vector's largest magnitude (the same unit vectors) and its L1 or L2 norms, kept as
    length 1. The norm itself may pass the range (L1 of [1e308, 1e308])."""
    peak = np.max(np.abs(x.astype(np.float64)), axis=axes, keepdims=True)
    scaled = x / np.where(peak == 0, 1.0, peak)
    if norm == "l1":
        return scaled, np.sum(np.abs(scaled), axis=axes, keepdims=True)
    return scaled, np.sqrt(np.sum(scaled * scaled, axis=axes, keepdims=True))


def normalize(x, norm="l2", axis=-1, *, out=None, dtype=np.float32):
    """Scale vectors along ``axis`` to unit L1, L2 or max norm, as
    :func:`sklearn.preprocessing.normalize` (rows of 2-D data by default); zero vectors stay
    zero. One pass for the transform after the norms.

    >>> import numpy as np, zmfast as zm
    >>> zm.normalize(np.array([[3, 4], [0, 0]], dtype=np.uint8))
    array([[0.6, 0.8],
           [0. , 0. ]], dtype=float32)
    """
    x = real_array(x, "x")
    axes = normalize_axes(axis, x.ndim)
    if norm == "l2":
        with np.errstate(over="ignore", invalid="ignore"):  # overflows: _scaled_norms below
            m = moments(x, axis=axes)
            norms = np.sqrt(m.m2 + m.count * m.mean * m.mean)  # sum of squares, no cancellation
    elif norm == "l1":
        if x.dtype.kind == "u":
            norms = moments(x, axis=axes).mean * math.prod(x.shape[a] for a in axes)
        else:  # |x| in float64: abs(-128) overflows int8
            with np.errstate(over="ignore"):
                norms = np.sum(np.abs(x, dtype=np.float64), axis=axes)
    elif norm == "max":
        # max(|min|, |max|) in float64, without an |x| temporary.
        norms = np.maximum(np.abs(np.min(x, axis=axes).astype(np.float64)),
                           np.abs(np.max(x, axis=axes).astype(np.float64)))
    else:
        raise ValueError(f"norm must be 'l1', 'l2' or 'max', got {norm!r}")
    keep = tuple(1 if ax in axes else n for ax, n in enumerate(x.shape))
    norms = np.asarray(norms, dtype=np.float64).reshape(keep)
    if not np.all(np.isfinite(norms)):
        if not np.all(np.isfinite(x)):
            raise ValueError("x has NaN or infinite values; its norms are not finite")
        x, norms = _scaled(x, norm, axes)  # finite data whose sums overflow float64
    norms = np.where(norms == 0, 1.0, norms)
    return run_affine(x, np.zeros_like(norms), norms, out, output_dtype(dtype), "same")
