"""The benchmark case table: every (workload, operation, implementation) that is timed.

``CASES`` is the one table that drives the suite (``test_benchmarks.py`` is parametrized
over it; ``test_scaling.py`` reuses its rows) and, through each benchmark's ``extra_info``,
the report (``report.py``). To add a workload, an operation or an implementation, add a row
to ``WORKLOADS``, ``OPERATIONS`` or ``IMPLEMENTATIONS``; backends that zmfast gains later
(``zmfast._backends.NAMES``) are picked up automatically.

The implementations are of four families:

- ``numpy``: what a NumPy user writes, naively and carefully (float32 ``out=``, in-place
  ufuncs, the mean reused by ``std``);
- ``zmfast``: each benchmarked backend, drop-in and tuned;
- ``peer``: the other libraries that do the same job, each used as its documentation shows
  (numexpr, PyTorch, OpenCV, albumentations, NVIDIA DALI, scikit-learn). They are optional:
  ``pip install -r bench/requirements-peers.txt``; a peer that is not installed is skipped
  with that note. The threaded ones get ``zm.get_num_threads()`` threads;
- ``limit``: the memory floors, private kernels of the extension
  (``zmfast._core.floor_read``: the sum of the bytes with ``vpsadbw``, the least a statistic
  must do;
  ``zmfast._core.floor_convert``: uint8 -> float32 into ``out``, the least standardize must
  do, with normal or non-temporal stores, into a reused or a fresh array). An extension
  built without them skips these rows.

Every implementation is checked once, outside the timed region, against a float64 NumPy
reference: statistics to ``STATS_RTOL``, float32 outputs to ``FLOAT32_TOL`` relative and
absolute; the floors exactly.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import warnings
from typing import Any, Callable, Union

import numpy as np

with warnings.catch_warnings():
    # Without the C++ extension zmfast warns that it falls back to the NumPy reference
    # backend; here the cases of an unavailable backend are skipped with the reason instead.
    warnings.simplefilter("ignore", RuntimeWarning)
    import zmfast as zm
    from zmfast._backends import NAMES as BACKEND_NAMES

SEED = 20240611
STATS_RTOL = 1e-10
FLOAT32_TOL = 1e-5
PEERS_REQUIREMENTS = "bench/requirements-peers.txt"

Axis = Union[int, tuple, None]

# One buffer behind every reused `out=` of a given size, so that the floors, zmfast and the
# peers all write into the same memory: here each large allocation draws its own memory
# speed for good (the same uint8 -> float32 copy took 2.9 ms into one imagenet buffer and
# 5.5 ms into another), which made ratios between cases depend on luck. The two most recent
# sizes are kept (a workload's cases run together), so the scaling sizes do not pile up.
_REUSED_OUT: dict = {}
_REUSED_OUT_KEPT = 2


def reused_out(shape, dtype=np.float32) -> np.ndarray:
    """The shared ``out=`` buffer for an output of ``shape`` and ``dtype``: outputs with the
    same number of elements share one allocation (sized for float32; float16 uses its front
    half), whatever their layout."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    buffer = _REUSED_OUT.pop(count, None)
    if buffer is None or buffer.nbytes < count * dtype.itemsize:
        buffer = np.empty(count * max(dtype.itemsize, 4), np.uint8)
    _REUSED_OUT[count] = buffer  # the most recent last
    while len(_REUSED_OUT) > _REUSED_OUT_KEPT:
        del _REUSED_OUT[next(iter(_REUSED_OUT))]
    return buffer[:count * dtype.itemsize].view(dtype).reshape(shape)


def line_aligned_out(shape, dtype=np.float32) -> np.ndarray:
    """An ``out=`` buffer starting on a 64-byte cache line, as ``torch.empty`` allocates
    (``np.empty`` puts a large one 16 bytes past a page)."""
    from zmfast._normalize import aligned_empty
    return aligned_empty(shape, dtype)


class Unavailable(Exception):
    """Raised by a build function when its library is present but cannot run here."""


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    shape: tuple  # N, H, W, C
    dtype: str = "uint8"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    def generate(self) -> np.ndarray:
        """The batch: uniform random pixels from a fixed seed, C-contiguous NHWC (a float
        dtype holds the whole numbers 0..255, as decoded images converted to float)."""
        rng = np.random.default_rng(SEED)
        if np.dtype(self.dtype).kind == "f":
            return rng.integers(0, 255, size=self.shape, endpoint=True).astype(self.dtype)
        info = np.iinfo(self.dtype)
        return rng.integers(info.min, info.max, size=self.shape, dtype=self.dtype,
                            endpoint=True)


