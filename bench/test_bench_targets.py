"""Benchmarks of issue 5's targets that are not a table of peers: float16 output against
float32, and small inputs against the single-threaded floor.

    pytest bench/test_bench_targets.py --benchmark-only --benchmark-json=targets.json
    python bench/report_estimators.py targets.json         # the "Targets" tables

Two comparisons, each candidate measured against a baseline in the same run (report.py
appends them to its report):

* ``interleaved-float16``: ``zm.standardize(x, m, s, dtype=np.float16)`` against the same
  call with float32, per pixel and per channel, into a reused ``out=`` (the same memory) and
  into a new array, on the imagenet and cifar batches, in alternating rounds (see
  ``interleaved`` below: run one after the other, the two sides had drawn different memory
  speeds, and float16 per pixel once read 1.0x "faster"). Target: float16 faster (the median
  of the per-round speed-ups above 1).
* ``small``: one 224 x 224 x 3 image and 32 CIFAR images, per-channel ``zm.standardize``
  into a reused ``out=`` and ``zm.moments``, with zmfast's usual thread count, against the
  floor kernels on one thread (``floor_convert`` into a reused buffer, ``floor_read``).
  Target: within 1.5x of that floor, i.e. small calls do not pay thread start-up.
* ``dropin``: ``zm.mean`` and ``zm.std`` per channel of small float32 inputs (a 2 x 4 x 4 x
  3 batch, where a call is all overhead, and one 224 x 224 x 3 image) against NumPy's own
  ``np.mean`` and ``np.std``, one call each: what a drop-in costs where NumPy is quick. No
  target (issue 5 sets none); the ratio is a speed-up over NumPy.
* ``interleaved``: the memory-floor targets measured in alternating rounds, on the imagenet
  and cifar batches: each round times zmfast, then the floor kernels (convert with normal
  and with streaming stores into the same reused buffer, the faster counting; or read),
  in a rotating order. The ratio is the median of the per-round ratios, so a machine whose
  memory speed drifts between minutes (this one does, up to 2x) moves both sides alike.
  Targets: standardize within 1.25x of the convert floor (into ``out=`` against the floor
  into the same buffer; into a new array against the floor into a fresh ``np.empty`` each
  call), ``zm.moments`` within 1.3x of the read floor, and so each of the drop-ins
  ``zm.mean`` and ``zm.std`` (per pixel and per channel; each checked once against exact integer
  statistics before its rounds). And issue 4's ``partial_fit`` over
  64-image cifar batches against one ``fit`` of the whole batch, in alternating rounds the
  same way (bench/test_bench_estimators.py times the two in sequence). Target: within 1.5x.
  Beside it, without a target, the read floor over the same batches, one call each on one
  and on two threads, against the same fit: what a call per batch costs before any work.

Every zmfast result is checked once against float64 NumPy outside the timed region.
"""

import numpy as np
import pytest
from cases import (
    WORKLOADS,
    Workload,
    backend_unavailable,
    exact_stats,
    line_aligned_out,
    reused_out,
    zm,
)

F16_WORKLOADS = [w for w in WORKLOADS if w.name in ("cifar", "imagenet")]
SMALL_WORKLOADS = [Workload("one-image", (1, 224, 224, 3)), Workload("cifar-32", (32, 32, 32, 3))]
DROPIN_WORKLOADS = [Workload("tiny-float32", (2, 4, 4, 3), "float32"),
                    Workload("one-image-float32", (1, 224, 224, 3), "float32")]

COMPARISONS = {
    "interleaved-float16": {"label": "float16 output against float32, interleaved rounds",
                            "target": {"kind": "speedup", "value": 1.0}},
    "small": {"label": "small input against the one-thread floor",
              "target": {"kind": "slowdown", "value": 1.5}},
    "dropin": {"label": "NumPy drop-in on a small float32 input against NumPy",
               "target": {"kind": "speedup"}},
    "interleaved-standardize": {"label": "standardize into out= against the convert floor, "
                                         "interleaved rounds",
                                "target": {"kind": "slowdown", "value": 1.25}},
    "interleaved-fresh": {"label": "standardize into a new array against the fresh-array "
                                   "convert floor, interleaved rounds",
                          "target": {"kind": "slowdown", "value": 1.25}},
    "interleaved-moments": {"label": "statistics against the read floor, interleaved rounds",
                            "target": {"kind": "slowdown", "value": 1.3}},
    "interleaved-partial-fit": {"label": "StandardScaler(axis=0) partial_fit over 64-image "
                                         "batches against fit, interleaved rounds",
                                "target": {"kind": "slowdown", "value": 1.5}},
    # No target: what reading the same batches one call at a time costs at all.
    "interleaved-stream-floor": {"label": "read floor over the same 64-image batches, one "
                                          "call each, against fit, interleaved rounds",
                                 "target": {"kind": "slowdown"}},
}
PARTIAL_FIT_BATCH = 64  # images per partial_fit, as in bench/test_bench_estimators.py
INTERLEAVED_ROUNDS = 41


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


def _reduction(module, name):
    return lambda x: (lambda: getattr(module, name)(x, axis=(0, 1, 2)))


