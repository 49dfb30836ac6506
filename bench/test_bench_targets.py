"""Benchmarks of issue 5's targets that are not a table of peers: float16 output against
float32, and small inputs against the single-threaded floor.

    pytest bench/test_bench_targets.py --benchmark-only --benchmark-json=targets.json
    python bench/report_estimators.py targets.json         # the "Targets" tables

Two comparisons, each candidate measured against a baseline in the same run (report.py
appends them to its report):

* ``float16``: ``zm.standardize(x, m, s, dtype=np.float16)`` against the same call with
  float32, per pixel and per channel, into a reused ``out=`` and into a new array, on the
  imagenet and cifar batches. Target: float16 faster (a speed-up over float32 above 1).
* ``small``: one 224 x 224 x 3 image and 32 CIFAR images, per-channel ``zm.standardize``
  into a reused ``out=`` and ``zm.moments``, with zmfast's usual thread count, against the
  floor kernels on one thread (``floor_convert`` into a reused buffer, ``floor_read``).
  Target: within 1.5x of that floor, i.e. small calls do not pay thread start-up.

Every zmfast result is checked once against float64 NumPy outside the timed region.
"""

import numpy as np
import pytest
from cases import WORKLOADS, Workload, backend_unavailable, reused_out, zm

F16_WORKLOADS = [w for w in WORKLOADS if w.name in ("cifar", "imagenet")]
SMALL_WORKLOADS = [Workload("one-image", (1, 224, 224, 3)), Workload("cifar-32", (32, 32, 32, 3))]

COMPARISONS = {
    "float16": {"label": "float16 output against float32",
                "target": {"kind": "speedup", "value": 1.0}},
    "small": {"label": "small input against the one-thread floor",
              "target": {"kind": "slowdown", "value": 1.5}},
}


def _stats(x, per_pixel):
    axis = 0 if per_pixel else (0, 1, 2)
    return x.mean(axis=axis), x.std(axis=axis)


# --- the timed functions: build(x) returns the zero-argument function timed ----------------

def _standardize(per_pixel, dtype, reused):
    def build(x):
        mean, std = _stats(x, per_pixel)
        if reused:
            out = reused_out(x.shape, dtype)
            return lambda: zm.standardize(x, mean, std, out=out, dtype=dtype)
        return lambda: zm.standardize(x, mean, std, dtype=dtype)
    return build


def _moments(x):
    return lambda: zm.moments(x, axis=(0, 1, 2))


def _floor(kind):
    def build(x):
        core = pytest.importorskip("zmfast._core")
        if kind == "read":
            return lambda: core.floor_read(x)
        out = reused_out(x.shape)
        return lambda: core.floor_convert(x, out, False)
    return build


# --- checks (outside the timed region) --------------------------------------------------

def _check_standardized(per_pixel, dtype):
    def check(result, x):
        mean, std = _stats(x, per_pixel)
        want = ((x[:16] - mean) / std).astype(dtype)
        assert result.dtype == dtype and result.shape == x.shape
        if dtype == np.float16:
            np.testing.assert_array_equal(result[:16], want)
        else:
            np.testing.assert_array_max_ulp(result[:16], want, maxulp=1)
    return check


def _check_moments(result, x):
    np.testing.assert_allclose(result.mean, x.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(result.var(), x.var(axis=(0, 1, 2)), rtol=1e-10)


def _check_nothing(result, x):
    pass


class Case:
    def __init__(self, comparison, workload, implementation, role, baseline, code, build,
                 check, threads=None):
        self.comparison = comparison
        self.workload = workload
        self.implementation = implementation  # unique within (comparison, workload)
        self.role = role
        self.baseline = baseline
        self.code = code
        self.build = build
        self.check = check
        self.threads = threads  # None: zmfast's count

    @property
    def id(self):
        return f"{self.workload.name}-{self.comparison}-{self.implementation}"

    def extra_info(self):
        spec = COMPARISONS[self.comparison]
        return {
            "suite": "targets",
            "data": self.workload.name,
            "shape": list(self.workload.shape),
            "dtype": self.workload.dtype,
            "comparison": self.comparison,
            "comparison_label": spec["label"],
            "target": spec["target"],
            "implementation": self.implementation,
            "backend": "cpp",
            "role": self.role,
            "baseline": self.baseline,
            "code": self.code,
            "threads": self.threads or zm.get_num_threads(),
        }


def _cases():
    rows = []
    for workload in F16_WORKLOADS:
        for per_pixel in (True, False):
            stats = "pixel" if per_pixel else "channel"
            for reused in (True, False):
                where = "out" if reused else "new"
                call = ("zm.standardize(x, m, s, out=buf, dtype={})" if reused
                        else "zm.standardize(x, m, s, dtype={})")
                base = f"{stats}-{where}-float32"
                rows += [
                    Case("float16", workload, base, "baseline", None,
                         f"per {stats}: " + call.format("float32"),
                         _standardize(per_pixel, np.float32, reused),
                         _check_standardized(per_pixel, np.float32)),
                    Case("float16", workload, f"{stats}-{where}-float16", "candidate", base,
                         f"per {stats}: " + call.format("float16"),
                         _standardize(per_pixel, np.float16, reused),
                         _check_standardized(per_pixel, np.float16)),
                ]
    for workload in SMALL_WORKLOADS:
        rows += [
            Case("small", workload, "floor-convert", "baseline", None,
                 "zmfast._core.floor_convert(x, buf, False), one thread", _floor("convert"),
                 _check_nothing, threads=1),
            Case("small", workload, "standardize", "candidate", "floor-convert",
                 "zm.standardize(x, m, s, out=buf)  # per channel",
                 _standardize(False, np.float32, True), _check_standardized(False, np.float32)),
            Case("small", workload, "floor-read", "baseline", None,
                 "zmfast._core.floor_read(x), one thread", _floor("read"), _check_nothing,
                 threads=1),
            Case("small", workload, "moments", "candidate", "floor-read",
                 "zm.moments(x, axis=(0, 1, 2))", _moments, _check_moments),
        ]
    return rows


CASES = _cases()


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_target_benchmark(benchmark, case, workload_data):
    unavailable = backend_unavailable("cpp")
    if unavailable:
        pytest.skip(unavailable)
    x = workload_data(case.workload)
    benchmark.group = f"{case.workload.name}-{case.comparison}"
    benchmark.extra_info.update(case.extra_info())
    threads_before = zm.get_num_threads()
    with zm.use_backend("cpp"):
        if case.threads:
            zm.set_num_threads(case.threads)
        try:
            run = case.build(x)
            case.check(run(), x)  # checked once, outside the timed region
            benchmark(run)
        finally:
            zm.set_num_threads(threads_before)


def test_target_cases_are_consistent():
    names = {(c.comparison, c.workload.name, c.implementation) for c in CASES}
    assert len(names) == len(CASES)
    for case in CASES:
        if case.role == "candidate":
            assert (case.comparison, case.workload.name, case.baseline) in names, case.id
