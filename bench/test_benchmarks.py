"""Every case of cases.CASES: check the answer once against NumPy, then time it.

    pytest bench/ --benchmark-only                      # everything (a few minutes)
    pytest bench/ --benchmark-only -k cifar             # one workload
    pytest bench/ --benchmark-only --benchmark-min-rounds 3 --benchmark-max-time 0.5
    python bench/report.py                              # run and write results/report.md
"""

import contextlib

import pytest
from cases import CASES, backend_unavailable, check_standardized, check_stats, zm


def _param(case):
    reason = backend_unavailable(case.implementation.backend)
    marks = [pytest.mark.skip(reason=reason)] if reason else []
    return pytest.param(case, id=case.id, marks=marks)


# A failed correctness check ends the test before the benchmark fixture is used; the
# fixture's "was not used at all" warning would then turn into a second, misleading error.
@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_benchmark(benchmark, case, workload_data, reference_stats):
    workload, operation, implementation = case.workload, case.operation, case.implementation
    x = workload_data(workload)
    mean, std = reference_stats(workload, operation.axis)

    benchmark.group = case.group
    benchmark.extra_info.update(case.extra_info(threads=zm.get_num_threads()))

    backend = implementation.backend
    with zm.use_backend(backend) if backend else contextlib.nullcontext():
        run = implementation.build(operation, x, mean, std)
        result = run()  # checked once, outside the timed region
        if operation.kind == "stats":
            check_stats(result, (mean, std))
        else:
            check_standardized(result, x, mean, std, operation.channels_first)
        del result
        benchmark(run)