def _check_reduction(name):
    def check(result, x):
        want = getattr(np, name)(x.astype(np.float64), axis=(0, 1, 2))
        assert result.dtype == x.dtype
        np.testing.assert_allclose(result, want, rtol=1e-5)
    return check


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
    for workload in DROPIN_WORKLOADS:
        for name in ("mean", "std"):
            rows += [
                Case("dropin", workload, f"numpy-{name}", "baseline", None,
                     f"np.{name}(x, axis=(0, 1, 2))", _reduction(np, name),
                     _check_reduction(name)),
                Case("dropin", workload, f"zmfast-{name}", "candidate", f"numpy-{name}",
                     f"zm.{name}(x, axis=(0, 1, 2))", _reduction(zm, name),
                     _check_reduction(name)),
            ]
    return rows


CASES = _cases()


# --- interleaved rounds: zmfast and its floor alternate ---------------------------------

def _interleaved_cases():
    """(workload, comparison, name, code, build(x) -> (candidate, floors), baseline)."""
    rows = []
    for workload in F16_WORKLOADS:
        for stats, per_pixel, channels_first in (("pixel", True, False),
                                                 ("channel", False, False),
                                                 ("channel-nchw", False, True)):
            layout = ", channels_first=True" if channels_first else ""
            for reused in (True, False):
                rows.append((workload, "interleaved-" + ("standardize" if reused else "fresh"),
                             f"{stats}-{'out' if reused else 'new'}",
                             f"zm.standardize(x, m, s{', out=buf' * reused}{layout})"
                             f"  # per {'pixel' if per_pixel else 'channel'}",
                             _interleaved_standardize(per_pixel, channels_first, reused),
                             "floor"))
        # np.empty puts a large buffer 16 bytes past a page; torch.empty on a line (64
        # bytes), where every plane of a channels-first out= starts on one and can stream.
        rows.append((workload, "interleaved-standardize", "channel-nchw-out-line",
                     "zm.standardize(x, m, s, out=buf, channels_first=True)  # per channel, "
                     "buf on a 64-byte line (as torch.empty)",
                     _interleaved_standardize(False, True, True, on_line=True), "floor"))
        for stats, axis in (("pixel", 0), ("channel", (0, 1, 2))):
            rows.append((workload, "interleaved-moments", f"{stats}-moments",
                         f"zm.moments(x, axis={axis})", _interleaved_moments(axis), "floor"))
        # The drop-ins, each on its own: the issue asks each of them within 1.3x of the floor.
        for stats, axis in (("pixel", 0), ("channel", (0, 1, 2))):
            for function in ("mean", "std"):
                rows.append((workload, "interleaved-moments", f"{stats}-{function}",
                             f"zm.{function}(x, axis={axis})",
                             _interleaved_reduction(function, axis), "floor"))
        # The same batch channels-first (as torchvision decodes images) and per image.
        rows += [(workload, "interleaved-moments", "nchw-channel-moments",
                  "zm.moments(xc, axis=(0, 2, 3))  # xc: x as a contiguous NCHW copy",
                  _interleaved_moments((0, 2, 3), channels_first=True), "floor"),
                 (workload, "interleaved-moments", "image-moments",
                  "zm.moments(x, axis=(1, 2, 3))  # per image", _interleaved_moments((1, 2, 3)),
                  "floor")]
        for per_pixel in (True, False):
            stats = "pixel" if per_pixel else "channel"
            for reused in (True, False):
                where = "out" if reused else "new"
                call = ("zm.standardize(x, m, s, out=buf, dtype=np.float16)" if reused
                        else "zm.standardize(x, m, s, dtype=np.float16)")
                rows.append((workload, "interleaved-float16", f"{stats}-{where}-float16",
                             f"{call}  # per {stats}", _interleaved_float16(per_pixel, reused),
                             f"{stats}-{where}-float32"))
    cifar = next(w for w in F16_WORKLOADS if w.name == "cifar")
    rows.append((cifar, "interleaved-partial-fit", f"partial{PARTIAL_FIT_BATCH}",
                 f"for b in batches: scaler.partial_fit(b)  # {PARTIAL_FIT_BATCH} images each",
                 _interleaved_partial_fit, "fit"))
    for threads in (1, 2):
        rows.append((cifar, "interleaved-stream-floor", f"floor{PARTIAL_FIT_BATCH}-{threads}t",
                     f"for b in batches: zmfast._core.floor_read(b)  # {threads} thread"
                     + "s" * (threads > 1), _interleaved_stream_floor(threads), "fit"))
    return rows


