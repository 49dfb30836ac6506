"""Shared fixtures and Hypothesis profiles for zmfast's tests.

Profiles (choose with the environment variable ``HYPOTHESIS_PROFILE``):

* ``ci`` (default): few, derandomized examples, so CI is fast and reproducible;
* ``dev``: many random examples, for hunting bugs locally;
* ``quick``: a smoke run.

The ``backend`` fixture runs a test once per backend in ``zmfast._backends.NAMES``. A backend
that cannot load is skipped, except the one named by ``ZMFAST_BACKEND``: CI sets
``ZMFAST_BACKEND=cpp`` so that a lost or broken extension fails the run instead of being
skipped.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large,
               HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much]

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=_SUPPRESSED)
settings.register_profile("dev", max_examples=400, deadline=None, print_blob=True,
                          suppress_health_check=_SUPPRESSED)
settings.register_profile("quick", max_examples=10, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=_SUPPRESSED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

import zmfast as zm  # noqa: E402  (after the profiles: importing may warn or fail loudly)
from zmfast._backends import NAMES  # noqa: E402


def requested_backend():
    """The backend named by ZMFAST_BACKEND, lower-cased, or None."""
    return os.environ.get("ZMFAST_BACKEND", "").strip().lower() or None


def loadable_backends():
    """The backends that load in this process, in NAMES order."""
    names = []
    for name in NAMES:
        try:
            with zm.use_backend(name):
                names.append(name)
        except ImportError:
            pass
    return names


def activate(name):
    """Enter ``zm.use_backend(name)``; fail or skip when the backend cannot load."""
    context = zm.use_backend(name)
    try:
        context.__enter__()
    except ImportError as exc:
        if requested_backend() == name:
            pytest.fail(f"backend {name!r} is requested by ZMFAST_BACKEND but cannot load: "
                        f"{exc}")
        pytest.skip(f"backend {name!r} cannot load: {exc}")
    return context


@pytest.fixture(autouse=True, scope="session")
def modest_streaming_threshold():
    """Streaming stores from 8 MB of output (the default is the last-level cache), so
    that the tests' arrays of 8 to 20 MB take the streaming loops."""
    try:
        from zmfast import _core
    except ImportError:
        yield
        return
    before = _core.stream_bytes()
    _core.set_stream_bytes(8 << 20)
    yield
    _core.set_stream_bytes(before)


@pytest.fixture(params=NAMES)
def backend(request):
    """The name of the backend in force for this test (one run per backend)."""
    name = request.param
    context = activate(name)
    try:
        assert zm.get_backend() == name
        yield name
    finally:
        context.__exit__(None, None, None)


@pytest.fixture
def restore_threads():
    """Put the thread count back after a test that changes it."""
    before = zm.get_num_threads()
    yield before
    zm.set_num_threads(before)


def pytest_report_header(config):
    try:
        return [f"zmfast {zm.__version__}: default backend {zm.get_backend()!r}, "
                f"backends {NAMES}, threads {zm.get_num_threads()}, "
                f"ZMFAST_BACKEND={os.environ.get('ZMFAST_BACKEND')!r}, "
                f"HYPOTHESIS_PROFILE={os.environ.get('HYPOTHESIS_PROFILE', 'ci')!r}"]
    except Exception as exc:  # pragma: no cover - the header must never break a run
        return [f"zmfast: {exc!r}"]
