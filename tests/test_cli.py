"""The ``zmfast`` command line: ``zmfast demo`` in-process and as ``python -m zmfast``."""

import os
import subprocess
import sys

import numpy as np
import pytest

import zmfast as zm
from zmfast._cli import main

STEPS = ("per-pixel mean+std", "per-channel mean+std", "standardize per pixel",
         "standardize per channel", "standardize per channel -> NCHW")


def test_demo(capsys):
    threads = zm.get_num_threads()
    assert main(["demo", "--images", "200"]) == 0
    out = capsys.readouterr().out
    assert f"backend: {zm.get_backend()}, threads: {threads}" in out
    assert "speed-up" in out
    for step in STEPS:
        assert step in out
    assert "OK: every zmfast result matches NumPy" in out
    assert zm.get_num_threads() == threads


def test_python_m_zmfast_demo():
    # Run from the directory that holds the zmfast imported here, so that the child
    # process imports the same one (source tree or installed package).
    root = os.path.dirname(os.path.dirname(os.path.abspath(zm.__file__)))
    result = subprocess.run([sys.executable, "-m", "zmfast", "demo", "--images", "50"],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "speed-up" in result.stdout
    assert "OK: every zmfast result matches NumPy" in result.stdout


def test_demo_reports_a_mismatch(capsys, monkeypatch):
    real = zm.standardize

    def off_by_one_percent(*args, **kwargs):
        return real(*args, **kwargs) * np.float32(1.01)

    monkeypatch.setattr(zm, "standardize", off_by_one_percent)
    assert main(["demo", "--images", "16", "--repeat", "1"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.err
    assert "standardize per pixel" in captured.err


def test_demo_threads_are_restored(capsys):
    threads = zm.get_num_threads()
    assert main(["demo", "--images", "16", "--repeat", "1", "--threads", "1"]) == 0
    assert "threads: 1" in capsys.readouterr().out
    assert zm.get_num_threads() == threads


def test_demo_rejects_too_few_images(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--images", "3"])
    assert exit_info.value.code == 2
    assert "--images" in capsys.readouterr().err