def _interleaved_standardize(per_pixel, channels_first, reused, on_line=False):
    def build(x):
        core = pytest.importorskip("zmfast._core")
        mean, std = _stats(x, per_pixel)
        if not reused:  # a new output per call, against a fresh np.empty per floor call
            candidate = lambda: zm.standardize(x, mean, std,  # noqa: E731
                                               channels_first=channels_first)
            floors = tuple((lambda stream=stream: core.floor_convert(
                x, np.empty(x.shape, np.float32), stream)) for stream in (False, True))
            return candidate, floors
        shape = x.shape[:1] + x.shape[3:] + x.shape[1:3] if channels_first else x.shape
        out = line_aligned_out(shape) if on_line else reused_out(shape)
        flat = out.reshape(x.shape)  # the floors write the same memory
        candidate = lambda: zm.standardize(x, mean, std, out=out,  # noqa: E731
                                           channels_first=channels_first)
        floors = (lambda: core.floor_convert(x, flat, False),
                  lambda: core.floor_convert(x, flat, True))
        return candidate, floors
    return build


def _interleaved_float16(per_pixel, reused):
    """float16 output against the same call with float32 (a reused out= shares its memory),
    each checked once outside the rounds."""
    def build(x):
        calls = []
        for dtype in (np.float16, np.float32):
            call = _standardize(per_pixel, dtype, reused)(x)
            _check_standardized(per_pixel, dtype)(call(), x)
            calls.append(call)
        return calls[0], (calls[1],)
    return build


def _interleaved_moments(axis, channels_first=False):
    def build(x):
        core = pytest.importorskip("zmfast._core")
        if channels_first:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return (lambda: zm.moments(x, axis=axis)), (lambda: core.floor_read(x),)
    return build


def _interleaved_reduction(function, axis):
    def build(x):
        core = pytest.importorskip("zmfast._core")
        reduce = getattr(zm, function)
        # Checked once here, outside the timed rounds, against exact integer statistics
        # (NumPy's float64 sums along a strided axis are off by ~1e-11 at this size).
        want = exact_stats(x, axis)[("mean", "std").index(function)]
        got = reduce(x, axis=axis)
        assert got.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-13)
        return (lambda: reduce(x, axis=axis)), (lambda: core.floor_read(x),)
    return build


def _interleaved_partial_fit(x):
    """A fresh StandardScaler(axis=0) fed the batch in views of PARTIAL_FIT_BATCH images,
    against one fit of the whole batch."""
    batches = [x[start:start + PARTIAL_FIT_BATCH] for start in range(0, len(x),
                                                                      PARTIAL_FIT_BATCH)]

    def partial_fits():
        scaler = zm.StandardScaler(axis=0)
        for batch in batches:
            scaler.partial_fit(batch)
        return scaler

    return partial_fits, (lambda: zm.StandardScaler(axis=0).fit(x),)


def _interleaved_stream_floor(threads):
    """The read floor over the views partial_fit takes, one call a batch on ``threads``
    threads, against one fit of the whole batch: the least any per-batch call can cost."""
    def build(x):
        core = pytest.importorskip("zmfast._core")
        batches = [x[start:start + PARTIAL_FIT_BATCH]
                   for start in range(0, len(x), PARTIAL_FIT_BATCH)]

        def read_batches():
            before = zm.get_num_threads()
            zm.set_num_threads(threads)
            try:
                for batch in batches:
                    core.floor_read(batch)
            finally:
                zm.set_num_threads(before)

        return read_batches, (lambda: zm.StandardScaler(axis=0).fit(x),)
    return build


def interleaved_times(candidate, floors, rounds):
    """Per round, the candidate's time and the fastest floor's, in a rotating order."""
    import time
    for run in (candidate,) + floors:  # warm: plans, caches, pages
        run(), run()
    runs = (candidate,) + floors
    times = [[] for _ in runs]
    for r in range(rounds):
        for i in range(len(runs)):
            k = (i + r) % len(runs)
            start = time.perf_counter()
            runs[k]()
            times[k].append(time.perf_counter() - start)
    return times[0], [min(t) for t in zip(*times[1:])]


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
@pytest.mark.parametrize("row", [pytest.param(r, id=f"{r[0].name}-{r[2]}")
                                 for r in _interleaved_cases()])
def test_interleaved_target(benchmark, row, workload_data):
    workload, comparison, name, code, build, baseline = row
    unavailable = backend_unavailable("cpp")
    if unavailable:
        pytest.skip(unavailable)
    x = workload_data(workload)
    benchmark.group = f"{workload.name}-{comparison}"
    with zm.use_backend("cpp"):
        candidate, floors = build(x)
        candidate_times, floor_times = interleaved_times(candidate, floors, INTERLEAVED_ROUNDS)
        benchmark.pedantic(candidate, rounds=1, iterations=1)  # the record the report reads
    ratios = sorted(c / f for c, f in zip(candidate_times, floor_times))
    spec = COMPARISONS[comparison]
    benchmark.extra_info.update({
        "suite": "targets", "data": workload.name, "shape": list(workload.shape),
        "dtype": workload.dtype, "comparison": comparison,
        "comparison_label": spec["label"], "target": spec["target"], "implementation": name,
        "backend": "cpp", "role": "candidate", "baseline": baseline, "code": code,
        "threads": zm.get_num_threads(),
        "interleaved": {"rounds": INTERLEAVED_ROUNDS,
                        "candidate": float(np.median(candidate_times)),
                        "floor": float(np.median(floor_times)),
                        "ratio": float(np.median(ratios))},
    })


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
