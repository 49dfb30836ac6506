"""The scaling tables: time against the thread count, and against the input size.

    pytest bench/ --benchmark-only -m scaling                     # both tables
    pytest bench/ --benchmark-only -k threads                     # threads 1 and 2
    pytest bench/ --benchmark-only -k sizes --zm-sizes 1,4,16,64,256,1024   # up to 1 GB

Threads: the imagenet batch, every operation, at 1 and 2 threads (``--zm-scaling-threads``)
set through ``zm.set_num_threads`` (which the peers follow): zmfast's tuned variants, the
floors and the threaded peers of ``THREADS_PEERS``. The rounds are chosen per case for about
half a second of timing (at least 3), whatever ``--benchmark-*`` says.

Sizes: per-channel standardize and per-pixel statistics, and their floors, on batches of
224x224x3 uint8 images of about 1, 4, 16, 64 and 256 MB (``--zm-sizes``, in MiB; 1024 is
opt-in): NumPy careful, zmfast's tuned variants, the reused-buffer floors and the peers of
``SIZES_PEERS``. An implementation whose input, temporaries and output would pass
``--zm-max-memory-gb`` (default 8) at a size is skipped there. The rounds are chosen per case
for about a second of timing (at least 3, but 1 or 2 for a case slower than a second). The
reference statistics come from exact integer sums (``cases.exact_stats``), a few images at
a time, so that a 1 GB batch needs no float64 copy.
"""

from __future__ import annotations

import math

import pytest
from cases import OPERATIONS, WORKLOADS, Case, Workload, exact_stats, implementations_of, zm
from harness import build_checked, time_case

pytestmark = pytest.mark.scaling

IMAGE_SHAPE = (224, 224, 3)
THREADS_WORKLOAD = next(w for w in WORKLOADS if w.name == "imagenet")
SIZE_OPERATIONS = ("channel-standardize", "pixel-stats", "read-floor", "convert-floor")
# Beside zmfast's tuned variants and the floors, the peers of the threads table: those that
# run on several threads and are not far behind (PyTorch's statistics, in float64, are).
THREADS_PEERS = ("numexpr", "torch-out", "opencv", "dali", "albumentations")
# Beside NumPy careful, zmfast's tuned variants and the floors, the peers of the sizes
# table: the fastest of the per-workload tables for its two operations.
SIZES_PEERS = ("numexpr", "opencv")


def _threads_implementation(impl) -> bool:
    if impl.family == "peer":
        return impl.name in THREADS_PEERS
    return impl.threaded and impl.variant != "drop-in"


def _sizes_implementation(impl) -> bool:
    if impl.family == "limit":
        return impl.output != "new"
    if impl.family == "peer":
        return impl.name in SIZES_PEERS
    return impl.variant in ("careful", "tuned")


def size_workload(mebibytes: int) -> Workload:
    """A batch of 224x224x3 uint8 images of about ``mebibytes`` MiB."""
    count = max(1, round(mebibytes * 2**20 / math.prod(IMAGE_SHAPE)))
    return Workload(f"{mebibytes}MB", (count,) + IMAGE_SHAPE)


def threads_params(threads: list) -> list:
    params = []
    for n in threads:
        for op in OPERATIONS:
            for impl in implementations_of(op):
                if _threads_implementation(impl):
                    case = Case(THREADS_WORKLOAD, op, impl, suite="threads")
                    params.append(_param(case, n, f"threads{n}-{case.id}"))
    return params


def sizes_params(sizes: list) -> list:
    params = []
    for mebibytes in sizes:
        workload = size_workload(mebibytes)
        for op in OPERATIONS:
            if op.name not in SIZE_OPERATIONS:
                continue
            for impl in implementations_of(op):
                if _sizes_implementation(impl):
                    case = Case(workload, op, impl, suite="sizes")
                    params.append(_param(case, None, f"sizes-{case.id}"))
    return params


def _param(case, threads, test_id):
    reason = case.unavailable()
    marks = [pytest.mark.skip(reason=reason)] if reason else []
    return pytest.param(case, threads, id=test_id, marks=marks)


def pytest_generate_tests(metafunc):
    if metafunc.definition.name == "test_threads":
        threads = metafunc.config.getoption("--zm-scaling-threads")
        metafunc.parametrize(("case", "threads"), threads_params(threads))
    elif metafunc.definition.name == "test_sizes":
        sizes = metafunc.config.getoption("--zm-sizes")
        metafunc.parametrize(("case", "threads"), sizes_params(sizes))


class _OneBatch:
    """The batch of one size at a time (and its reference statistics): the sizes run in
    order, so a 1 GB batch is not kept while the next is made."""

    def __init__(self):
        self.workload, self.x, self.stats = None, None, {}

    def get(self, workload):
        if workload != self.workload:
            self.workload, self.x, self.stats = None, None, {}
            self.x = workload.generate()
            self.workload = workload
        return self.x

    def reference(self, workload, axis):
        x = self.get(workload)
        if axis not in self.stats:
            self.stats[axis] = exact_stats(x, axis)
        return self.stats[axis]


@pytest.fixture(scope="module")
def one_batch():
    return _OneBatch()


@pytest.fixture
def zm_threads():
    """Restores zmfast's thread count after a test that changes it."""
    before = zm.get_num_threads()
    yield zm.set_num_threads
    zm.set_num_threads(before)


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
def test_threads(benchmark, case, threads, zm_threads, workload_data, reference_stats):
    zm_threads(threads)
    x = workload_data(case.workload)
    axis = case.operation.axis
    mean, std = reference_stats(case.workload, axis) if axis is not None else (None, None)
    run = build_checked(case, x, mean, std)
    time_case(benchmark, case, run, target_seconds=0.5)


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
def test_sizes(benchmark, case, threads, one_batch, request):
    limit = request.config.getoption("--zm-max-memory-gb") * 2**30
    needed = (1 + case.implementation.memory) * case.workload.nbytes
    if needed > limit:
        pytest.skip(f"{case.implementation.title} would need about {needed / 2**30:.1f} GiB "
                    f"at this size (--zm-max-memory-gb {limit / 2**30:g})")
    x = one_batch.get(case.workload)
    axis = case.operation.axis
    mean, std = one_batch.reference(case.workload, axis) if axis is not None else (None, None)
    run = build_checked(case, x, mean, std)
    time_case(benchmark, case, run, target_seconds=1.0)


# The tables' rows at a glance: python bench/test_scaling.py
if __name__ == "__main__":
    for op in OPERATIONS:
        names = [impl.name for impl in implementations_of(op) if _threads_implementation(impl)]
        print(f"threads {op.name}: {', '.join(names)}")
    for op in OPERATIONS:
        names = [impl.name for impl in implementations_of(op) if _sizes_implementation(impl)]
        if op.name in SIZE_OPERATIONS:
            print(f"sizes {op.name}: {', '.join(names)}")
