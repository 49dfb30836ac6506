"""pytest configuration of the benchmark suite (``pytest bench/ --benchmark-only``).

The root ``pytest`` only collects tests/ (``testpaths``); this directory is run explicitly.
It adds ``--zm-threads`` and the scaling tables' options (``--zm-scaling-threads``,
``--zm-sizes``, ``--zm-max-memory-gb``), registers the ``scaling`` marker, provides the
session-wide workloads and references, and records the machine, the load average and
zmfast's configuration into the benchmark JSON (``machine_info["zmfast"]``).
"""

import argparse
import os
import sys

import pytest

# The modules next to this file, whatever pytest's import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases  # noqa: E402
import machine  # noqa: E402
from cases import zm  # noqa: E402

DEFAULT_SIZES = (1, 4, 16, 64, 256)


def _int_list(text):
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, "
                                         f"got {text!r}")
    return values


def pytest_addoption(parser):
    group = parser.getgroup("zmfast", "zmfast benchmarks")
    group.addoption("--zm-threads", type=int, default=None, metavar="N",
                    help="threads for zmfast's kernels and the threaded peers (default: "
                         "zmfast's own default, OMP_NUM_THREADS or every available core)")
    group.addoption("--zm-scaling-threads", type=_int_list, default=[1, 2], metavar="N,N",
                    help="thread counts of the threads scaling table (default: 1,2)")
    group.addoption("--zm-sizes", type=_int_list, default=list(DEFAULT_SIZES), metavar="MB,MB",
                    help="input sizes in MiB of the sizes scaling table (default: "
                         f"{','.join(map(str, DEFAULT_SIZES))}; the README's table adds 1024)")
    group.addoption("--zm-max-memory-gb", type=float, default=8.0, metavar="GB",
                    help="skip a sizes case whose input, temporaries and output would take "
                         "more memory than this (default: %(default)s)")


_LOAD_AT_START = []


def _load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def pytest_configure(config):
    _LOAD_AT_START.append(_load_average())
    config.addinivalue_line(
        "markers", "scaling: the scaling tables (threads, sizes); deselect with "
                   "-m 'not scaling'")
    threads = config.getoption("--zm-threads", default=None)
    if threads is not None:
        zm.set_num_threads(threads)


def zmfast_info():
    available = {name: cases.backend_unavailable(name) or "available"
                 for name in cases.BACKEND_NAMES}
    return {"version": zm.__version__, "default_backend": zm.get_backend(),
            "threads": zm.get_num_threads(), "backends": available}


def pytest_report_header(config):
    info = machine.describe()
    zm_info = zmfast_info()
    backends = ", ".join(f"{name}: {state}" for name, state in zm_info["backends"].items())
    return [f"machine: {info['cpu_model']}, {info['available_cpus']} CPUs available; "
            f"NumPy {info['numpy']}",
            f"zmfast {zm_info['version']}: {zm_info['threads']} threads; {backends}"]


def pytest_benchmark_update_machine_info(config, machine_info):
    # The 1-minute load average before and after the run: other processes on the cores
    # stall the threads of every parallel kernel (the report warns).
    load = {"load_average": [_LOAD_AT_START[0] if _LOAD_AT_START else None, _load_average()]}
    machine_info["zmfast"] = dict(machine.describe(), **zmfast_info(), **load)


@pytest.fixture(scope="session")
def workload_data():
    """``workload_data(workload)``: the batch of a workload, generated once per session."""
    batches = {}

    def get(workload):
        if workload.name not in batches:
            batches[workload.name] = workload.generate()
        return batches[workload.name]

    return get


@pytest.fixture(scope="session")
def reference_stats(workload_data):
    """``reference_stats(workload, axis)``: float64 NumPy (mean, std), computed once."""
    computed = {}

    def get(workload, axis):
        key = (workload.name, axis)
        if key not in computed:
            computed[key] = cases.reference_stats(workload_data(workload), axis)
        return computed[key]

    return get