@dataclasses.dataclass(frozen=True)
class Operation:
    name: str
    label: str  # for the report
    kind: str  # "stats", "standardize", "read-floor" or "convert-floor"
    axis: Axis  # the reduction of the statistics: 0 per pixel, (0, 1, 2) per channel
    channels_first: bool = False

    def output_shape(self, shape: tuple) -> tuple:
        if self.channels_first:
            return shape[:-3] + (shape[-1],) + shape[-3:-1]
        return shape

    @property
    def per_channel(self) -> bool:
        return self.axis == (0, 1, 2)

    @property
    def per_pixel(self) -> bool:
        return self.axis == 0


def _kept_size(shape: tuple, axis: Axis) -> int:
    axes = axis if isinstance(axis, tuple) else (axis,)
    return math.prod(n for ax, n in enumerate(shape) if ax not in axes)


def peer_threads() -> int:
    """The threads a threaded peer is given: as many as zmfast's kernels use."""
    return zm.get_num_threads()


_imported = {}


def peer(module: str):
    """Import a peer library; the warnings it raises while importing are silenced (the
    suite runs with warnings as errors), only during the import."""
    if module not in _imported:
        if module.startswith("albumentations"):
            # albumentations asks PyPI for a newer version at import unless told not to.
            os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _imported[module] = importlib.import_module(module)
    return _imported[module]


def _float32_params(op: Operation, mean, std) -> tuple:
    """float32 ``m`` and ``r = 1/s`` (computed in float64), broadcastable to the output."""
    m = np.asarray(mean, np.float64)
    r = 1.0 / np.asarray(std, np.float64)
    if op.channels_first:
        m, r = (a.reshape(-1, 1, 1) if a.ndim == 1 else a.transpose(2, 0, 1) for a in (m, r))
    return m.astype(np.float32), r.astype(np.float32)


def _source(op: Operation, x: np.ndarray) -> np.ndarray:
    """The batch in the layout of the output (a strided NCHW view for channels_first)."""
    return x.transpose(0, 3, 1, 2) if op.channels_first else x


# --- implementations: build(op, x, mean, std) returns the zero-argument function timed ---

# NumPy

def _numpy_stats(op, x, mean, std):
    axis = op.axis
    return lambda: (x.mean(axis=axis), x.std(axis=axis))


_NUMPY_STD_TAKES_MEAN = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


def _numpy_careful_stats(op, x, mean, std):
    axis = op.axis

    def run():
        m = x.mean(axis=axis, dtype=np.float64, keepdims=True)
        if _NUMPY_STD_TAKES_MEAN:  # NumPy >= 2.0: std reuses the mean instead of redoing it
            s = x.std(axis=axis, dtype=np.float64, mean=m)
        else:
            s = x.std(axis=axis, dtype=np.float64)
        return m.squeeze(axis), s

    return run


def _numpy_standardize(op, x, mean, std):
    if op.channels_first:  # a PyTorch user needs contiguous NCHW
        return lambda: np.ascontiguousarray(
            ((x - mean) / std).astype(np.float32).transpose(0, 3, 1, 2))
    return lambda: ((x - mean) / std).astype(np.float32)


def _numpy_careful_standardize(op, x, mean, std):
    m, r = _float32_params(op, mean, std)
    src = _source(op, x)
    out = reused_out(op.output_shape(x.shape))

    def run():
        np.subtract(src, m, out=out, dtype=np.float32)
        np.multiply(out, r, out=out)
        return out

    return run


# zmfast

def _zm_mean_std(op, x, mean, std):
    axis = op.axis
    return lambda: (zm.mean(x, axis), zm.std(x, axis))


def _zm_moments(op, x, mean, std):
    axis = op.axis

    def run():
        moments = zm.moments(x, axis)
        return moments.mean, moments.std()

    return run


def _zm_standardize(op, x, mean, std):
    channels_first = op.channels_first
    return lambda: zm.standardize(x, mean, std, channels_first=channels_first)


def _zm_standardize_out(op, x, mean, std):
    channels_first = op.channels_first
    out = reused_out(op.output_shape(x.shape))
    return lambda: zm.standardize(x, mean, std, out=out, channels_first=channels_first)


# numexpr

def _numexpr_standardize(op, x, mean, std):
    ne = peer("numexpr")
    ne.set_num_threads(peer_threads())
    m, r = _float32_params(op, mean, std)
    out = reused_out(op.output_shape(x.shape))
    names = {"x": _source(op, x), "m": m, "r": r}

    def run():
        ne.evaluate("(x - m) * r", local_dict=names, out=out)
        return out

    return run


# PyTorch (CPU)

