"""A short description of the machine a benchmark ran on (no zmfast import here).

Used by conftest.py (recorded into the pytest-benchmark JSON under
``machine_info["zmfast"]``) and by report.py (as a fallback when a JSON lacks it).
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo ("model name"), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None when unknown."""
    cores, physical, core = set(), None, None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in list(handle) + [""]:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not key:  # a blank line ends one processor's block
                    if core is not None:
                        cores.add((physical, core))
                    physical, core = None, None
    except OSError:
        return None
    return len(cores) or None


def describe() -> dict:
    """CPU model, core counts, OS, Python and NumPy versions as a JSON-friendly dict."""
    import numpy as np

    available = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count())
    return {
        "cpu_model": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "available_cpus": available,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
