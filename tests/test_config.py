"""Backends (choice, context, environment variable), thread count, show_config."""

import io
import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import loadable_backends, requested_backend

import zmfast as zm
from zmfast._backends import NAMES

PACKAGE_PARENT = str(pathlib.Path(zm.__file__).resolve().parent.parent)


LOADABLE = loadable_backends()


def run_python(code, backend_env=None, extra_env=None):
    """Run ``code`` in a fresh interpreter importing this same zmfast."""
    env = dict(os.environ)
    env.pop("ZMFAST_BACKEND", None)
    if backend_env is not None:
        env["ZMFAST_BACKEND"] = backend_env
    env["PYTHONPATH"] = os.pathsep.join(
        [PACKAGE_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, cwd=str(pathlib.Path(PACKAGE_PARENT).parent))


@pytest.fixture
def restore_default_backend():
    before = zm.get_backend()
    yield before
    zm.set_backend(before)
    assert zm.get_backend() == before


def test_requested_backend_is_loadable():
    """CI sets ZMFAST_BACKEND=cpp: the extension must be there, never silently missing."""
    name = requested_backend()
    if name is None:
        pytest.skip("ZMFAST_BACKEND is not set")
    assert name in NAMES
    assert name in LOADABLE, f"ZMFAST_BACKEND={name} but that backend cannot load"


def test_get_backend_names_a_backend():
    assert zm.get_backend() in NAMES
    assert "numpy" in NAMES and "cpp" in NAMES
    assert "numpy" in LOADABLE


def test_package_metadata():
    assert isinstance(zm.__version__, str) and zm.__version__
    for name in ("mean", "var", "std", "moments", "Moments", "center", "standardize",
                 "get_backend", "set_backend", "use_backend", "set_num_threads",
                 "get_num_threads", "show_config"):
        assert hasattr(zm, name), name


@pytest.mark.parametrize("name", NAMES)
def test_set_backend(restore_default_backend, name):
    if name not in LOADABLE:
        if requested_backend() == name:
            pytest.fail(f"{name} is requested by ZMFAST_BACKEND but cannot load")
        with pytest.raises(ImportError):
            zm.set_backend(name)
        return
    zm.set_backend(name)
    assert zm.get_backend() == name
    x = np.arange(24, dtype=np.uint8).reshape(4, 6)
    np.testing.assert_allclose(zm.mean(x, axis=0), x.mean(axis=0), rtol=1e-15)


@pytest.mark.parametrize("bad", ["bogus", "", "CPP ", "NumPy", "c++", "numpy2"])
def test_unknown_backend_name(restore_default_backend, bad):
    before = zm.get_backend()
    with pytest.raises(ValueError):
        zm.set_backend(bad)
    assert zm.get_backend() == before
    with pytest.raises(ValueError):
        with zm.use_backend(bad):
            pass  # pragma: no cover
    assert zm.get_backend() == before


def test_use_backend_nests_and_restores(restore_default_backend):
    outer = zm.get_backend()
    for first in LOADABLE:
        with zm.use_backend(first):
            assert zm.get_backend() == first
            for second in LOADABLE:
                with zm.use_backend(second):
                    assert zm.get_backend() == second
                assert zm.get_backend() == first
        assert zm.get_backend() == outer
    # Restored on an exception too.
    with pytest.raises(KeyError):
        with zm.use_backend("numpy"):
            raise KeyError("boom")
    assert zm.get_backend() == outer


def test_use_backend_is_local_to_the_thread(restore_default_backend):
    outer = zm.get_backend()
    other = next((n for n in LOADABLE if n != outer), None)
    if other is None:
        pytest.skip("only one backend loads")
    seen = {}
    inside = threading.Event()
    checked = threading.Event()

    def worker():
        inside.wait(10)
        seen["thread"] = zm.get_backend()
        checked.set()

    thread = threading.Thread(target=worker)
    thread.start()
    with zm.use_backend(other):
        inside.set()
        checked.wait(10)
        assert zm.get_backend() == other
    thread.join(10)
    assert seen["thread"] == outer


@pytest.mark.parametrize("bad", [0, -1, -8, 1.5, 2.0, "2", None, True, False, [2]])
def test_set_num_threads_rejects(restore_threads, bad):
    before = zm.get_num_threads()
    with pytest.raises(ValueError):
        zm.set_num_threads(bad)
    assert zm.get_num_threads() == before


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64])
def test_set_num_threads(restore_threads, backend, n):
    zm.set_num_threads(n)
    assert zm.get_num_threads() == n
    rng = np.random.default_rng(n)
    x = rng.integers(0, 256, (300, 17, 31), dtype=np.uint8)
    np.testing.assert_allclose(zm.mean(x, axis=(0, 2)), x.mean(axis=(0, 2)), rtol=1e-14)
    np.testing.assert_allclose(zm.var(x), x.var(), rtol=1e-12)
    y = zm.standardize(x, 100.0, 50.0)
    np.testing.assert_array_max_ulp(y, ((x - 100.0) / 50.0).astype(np.float32), maxulp=1)