def _torch_stats(op, x, mean, std):
    torch = peer("torch")
    torch.set_num_threads(peer_threads())
    t = torch.from_numpy(x)
    dim = op.axis

    def run():  # float64: float32 sums are far from the float64 reference
        s, m = torch.std_mean(t.double(), dim=dim, correction=0)
        return m.numpy(), s.numpy()

    return run


def _torch_params(op, mean, std):
    torch = peer("torch")
    m = np.asarray(mean, np.float32)
    s = np.asarray(std, np.float32)
    if op.channels_first:
        m, s = (a.reshape(-1, 1, 1) if a.ndim == 1 else a.transpose(2, 0, 1).copy()
                for a in (m, s))
    return torch.from_numpy(m), torch.from_numpy(s)


def _torch_standardize(op, x, mean, std):
    torch = peer("torch")
    torch.set_num_threads(peer_threads())
    t = torch.from_numpy(x)
    m, s = _torch_params(op, mean, std)
    if op.channels_first:
        return lambda: t.permute(0, 3, 1, 2).contiguous().float().sub_(m).div_(s).numpy()
    return lambda: t.float().sub_(m).div_(s).numpy()


def _torch_standardize_out(op, x, mean, std):
    torch = peer("torch")
    torch.set_num_threads(peer_threads())
    t = torch.from_numpy(x)
    src = t.permute(0, 3, 1, 2) if op.channels_first else t
    m, s = _torch_params(op, mean, std)
    out = reused_out(op.output_shape(x.shape))
    buf = torch.from_numpy(out)

    def run():
        torch.sub(src, m, out=buf).div_(s)
        return out

    return run


# OpenCV

def _opencv():
    cv2 = peer("cv2")
    cv2.setNumThreads(peer_threads())
    return cv2


def _scalar(values) -> tuple:
    """A cv::Scalar (4 values) from per-channel values."""
    values = [float(v) for v in np.ravel(values)]
    if len(values) > 4:
        raise Unavailable(f"OpenCV scalars hold 4 channels, not {len(values)}")
    return tuple(values) + (0.0,) * (4 - len(values))


def _opencv_stats(op, x, mean, std):
    cv2 = _opencv()
    if op.per_channel:
        tall = x.reshape(-1, x.shape[-2], x.shape[-1])  # one (N*H, W, C) image

        def run():
            m, s = cv2.meanStdDev(tall)
            return m.ravel(), s.ravel()

        return run
    n = x.shape[0]
    rows = x.reshape(n, -1)  # an N x (H*W*C) one-channel matrix

    def run():
        m = cv2.reduce(rows, 0, cv2.REDUCE_AVG, dtype=cv2.CV_64F)
        squares = cv2.reduce(rows, 0, cv2.REDUCE_SUM2, dtype=cv2.CV_64F)
        s = np.sqrt(np.maximum(squares / n - m * m, 0.0))
        return m.reshape(x.shape[1:]), s.reshape(x.shape[1:])

    return run


def _opencv_standardize(op, x, mean, std):
    cv2 = _opencv()
    out = reused_out(op.output_shape(x.shape))
    if op.channels_first:
        params = cv2.dnn.Image2BlobParams(scalefactor=_scalar(1.0 / np.asarray(std)),
                                          mean=_scalar(mean), ddepth=cv2.CV_32F)
        images = list(x)

        def run():  # (image - mean) * scalefactor, NCHW, into the reused blob
            cv2.dnn.blobFromImagesWithParams(images, out, params)
            return out

        return run
    if op.per_channel:
        shape = (-1, x.shape[-2], x.shape[-1])
        tall, tall_out = x.reshape(shape), out.reshape(shape)
        m, r = _scalar(mean), _scalar(1.0 / np.asarray(std))

        def run():
            cv2.subtract(tall, m, dst=tall_out, dtype=cv2.CV_32F)
            cv2.multiply(tall_out, r, dst=tall_out)
            return out

        return run
    m, r = _float32_params(op, mean, std)  # (H, W, C) float32 images
    pairs = list(zip(x, out))

    def run():
        for image, image_out in pairs:
            cv2.subtract(image, m, dst=image_out, dtype=cv2.CV_32F)
            cv2.multiply(image_out, r, dst=image_out)
        return out

    return run


# albumentations

def _albumentations_standardize(op, x, mean, std):
    albumentations = peer("albumentations")
    _opencv()  # its uint8 path is OpenCV's LUT
    normalize = albumentations.Normalize(mean=np.ravel(mean).tolist(),
                                         std=np.ravel(std).tolist(), max_pixel_value=1.0)
    return lambda: normalize(images=x)["images"]


# NVIDIA DALI (CPU-only pipeline)

