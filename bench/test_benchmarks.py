"""Every case of cases.CASES: check the answer once against NumPy, then time it.

    pytest bench/ --benchmark-only                      # everything, scaling tables included
    pytest bench/ --benchmark-only -k cifar             # one workload
    pytest bench/ --benchmark-only -m "not scaling"     # only the per-workload tables
    pytest bench/ --benchmark-only --benchmark-min-rounds 3 --benchmark-max-time 0.5
    python bench/report.py                              # run and write results/report.md

It times the installed zmfast (the sources live under src/, so ``python -m pytest bench/``
from the repository root does not shadow it).
"""

import pytest
from cases import CASES
from harness import build_checked, time_case


def param(case):
    reason = case.unavailable()
    marks = [pytest.mark.skip(reason=reason)] if reason else []
    return pytest.param(case, id=case.id, marks=marks)


# A failed correctness check ends the test before the benchmark fixture is used; the
# fixture's "was not used at all" warning would then turn into a second, misleading error.
@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
@pytest.mark.parametrize("case", [param(case) for case in CASES])
def test_benchmark(benchmark, case, workload_data, reference_stats):
    x = workload_data(case.workload)
    axis = case.operation.axis
    mean, std = reference_stats(case.workload, axis) if axis is not None else (None, None)
    run = build_checked(case, x, mean, std)
    time_case(benchmark, case, run)
