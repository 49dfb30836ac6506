"""The "Estimators" and "Targets" sections of the benchmark report, from the results of
test_bench_estimators.py and test_bench_targets.py.

    python bench/report_estimators.py bench/results/20250101-120000.json
    python bench/report_estimators.py RESULT.json --append bench/results/report.md

Each benchmark of those files carries ``extra_info["suite"]`` (``"estimators"`` or
``"targets"``),
its comparison, its role (``baseline`` or ``candidate``), the implementation a candidate is
measured against and the comparison's target. The section has a table per data set: a row
per candidate with its median, its baseline's median, the ratio and whether the target is
met (a speed-up over scikit-learn of at least 10x; ``partial_fit`` within 1.5x of ``fit``).

report.py's workload tables skip these records (they have no ``operation``); report.py
appends this section to its report when the run has them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from report import format_time

ZMFAST_BACKENDS = ("cpp", "numba", "numpy")
SECTIONS = {"estimators": "Estimators", "targets": "Targets"}  # suite -> section title


@dataclasses.dataclass(frozen=True)
class ComparisonRecord:
    """One benchmark of test_bench_estimators.py or test_bench_targets.py."""
    suite: str  # a key of SECTIONS
    data: str  # the workload's name
    shape: tuple
    dtype: str
    comparison: str
    comparison_label: str
    implementation: str  # unique within the comparison
    backend: str  # a zmfast backend or "scikit-learn"
    role: str  # "baseline" or "candidate"
    baseline: str | None  # a candidate's baseline: an implementation of its comparison
    target: dict  # {"kind": "speedup" | "slowdown", "value": float}
    code: str
    threads: int
    median: float
    rounds: int
    interleaved: dict | None = None  # {"rounds", "candidate", "floor", "ratio"}


def comparison_records(data: dict) -> list:
    """The comparison benchmarks of a pytest-benchmark JSON document, in its order."""
    records = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if info.get("suite") not in SECTIONS:
            continue
        stats = bench["stats"]
        records.append(ComparisonRecord(
            suite=info["suite"], data=info["data"], shape=tuple(info.get("shape", ())),
            dtype=info.get("dtype", "uint8"), comparison=info["comparison"],
            comparison_label=info.get("comparison_label", info["comparison"]),
            implementation=info["implementation"], backend=info.get("backend", ""),
            role=info.get("role", "candidate"), baseline=info.get("baseline"),
            target=dict(info.get("target") or {}), code=info.get("code", ""),
            threads=int(info.get("threads", 1)), median=float(stats["median"]),
            rounds=int(stats["rounds"]), interleaved=info.get("interleaved")))
    return records


def load_comparisons(path) -> list:
    with open(path, encoding="utf-8") as handle:
        return comparison_records(json.load(handle))


def comparison_ratio(candidate: ComparisonRecord, baseline: ComparisonRecord):
    """(ratio, text, target text, met) of a candidate against its baseline: a speed-up
    (baseline over candidate) for ``kind="speedup"``, else a slow-down (candidate over
    baseline) that must stay under the target."""
    kind, value = candidate.target.get("kind", "speedup"), candidate.target.get("value")
    if candidate.median <= 0 or baseline.median <= 0:
        return None, "–", "", None
    if kind == "slowdown":
        ratio = candidate.median / baseline.median
        text = f"{ratio:.2f}× of {baseline.implementation}"
        target = "" if value is None else f"≤ {value:g}×"
        met = None if value is None else ratio <= value
    else:
        ratio = baseline.median / candidate.median
        text = f"{ratio:.1f}× faster"
        target = "" if value is None else f"≥ {value:g}× faster"
        met = None if value is None else ratio >= value
    return ratio, text, target, met


def render_comparisons(comparisons: list) -> list:
    """Markdown lines: per suite and data set, a row per candidate next to its baseline."""
    lines = []
    by_data = {}
    for record in comparisons:
        by_data.setdefault((record.suite, record.data), []).append(record)
    for (suite, data), records in by_data.items():
        first = records[0]
        shape = " × ".join(map(str, first.shape))
        itemsize = {"uint8": 1, "uint16": 2, "float32": 4, "float64": 8}.get(first.dtype, 1)
        mib = math.prod(first.shape) * itemsize / 2**20 if first.shape else 0.0
        lines += [f"### {SECTIONS[suite]}, {data}: {shape} {first.dtype} ({mib:.1f} MiB)", "",
                  "| comparison | zmfast | time | against | its time | ratio | target |",
                  "|---|---|---:|---|---:|---:|---|"]
        index = {(r.comparison, r.implementation): r for r in records}
        order = list(dict.fromkeys(r.comparison for r in records))
        candidates = sorted((r for r in records if r.role == "candidate"),
                            key=lambda r: order.index(r.comparison))
        for record in candidates:
            baseline = index.get((record.comparison, record.baseline))
            if record.interleaved:  # both sides and the ratio from alternating rounds
                paired = record.interleaved
                record = dataclasses.replace(record, median=paired["candidate"],
                                             rounds=paired["rounds"])
                baseline = dataclasses.replace(record, implementation=record.baseline,
                                               role="baseline", median=paired["floor"])
                _, _, target, _ = comparison_ratio(record, baseline)
                ratio = paired["ratio"]  # the median of candidate / baseline per round
                value = record.target.get("value")
                if record.target.get("kind") == "speedup":  # an odd count of rounds: the
                    speedup = 1 / ratio  # median of the inverses is the inverse
                    text = f"{speedup:.2f}× faster"
                    met = value is None or speedup >= value
                else:
                    text = f"{ratio:.2f}× of {baseline.implementation}"
                    met = value is None or ratio <= value
                mark = "" if value is None else (" ✓" if met else " ✗")
                lines.append(f"| {record.comparison_label} | {record.implementation} | "
                             f"{format_time(record.median)} | {baseline.implementation} | "
                             f"{format_time(baseline.median)} | {text} | {target}{mark} |")
                continue
            if baseline is None:
                cells = [record.baseline or "–", "–", "–", ""]
            else:
                _, text, target, met = comparison_ratio(record, baseline)
                mark = "" if met is None else (" ✓" if met else " ✗")
                cells = [baseline.implementation, format_time(baseline.median), text,
                         target + mark]
            lines.append(f"| {record.comparison_label} | {record.implementation} | "
                         f"{format_time(record.median)} | " + " | ".join(cells) + " |")
        lines += ["", "Median times. What each case runs:", ""]
        for record in records:
            threads = f"{record.threads} thread{'s' if record.threads != 1 else ''}"
            rounds = (f"{record.interleaved['rounds']} interleaved rounds, the ratio their "
                      "median" if record.interleaved else f"{record.rounds} rounds")
            lines.append(f"- **{record.implementation}** ({record.backend}, {threads}, "
                         f"{rounds}): `{record.code}`")
        interleaved_baselines = {r.baseline for r in records if r.interleaved}
        if "floor" in interleaved_baselines:
            lines.append("- **floor**: `zmfast._core.floor_convert(x, buf, stream)` into the "
                         "same buffer (into a fresh `np.empty` for new arrays), the faster of "
                         "normal and streaming stores each round; `zmfast._core.floor_read(x)` "
                         "for statistics (moments, mean, std)")
        if any(b.endswith("-float32") for b in interleaved_baselines):
            lines.append("- **…-float32**: the same call as its float16 row with float32 "
                         "output (into the same memory for out=), in that row's rounds")
        if "fit" in interleaved_baselines:
            lines.append("- **fit**: `zm.StandardScaler(axis=0).fit(x)`, one call over the "
                         "whole batch, in the rounds of partial64")
        lines.append("")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="a pytest-benchmark JSON")
    parser.add_argument("--append", type=Path, metavar="FILE",
                        help="append the section to this markdown file instead of printing")
    args = parser.parse_args(argv)
    comparisons = load_comparisons(args.json)
    if not comparisons:
        print(f"{args.json} holds no estimator or target benchmarks", file=sys.stderr)
        return 1
    text = "\n".join(render_comparisons(comparisons))
    if args.append:
        with open(args.append, "a", encoding="utf-8") as handle:
            handle.write("\n" + text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
