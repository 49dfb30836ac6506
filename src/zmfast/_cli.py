"""The ``zmfast`` command line (also ``python -m zmfast``).

``zmfast demo``
    Statistics and standardization of a synthetic CIFAR-shaped batch with zmfast and with
    the NumPy code a user would write, checked against each other and timed.
``zmfast config``
    :func:`zmfast.show_config`: version, backend, threads and build flags.
"""

import argparse
import contextlib
import os
import sys
import time

import numpy as np

import zmfast as zm
from zmfast._backends import NAMES as BACKEND_NAMES

STATS_RTOL = 1e-10  # float64 statistics against NumPy's
FLOAT32_TOL = 1e-5  # float32 outputs against NumPy's, relative and absolute
ZM_MIN_SECONDS = 0.05  # keep repeating a zmfast step while its runs take less than this
MIN_IMAGES = 16  # fewer images could give a pixel a zero std, which standardize rejects


def _positive_int(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _parser():
    parser = argparse.ArgumentParser(
        prog="zmfast", description="zmfast: zero-mean centering and standardization of image "
                                   "batches at memory speed.")
    parser.add_argument("--version", action="version", version=f"zmfast {zm.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo", help="time zmfast against NumPy on a synthetic CIFAR-shaped batch",
        description="Build a synthetic batch of 32x32 RGB uint8 images (NHWC), compute "
                    "per-pixel and per-channel statistics and standardize it with zmfast and "
                    "with plain NumPy, check that both agree, and print the timings.")
    demo.add_argument("--images", type=_positive_int(MIN_IMAGES), default=5000, metavar="N",
                      help=f"number of images (default: %(default)s; at least {MIN_IMAGES})")
    demo.add_argument("--threads", type=_positive_int(1), default=None, metavar="N",
                      help="threads for zmfast (default: zmfast's, now "
                           f"{zm.get_num_threads()})")
    demo.add_argument("--backend", choices=BACKEND_NAMES, default=None,
                      help=f"zmfast backend (default: {zm.get_backend()})")
    demo.add_argument("--repeat", type=_positive_int(1), default=3, metavar="R",
                      help="time each step as the best of R runs (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.set_defaults(run=_demo)

    config = commands.add_parser("config", help="print zmfast's configuration",
                                 description="Print zmfast's version, backend, threads and "
                                             "build flags (zmfast.show_config()).")
    config.set_defaults(run=lambda args: zm.show_config() or 0)
    return parser


def main(argv=None):
    """Entry point of the ``zmfast`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # e.g. ``zmfast demo | head``: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


# --- zmfast demo ---

def _best_time(function, repeat, min_seconds=0.0, max_runs=100):
    """(best wall time in seconds, result of the last run) of at least ``repeat`` runs,
    more while they take less than ``min_seconds`` in all (at most ``max_runs``)."""
    best, result, runs, began = float("inf"), None, 0, time.perf_counter()
    while runs < repeat or (time.perf_counter() - began < min_seconds and runs < max_runs):
        result = None  # free the previous result before the next run allocates its own
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
        runs += 1
    return best, result


def _mismatch(name, actual, expected, rtol, atol):
    """A message when ``actual`` differs from ``expected`` (NumPy's), else None."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return f"{name}: shape {actual.shape}, NumPy gives {expected.shape}"
    if actual.dtype != expected.dtype:
        return f"{name}: dtype {actual.dtype}, NumPy gives {expected.dtype}"
    wanted = expected.astype(np.float64)
    error = np.abs(actual.astype(np.float64) - wanted)
    bad = ~(error <= atol + rtol * np.abs(wanted))  # NaN counts as bad
    if not bad.any():
        return None
    worst = np.unravel_index(np.argmax(np.where(bad, np.nan_to_num(error, nan=np.inf), -1)),
                             bad.shape)
    return (f"{name}: {int(bad.sum())} of {bad.size} values differ from NumPy by more than "
            f"rtol={_format_tolerance(rtol)}, atol={_format_tolerance(atol)}; worst at index "
            f"{tuple(map(int, worst))}: zmfast {actual[worst]!r}, NumPy {expected[worst]!r}")


def _steps(x):
    """(label, zmfast function, NumPy function, kind) for each step of the demo.

    The standardize steps use the statistics each side computed itself, as a real pipeline
    would; the NumPy side is the code users write, float64 temporaries included.
    """
    stats = {}

    def zm_stats(axis):
        def run():
            moments = zm.moments(x, axis=axis)
            stats["zm", axis] = moments.mean, moments.std()
            return stats["zm", axis]
        return run

    def np_stats(axis):
        def run():
            stats["np", axis] = x.mean(axis=axis), x.std(axis=axis)
            return stats["np", axis]
        return run

    def zm_standardize(axis, channels_first=False):
        return lambda: zm.standardize(x, *stats["zm", axis], channels_first=channels_first)

    def np_standardize(axis, channels_first=False):
        def run():
            mean, std = stats["np", axis]
            result = ((x - mean) / std).astype(np.float32)
            if channels_first:
                result = np.ascontiguousarray(result.transpose(0, 3, 1, 2))
            return result
        return run

    pixel, channel = 0, (0, 1, 2)
    return [
        ("per-pixel mean+std (mean image)", zm_stats(pixel), np_stats(pixel), "stats"),
        ("per-channel mean+std", zm_stats(channel), np_stats(channel), "stats"),
        ("standardize per pixel", zm_standardize(pixel), np_standardize(pixel), "float32"),
        ("standardize per channel", zm_standardize(channel), np_standardize(channel),
         "float32"),
        ("standardize per channel -> NCHW", zm_standardize(channel, True),
         np_standardize(channel, True), "float32"),
    ]


def _format_tolerance(value):
    return f"{value:g}".replace("e-0", "e-")  # 1e-5, not 1e-05


def _format_time(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def _demo(args):
    saved_threads = zm.get_num_threads()
    try:
        backend = zm.use_backend(args.backend) if args.backend else contextlib.nullcontext()
        with backend:
            if args.threads is not None:
                zm.set_num_threads(args.threads)
            return _run_demo(args)
    except ImportError as exc:  # the requested backend cannot load
        print(f"zmfast demo: the {args.backend} backend is unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        zm.set_num_threads(saved_threads)


def _run_demo(args):
    shape = (args.images, 32, 32, 3)
    x = np.random.default_rng(args.seed).integers(0, 256, size=shape, dtype=np.uint8)
    backend = zm.get_backend()
    print(f"zmfast {zm.__version__} demo: {args.images} images of 32x32x3 uint8 "
          f"({x.nbytes / 2**20:.1f} MiB, NHWC), seed {args.seed}")
    print(f"backend: {backend}, threads: {zm.get_num_threads()} (NumPy: 1); "
          f"best of {args.repeat} runs (more for fast zmfast steps)")
    if backend == "numpy":
        print("note: the numpy backend is zmfast's slow reference implementation; build the "
              "C++ extension for the fast one")
    print()

    rows, problems = [], []
    for label, zm_run, np_run, kind in _steps(x):
        np_time, expected = _best_time(np_run, args.repeat)
        # zmfast's runs are short: a few more of them cost little and steady the minimum
        zm_time, actual = _best_time(zm_run, args.repeat, min_seconds=ZM_MIN_SECONDS)
        if kind == "stats":
            messages = [_mismatch(f"{label}: {name}", a, e, STATS_RTOL, 0.0)
                        for name, a, e in zip(("mean", "std"), actual, expected)]
        else:
            messages = [_mismatch(label, actual, expected, FLOAT32_TOL, FLOAT32_TOL)]
            if not actual.flags.c_contiguous:
                messages.append(f"{label}: the output is not C-contiguous")
        problems += [m for m in messages if m]
        rows.append((label, _format_time(zm_time), _format_time(np_time),
                     f"{np_time / zm_time:.1f}x" if zm_time > 0 else "-"))
        del expected, actual

    header = ("step", "zmfast", "NumPy", "speed-up")
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print(f"{row[0]:<{widths[0]}}  " + "  ".join(
            f"{cell:>{width}}" for cell, width in zip(row[1:], widths[1:])))
    print()
    if problems:
        print(f"FAILED: {len(problems)} result(s) of zmfast ({backend} backend) differ from "
              "NumPy's:", file=sys.stderr)
        for message in problems:
            print(f"  {message}", file=sys.stderr)
        return 1
    print(f"OK: every zmfast result matches NumPy (statistics to rtol "
          f"{_format_tolerance(STATS_RTOL)}, float32 outputs to "
          f"{_format_tolerance(FLOAT32_TOL)}).")
    return 0
