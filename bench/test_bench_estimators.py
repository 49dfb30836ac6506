"""Benchmarks of the estimators against what users would otherwise write.

    pytest bench/ --benchmark-only -k "scaler or partial" --benchmark-json=est.json
    python bench/report_estimators.py est.json                 # the "Estimators" table

Two comparisons, on the "cifar" workload of cases.py (5000 x 32 x 32 x 3 uint8):

* ``scaler-fit-transform``: ``zm.StandardScaler(axis=0).fit(x).transform(x)`` (float32
  out) against scikit-learn's ``StandardScaler().fit(x2).transform(x2)`` on the flattened
  ``x2 = x.reshape(len(x), -1)``, which scikit-learn converts to float64: what users do.
  Target: zmfast at least 10x faster.
* ``scaler-partial-fit``: ``partial_fit`` over 64-image batches (a Python loop) against one
  ``fit`` on the same backend. Target: the loop within 1.5x of ``fit``.

Each implementation is checked once against float64 NumPy, outside the timed region. The
``extra_info`` of every benchmark carries ``suite="estimators"``, the comparison, the
implementation it is measured against and the target, which report_estimators.py turns into
the "Estimators" table (report.py's workload tables skip these records: no ``operation``).
"""

import contextlib

import numpy as np
import pytest
from cases import (
    WORKLOADS,
    backend_unavailable,
    benched_backends,
    check_standardized,
    check_stats,
    zm,
)

try:
    from sklearn.preprocessing import StandardScaler as SklearnStandardScaler
except ImportError:  # the scikit-learn case is skipped
    SklearnStandardScaler = None

WORKLOAD = next(w for w in WORKLOADS if w.name == "cifar")
BATCH = 64  # images per partial_fit

COMPARISONS = {
    "scaler-fit-transform": {
        "label": "StandardScaler(axis=0) fit + transform (per pixel)",
        "target": {"kind": "speedup", "value": 10.0},
    },
    "scaler-partial-fit": {
        "label": f"StandardScaler(axis=0) partial_fit over {BATCH}-image batches vs fit",
        "target": {"kind": "slowdown", "value": 1.5},
    },
}


# --- the timed functions: build(x) returns the zero-argument function timed --------------

def _sklearn_fit_transform(x):
    flat = x.reshape(len(x), -1)
    return lambda: SklearnStandardScaler().fit(flat).transform(flat)


def _zm_fit_transform(x):
    return lambda: zm.StandardScaler(axis=0).fit(x).transform(x)


def _zm_fit(x):
    return lambda: zm.StandardScaler(axis=0).fit(x)


def _zm_partial_fit(x):
    batches = [x[start:start + BATCH] for start in range(0, len(x), BATCH)]  # views

    def run():
        scaler = zm.StandardScaler(axis=0)
        for batch in batches:
            scaler.partial_fit(batch)
        return scaler

    return run


# --- the checks (outside the timed region) ------------------------------------------------

def _check_sklearn(result, x, mean, std):
    flat = x.reshape(len(x), -1)
    assert result.shape == flat.shape and result.dtype == np.float64
    head = slice(0, 256)  # the float64 reference of the whole batch would take 120 MB more
    np.testing.assert_allclose(result[head], (flat[head] - mean.ravel()) / std.ravel(),
                               rtol=1e-10, atol=1e-10)


def _check_transformed(result, x, mean, std):
    check_standardized(result, x, mean, std, channels_first=False)


def _check_fitted(scaler, x, mean, std):
    assert scaler.n_samples_seen_ == len(x)
    check_stats((scaler.mean_, np.sqrt(scaler.var_)), (mean, std))


# --- the cases ----------------------------------------------------------------------------

class Case:
    def __init__(self, comparison, implementation, backend, role, baseline, code, build,
                 check, skip=None):
        self.comparison = comparison
        self.implementation = implementation  # unique within the comparison
        self.backend = backend  # a zmfast backend, or None (scikit-learn)
        self.role = role  # "baseline" or "candidate"
        self.baseline = baseline  # the implementation a candidate is measured against
        self.code = code
        self.build = build
        self.check = check
        self.skip = skip

    @property
    def id(self):
        return f"{WORKLOAD.name}-{self.comparison}-{self.implementation}"

    @property
    def group(self):
        return f"{WORKLOAD.name}-{self.comparison}"

    def extra_info(self, threads):
        spec = COMPARISONS[self.comparison]
        return {
            "suite": "estimators",
            "data": WORKLOAD.name,
            "shape": list(WORKLOAD.shape),
            "dtype": WORKLOAD.dtype,
            "comparison": self.comparison,
            "comparison_label": spec["label"],
            "target": spec["target"],
            "implementation": self.implementation,
            "backend": self.backend or "scikit-learn",
            "role": self.role,
            "baseline": self.baseline,
            "code": self.code,
            "threads": threads if self.backend else 1,
        }


def _cases():
    sklearn_missing = None if SklearnStandardScaler else "scikit-learn is not installed"
    rows = [Case("scaler-fit-transform", "sklearn", None, "baseline", None,
                 "StandardScaler().fit(x2).transform(x2), x2 = x.reshape(len(x), -1)",
                 _sklearn_fit_transform, _check_sklearn, skip=sklearn_missing)]
    for backend in benched_backends():
        unavailable = backend_unavailable(backend)
        rows += [
            Case("scaler-fit-transform", backend, backend, "candidate", "sklearn",
                 "zm.StandardScaler(axis=0).fit(x).transform(x)", _zm_fit_transform,
                 _check_transformed, skip=unavailable or sklearn_missing),
            Case("scaler-partial-fit", f"{backend}-fit", backend, "baseline", None,
                 "zm.StandardScaler(axis=0).fit(x)", _zm_fit, _check_fitted,
                 skip=unavailable),
            Case("scaler-partial-fit", f"{backend}-partial{BATCH}", backend, "candidate",
                 f"{backend}-fit",
                 f"for b in batches: scaler.partial_fit(b)  # {BATCH} images each",
                 _zm_partial_fit, _check_fitted, skip=unavailable),
        ]
    return rows


CASES = _cases()


def _param(case):
    marks = [pytest.mark.skip(reason=case.skip)] if case.skip else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_estimator_benchmark(benchmark, case, workload_data, reference_stats):
    x = workload_data(WORKLOAD)
    mean, std = reference_stats(WORKLOAD, 0)
    assert np.all(std > 0)  # random pixels: the checks divide by it

    benchmark.group = case.group
    benchmark.extra_info.update(case.extra_info(threads=zm.get_num_threads()))

    with zm.use_backend(case.backend) if case.backend else contextlib.nullcontext():
        run = case.build(x)
        result = run()  # checked once, outside the timed region
        case.check(result, x, mean, std)
        del result
        benchmark(run)


def test_estimator_cases_are_consistent():
    """Every candidate names a baseline of its own comparison (not a benchmark)."""
    names = {(c.comparison, c.implementation) for c in CASES}
    assert len(names) == len(CASES)
    for case in CASES:
        assert case.comparison in COMPARISONS
        if case.role == "candidate":
            assert (case.comparison, case.baseline) in names, case.id