def _dali_standardize(op, x, mean, std):
    dali = peer("nvidia.dali")
    fn, types = peer("nvidia.dali.fn"), peer("nvidia.dali.types")
    m32 = np.asarray(mean, np.float32)
    s32 = np.asarray(std, np.float32)

    @dali.pipeline_def(batch_size=x.shape[0], num_threads=peer_threads(), device_id=None,
                       prefetch_queue_depth=1, exec_async=False, exec_pipelined=False)
    def pipeline():
        images = fn.external_source(name="x", batch=True, layout="HWC", dtype=types.UINT8,
                                    no_copy=True)
        if op.per_pixel:
            return fn.normalize(images, mean=m32, stddev=s32, dtype=types.FLOAT)
        return fn.crop_mirror_normalize(images, mean=m32.tolist(), std=s32.tolist(),
                                        dtype=types.FLOAT,
                                        output_layout="CHW" if op.channels_first else "HWC")

    try:
        pipe = pipeline()
        pipe.build()
    except Exception as exc:  # noqa: BLE001 - e.g. a DALI build that needs a GPU driver
        raise Unavailable(f"NVIDIA DALI cannot build a CPU pipeline here: "
                          f"{type(exc).__name__}: {exc}") from exc

    def run():
        pipe.feed_input("x", x)
        (out,) = pipe.run()
        return out.as_array()  # a NumPy copy of DALI's output buffer

    return run


# scikit-learn

def _sklearn_stats(op, x, mean, std):
    scaler_type = peer("sklearn.preprocessing").StandardScaler
    rows = x.reshape(x.shape[0], -1)

    def run():
        scaler = scaler_type().fit(rows)
        return scaler.mean_.reshape(x.shape[1:]), scaler.scale_.reshape(x.shape[1:])

    return run


def _sklearn_standardize(op, x, mean, std):
    scaler_type = peer("sklearn.preprocessing").StandardScaler
    rows = x.reshape(x.shape[0], -1)
    return lambda: scaler_type(copy=False).fit_transform(
        rows.astype(np.float32)).reshape(x.shape)


# the memory floors (private kernels of the extension)

FLOOR_KERNELS = ("floor_read", "floor_convert")


def floor_kernel(name: str):
    """``zmfast._core.<name>``, or None when the extension lacks it (or is missing)."""
    try:
        core = importlib.import_module("zmfast._core")
    except ImportError:
        return None
    return getattr(core, name, None)


def _floor_read(op, x, mean, std):
    read = floor_kernel("floor_read")
    return lambda: read(x)


def _floor_convert(stream: bool, fresh: bool):
    def build(op, x, mean, std):
        convert = floor_kernel("floor_convert")
        if fresh:
            def run():
                out = np.empty(x.shape, np.float32)
                convert(x, out, stream)
                return out

            return run
        out = reused_out(x.shape)

        def run():
            convert(x, out, stream)
            return out

        return run

    return build


@dataclasses.dataclass(frozen=True)
class Implementation:
    name: str  # unique within an operation kind; part of the test id
    kind: str  # the operation kind it implements
    backend: str | None  # the zmfast backend it needs (loaded, threads set), or None
    variant: str  # "numpy", "careful", "drop-in", "tuned", "peer" or "floor"
    title: str  # the report's name for it: "zmfast cpp tuned", "PyTorch", ...
    note: str  # for the report's legend: "one pass", "reused output", ...
    code: Callable[[Operation], str]  # what the user writes, for the report's legend
    build: Callable[[Operation, np.ndarray, Any, Any], Callable[[], Any]]
    module: str | None = None  # a peer's library, which must be importable
    kernel: str | None = None  # a floor's kernel in zmfast._core
    output: str | None = None  # standardize: "new" array per call or "reused" out=
    threaded: bool = False  # follows zm.get_num_threads(); else one thread
    supports: Callable[[Operation], bool] = lambda op: True
    memory: float = 0.0  # peak temporaries and outputs, in bytes per input byte

    @property
    def family(self) -> str:
        if self.variant in ("numpy", "careful"):
            return "numpy"
        if self.variant == "floor":
            return "limit"
        if self.variant == "peer":
            return "peer"
        return "zmfast"


def benched_backends() -> list:
    """zmfast backends to time: ``ZMFAST_BENCH_BACKENDS`` (comma-separated names, e.g.
    ``cpp,numba``) or else every backend but the reference one, which is as slow as NumPy."""
    requested = os.environ.get("ZMFAST_BENCH_BACKENDS", "").strip()
    if requested:
        names = [name.strip() for name in requested.split(",") if name.strip()]
        unknown = sorted(set(names) - set(BACKEND_NAMES))
        if unknown:
            raise ValueError(f"ZMFAST_BENCH_BACKENDS names unknown backends {unknown}; "
                             f"zmfast has {list(BACKEND_NAMES)}")
        return names
    return [name for name in BACKEND_NAMES if name != "numpy"]


