"""Run the benchmark suite and write ``bench/results/report.md`` and ``report.png``.

    python bench/report.py                          # run the suite, then write the report
    python bench/report.py -k cifar                 # arguments it does not know go to pytest
    python bench/report.py -- --benchmark-min-rounds 3 --zm-threads 1
    python bench/report.py --json bench/results/20250101-120000.json   # only render a JSON

A run writes the raw pytest-benchmark JSON to ``bench/results/<timestamp>.json`` and the
report next to it:

- per workload (cifar, imagenet), a summary (per operation: NumPy, NumPy careful, the best
  peer, the best zmfast, and the limit) and the full table: every implementation's median
  time, its GB/s (bytes read + bytes written, over the median), its share of the relevant
  limit and its speed-up over NumPy. The limits are the floors of the extension
  (``zmfast._core.floor_read`` / ``floor_convert``): statistics are measured against the
  read floor, standardize into a reused ``out=`` against the faster reused-buffer convert
  floor, standardize into a new array against the faster fresh-array convert floor
  ("of limit" = floor time / time: 100 % is at the limit);
- ``report.png``: a bar chart per workload, the operations side by side, an implementation per
  bar, log time scale, the limits as lines (needs matplotlib);
- the threads table (``test_scaling.py::test_threads``): median times at 1 and 2 threads;
- the sizes table (``test_scaling.py::test_sizes``): GB/s from 1 MB to 1 GB of input.

Peers missing from the environment are skipped (``pip install -r
bench/requirements-peers.txt`` installs them all); their rows are then absent.

The README's tables, on a quiet machine (nothing else running: with two threads on two
cores, any other process stalls the threads of every parallel kernel for whole scheduler
ticks; the report warns when the load average was high as the run began)::

    pip install -r bench/requirements-peers.txt
    python bench/report.py -- --zm-sizes 1,4,16,64,256,1024

That takes about 9 minutes on two cores; the 1 GB size peaks at about 6 GB of memory (an
implementation whose temporaries would pass ``--zm-max-memory-gb``, default 8, is skipped
there: NumPy careful's float64 statistics). The default run stops at 256 MB and takes about
6 minutes. Parts: ``-m "not scaling"`` for the per-workload tables only, ``-k threads`` or
``-k sizes`` for one scaling table, ``--zm-threads N`` for the thread count of the
per-workload tables.

The pipeline is load_results() -> build_tables() -> render_markdown() / render_chart().
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

FAMILY_ORDER = {"numpy": 0, "zmfast": 1, "peer": 2, "limit": 3}
VARIANT_TITLES = {"drop-in": "drop-in", "tuned": "tuned"}
FLOOR_KINDS = ("read-floor", "convert-floor")


@dataclasses.dataclass(frozen=True)
class Record:
    """One benchmark of the JSON: a case and its median time in seconds."""
    suite: str  # "cases", "threads" or "sizes"
    workload: str
    shape: tuple
    dtype: str
    operation: str
    operation_label: str
    operation_kind: str  # "stats", "standardize", "read-floor", "convert-floor"
    implementation: str
    title: str
    family: str  # "numpy", "zmfast", "peer", "limit"
    backend: str
    variant: str
    output: str | None  # "new" or "reused" for standardize and the convert floors
    code: str
    note: str
    threads: int
    median: float
    rounds: int
    bytes_read: int
    bytes_written: int

    @property
    def gbps(self) -> float:
        return (self.bytes_read + self.bytes_written) / self.median / 1e9 if self.median else 0

    @property
    def is_floor(self) -> bool:
        return self.operation_kind in FLOOR_KINDS


@dataclasses.dataclass
class Results:
    path: Path
    meta: dict  # datetime, machine description, zmfast configuration, versions
    records: list

    def suite(self, name: str) -> list:
        return [r for r in self.records if r.suite == name]


# --- running ---

def run_benchmarks(json_path: Path, pytest_args: list) -> int:
    """Run ``pytest bench/ --benchmark-only --benchmark-json json_path``; return its status.

    pytest runs from inside bench/: whatever the current directory, nothing in it can come
    ahead of the installed zmfast on ``sys.path`` (``python -m`` puts it first).
    """
    command = [sys.executable, "-m", "pytest", str(BENCH_DIR), "--benchmark-only",
               f"--benchmark-json={json_path}", *pytest_args]
    print("+", " ".join(command), flush=True)
    return subprocess.call(command, cwd=BENCH_DIR)


# --- loading ---

def _old_title(backend: str, variant: str) -> str:
    if variant == "numpy":
        return "NumPy"
    return f"zmfast {backend} {VARIANT_TITLES.get(variant, variant)}"


def _record(bench: dict) -> Record | None:
    info = bench.get("extra_info", {})
    if not {"workload", "operation", "implementation"} <= info.keys():
        return None  # not one of cases.CASES (e.g. the estimators' benchmarks)
    operation = info["operation"]
    kind = info.get("operation_kind") or ("stats" if "stats" in operation else "standardize")
    variant = info.get("variant", "numpy")
    backend = info.get("backend", "numpy")
    family = info.get("family") or ("numpy" if variant == "numpy" else "zmfast")
    output = info.get("output")
    if output is None and kind == "standardize":  # a JSON from before the peers
        output = "reused" if variant == "tuned" else "new"
    return Record(
        suite=info.get("suite", "cases"), workload=info["workload"],
        shape=tuple(info.get("shape", ())), dtype=info.get("dtype", "uint8"),
        operation=operation, operation_label=info.get("operation_label", operation),
        operation_kind=kind, implementation=info["implementation"],
        title=info.get("title") or _old_title(backend, variant), family=family,
        backend=backend, variant=variant, output=output, code=info.get("code", ""),
        note=info.get("note", ""), threads=int(info.get("threads", 1)),
        median=float(bench["stats"]["median"]), rounds=int(bench["stats"]["rounds"]),
        bytes_read=int(info.get("bytes_read", 0)),
        bytes_written=int(info.get("bytes_written", 0)))


def load_results(path: Path) -> Results:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    records = [r for r in map(_record, data.get("benchmarks", [])) if r is not None]
    machine_info = data.get("machine_info", {})
    meta = {
        "datetime": data.get("datetime"),
        "pytest_benchmark": data.get("version"),
        "machine": machine_info.get("zmfast") or _describe_this_machine(),
        "measured_here": "zmfast" in machine_info,
    }
    return Results(Path(path), meta, records)


def _describe_this_machine() -> dict:
    """Fallback for a JSON without our machine_info (not written by this suite's conftest)."""
    sys.path.insert(0, str(BENCH_DIR))
    import machine

    return machine.describe()


# --- tables ---

@dataclasses.dataclass
class Limits:
    """The floors of one workload, in seconds (None where not measured)."""
    read: float | None = None
    reused: float | None = None  # the faster of normal and streaming stores, reused out
    fresh: float | None = None  # the faster of the two, into a fresh np.empty

    def of(self, record: Record) -> float | None:
        """The limit ``record`` is measured against."""
        if record.operation_kind in ("stats", "read-floor"):
            return self.read
        if record.operation_kind in ("standardize", "convert-floor"):
            return self.fresh if record.output == "new" else self.reused
        return None


def _fastest(times) -> float | None:
    times = [t for t in times if t is not None]
    return min(times) if times else None


def limits_of(records: list) -> Limits:
    floors = [r for r in records if r.is_floor]
    return Limits(
        read=_fastest(r.median for r in floors if r.operation_kind == "read-floor"),
        reused=_fastest(r.median for r in floors
                        if r.operation_kind == "convert-floor" and r.output != "new"),
        fresh=_fastest(r.median for r in floors
                       if r.operation_kind == "convert-floor" and r.output == "new"))


@dataclasses.dataclass
class Table:
    """One workload of the "cases" suite: ``rows[operation]`` is its records, fastest first."""
    workload: str
    shape: tuple
    dtype: str
    operations: list  # (name, label) in suite order, the floors last
    rows: dict
    limits: Limits

    def numpy_time(self, operation: str) -> float | None:
        return next((r.median for r in self.rows[operation] if r.variant == "numpy"), None)

    def speedup(self, record: Record) -> float | None:
        numpy_time = self.numpy_time(record.operation)
        if numpy_time is None or record.median <= 0:
            return None
        return numpy_time / record.median

    def share_of_limit(self, record: Record) -> float | None:
        limit = self.limits.of(record)
        if limit is None or record.median <= 0:
            return None
        return limit / record.median

    def best(self, operation: str, family: str, variant: str | None = None):
        candidates = [r for r in self.rows[operation] if r.family == family
                      and (variant is None or r.variant == variant)]
        return min(candidates, key=lambda r: r.median, default=None)


def build_tables(records: list) -> list:
    tables = {}
    for record in records:
        if record.suite != "cases":
            continue
        table = tables.get(record.workload)
        if table is None:
            table = tables[record.workload] = Table(record.workload, record.shape,
                                                    record.dtype, [], {}, Limits())
        if record.operation not in table.rows:
            table.operations.append((record.operation, record.operation_label))
            table.rows[record.operation] = []
        table.rows[record.operation].append(record)
    for table in tables.values():
        table.limits = limits_of([r for rows in table.rows.values() for r in rows])
        is_floor = {op: any(r.is_floor for r in table.rows[op]) for op, _ in table.operations}
        table.operations.sort(key=lambda item: is_floor[item[0]])
        for rows in table.rows.values():
            rows.sort(key=lambda r: r.median)
    return list(tables.values())


# --- markdown ---

def format_time(seconds: float) -> str:
    unit, scale = next(((u, s) for u, s in (("s", 1.0), ("ms", 1e-3)) if seconds >= s),
                       ("µs", 1e-6))
    value = seconds / scale
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{digits}f} {unit}"


