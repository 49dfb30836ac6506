"""NumPy-compatible mean/var/std and mergeable moments."""

import math
import operator

import numpy as np

from zmfast import _config, _plan
from zmfast._validate import is_fast, normalize_axes, real_array

_FLOAT64 = np.dtype(np.float64)  # the dtype of every native float64 array (a singleton)


class Moments:
    """Mergeable statistics of a reduction: ``count``, ``mean`` and ``m2``.

    ``m2`` is the sum of squared deviations from the mean (Welford's M2), so
    ``var(ddof) = m2 / (count - ddof)``. Moments of the parts of a dataset merge into the
    moments of the whole (Chan et al., 1979), which is how batches, shards and threads
    combine.

    >>> import numpy as np, zmfast as zm
    >>> x = np.arange(12, dtype=np.uint8).reshape(4, 3)
    >>> whole = zm.moments(x, axis=0)
    >>> parts = zm.moments(x[:1], axis=0).merge(zm.moments(x[1:], axis=0))
    >>> parts.count, np.allclose(parts.mean, whole.mean), np.allclose(parts.var(), x.var(0))
    (4, True, True)
    """

    __slots__ = ("count", "mean", "m2")

    def __init__(self, count, mean, m2):
        self.count = int(count)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.m2 = np.asarray(m2, dtype=np.float64)
        if self.mean.shape != self.m2.shape:
            raise ValueError(f"mean shape {self.mean.shape} and m2 shape {self.m2.shape} differ")
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")

    @classmethod
    def _of(cls, count, mean, m2):
        """Moments from a backend's results (arrays or NumPy scalars of one shape), without
        the checks of ``__init__`` where they are already native float64 arrays."""
        if not (type(mean) is np.ndarray and type(m2) is np.ndarray
                and mean.dtype is _FLOAT64 and m2.dtype is _FLOAT64):
            return cls(count, mean, m2)
        moments = cls.__new__(cls)
        moments.count, moments.mean, moments.m2 = count, mean, m2
        return moments

    def var(self, ddof=0):
        """The variance ``m2 / (count - ddof)`` (NaN or inf, with a RuntimeWarning,
        when ``count - ddof <= 0``, as NumPy)."""
        divisor = self.count - ddof
        if divisor <= 0:
            import warnings
            warnings.warn("Degrees of freedom <= 0 for slice", RuntimeWarning, stacklevel=2)
            divisor = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.m2 / divisor

    def std(self, ddof=0):
        """The standard deviation ``sqrt(var(ddof))``."""
        return np.sqrt(self.var(ddof))

    def merge(self, other):
        """Return the moments of the union of the data behind ``self`` and ``other``."""
        if not isinstance(other, Moments):
            raise TypeError(f"can only merge Moments, not {type(other).__name__}")
        if self.mean.shape != other.mean.shape:
            raise ValueError(f"cannot merge moments of shapes {self.mean.shape} and "
                             f"{other.mean.shape}")
        return Moments(*_plan.merge_moments(self.count, self.mean, self.m2,
                                            other.count, other.mean, other.m2))

    def __repr__(self):
        return f"Moments(count={self.count}, mean={self.mean!r}, m2={self.m2!r})"


def _rows_per_lane_limit(dtype):
    """The most values one lane may add before ``count * (max - min)**2`` (which bounds both
    S2 and the shifted sum of squares in :meth:`RunningSums.moments`) reaches 2**63."""
    info = np.iinfo(dtype)
    return (2**63 - 1) // (int(info.max) - int(info.min)) ** 2


_SUMS_LIMITS = {np.dtype(t): _rows_per_lane_limit(t)
                for t in (np.uint8, np.int8, np.uint16, np.int16)}
# Lanes of the integer sums for a few statistics (per channel, global). For batches of
# WIDE_SUMS_BYTES or more, rows of 3 KB: the uint8 kernels read them in 16 long runs at a time,
# where 192-byte rows were read in 64 short strided runs and ran at about half the speed past
# 24 MB (2 threads, Zen 4). Smaller batches keep 192 lanes: clearing, flushing and folding
# 3072 lanes cost more than the sums of one 224x224 image (6.2 against 3.1 us, one thread).
SUMS_LANES, WIDE_SUMS_LANES, WIDE_SUMS_BYTES = 192, 3072, 4 << 20


