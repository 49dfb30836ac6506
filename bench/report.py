"""Run the benchmark suite and write ``bench/results/report.md``.

    python bench/report.py                          # run the suite, then write the report
    python bench/report.py -k cifar                 # arguments it does not know go to pytest
    python bench/report.py -- --benchmark-min-rounds 3 --zm-threads 1
    python bench/report.py --json bench/results/20250101-120000.json   # only render a JSON

A run writes the raw pytest-benchmark JSON to ``bench/results/<timestamp>.json`` and the
report next to it. The report has one markdown table per workload: a row per operation, the
median time of NumPy and of each zmfast variant, and zmfast's speed-up (NumPy's median over
zmfast's median), under a line naming the machine, thread count and date.

The pipeline is load_results() -> build_tables() -> render_markdown(); a chart would be
another renderer of the same Table objects.
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

VARIANTS = ("drop-in", "tuned")  # zmfast's columns, per backend, in this order
VARIANT_TITLES = {"drop-in": "drop-in", "tuned": "tuned"}


@dataclasses.dataclass(frozen=True)
class Record:
    """One benchmark of the JSON: a case and its median time in seconds."""
    workload: str
    shape: tuple
    dtype: str
    operation: str
    operation_label: str
    implementation: str
    backend: str
    variant: str  # "numpy", "drop-in" or "tuned"
    code: str
    note: str
    threads: int
    median: float
    rounds: int
    bytes_read: int
    bytes_written: int

    @property
    def column(self) -> tuple:
        return ("numpy", "numpy") if self.variant == "numpy" else (self.backend, self.variant)


@dataclasses.dataclass
class Results:
    path: Path
    meta: dict  # datetime, machine description, zmfast configuration, versions
    records: list


@dataclasses.dataclass
class Table:
    """One workload: ``cells[operation][column]`` is a median in seconds (or absent)."""
    workload: str
    shape: tuple
    dtype: str
    operations: list  # (name, label) in suite order
    columns: list  # ("numpy", "numpy") first, then (backend, variant)
    cells: dict
    code: dict  # column -> list of the code it runs, as markdown
    threads: dict  # column -> set of the thread counts seen

    def speedup(self, operation, column):
        numpy_time = self.cells[operation].get(("numpy", "numpy"))
        time = self.cells[operation].get(column)
        if numpy_time is None or time is None or time <= 0:
            return None
        return numpy_time / time


# --- running ---

def run_benchmarks(json_path: Path, pytest_args: list) -> int:
    """Run ``pytest bench/ --benchmark-only --benchmark-json json_path``; return its status.

    pytest runs from inside bench/, so that ``python -m`` does not put the repository root
    (a source tree without the compiled extension) ahead of the installed zmfast.
    """
    command = [sys.executable, "-m", "pytest", str(BENCH_DIR), "--benchmark-only",
               f"--benchmark-json={json_path}", *pytest_args]
    print("+", " ".join(command), flush=True)
    return subprocess.call(command, cwd=BENCH_DIR)


# --- loading ---

def load_results(path: Path) -> Results:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    records = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "workload" not in info:
            continue  # not one of cases.CASES
        records.append(Record(
            workload=info["workload"], shape=tuple(info.get("shape", ())),
            dtype=info.get("dtype", "uint8"), operation=info["operation"],
            operation_label=info.get("operation_label", info["operation"]),
            implementation=info["implementation"], backend=info["backend"],
            variant=info["variant"], code=info.get("code", ""), note=info.get("note", ""),
            threads=int(info.get("threads", 1)), median=float(bench["stats"]["median"]),
            rounds=int(bench["stats"]["rounds"]), bytes_read=int(info.get("bytes_read", 0)),
            bytes_written=int(info.get("bytes_written", 0))))
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

def build_tables(records: list) -> list:
    tables = {}
    for record in records:
        table = tables.get(record.workload)
        if table is None:
            table = tables[record.workload] = Table(
                record.workload, record.shape, record.dtype, [], [("numpy", "numpy")], {}, {},
                {})
        if record.operation not in table.cells:
            table.operations.append((record.operation, record.operation_label))
            table.cells[record.operation] = {}
        if record.column not in table.columns:
            table.columns.append(record.column)
        table.cells[record.operation][record.column] = record.median
        code = f"`{record.code}`" + (f" ({record.note})" if record.note else "")
        table.code.setdefault(record.column, [])
        if code not in table.code[record.column]:
            table.code[record.column].append(code)
        table.threads.setdefault(record.column, set()).add(record.threads)
    for table in tables.values():
        numpy_first = [("numpy", "numpy")]
        backends = list(dict.fromkeys(b for b, v in table.columns if v != "numpy"))
        table.columns = numpy_first + [(b, v) for b in backends for v in VARIANTS
                                       if (b, v) in table.columns]
    return list(tables.values())


# --- markdown ---

def format_time(seconds: float) -> str:
    unit, scale = next(((u, s) for u, s in (("s", 1.0), ("ms", 1e-3)) if seconds >= s),
                       ("µs", 1e-6))
    value = seconds / scale
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{digits}f} {unit}"


def format_bytes(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def column_title(column: tuple) -> str:
    backend, variant = column
    if variant == "numpy":
        return "NumPy"
    return f"zmfast {backend} {VARIANT_TITLES.get(variant, variant)}"


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


def run_line(results: Results, tables: list) -> str:
    meta = results.meta
    m = meta["machine"]
    threads = sorted({t for table in tables for col, seen in table.threads.items()
                      if col[1] != "numpy" for t in seen})
    when = meta.get("datetime")
    if when:
        when = datetime.fromisoformat(when).astimezone(timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC")
    rounds = min((r.rounds for r in results.records), default=0)
    parts = []
    if m.get("version"):
        parts.append(f"zmfast {m['version']}")
    if threads:
        parts.append(f"{'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''} "
                     "(NumPy: 1)")
    if when:
        parts.append(when)
    parts.append(f"median of ≥{rounds} rounds (pytest-benchmark"
                 f"{' ' + meta['pytest_benchmark'] if meta.get('pytest_benchmark') else ''})")
    return " · ".join(parts)


def render_table(table: Table) -> list:
    shape = " × ".join(map(str, table.shape))
    nbytes = math.prod(table.shape) * np.dtype(table.dtype).itemsize
    lines = [f"### {table.workload}: {shape} {table.dtype} NHWC ({format_bytes(nbytes)})", "",
             "| operation | " + " | ".join(column_title(c) for c in table.columns) + " |",
             "|---|" + "---:|" * len(table.columns)]
    for operation, label in table.operations:
        cells = []
        for column in table.columns:
            time = table.cells[operation].get(column)
            if time is None:
                cells.append("–")
                continue
            speedup = table.speedup(operation, column)
            cells.append(format_time(time) if column[1] == "numpy" or speedup is None
                         else f"{format_time(time)} ({speedup:.1f}×)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def legend(tables: list) -> list:
    lines = ["Median times; (N×) is the speed-up, NumPy's median over zmfast's. What each "
             "column runs (`m`, `s`: float64 statistics of shape (H, W, C) per pixel, (C,) "
             "per channel):", ""]
    seen = {}
    for table in tables:
        for column in table.columns:
            seen.setdefault(column, [])
            for code in table.code.get(column, []):
                if code not in seen[column]:
                    seen[column].append(code)
    for column, codes in seen.items():
        lines.append(f"- **{column_title(column)}**: " + "; ".join(codes))
    return lines


def render_markdown(results: Results) -> str:
    tables = build_tables(results.records)
    lines = ["## Benchmarks", "",
             f"Machine: {machine_line(results.meta)}  ",
             f"Run: {run_line(results, tables)}", ""]
    if not results.meta.get("measured_here"):
        lines += ["(Machine line describes the machine that rendered this report.)", ""]
    for table in tables:
        lines += render_table(table) + [""]
    lines += legend(tables)
    lines += ["", "Generated by `python bench/report.py` from "
              f"`{results.path.name}`."]
    return "\n".join(lines) + "\n"


# --- command line ---

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Run zmfast's benchmarks and write a markdown report. Arguments it "
                    "does not know (or everything after --) go to pytest.",
        allow_abbrev=False)
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="only render this pytest-benchmark JSON (run nothing)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "report.md",
                        metavar="FILE", help="where to write the markdown (default: %(default)s)")
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
    markdown = render_markdown(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {args.output} (from {json_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
