"""The benchmark case table: every (workload, operation, implementation) that is timed.

``CASES`` is the one table that drives the suite (``test_benchmarks.py`` is parametrized
over it) and, through each benchmark's ``extra_info``, the report (``report.py``). To add a
workload, an operation or an implementation, add a row to ``WORKLOADS``, ``OPERATIONS`` or
``IMPLEMENTATIONS``; backends that zmfast gains later (``zmfast._backends.NAMES``) are
picked up automatically.

Every implementation is checked once, outside the timed region, against a float64 NumPy
reference: statistics to ``STATS_RTOL``, float32 outputs to ``FLOAT32_TOL`` relative and
absolute.
"""

from __future__ import annotations

import dataclasses
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

Axis = Union[int, tuple]


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    shape: tuple  # N, H, W, C
    dtype: str = "uint8"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    def generate(self) -> np.ndarray:
        """The batch: uniform random pixels from a fixed seed, C-contiguous NHWC."""
        rng = np.random.default_rng(SEED)
        info = np.iinfo(self.dtype)
        return rng.integers(info.min, info.max, size=self.shape, dtype=self.dtype,
                            endpoint=True)


@dataclasses.dataclass(frozen=True)
class Operation:
    name: str
    label: str  # for the report
    kind: str  # "stats" or "standardize"
    axis: Axis  # the reduction of the statistics: 0 per pixel, (0, 1, 2) per channel
    channels_first: bool = False

    def output_shape(self, shape: tuple) -> tuple:
        if self.channels_first:
            return shape[:-3] + (shape[-1],) + shape[-3:-1]
        return shape


def _kept_size(shape: tuple, axis: Axis) -> int:
    axes = axis if isinstance(axis, tuple) else (axis,)
    return math.prod(n for ax, n in enumerate(shape) if ax not in axes)


# --- implementations: build(op, x, mean, std) returns the zero-argument function timed ---

def _numpy_stats(op, x, mean, std):
    axis = op.axis
    return lambda: (x.mean(axis=axis), x.std(axis=axis))


def _numpy_standardize(op, x, mean, std):
    if op.channels_first:  # a PyTorch user needs contiguous NCHW
        return lambda: np.ascontiguousarray(
            ((x - mean) / std).astype(np.float32).transpose(0, 3, 1, 2))
    return lambda: ((x - mean) / std).astype(np.float32)


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
    out = np.empty(op.output_shape(x.shape), np.float32)
    return lambda: zm.standardize(x, mean, std, out=out, channels_first=channels_first)


@dataclasses.dataclass(frozen=True)
class Implementation:
    name: str  # unique within an operation kind; part of the test id
    kind: str  # the operation kind it implements
    backend: str | None  # a zmfast backend, or None for plain NumPy
    variant: str  # "numpy", "drop-in" or "tuned": the report's column
    note: str  # for the report's legend: "one pass", "reused output", ...
    code: Callable[[Operation], str]  # what the user writes, for the report's legend
    build: Callable[[Operation, np.ndarray, Any, Any], Callable[[], Any]]


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

    rows = [
        Implementation("numpy", "stats", None, "numpy", "",
                       lambda op: "x.mean(axis), x.std(axis)", _numpy_stats),
        Implementation("numpy", "standardize", None, "numpy", "",
                       numpy_standardize_code, _numpy_standardize),
    ]
    for backend in benched_backends():
        rows += [
            Implementation(f"{backend}-meanstd", "stats", backend, "drop-in", "two passes",
                           lambda op: "zm.mean(x, axis), zm.std(x, axis)", _zm_mean_std),
            Implementation(f"{backend}-moments", "stats", backend, "tuned", "one pass",
                           lambda op: "zm.moments(x, axis)", _zm_moments),
            Implementation(f"{backend}-new", "standardize", backend, "drop-in", "new output",
                           lambda op: f"zm.standardize(x, m, s{nchw(op)})", _zm_standardize),
            Implementation(f"{backend}-out", "standardize", backend, "tuned", "reused output",
                           lambda op: f"zm.standardize(x, m, s, out=buf{nchw(op)})",
                           _zm_standardize_out),
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
)

IMPLEMENTATIONS = tuple(_implementations())


@dataclasses.dataclass(frozen=True)
class Case:
    workload: Workload
    operation: Operation
    implementation: Implementation

    @property
    def id(self) -> str:
        return f"{self.workload.name}-{self.operation.name}-{self.implementation.name}"

    @property
    def group(self) -> str:
        return f"{self.workload.name}-{self.operation.name}"

    def extra_info(self, threads: int) -> dict:
        """What the report needs, stored in the benchmark JSON with the timings.

        ``bytes_read``/``bytes_written`` are the operation's minimum memory traffic: the
        batch read once, the result written once.
        """
        shape, op, impl = self.workload.shape, self.operation, self.implementation
        if op.kind == "stats":
            written = 2 * 8 * _kept_size(shape, op.axis)  # float64 mean and std
        else:
            written = math.prod(shape) * 4  # float32
        return {
            "workload": self.workload.name,
            "shape": list(shape),
            "dtype": self.workload.dtype,
            "operation": op.name,
            "operation_label": op.label,
            "implementation": impl.name,
            "backend": impl.backend or "numpy",
            "variant": impl.variant,
            "code": impl.code(op),
            "note": impl.note,
            "bytes_read": self.workload.nbytes,
            "bytes_written": written,
            "threads": threads if impl.backend else 1,  # NumPy's ufuncs are single-threaded
        }


CASES = [Case(workload, operation, implementation)
         for workload in WORKLOADS
         for operation in OPERATIONS
         for implementation in IMPLEMENTATIONS
         if implementation.kind == operation.kind]


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


# --- checks against float64 NumPy ---

def reference_stats(x: np.ndarray, axis: Axis) -> tuple:
    """NumPy's float64 mean and (two-pass) std: the reference for every implementation."""
    return x.mean(axis=axis, dtype=np.float64), x.std(axis=axis, dtype=np.float64)


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