class RunningSums:
    """Exact running integer sums (count, S1 = sum x, S2 = sum x**2) of a stream of 8- or
    16-bit integer batches whose reduced axes lead (axis 0, or ``(0, 1, 2)`` of NHWC).

    Adding a batch is one kernel call that adds its column sums into int64 totals, with no
    float merge, so streaming many small batches costs about what one large batch does, and
    every batching gives the same integers, hence bit-identical moments. A tiny statistics
    shape (per-channel C=3) is spread over ``lanes``, a multiple of it, and folded back
    exactly. ``try_add`` is the backend's own streaming call where it has one (the cpp
    backend checks and adds a batch in one crossing into C++); the backend in force when the
    sums are created adds every batch of the stream.
    """

    __slots__ = ("dtype", "ndim", "kept", "features", "lanes", "limit", "s1", "s2", "counter",
                 "samples", "native")

    def __init__(self, dtype, ndim, kept, samples=None, stream=True, lanes=None):
        self.dtype, self.ndim, self.kept = np.dtype(dtype), ndim, tuple(kept)
        self.features = math.prod(self.kept)
        self.lanes = self.lanes_for(self.features) if lanes is None else lanes
        if self.lanes % self.features:
            raise ValueError(f"lanes={lanes} is not a multiple of {self.features} statistics")
        self.limit = _SUMS_LIMITS[self.dtype]
        # S1 and S2 in one buffer, zeroed here: fresh pages first touched by the kernel's
        # threads cost far more than here (per-pixel imagenet sums: a fit took 5.7-6.8 ms
        # against 0.85 ms into warm memory, depending on what glibc had handed back to the OS).
        self.s1, self.s2 = buffer = np.empty((2, self.lanes), dtype=np.int64)
        buffer.fill(0)
        self.counter = np.zeros(1, dtype=np.int64)  # values per statistic so far
        # Samples along axis 0 that try_add took (a caller's counter may be shared).
        self.samples = np.zeros(1, dtype=np.int64) if samples is None else samples
        # A one-off sum (stream=False) needs no streaming accumulator of the backend's.
        make_native = getattr(_config.backend(), "column_sums", None) if stream else None
        self.native = None if make_native is None else make_native(
            self.dtype, ndim, self.kept, self.features, self.limit, self.s1, self.s2,
            self.counter, self.samples)

    @staticmethod
    def lanes_for(features, batch_bytes=0):
        """Lanes of the sums: a multiple of ``features`` at least ``SUMS_LANES`` wide, or
        ``WIDE_SUMS_LANES`` for batches of ``WIDE_SUMS_BYTES`` or more."""
        wide = WIDE_SUMS_LANES if batch_bytes >= WIDE_SUMS_BYTES else SUMS_LANES
        return features * max(1, -(-wide // features))

    @property
    def count(self):
        return int(self.counter[0])

    @classmethod
    def for_batch(cls, x, axes, samples=None, stream=True):
        """Running sums for batches like ``x`` reduced over ``axes``, or None where they do
        not apply (floats, other integer widths, non-leading axes, non-contiguous data)."""
        if (x.dtype not in _SUMS_LIMITS or not x.flags.c_contiguous or x.size == 0
                or tuple(axes) != tuple(range(len(axes)))):
            return None
        kept = x.shape[len(axes):]
        return cls(x.dtype, x.ndim, kept, samples, stream,
                   cls.lanes_for(math.prod(kept), x.nbytes))

    def accepts(self, x):
        """Whether ``x`` (an ndarray) can be added: same dtype, rank and statistics shape,
        C-contiguous, and small enough to keep the totals exact."""
        return (x.dtype == self.dtype and x.ndim == self.ndim and x.flags.c_contiguous
                and x.shape[x.ndim - len(self.kept):] == self.kept
                and x.size // self.features <= self.limit)

    def has_room(self, x):
        """Whether the totals stay exact after adding ``x``; if not, take ``moments()`` and
        ``clear()`` first."""
        return self.count + x.size // self.features <= self.limit

    def add(self, x):
        """Add the batch ``x`` (``accepts(x)`` and ``has_room(x)`` must hold)."""
        flat = x.reshape(-1)
        backend = _config.backend()
        add_channel_sums = getattr(backend, "add_channel_sums", None)
        if add_channel_sums is not None and add_channel_sums(flat, self.features, self.s1,
                                                             self.s2):
            self.counter[0] += x.size // self.features  # each channel's sums in lane c
            return
        rows, tail = divmod(x.size, self.lanes)
        add_sums = backend.add_sums
        if rows:
            add_sums(flat[:rows * self.lanes], rows, self.lanes, self.s1, self.s2)
        if tail:  # a whole number of statistics' periods: lane j still maps to j % features
            add_sums(flat[rows * self.lanes:], 1, tail, self.s1[:tail], self.s2[:tail])
        self.counter[0] += x.size // self.features

    @property
    def try_add(self):
        """The streaming call, ``try_add(x) -> bool`` (see ``_try_add``): the backend's own
        where it has one. Not stored on the instance: a bound method of itself would make every
        instance a reference cycle, freed only by the cyclic collector."""
        return self._try_add if self.native is None else self.native.add

    def _try_add(self, x):
        """Add ``x`` (and its length to ``samples``) and return True if it is a plain
        ndarray that ``accepts`` and ``has_room``; otherwise add nothing and return False.
        An empty batch is taken and adds nothing."""
        if type(x) is np.ndarray and self.accepts(x) and self.has_room(x):
            if x.size:
                self.add(x)
                self.samples[0] += x.shape[0]
            return True
        return False

    def __getstate__(self):  # pickle and copy: the totals, not the backend's accumulator
        s1, s2 = self._totals()
        return {"dtype": self.dtype, "ndim": self.ndim, "kept": self.kept, "s1": s1,
                "s2": s2, "counter": self.counter, "samples": self.samples}

    def __setstate__(self, state):
        self.__init__(state["dtype"], state["ndim"], state["kept"], state["samples"],
                      lanes=len(state["s1"]))
        self.s1[...], self.s2[...] = state["s1"], state["s2"]
        self.counter[...] = state["counter"]

    def _totals(self):
        """S1 and S2 per lane, with anything the backend still holds added in."""
        if self.native is not None:
            self.native.flush()
        return self.s1, self.s2

    def clear(self):
        self._totals()
        self.counter[0] = 0
        self.s1[:] = 0
        self.s2[:] = 0

    def moments(self):
        """The :class:`Moments` of everything added, exact until the final rounding."""
        n = self.count
        from_sums = getattr(_config.backend(), "moments_from_sums", None)
        if from_sums is not None and n > 0:  # the same steps below, in C++ (no temporaries)
            mean, m2 = from_sums(n, *self._totals(), self.features)
            return Moments(n, mean.reshape(self.kept), m2.reshape(self.kept))
        s1, s2 = (s.reshape(-1, self.features).sum(axis=0) for s in self._totals())
        # Shift by q, the nearest integer to the mean: t = sum (x - q)**2 is computed in int64
        # arithmetic that may wrap on the way but not at the end (0 <= t < 2**63, see the
        # limits), and with |r| <= n/2 the remaining subtraction t - r*r/n loses at most a bit:
        # sum (x - q)**2 >= sum |x - q| >= |r| >= 2*r*r/n for integer data.
        q = _nearest_quotient(s1, n)
        r = s1 - q * n
        t = s2 - q * (s1 + r)
        mean = q + r / n
        m2 = np.maximum(t - r * (r / n), 0.0)
        return Moments(n, mean.reshape(self.kept), m2.reshape(self.kept))


def _nearest_quotient(s1, n):
    """``(2 * s1 + n) // (2 * n)`` (the integer nearest ``s1 / n``, halves up) for int64
    ``s1`` and a positive int ``n``: a float64 estimate put right with the exact remainder and
    integer comparisons, as NumPy's int64 floor division cost about 10 ns a value (a third of a
    per-pixel fit)."""
    num, den = 2 * s1 + n, 2 * n
    q = np.floor(num / den).astype(np.int64)  # off by up to num / 2**53
    q += np.floor((num - q * den) / den).astype(np.int64)  # now off by at most one
    q -= q * den > num
    q += (q + 1) * den <= num
    return q


_QUICK_CHECK_MAX = 4096


def _overflowed(backend, a, axes, stats):
    """Whether a non-finite result comes from finite data: an overflow on the way that NumPy
    may not have (the shift of mean([1.5e308, -1e308]), the squares of var([1e308, -1e308])).
    Such calls get NumPy's own values and warnings. NaN and inf in the data propagate as in
    NumPy, so their results stay."""
    mean, m2 = stats
    # A few results (a drop-in call on a small array) get one number first: a NaN or inf
    # among them makes the dot product mean . M2 (or mean . mean) non-finite, so a finite one
    # clears them all. np.vdot, unlike a ufunc's sum, raises no overflow warning (an overflow
    # only sends the call on to the full check), and at this size BLAS runs it on the calling
    # thread: a larger one could wake BLAS threads that then spin beside the kernels' own.
    # More results go to the backend's own check (NumPy's isfinite took as long as the
    # kernel for the mean and M2 of one F-ordered image's pixels).
    if mean.size <= _QUICK_CHECK_MAX:
        if math.isfinite(np.vdot(mean, mean if m2 is None else m2)):
            return False
    elif backend.all_finite(mean) and (m2 is None or backend.all_finite(m2)):
        return False
    broken = [~np.isfinite(s) for s in stats if s is not None]
    if not any(b.any() for b in broken):
        return False
    finite_data = np.isfinite(a).all(axis=axes)
    return any((b & finite_data).any() for b in broken)


# Integer reductions that took the one-call exact kernel lately, so that a loop over batches
# of one shape skips deciding again (a few microseconds a call, as much as the kernel of a
# small batch): (backend, dtype, shape, axes) -> (count, (features, lanes, kept shape or
# None)). Each call still checks contiguity and alignment, and ddof against the count.
_EXACT_PLANS = {}
_EXACT_PLANS_MAX = 64


def _exact(backend, a, plan, want_m2):
    """(mean, M2) from the backend's one-call exact kernel as ``plan`` says."""
    features, lanes, kept = plan
    mean, m2 = backend.exact_moments(a, features, lanes, want_m2)
    if kept is not None:  # the kernel's results are one-dimensional
        mean = mean.reshape(kept)
        m2 = m2.reshape(kept) if want_m2 else None
    return mean, m2


def _reduce(a, axis, want_m2, ddof=0, spread=None):
    """(axes, count, (mean, m2)) in float64 of the kept shape; the statistics are None where
    NumPy itself must answer (empty or over-reduced slices with their warnings, dtypes
    without a fast path, and overflows). With ``spread`` (True for the standard deviation,
    False for the variance), m2 is that spread with ``ddof``, in an array of its own."""
    axes, count, stats, finished = _reduce_unfinished(a, axis, want_m2, ddof, spread)
    if spread is None or stats is None or finished:
        return axes, count, stats
    # M2 is fresh float64 (a scalar from NumPy's full reductions): finished in place rather
    # than in one more array of the statistics' size.
    m2 = np.asarray(stats[1], dtype=np.float64)
    finish_spread = getattr(_config.backend(), "finish_spread", None)
    if finish_spread is not None and m2.flags.c_contiguous and m2.flags.writeable:
        finish_spread(m2, count - ddof, spread)
    else:
        _plan.finish_spread(m2, (count - ddof, spread))
    return axes, count, (stats[0], m2)


def _reduce_unfinished(a, axis, want_m2, ddof, spread):
    """_reduce's (axes, count, stats) and whether M2 is already the spread it asks for: the
    backends whose moments take ``spread`` finish it in their kernels."""
    axes = normalize_axes(axis, a.ndim)
    backend = _config.backend()
    known = _EXACT_PLANS.get((backend, a.dtype, a.shape, axes))
    if known is not None:
        count, plan = known
        flags = a.flags
        if count > ddof and flags.c_contiguous and flags.aligned:
            return axes, count, _exact(backend, a, plan, want_m2), False
    count = 1
    for ax in axes:
        count *= a.shape[ax]
    if count - ddof <= 0 or a.size == 0 or not is_fast(a):
        return axes, count, None, False
    fused = {}
    if spread is not None and want_m2 and getattr(backend, "finishes_spread", False):
        fused = {"spread": (float(count - ddof), spread)}
    if a.dtype.kind == "f":
        stats = backend.moments(a, axes, want_m2, **fused)
        # With a divisor count - ddof of at least 1 (any integer ddof), var and std are
        # finite where M2 is; a smaller one that overflows them goes to NumPy, as any
        # overflow does.
        if backend.name != "numpy" and _overflowed(backend, a, axes, stats):
            return axes, count, None, False
        return axes, count, stats, bool(fused)
    features = a.size // count
    if backend.name != "numpy" and features <= _plan.TINY_EXTENT:
        # A few statistics (per channel, global) of a contiguous integer batch: exact sums
        # over wide lanes, folded back exactly (the kernels' own fold is in float64).
        if getattr(backend, "exact_moments", None) is not None:  # sums and steps in one call
            # (Sorted distinct axes lead when the last is len(axes) - 1.)
            if (count <= _SUMS_LIMITS.get(a.dtype, -1) and a.flags.c_contiguous
                    and (not axes or axes[-1] == len(axes) - 1)):
                plan = (features, RunningSums.lanes_for(features, a.nbytes),
                        a.shape[len(axes):] if a.ndim - len(axes) != 1 else None)
                if len(_EXACT_PLANS) >= _EXACT_PLANS_MAX:
                    _EXACT_PLANS.clear()
                _EXACT_PLANS[(backend, a.dtype, a.shape, axes)] = (count, plan)
                return axes, count, _exact(backend, a, plan, want_m2), False
            return axes, count, backend.moments(a, axes, want_m2, **fused), bool(fused)
        sums = RunningSums.for_batch(a, axes, stream=False)
        if sums is not None and sums.accepts(a):
            sums.add(a)
            exact = sums.moments()
            return axes, count, (exact.mean, exact.m2 if want_m2 else None), False
    return axes, count, backend.moments(a, axes, want_m2, **fused), bool(fused)


def _finish(result, a, axes, dtype, out, keepdims):
    """Round the float64 result to NumPy's result dtype (or straight into ``out``), apply
    keepdims, and return a NumPy scalar for a full reduction, as NumPy does."""
    if keepdims:
        result = result.reshape([1 if ax in axes else n for ax, n in enumerate(a.shape)])
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError("out must be a numpy.ndarray")
        if out.shape != result.shape:
            raise ValueError(f"out has shape {out.shape}, expected {result.shape}")
        np.copyto(out, result if dtype is None else result.astype(dtype), casting="unsafe")
        return out
    if dtype is None:
        dtype = np.float64 if a.dtype.kind in "iu" else a.dtype
    result = result.astype(dtype, copy=False)
    return result[()] if result.ndim == 0 else result


def _numpy_first(a, dtype):
    """Return the input as an array, or None when the call belongs to NumPy itself."""
    a = np.asanyarray(a)
    if isinstance(a, np.memmap):
        a = np.asarray(a)  # a memory-mapped dataset is plain data: the fast path
    if type(a) is not np.ndarray:
        return None  # other subclasses (masked arrays, matrices) keep NumPy's own behaviour
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind != "f" or not dtype.isnative:
            return None  # integer or complex accumulation, or NumPy's byte-order TypeError
    return a


def _given(**arguments):
    """The optional arguments the caller gave, to pass on to NumPy as NumPy passes them (an
    ndarray subclass's own ``mean`` may not take ``keepdims``, as ``np.matrix``'s)."""
    return {name: value for name, value in arguments.items() if value is not np._NoValue}


def _keepdims(keepdims):
    """``keepdims`` as a bool, or NumPy's TypeError for a value it does not take as an
    integer (None, strings, NumPy bools and arrays)."""
    if keepdims is np._NoValue:
        return False
    return keepdims if type(keepdims) is bool else bool(operator.index(keepdims))


def mean(a, axis=None, dtype=None, out=None, keepdims=np._NoValue, *, where=np._NoValue):
    """Arithmetic mean along ``axis``: a drop-in for :func:`numpy.mean`.

    Same result dtype, shape, errors and warnings as NumPy for the same call (but for the
    floating-point "invalid value" warning of inf - inf on the compiled backends). Integer
    inputs are summed exactly and float inputs in float64, so float32 results are
    correctly rounded where NumPy's float32 sums drift. A ``where`` mask, ndarray subclasses
    and integer or complex ``dtype`` go to NumPy itself.

    >>> import numpy as np, zmfast as zm
    >>> x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    >>> zm.mean(x, axis=0).shape, float(zm.mean(x))
    ((3, 4), 11.5)
    """
    array = _numpy_first(a, dtype)
    if array is None or (where is not np._NoValue and where is not True):
        return np.mean(a, axis=axis, dtype=dtype, out=out, **_given(keepdims=keepdims, where=where))
    axes, count, stats = _reduce(array, axis, want_m2=False)
    keep = _keepdims(keepdims)  # after the axes, as NumPy checks them
    if stats is None:
        return np.mean(array, axis=axis, dtype=dtype, out=out, keepdims=keep)
    return _finish(stats[0], array, axes, dtype, out, keep)


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=np._NoValue, *,
        where=np._NoValue, mean=np._NoValue, correction=np._NoValue):
    """Variance along ``axis``: a drop-in for :func:`numpy.var`.

    Computed from exact integer or float64 Welford/Chan moments, so data with a large
    offset and a small spread (``1e9 + U(0, 1)``) keeps its digits. ``correction`` (the
    array API's name for ``ddof``), ``mean``, ``where`` and ndarray subclasses go to NumPy
    itself, as do integer or complex ``dtype``.

    >>> import numpy as np, zmfast as zm
    >>> float(zm.var(np.array([1, 2, 3, 4], dtype=np.uint8), ddof=1))
    1.6666666666666667
    """
    return _spread(a, axis, dtype, out, ddof, keepdims, where, mean, correction, np.var, None)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=np._NoValue, *,
        where=np._NoValue, mean=np._NoValue, correction=np._NoValue):
    """Standard deviation along ``axis``: a drop-in for :func:`numpy.std`.

    The square root of :func:`var`, with the same arguments.

    >>> import numpy as np, zmfast as zm
    >>> x = np.array([[0, 2], [4, 6]], dtype=np.uint8)
    >>> zm.std(x, axis=0)
    array([2., 2.])
    """
    return _spread(a, axis, dtype, out, ddof, keepdims, where, mean, correction, np.std, np.sqrt)


def _spread(a, axis, dtype, out, ddof, keepdims, where, mean, correction, numpy_function,
            finish):
    if (finish is not None and isinstance(out, np.ndarray)
            and not np.can_cast(np.float16, out.dtype, "same_kind")):
        # std's square root casts same_kind: NumPy's own error for an integer out, raised on a
        # stand-in (NumPy's std would write the variance into out before it fails).
        numpy_function(np.zeros(1), out=np.empty((), out.dtype))
    array = _numpy_first(a, dtype)
    if (array is None or (where is not np._NoValue and where is not True)
            or mean is not np._NoValue or correction is not np._NoValue
            or not (isinstance(ddof, (int, float, np.integer, np.floating))
                    and -2**63 <= ddof < 2**63)):
        # NumPy itself: its where= and mean=, its checks of correction= against ddof, and its
        # errors for a ddof that is no C long (or no number).
        return numpy_function(a, axis=axis, dtype=dtype, out=out, ddof=ddof,
                              **_given(keepdims=keepdims, where=where, mean=mean,
                                       correction=correction))
    # finish is None (var) or np.sqrt (std)
    axes, count, stats = _reduce(array, axis, want_m2=True, ddof=ddof,
                                 spread=finish is not None)
    keepdims = _keepdims(keepdims)  # after the axes, as NumPy checks them
    if stats is None:
        return numpy_function(array, axis=axis, dtype=dtype, out=out, ddof=ddof,
                              keepdims=keepdims)
    return _finish(stats[1], array, axes, dtype, out, keepdims)


def moments(a, axis=None):
    """Mergeable moments (count, mean, M2) of ``a`` along ``axis`` in one pass.

    ``axis=0`` on an NHWC batch gives the per-pixel mean image; ``axis=(0, 1, 2)`` gives
    per-channel statistics. ``mean`` and ``m2`` are float64 arrays of the reduced shape.

    >>> import numpy as np, zmfast as zm
    >>> x = np.random.default_rng(0).integers(0, 256, (8, 4, 4, 3), dtype=np.uint8)
    >>> m = zm.moments(x, axis=(0, 1, 2))
    >>> m.count, m.mean.shape, bool(np.allclose(m.std(), x.std(axis=(0, 1, 2))))
    (128, (3,), True)
    """
    array = real_array(a, "moments input")
    axes, count, stats = _reduce(array, axis, want_m2=True)
    if stats is None:
        kept = tuple(n for ax, n in enumerate(array.shape) if ax not in axes)
        if count == 0:
            return Moments(0, np.full(kept, np.nan), np.zeros(kept))
        stats = _config._load("numpy").moments(array, axes, True)
        return Moments(count, *stats)
    return Moments._of(count, *stats)