def format_bytes(count: int) -> str:
    if count >= 2**30:
        return f"{count / 2**30:.2f} GiB"
    return f"{count / 2**20:.1f} MiB"


def format_gbps(gbps: float) -> str:
    return f"{gbps:.1f}" if gbps >= 1 else f"{gbps:.2f}"


def format_share(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f} %"


def format_speedup(speedup: float | None) -> str:
    return "–" if speedup is None else f"{speedup:.1f}×"


def machine_line(meta: dict) -> str:
    m = meta["machine"]
    cores = []
    if m.get("physical_cores"):
        cores.append(f"{m['physical_cores']} cores")
    cores.append(f"{m.get('logical_cpus')} logical CPUs")
    if m.get("available_cpus") not in (None, m.get("logical_cpus")):
        cores.append(f"{m['available_cpus']} available")
    parts = [f"{m.get('cpu_model', 'unknown CPU')} ({', '.join(cores)})", m.get("os", "")]
    parts += [f"Python {m['python']}" if m.get("python") else "",
              f"NumPy {m['numpy']}" if m.get("numpy") else ""]
    return " · ".join(p for p in parts if p)


def run_line(results: Results) -> str:
    meta = results.meta
    m = meta["machine"]
    cases = results.suite("cases")
    threads = sorted({r.threads for r in cases if r.family in ("zmfast", "limit")})
    when = meta.get("datetime")
    if when:
        when = datetime.fromisoformat(when).astimezone(timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC")
    rounds = min((r.rounds for r in cases), default=0)
    parts = []
    if m.get("version"):
        parts.append(f"zmfast {m['version']}")
    if threads:
        parts.append(f"{'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''} "
                     "(NumPy, scikit-learn: 1; the threaded peers: as many as zmfast)")
    if when:
        parts.append(when)
    parts.append(f"median of ≥{rounds} rounds (pytest-benchmark"
                 f"{' ' + meta['pytest_benchmark'] if meta.get('pytest_benchmark') else ''})")
    return " · ".join(parts)


def load_warning(meta: dict) -> str | None:
    """A warning when other processes kept the CPUs busy as the run began."""
    m = meta["machine"]
    cpus = m.get("available_cpus") or m.get("logical_cpus") or 1
    loads = m.get("load_average") or [None, None]
    before, after = (loads + [None, None])[:2]
    if before is None or before < 0.5 * cpus:
        return None
    after_text = f", {after:.1f} after it (the run included)" if after is not None else ""
    return (f"**Busy machine**: the 1-minute load average was {before:.1f} on {cpus} CPUs as "
            f"this run began{after_text}. Other processes stall the threads of the parallel "
            "kernels (an OpenMP team waits for its slowest thread), so their times are too "
            "high and noisy; the 1-thread figures are the more reliable.")


def table_heading(table_or_record) -> str:
    shape, dtype = table_or_record.shape, table_or_record.dtype
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    return f"{' × '.join(map(str, shape))} {dtype} NHWC ({format_bytes(nbytes)})"


def _cell(record: Record | None, table: Table, name: bool = False) -> str:
    if record is None:
        return "–"
    text = format_time(record.median)
    if name:
        text += f" {record.title}"
    return text


def render_summary(table: Table) -> list:
    lines = ["| operation | NumPy | NumPy careful | best peer | best zmfast | zmfast: of limit, "
             "vs NumPy | limit |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for operation, label in table.operations:
        rows = table.rows[operation]
        if any(r.is_floor for r in rows):
            continue
        numpy_ = table.best(operation, "numpy", "numpy")
        careful = table.best(operation, "numpy", "careful")
        peer = table.best(operation, "peer")
        zmfast = table.best(operation, "zmfast")
        if zmfast is not None:
            ratios = (f"{format_share(table.share_of_limit(zmfast))}, "
                      f"{format_speedup(table.speedup(zmfast))}")
            limit = table.limits.of(zmfast)
        else:
            ratios, limit = "–", None
        peer_cell = f"{format_time(peer.median)} ({peer.title})" if peer else "–"
        zm_cell = (f"{format_time(zmfast.median)} ({zmfast.title.removeprefix('zmfast ')})"
                   if zmfast else "–")
        lines.append(f"| {label} | {_cell(numpy_, table)} | {_cell(careful, table)} | "
                     f"{peer_cell} | {zm_cell} | {ratios} | "
                     f"{format_time(limit) if limit else '–'} |")
    return lines


def render_table(table: Table) -> list:
    lines = ["| operation | implementation | threads | median | GB/s | of limit | vs NumPy |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for operation, label in table.operations:
        for index, record in enumerate(table.rows[operation]):
            name = record.title
            if record.family == "zmfast":
                name = f"**{name}**"
            lines.append(
                f"| {label if index == 0 else ''} | {name} | {record.threads} | "
                f"{format_time(record.median)} | {format_gbps(record.gbps)} | "
                f"{format_share(table.share_of_limit(record))} | "
                f"{'' if record.is_floor else format_speedup(table.speedup(record))} |")
    return lines


def render_limits_line(table: Table) -> str:
    parts = []
    for name, value in (("read", table.limits.read), ("convert into a reused out",
                                                      table.limits.reused),
                        ("convert into a fresh array", table.limits.fresh)):
        if value is not None:
            parts.append(f"{name} {format_time(value)}")
    if not parts:
        return ("Limits: not in this run (deselected, or an extension without the floor "
                "kernels); the “of limit” column is empty.")
    return "Limits: " + ", ".join(parts) + "."


def legend(tables: list) -> list:
    lines = ["GB/s: (bytes read + bytes written) / median, the least traffic of the operation "
             "(the batch read once, the result written once). Of limit: the limit's time "
             "over the implementation's, 100 % = as fast as the floor; statistics against "
             "the read floor, standardize into a reused output against the faster "
             "reused-buffer convert floor, into a new array against the faster "
             "fresh-array floor. vs NumPy: NumPy's median over the implementation's.", "",
             "What each implementation runs (`m`, `s`: float64 statistics of shape (H, W, C) "
             "per pixel, (C,) per channel):", ""]
    seen = {}
    for table in tables:
        for operation, _ in table.operations:
            for record in table.rows[operation]:
                code = f"`{record.code}`" + (f" ({record.note})" if record.note else "")
                codes = seen.setdefault(record.title, [])
                if code not in codes:
                    codes.append(code)
    for title, codes in seen.items():
        lines.append(f"- **{title}**: " + "; ".join(codes))
    return lines


def render_threads(records: list) -> list:
    if not records:
        return []
    counts = sorted({r.threads for r in records})
    first = records[0]
    lines = [f"### Threads: {first.workload}, {table_heading(first)}", "",
             "| operation | implementation | " + " | ".join(
                 f"{n} thread{'s' if n > 1 else ''}" for n in counts)
             + f" | speed-up {counts[0]}→{counts[-1]} | GB/s at {counts[-1]} |",
             "|---|---|" + "---:|" * (len(counts) + 2)]
    grouped = {}
    for r in records:
        grouped.setdefault((r.operation, r.operation_label), {}).setdefault(
            r.title, {})[r.threads] = r
    for (_, label), by_title in sorted(
            grouped.items(), key=lambda item: any(
                r.is_floor for rs in item[1].values() for r in rs.values())):
        order = sorted(by_title.items(), key=lambda item: min(
            r.median for r in item[1].values()))
        for index, (title, by_threads) in enumerate(order):
            cells = [format_time(by_threads[n].median) if n in by_threads else "–"
                     for n in counts]
            low, high = by_threads.get(counts[0]), by_threads.get(counts[-1])
            speedup = low.median / high.median if low and high and high.median else None
            lines.append(f"| {label if index == 0 else ''} | {title} | " + " | ".join(cells)
                         + f" | {format_speedup(speedup)} | "
                         f"{format_gbps(high.gbps) if high else '–'} |")
    return lines


def render_sizes(records: list) -> list:
    if not records:
        return []
    sizes = sorted({(math.prod(r.shape), r.workload, r.shape[0]) for r in records})
    threads = sorted({r.threads for r in records if r.family in ("zmfast", "limit")})
    lines = ["### Input size: GB/s against the size of the uint8 input",
             "", f"Batches of 224 × 224 × 3 uint8 images (their count in parentheses), "
             f"{'/'.join(map(str, threads)) or 1} thread(s) for zmfast, the floors and the "
             "threaded peers; GB/s as above (higher is better). A dash: not run at that size "
             "(its temporaries would pass --zm-max-memory-gb).", ""]
    operations = []
    for r in records:
        if (r.operation, r.operation_label) not in operations and not r.is_floor:
            operations.append((r.operation, r.operation_label))
    for operation, label in operations:
        kind = next(r.operation_kind for r in records if r.operation == operation)
        floor_kind = "read-floor" if kind == "stats" else "convert-floor"
        chosen = [r for r in records if r.operation == operation or
                  (r.operation_kind == floor_kind and (kind == "stats" or r.output != "new"))]
        by_title = {}
        for r in chosen:
            by_title.setdefault(r.title, {})[r.workload] = r
        lines += [f"**{label}**", "",
                  "| implementation | " + " | ".join(
                      f"{format_bytes(n)} ({count})" for n, _, count in sizes) + " |",
                  "|---|" + "---:|" * len(sizes)]

        def order(item):
            title, by_size = item
            is_floor = any(r.is_floor for r in by_size.values())
            largest = max(by_size.values(), key=lambda r: math.prod(r.shape))
            return (is_floor, -largest.gbps)

        for title, by_size in sorted(by_title.items(), key=order):
            cells = [format_gbps(by_size[w].gbps) if w in by_size else "–"
                     for _, w, _ in sizes]
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def render_markdown(results: Results, chart: str | None = None) -> str:
    tables = build_tables(results.records)
    lines = ["## Benchmarks", "",
             f"Machine: {machine_line(results.meta)}  ",
             f"Run: {run_line(results)}", ""]
    if not results.meta.get("measured_here"):
        lines += ["(Machine line describes the machine that rendered this report.)", ""]
    warning = load_warning(results.meta)
    if warning:
        lines += [warning, ""]
    if chart:
        lines += [f"![median times per operation, log scale]({chart})", ""]
    for table in tables:
        lines += [f"### {table.workload}: {table_heading(table)}", "",
                  render_limits_line(table), ""]
        lines += render_summary(table) + [""]
        lines += ["<details><summary>every implementation</summary>", ""]
        lines += render_table(table) + ["", "</details>", ""]
    lines += legend(tables)
    threads = render_threads(results.suite("threads"))
    if threads:
        lines += [""] + threads
    sizes = render_sizes(results.suite("sizes"))
    if sizes:
        lines += [""] + sizes
    lines += ["", "Generated by `python bench/report.py` from "
              f"`{results.path.name}`."]
    return "\n".join(lines) + "\n"


# --- chart ---

# NumPy in greys, each zmfast backend in a hue of its own (drop-in light, tuned dark), the
# peers in colours that are neither.
NUMPY_COLOURS = {"numpy": "#4d4d4d", "careful": "#a6a6a6"}
BACKEND_COLOURS = (("#9ecae1", "#2171b5"), ("#a1d99b", "#238b45"), ("#fdd0a2", "#d94801"))
PEER_COLOURS = ("tab:red", "tab:purple", "tab:pink", "tab:brown", "tab:olive", "tab:cyan",
                "gold", "tab:orange")
VARIANT_ORDER = {"numpy": 0, "careful": 1, "drop-in": 2, "tuned": 3}


def _colours(records: list) -> dict:
    colours, backends, peers = {}, [], []
    for r in records:
        if r.title in colours:
            continue
        if r.family == "numpy":
            colours[r.title] = NUMPY_COLOURS.get(r.variant, "#808080")
        elif r.family == "zmfast":
            if r.backend not in backends:
                backends.append(r.backend)
            light, dark = BACKEND_COLOURS[backends.index(r.backend) % len(BACKEND_COLOURS)]
            colours[r.title] = light if r.variant == "drop-in" else dark
        else:
            peers.append(r.title)
            colours[r.title] = PEER_COLOURS[(len(peers) - 1) % len(PEER_COLOURS)]
    return colours


def render_chart(results: Results, path: Path) -> bool:
    """Bars of the median times per operation, one subplot per workload; False without
    matplotlib or without results."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    tables = build_tables(results.records)
    if not tables:
        return False
    records = [r for table in tables for rows in table.rows.values() for r in rows
               if not r.is_floor]
    records.sort(key=lambda r: (FAMILY_ORDER.get(r.family, 9),
                                r.backend if r.family == "zmfast" else "",
                                VARIANT_ORDER.get(r.variant, 9)))
    colours = _colours(records)
    order = list(dict.fromkeys(r.title for r in records))

    fig, axes = plt.subplots(len(tables), 1, figsize=(13, 4.2 * len(tables)), squeeze=False)
    for ax, table in zip(axes[:, 0], tables):
        operations = [(op, label) for op, label in table.operations
                      if not any(r.is_floor for r in table.rows[op])]
        ticks = []
        x = 0.0
        for operation, label in operations:
            rows = sorted(table.rows[operation], key=lambda r: order.index(r.title))
            start = x
            for r in rows:
                ax.bar(x, r.median * 1e3, width=0.9, color=colours[r.title],
                       edgecolor="black" if r.family == "zmfast" else "none", linewidth=0.6)
                x += 1
            kind = rows[0].operation_kind if rows else "stats"
            limits = ([("read floor", table.limits.read, "-")] if kind == "stats" else
                      [("convert floor, reused out", table.limits.reused, "-"),
                       ("convert floor, fresh array", table.limits.fresh, "--")])
            for _, value, style in limits:
                if value is not None:
                    ax.hlines(value * 1e3, start - 0.5, x - 0.5, colors="black",
                              linestyles=style, linewidth=1.2)
            ticks.append(((start + x - 1) / 2, label.replace(" (", "\n(")))
            x += 1.5
        ax.set_yscale("log")
        ax.set_ylabel("median time (ms, log scale)")
        ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=8)
        ax.set_title(f"{table.workload}: {table_heading(table)}", fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[t]) for t in order]
    labels = list(order)
    handles += [plt.Line2D([0], [0], color="black", linestyle="-"),
                plt.Line2D([0], [0], color="black", linestyle="--")]
    labels += ["limit: read floor (stats) / convert into a reused out",
               "limit: convert into a fresh array"]
    columns = 5
    legend_height = 0.22 * math.ceil(len(labels) / columns) + 0.2  # inches
    fig.set_figheight(fig.get_figheight() + legend_height)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    fig.suptitle(f"zmfast and its peers · {run_line(results)}", fontsize=9)
    fig.tight_layout(rect=(0, legend_height / fig.get_figheight(), 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- command line ---

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Run zmfast's benchmarks and write a markdown report and a chart. "
                    "Arguments it does not know (or everything after --) go to pytest.",
        allow_abbrev=False)
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="only render this pytest-benchmark JSON (run nothing)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "report.md",
                        metavar="FILE", help="where to write the markdown (default: %(default)s);"
                                             " the chart goes next to it, as .png")
    args, pytest_args = parser.parse_known_args(argv)
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]

    if args.json is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        json_path = RESULTS_DIR / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
        status = run_benchmarks(json_path, pytest_args)
        if status != 0:
            print(f"pytest failed (exit status {status}); the report is not written",
                  file=sys.stderr)
            return status
    else:
        if pytest_args:
            parser.error(f"unrecognized arguments with --json: {' '.join(pytest_args)}")
        if not args.json.is_file():
            parser.error(f"no such file: {args.json}")
        json_path = args.json

    results = load_results(json_path)
    if not results.records:
        print(f"{json_path} holds no zmfast benchmark results", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    chart_path = args.output.with_suffix(".png")
    chart = chart_path.name if render_chart(results, chart_path) else None
    if chart is None:
        print("no chart: matplotlib is not installed (pip install -r "
              "bench/requirements-peers.txt) or there is nothing to plot", file=sys.stderr)
    markdown = render_markdown(results, chart)
    # The estimators' comparisons (test_bench_estimators.py), when the run has them.
    import report_estimators
    comparisons = report_estimators.load_comparisons(json_path)
    if comparisons:
        markdown += "\n" + "\n".join(report_estimators.render_comparisons(comparisons)) + "\n"
    args.output.write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {args.output}" + (f" and {chart_path}" if chart else "")
          + f" (from {json_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