def test_default_threads_positive():
    assert isinstance(zm.get_num_threads(), int) and zm.get_num_threads() >= 1


def test_show_config(capsys, backend):
    zm.show_config()
    text = capsys.readouterr().out
    assert backend in text
    assert "threads" in text
    assert zm.__version__ in text
    buffer = io.StringIO()
    zm.show_config(file=buffer)
    assert "threads" in buffer.getvalue() and backend in buffer.getvalue()


def test_show_config_reports_the_extension():
    if "cpp" not in LOADABLE:
        pytest.skip("no extension")
    buffer = io.StringIO()
    zm.show_config(file=buffer)
    text = buffer.getvalue().lower()
    assert "openmp" in text and "compiler" in text and "flags" in text


# --- the environment variable, in fresh interpreters -------------------------------------

BLOCK_CORE = "import sys; sys.modules['zmfast._core'] = None\n"
BLOCK_NUMBA = "import sys; sys.modules['numba'] = None\n"
REPORT = ("import warnings\n"
          "with warnings.catch_warnings(record=True) as caught:\n"
          "    warnings.simplefilter('always')\n"
          "    import zmfast\n"
          "print(zmfast.get_backend())\n"
          "print(sorted({w.category.__name__ for w in caught}))\n")


@pytest.mark.parametrize("name", NAMES)
def test_env_var_selects_backend(name):
    result = run_python(REPORT, backend_env=name)
    if name not in LOADABLE:
        assert result.returncode != 0 and "ImportError" in result.stderr, result
        return
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == name
    assert lines[1] == "[]", f"unexpected warnings: {lines[1]}"


@pytest.mark.parametrize("spelling", [" numpy", "NUMPY", "NumPy\n"])
def test_env_var_spelling(spelling):
    result = run_python(REPORT, backend_env=spelling)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "numpy"


def test_env_var_unknown_name_fails():
    result = run_python("import zmfast", backend_env="bogus")
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "bogus" in result.stderr


def test_env_var_cpp_without_extension_fails():
    """With ZMFAST_BACKEND=cpp a missing extension is an ImportError, never a fallback."""
    result = run_python(BLOCK_CORE + "import zmfast\nprint(zmfast.get_backend())",
                        backend_env="cpp")
    assert result.returncode != 0, result.stdout
    assert "ImportError" in result.stderr
    assert "cpp" not in result.stdout


def test_missing_extension_falls_back_with_warning():
    result = run_python(BLOCK_CORE + REPORT)
    assert result.returncode == 0, result.stderr
    name, warned = result.stdout.split("\n")[:2]
    assert name in NAMES and name != "cpp"
    assert "RuntimeWarning" in warned
    # And with numba unavailable too, the fallback is NumPy.
    result = run_python(BLOCK_CORE + BLOCK_NUMBA + REPORT)
    assert result.returncode == 0, result.stderr
    name, warned = result.stdout.split("\n")[:2]
    assert name == "numpy"
    assert "RuntimeWarning" in warned


def test_default_backend_is_cpp_when_the_extension_loads():
    if "cpp" not in LOADABLE:
        pytest.skip("no extension")
    result = run_python(REPORT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["cpp", "[]"]


def test_fallback_backend_computes_correctly():
    code = BLOCK_CORE + (
        "import warnings\n"
        "warnings.simplefilter('ignore')\n"
        "import numpy as np, zmfast as zm\n"
        "x = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)\n"
        "assert np.allclose(zm.var(x, axis=(0, 2)), x.var(axis=(0, 2)), rtol=1e-15, atol=0)\n"
        "assert zm.set_backend('numpy') is None and zm.get_backend() == 'numpy'\n"
        "try:\n"
        "    zm.set_backend('cpp')\n"
        "except ImportError:\n"
        "    print('ok')\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