def _implementations() -> list:
    def nchw(op):
        return ", channels_first=True" if op.channels_first else ""

    def numpy_standardize_code(op):
        code = "((x - m) / s).astype(np.float32)"
        return f"np.ascontiguousarray({code}.transpose(0, 3, 1, 2))" if op.channels_first \
            else code

    def careful_standardize_code(op):
        src = "x.transpose(0, 3, 1, 2)" if op.channels_first else "x"
        return (f"np.subtract({src}, m32, out=buf, dtype=np.float32); "
                "np.multiply(buf, r32, out=buf)")

    def numexpr_code(op):
        src = ", x=x.transpose(0, 3, 1, 2)" if op.channels_first else ""
        return f'ne.evaluate("(x - m) * r", out=buf{src})'

    def torch_code(op):
        permute = ".permute(0, 3, 1, 2).contiguous()" if op.channels_first else ""
        return f"torch.from_numpy(x){permute}.float().sub_(m).div_(s)"

    def torch_out_code(op):
        src = "t.permute(0, 3, 1, 2)" if op.channels_first else "t"
        return f"torch.sub({src}, m, out=buf).div_(s)"

    def opencv_stats_code(op):
        if op.per_channel:
            return "cv2.meanStdDev(x.reshape(N * H, W, C))"
        return "cv2.reduce(x.reshape(N, -1), 0, REDUCE_AVG and REDUCE_SUM2)"

    def opencv_code(op):
        if op.channels_first:
            return ("cv2.dnn.blobFromImagesWithParams(list(x), buf, "
                    "Image2BlobParams(scalefactor=1/s, mean=m))")
        if op.per_channel:
            return ("cv2.subtract(x.reshape(N * H, W, C), m, dst=buf, dtype=CV_32F); "
                    "cv2.multiply(buf, 1/s, dst=buf)")
        return "per image: cv2.subtract(img, m, dst=o, dtype=CV_32F); cv2.multiply(o, 1/s, dst=o)"

    def dali_code(op):
        if op.per_pixel:
            return "fn.normalize(images, mean=m, stddev=s)"
        layout = "CHW" if op.channels_first else "HWC"
        return f'fn.crop_mirror_normalize(images, mean=m, std=s, output_layout="{layout}")'

    def always(code):
        return lambda op: code

    def channel_nhwc(op):
        return op.per_channel and not op.channels_first

    def per_pixel(op):
        return op.per_pixel

    def nhwc_or_channel(op):
        return not op.channels_first or op.per_channel

    rows = [
        Implementation("numpy", "stats", None, "numpy", "NumPy", "",
                       always("x.mean(axis), x.std(axis)"), _numpy_stats, memory=16),
        Implementation("numpy-careful", "stats", None, "careful", "NumPy careful",
                       "float64, the mean reused by std",
                       always("m = x.mean(axis, dtype=np.float64, keepdims=True); "
                              "x.std(axis, dtype=np.float64, mean=m)"),
                       _numpy_careful_stats, memory=8),
        Implementation("numpy", "standardize", None, "numpy", "NumPy", "new output",
                       numpy_standardize_code, _numpy_standardize, output="new", memory=20),
        Implementation("numpy-careful", "standardize", None, "careful", "NumPy careful",
                       "reused float32 output, in place; m32, r32 = float32 m and 1/s",
                       careful_standardize_code, _numpy_careful_standardize,
                       output="reused", memory=4),
    ]
    for backend in benched_backends():
        rows += [
            Implementation(f"{backend}-meanstd", "stats", backend, "drop-in",
                           f"zmfast {backend} drop-in", "two passes",
                           always("zm.mean(x, axis), zm.std(x, axis)"), _zm_mean_std,
                           threaded=True),
            Implementation(f"{backend}-moments", "stats", backend, "tuned",
                           f"zmfast {backend} tuned", "one pass",
                           always("zm.moments(x, axis)"), _zm_moments, threaded=True),
            Implementation(f"{backend}-new", "standardize", backend, "drop-in",
                           f"zmfast {backend} drop-in", "new output",
                           lambda op: f"zm.standardize(x, m, s{nchw(op)})", _zm_standardize,
                           output="new", threaded=True, memory=4),
            Implementation(f"{backend}-out", "standardize", backend, "tuned",
                           f"zmfast {backend} tuned", "reused output",
                           lambda op: f"zm.standardize(x, m, s, out=buf{nchw(op)})",
                           _zm_standardize_out, output="reused", threaded=True, memory=4),
        ]
    rows += [
        # peers: statistics
        Implementation("torch", "stats", None, "peer", "PyTorch", "float64 copy, one call",
                       always("torch.std_mean(torch.from_numpy(x).double(), dim=axis, "
                              "correction=0)"),
                       _torch_stats, module="torch", threaded=True, memory=16),
        Implementation("opencv", "stats", None, "peer", "OpenCV", "", opencv_stats_code,
                       _opencv_stats, module="cv2", threaded=True, memory=0),
        Implementation("sklearn", "stats", None, "peer", "scikit-learn",
                       "fit converts to float64", always("StandardScaler().fit(x.reshape(N, -1))"
                                                         ": mean_, scale_"),
                       _sklearn_stats, module="sklearn", supports=per_pixel, memory=16),
        # peers: standardize
        Implementation("numexpr", "standardize", None, "peer", "numexpr",
                       "reused output; m, r = float32 m and 1/s", numexpr_code,
                       _numexpr_standardize, module="numexpr", output="reused",
                       threaded=True, memory=4),
        Implementation("torch", "standardize", None, "peer", "PyTorch", "new output",
                       torch_code, _torch_standardize, module="torch", output="new",
                       threaded=True, memory=5),
        Implementation("torch-out", "standardize", None, "peer", "PyTorch out=",
                       "reused output", torch_out_code, _torch_standardize_out,
                       module="torch", output="reused", threaded=True, memory=4),
        Implementation("opencv", "standardize", None, "peer", "OpenCV", "reused output",
                       opencv_code, _opencv_standardize, module="cv2", output="reused",
                       threaded=True, supports=nhwc_or_channel, memory=4),
        Implementation("albumentations", "standardize", None, "peer", "albumentations",
                       "new output; a float32 lookup table per channel (uint8 path)",
                       always("A.Normalize(mean=m, std=s, max_pixel_value=1.0)"
                              "(images=x)['images']"),
                       _albumentations_standardize, module="albumentations", output="new",
                       threaded=True, supports=channel_nhwc, memory=8),
        Implementation("dali", "standardize", None, "peer", "NVIDIA DALI (CPU)",
                       "new output: as_array() copies DALI's buffer", dali_code,
                       _dali_standardize, module="nvidia.dali", output="new", threaded=True,
                       supports=nhwc_or_channel, memory=8),
        Implementation("sklearn", "standardize", None, "peer", "scikit-learn",
                       "new output; also computes the statistics (fit)",
                       always("StandardScaler(copy=False).fit_transform("
                              "x.reshape(N, -1).astype(np.float32))"),
                       _sklearn_standardize, module="sklearn", output="new",
                       supports=per_pixel, memory=4),
        # the floors
        Implementation("read", "read-floor", "cpp", "floor", "floor: read",
                       "sum of the bytes", always("zmfast._core.floor_read(x)"),
                       _floor_read, kernel="floor_read", threaded=True),
        Implementation("convert", "convert-floor", "cpp", "floor",
                       "floor: convert, reused out", "normal stores",
                       always("zmfast._core.floor_convert(x, buf, False)"),
                       _floor_convert(stream=False, fresh=False), kernel="floor_convert",
                       output="reused", threaded=True, memory=4),
        Implementation("convert-stream", "convert-floor", "cpp", "floor",
                       "floor: convert, reused out, streaming", "non-temporal stores",
                       always("zmfast._core.floor_convert(x, buf, True)"),
                       _floor_convert(stream=True, fresh=False), kernel="floor_convert",
                       output="reused", threaded=True, memory=4),
        Implementation("fresh", "convert-floor", "cpp", "floor",
                       "floor: convert, fresh np.empty", "normal stores",
                       always("zmfast._core.floor_convert(x, np.empty(x.shape, np.float32), "
                              "False)"),
                       _floor_convert(stream=False, fresh=True), kernel="floor_convert",
                       output="new", threaded=True, memory=4),
        Implementation("fresh-stream", "convert-floor", "cpp", "floor",
                       "floor: convert, fresh np.empty, streaming", "non-temporal stores",
                       always("zmfast._core.floor_convert(x, np.empty(x.shape, np.float32), "
                              "True)"),
                       _floor_convert(stream=True, fresh=True), kernel="floor_convert",
                       output="new", threaded=True, memory=4),
    ]
    return rows


