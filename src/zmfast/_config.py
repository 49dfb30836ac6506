"""Backend choice, thread count and build information."""

import contextlib
import contextvars
import importlib
import os
import sys
import warnings

from zmfast._backends import NAMES as BACKEND_NAMES

_loaded = {}
_load_errors = {}


def _load(name):
    """Import a backend module, remembering why it failed."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown zmfast backend {name!r}; choose one of {BACKEND_NAMES}")
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(f"zmfast._backends.{name}")
        except ImportError as exc:
            _load_errors[name] = f"{type(exc).__name__}: {exc}"
            raise
    return _loaded[name]


def _default_threads():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _choose_initial_backend():
    requested = os.environ.get("ZMFAST_BACKEND", "").strip().lower()
    if requested:
        if requested not in BACKEND_NAMES:
            raise ImportError(f"ZMFAST_BACKEND={requested!r} is not a zmfast backend; "
                              f"choose one of {BACKEND_NAMES}")
        try:
            _load(requested)
        except ImportError as exc:
            raise ImportError(f"ZMFAST_BACKEND={requested} was requested but that backend "
                              f"cannot be loaded: {exc}") from exc
        return requested, "chosen by ZMFAST_BACKEND"
    try:
        _load("cpp")
        return "cpp", "default: the compiled extension"
    except ImportError:
        reason = _load_errors.get("cpp", "unknown error")
    for fallback in ("numba", "numpy"):
        try:
            _load(fallback)
        except ImportError:
            continue
        warnings.warn(f"zmfast: the C++ extension could not be imported ({reason}); "
                      f"falling back to the {fallback} backend", RuntimeWarning, stacklevel=3)
        return fallback, f"fallback: the C++ extension is unavailable ({reason})"
    raise ImportError(f"zmfast: no backend can be loaded ({reason})")


_default_backend, _backend_reason = _choose_initial_backend()
_override = contextvars.ContextVar("zmfast_backend", default=None)
_num_threads = _default_threads()


def backend():
    """The module of the backend in force in this context."""
    return _loaded[_override.get() or _default_backend]


def get_backend():
    """Return the name of the backend in force: ``"cpp"``, ``"numba"`` or ``"numpy"``.

    >>> import zmfast as zm
    >>> zm.get_backend() in ("cpp", "numpy")
    True
    """
    return _override.get() or _default_backend


def set_backend(name):
    """Choose the backend for all later calls (``"cpp"``, ``"numba"`` or ``"numpy"``).

    Raises ValueError for an unknown name and ImportError when the backend cannot load.

    >>> import zmfast as zm
    >>> zm.set_backend("numpy"); zm.get_backend()
    'numpy'
    """
    global _default_backend, _backend_reason
    _load(name)
    _load(name).set_num_threads(_num_threads)
    _default_backend, _backend_reason = name, "chosen by set_backend()"


@contextlib.contextmanager
def use_backend(name):
    """Context manager: use backend ``name`` inside the block, in this thread/context only.

    >>> import zmfast as zm
    >>> with zm.use_backend("numpy"):
    ...     zm.get_backend()
    'numpy'
    """
    _load(name).set_num_threads(_num_threads)
    token = _override.set(name)
    try:
        yield
    finally:
        _override.reset(token)


def set_num_threads(n):
    """Set the number of threads zmfast's kernels use (default: ``OMP_NUM_THREADS``, else
    all cores available to the process).

    >>> import zmfast as zm
    >>> zm.set_num_threads(1); zm.get_num_threads()
    1
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be a positive int, got {n!r}")
    _num_threads = n
    for module in _loaded.values():
        module.set_num_threads(n)


def get_num_threads():
    """Return the number of threads zmfast's kernels use."""
    return _num_threads


def _extensions(core):
    """The AVX-512 extensions whose kernels are in use, and whether SIMDe emulates them, as
    show_config words them."""
    words = ""
    if core.vnni():
        words = " with VNNI"
    if core.avx512_emulated and core.simd_level() == "avx512":
        words += " (emulated by SIMDe: a test build)"
    return words


def _simd_line(core):
    if not core.simd_dispatch:
        return "simd: baseline (a build with the baseline loops only)"
    return (f"simd: {core.simd_level()}{_extensions(core)} "
            f"(best on this CPU: {core.best_simd_level()}; "
            "ZMFAST_SIMD=baseline|avx2|avx512 caps it)")


def show_config(file=None):
    """Print the version, the backend and why it is in force, OpenMP, threads and build flags.

    >>> import zmfast as zm
    >>> zm.show_config()  # doctest: +SKIP
    """
    from zmfast import __version__

    file = file or sys.stdout
    lines = [f"zmfast {__version__}",
             f"backend: {get_backend()} ({_backend_reason})",
             f"threads: {_num_threads}"]
    try:
        core = _load("cpp")._core
        lines += [f"extension: {core.__file__}",
                  f"openmp: {'yes' if core.openmp else 'no (single-threaded build)'}",
                  _simd_line(core),
                  "streaming stores: out= calls that read and write "
                  f"{core.stream_bytes() / 2**20:g} MiB or more (the last-level cache)",
                  f"compiler: {core.compiler}",
                  f"flags: {core.cxx_flags.strip()}"]
    except ImportError:
        lines.append(f"extension: unavailable ({_load_errors.get('cpp', 'unknown error')})")
    print("\n".join(lines), file=file)


for _module in _loaded.values():
    _module.set_num_threads(_num_threads)
