"""pytest configuration of the benchmark suite (``pytest bench/ --benchmark-only``).

The root ``pytest`` only collects tests/ (``testpaths``); this directory is run explicitly.
It adds ``--zm-threads``, the session-wide workloads and references, and records the machine
and zmfast's configuration into the benchmark JSON (``machine_info["zmfast"]``).
"""

import os
import sys

import pytest

# The modules next to this file, whatever pytest's import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases  # noqa: E402
import machine  # noqa: E402
from cases import zm  # noqa: E402


def pytest_addoption(parser):
    group = parser.getgroup("zmfast", "zmfast benchmarks")
    group.addoption("--zm-threads", type=int, default=None, metavar="N",
                    help="threads for zmfast's kernels (default: zmfast's own default, "
                         "OMP_NUM_THREADS or every available core)")


def pytest_configure(config):
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
    machine_info["zmfast"] = dict(machine.describe(), **zmfast_info())


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