WORKLOADS = (
    Workload("cifar", (5000, 32, 32, 3)),
    Workload("imagenet", (256, 224, 224, 3)),
)

OPERATIONS = (
    Operation("pixel-stats", "per-pixel mean+std (axis 0)", "stats", 0),
    Operation("channel-stats", "per-channel mean+std (axes 0,1,2)", "stats", (0, 1, 2)),
    Operation("pixel-standardize", "per-pixel standardize", "standardize", 0),
    Operation("channel-standardize", "per-channel standardize", "standardize", (0, 1, 2)),
    Operation("channel-standardize-nchw", "per-channel standardize, NCHW out", "standardize",
              (0, 1, 2), channels_first=True),
    Operation("read-floor", "limit: read the batch", "read-floor", None),
    Operation("convert-floor", "limit: uint8 → float32 copy", "convert-floor", None),
)

IMPLEMENTATIONS = tuple(_implementations())


def operation(name: str) -> Operation:
    return next(op for op in OPERATIONS if op.name == name)


def implementations_of(op: Operation) -> list:
    return [impl for impl in IMPLEMENTATIONS if impl.kind == op.kind and impl.supports(op)]


@dataclasses.dataclass(frozen=True)
class Case:
    workload: Workload
    operation: Operation
    implementation: Implementation
    suite: str = "cases"  # "cases", or the scaling table it belongs to: "threads", "sizes"

    @property
    def id(self) -> str:
        return f"{self.workload.name}-{self.operation.name}-{self.implementation.name}"

    @property
    def group(self) -> str:
        group = f"{self.workload.name}-{self.operation.name}"
        return group if self.suite == "cases" else f"{self.suite}-{group}"

    def threads(self) -> int:
        """The threads it runs on: zmfast's count for zmfast, the floors and threaded peers
        (which are given as many), else 1 (NumPy's ufuncs are single-threaded)."""
        return zm.get_num_threads() if self.implementation.threaded else 1

    def extra_info(self) -> dict:
        """What the report needs, stored in the benchmark JSON with the timings.

        ``bytes_read``/``bytes_written`` are the operation's minimum memory traffic: the
        batch read once, the result written once.
        """
        shape, op, impl = self.workload.shape, self.operation, self.implementation
        if op.kind == "stats":
            written = 2 * 8 * _kept_size(shape, op.axis)  # float64 mean and std
        elif op.kind == "read-floor":
            written = 0
        else:
            written = math.prod(shape) * 4  # float32
        return {
            "suite": self.suite,
            "workload": self.workload.name,
            "shape": list(shape),
            "dtype": self.workload.dtype,
            "operation": op.name,
            "operation_label": op.label,
            "operation_kind": op.kind,
            "implementation": impl.name,
            "title": impl.title,
            "family": impl.family,
            "backend": impl.backend or "numpy",
            "variant": impl.variant,
            "output": impl.output,
            "code": impl.code(op),
            "note": impl.note,
            "bytes_read": self.workload.nbytes,
            "bytes_written": written,
            "threads": self.threads(),
        }

    def unavailable(self) -> str | None:
        """Why this case cannot run here (a missing backend, peer or floor kernel)."""
        return implementation_unavailable(self.implementation)


