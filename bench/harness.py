"""The steps every benchmark test takes: build the case, check it once, time it."""

import contextlib
import time

import pytest
from cases import Unavailable, check, zm


def build_checked(case, x, mean, std):
    """Build the timed function of ``case`` (in its zmfast backend, if any), run it once and
    check the answer, outside the timed region. Skips the test when a peer cannot run."""
    op, impl = case.operation, case.implementation
    try:
        with zm.use_backend(impl.backend) if impl.backend else contextlib.nullcontext():
            run = impl.build(op, x, mean, std)
            result = run()
    except Unavailable as exc:
        pytest.skip(str(exc))
    check(op, result, x, mean, std)
    return run


def time_case(benchmark, case, run, target_seconds=None):
    """Time ``run`` (in its zmfast backend): as the ``--benchmark-*`` options say, or, with
    ``target_seconds``, for rounds that take about that long in all."""
    benchmark.group = case.group
    benchmark.extra_info.update(case.extra_info())
    backend = case.implementation.backend
    with zm.use_backend(backend) if backend else contextlib.nullcontext():
        if target_seconds is None:
            benchmark(run)
        else:
            benchmark.pedantic(run, iterations=1, warmup_rounds=0,
                               rounds=_rounds(run, target_seconds))


def _rounds(run, target: float) -> int:
    """Rounds for about ``target`` seconds: at least 3, but 2 or 1 for a slow case."""
    start = time.perf_counter()
    run()
    once = time.perf_counter() - start
    if once > 3 * target:
        return 1
    if once > target:
        return 2
    return max(3, min(100, int(target / max(once, 1e-6))))