CASES = [Case(workload, op, impl)
         for workload in WORKLOADS
         for op in OPERATIONS
         for impl in implementations_of(op)]


def backend_unavailable(name: str | None) -> str | None:
    """Why zmfast backend ``name`` cannot be used, or None when it can (or is NumPy)."""
    if name is None:
        return None
    try:
        with zm.use_backend(name):
            pass
    except ImportError as exc:
        return f"zmfast backend {name!r} is unavailable: {exc}"
    return None


def implementation_unavailable(impl: Implementation) -> str | None:
    """Why ``impl`` cannot run here, or None. Cheap: a peer is looked for, not imported."""
    if impl.kernel is not None:
        if floor_kernel(impl.kernel) is None:
            return (f"zmfast._core.{impl.kernel} is not in the installed extension "
                    "(a build that predates the floor kernels)")
        return None
    reason = backend_unavailable(impl.backend)
    if reason:
        return reason
    if impl.module is not None:
        try:
            found = importlib.util.find_spec(impl.module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return (f"peer {impl.title} ({impl.module}) is not installed: "
                    f"pip install -r {PEERS_REQUIREMENTS}")
    return None


# --- checks against float64 NumPy ---

def reference_stats(x: np.ndarray, axis: Axis) -> tuple:
    """NumPy's float64 mean and (two-pass) std: the reference for every implementation."""
    return x.mean(axis=axis, dtype=np.float64), x.std(axis=axis, dtype=np.float64)


def exact_stats(x: np.ndarray, axis: Axis, chunk_bytes: int = 1 << 24) -> tuple:
    """The mean and std of a uint8 batch from exact integer sums, a few images at a time:
    the reference for batches too large for :func:`reference_stats`' float64 temporaries."""
    assert x.dtype == np.uint8, x.dtype
    axes = axis if isinstance(axis, tuple) else (axis,)
    assert 0 in axes, "the statistics reduce over the images"
    inner = tuple(ax - 1 for ax in axes if ax != 0)
    kept = tuple(n for ax, n in enumerate(x.shape) if ax not in axes)
    s1 = np.zeros(kept, np.int64)
    s2 = np.zeros(kept, np.int64)
    step = max(1, chunk_bytes // max(1, math.prod(x.shape[1:])))
    for start in range(0, x.shape[0], step):
        block = x[start:start + step].astype(np.int64)
        s1 += block.sum(axis=(0,) + tuple(ax + 1 for ax in inner))
        block *= block
        s2 += block.sum(axis=(0,) + tuple(ax + 1 for ax in inner))
    count = x.size // max(1, s1.size)
    # count * s2 - s1**2, exactly: in Python integers, as it passes 2**63 past ~1e8 values.
    exact = count * s2.astype(object) - s1.astype(object) ** 2
    var = exact.astype(np.float64) / (float(count) * count)
    return s1 / count, np.sqrt(var)


def check_stats(result, expected) -> None:
    names = ("mean", "std")
    assert len(result) == 2, f"expected (mean, std), got {len(result)} values"
    for name, actual, wanted in zip(names, result, expected):
        actual = np.asarray(actual)
        assert actual.shape == wanted.shape, f"{name}: shape {actual.shape} != {wanted.shape}"
        np.testing.assert_allclose(actual, wanted, rtol=STATS_RTOL, atol=0,
                                   err_msg=f"{name} differs from NumPy's float64 {name}")


def check_standardized(result, x: np.ndarray, mean, std, channels_first: bool,
                       chunk_elements: int = 1 << 22) -> None:
    """Compare a float32 output with float64 ``(x - mean) / std``, a few images at a time
    (the float64 reference of a whole ImageNet batch would take 300 MB)."""
    shape = x.shape[:-3] + (x.shape[-1],) + x.shape[-3:-1] if channels_first else x.shape
    assert isinstance(result, np.ndarray), f"expected an ndarray, got {type(result).__name__}"
    assert result.dtype == np.float32, f"dtype {result.dtype}, expected float32"
    assert result.shape == shape, f"shape {result.shape}, expected {shape}"
    assert result.flags.c_contiguous, "the output is not C-contiguous"
    per_image = max(1, math.prod(x.shape[1:]))
    step = max(1, chunk_elements // per_image)
    for start in range(0, x.shape[0], step):
        wanted = (x[start:start + step] - mean) / std
        if channels_first:
            wanted = wanted.transpose(0, 3, 1, 2)
        actual = result[start:start + step]
        error = np.abs(actual - wanted)
        bad = error > FLOAT32_TOL + FLOAT32_TOL * np.abs(wanted)
        if bad.any():
            index = np.unravel_index(np.argmax(error), error.shape)
            index = (index[0] + start,) + index[1:]
            raise AssertionError(
                f"{int(bad.sum())} float32 outputs in images {start}..{start + step - 1} "
                f"differ from float64 NumPy by more than {FLOAT32_TOL} relative/absolute; "
                f"worst at {index}: got {result[index]!r}, expected "
                f"{wanted[(index[0] - start,) + index[1:]]!r}")


def check_read_floor(result, x: np.ndarray) -> None:
    wanted = int(x.sum(dtype=np.uint64))
    assert int(result) == wanted, f"floor_read: {result!r}, expected the byte sum {wanted}"


def check_converted(result, x: np.ndarray, chunk_elements: int = 1 << 24) -> None:
    assert isinstance(result, np.ndarray), f"expected an ndarray, got {type(result).__name__}"
    assert result.dtype == np.float32 and result.shape == x.shape, (result.dtype, result.shape)
    flat_x, flat_out = x.reshape(-1), result.reshape(-1)
    for start in range(0, flat_x.size, chunk_elements):
        stop = start + chunk_elements
        if not np.array_equal(flat_out[start:stop], flat_x[start:stop]):
            raise AssertionError(f"floor_convert: float32 output differs from the bytes in "
                                 f"elements {start}..{min(stop, flat_x.size) - 1}")


def check(op: Operation, result, x: np.ndarray, mean, std) -> None:
    """Check ``result`` of ``op`` on ``x`` (``mean``, ``std``: the reference statistics)."""
    if op.kind == "stats":
        check_stats(result, (mean, std))
    elif op.kind == "standardize":
        check_standardized(result, x, mean, std, op.channels_first)
    elif op.kind == "read-floor":
        check_read_floor(result, x)
    elif op.kind == "convert-floor":
        check_converted(result, x)
    else:
        raise ValueError(f"unknown operation kind {op.kind!r}")
