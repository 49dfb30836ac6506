"""Calls from many Python threads at once: safe (no shared scratch, no lost updates) and
correct. Each worker enters the backend itself (``use_backend`` is per thread/context)."""

import concurrent.futures
import math

import numpy as np
import pytest
from conftest import loadable_backends
from reference import Reference, assert_close_to_reference, rounded, ulp_distance

import zmfast as zm

N_TASKS = 48
N_WORKERS = 8


def make_inputs(seed):
    rng = np.random.default_rng(seed)
    kind = seed % 4
    if kind == 0:
        x = rng.integers(0, 256, (16 + seed % 5, 40, 48, 3), dtype=np.uint8)
    elif kind == 1:
        x = rng.integers(-32768, 32768, (97, 1023 + seed), dtype=np.int16).T
    elif kind == 2:
        x = (rng.standard_normal((64, 50, 51)) * 100 + 1e4).astype(np.float32)[:, ::-1]
    else:
        x = rng.uniform(-1, 1, (300_000 + seed,))
    axis = [(0, 1, 2), 0, (0, 2), None][kind]
    return x, axis


def task(backend, seed):
    with zm.use_backend(backend):
        assert zm.get_backend() == backend
        x, axis = make_inputs(seed)
        results = {
            "mean": zm.mean(x, axis=axis),
            "var": zm.var(x, axis=axis, ddof=1),
            "moments": zm.moments(x, axis=axis),
        }
        if x.ndim >= 3:
            mean = np.asarray(results["mean"], dtype=np.float64)
            if mean.ndim == 0 or mean.shape != x.shape[-mean.ndim:]:
                mean = float(np.mean(mean))
            results["standardize"] = zm.standardize(x, mean, 2.5, channels_first=x.ndim == 4)
        return results


def check_task(seed, results):
    x, axis = make_inputs(seed)
    axes = tuple(range(x.ndim)) if axis is None else (axis if isinstance(axis, tuple)
                                                      else (axis,))
    ref = Reference(x, axes)
    dtype = np.float64 if x.dtype.kind in "iu" else x.dtype
    assert_close_to_reference(results["mean"], ref.mean, dtype, atol=ref.mean_atol(),
                              what=f"task {seed} mean")
    assert_close_to_reference(results["var"], ref.var(1), dtype, atol=ref.var_atol(1),
                              what=f"task {seed} var")
    m = results["moments"]
    assert m.count == math.prod(x.shape[ax] for ax in axes)
    assert_close_to_reference(m.mean, ref.mean, np.float64, atol=ref.mean_atol(), ulps=2)
    if "standardize" in results:
        mean = np.asarray(results["mean"], dtype=np.float64)
        if mean.ndim == 0 or mean.shape != x.shape[-mean.ndim:]:
            mean = float(np.mean(mean))
        expected = rounded((x.astype(np.float64) - mean) / 2.5, np.float32)
        if x.ndim == 4:
            expected = np.moveaxis(expected, -1, -3)
        assert np.max(ulp_distance(results["standardize"], expected)) <= 1


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_many_python_threads(backend, restore_threads, threads):
    zm.set_num_threads(threads)
    serial = {seed: task(backend, seed) for seed in range(8)}
    with concurrent.futures.ThreadPoolExecutor(max_workers=N_WORKERS) as pool:
        futures = {pool.submit(task, backend, seed): seed for seed in range(N_TASKS)}
        for future in concurrent.futures.as_completed(futures):
            seed = futures[future]
            results = future.result()
            check_task(seed, results)
            if seed in serial:
                # The same call gives the same answer, concurrent or not.
                for key in ("mean", "var", "standardize"):
                    if key in results:
                        np.testing.assert_array_equal(results[key], serial[seed][key])


def test_threads_with_different_backends_at_once(restore_threads):
    """Workers each hold a different backend at the same time."""
    names = loadable_backends()
    with concurrent.futures.ThreadPoolExecutor(max_workers=N_WORKERS) as pool:
        futures = {pool.submit(task, names[seed % len(names)], seed): seed
                   for seed in range(2 * N_WORKERS)}
        for future in concurrent.futures.as_completed(futures):
            check_task(futures[future], future.result())


def test_thread_count_does_not_change_results(backend, restore_threads):
    """Integer data: every thread count gives values within the reference's tolerance;
    exact integer sums make the means agree to the last bits."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 64, 64, 3), dtype=np.uint8)
    results = []
    for n in (1, 2, 3, 5):
        zm.set_num_threads(n)
        results.append((zm.mean(x, axis=(0, 1, 2)), zm.var(x, axis=0), zm.var(x)))
    ref = Reference(x, (0, 1, 2))
    for mean, var0, var_all in results:
        assert_close_to_reference(mean, ref.mean, np.float64, atol=ref.mean_atol(), ulps=2)
        np.testing.assert_allclose(var0, results[0][1], rtol=1e-13)
        np.testing.assert_allclose(var_all, results[0][2], rtol=1e-13)


# --- the kernels' parallel paths ---------------------------------------------------------

PARALLEL_CASES = [  # (shape, axis): big enough for several kernel threads
    ((300_001,), None),
    ((150_001, 3), 0),      # few outputs, many rows: rows split over threads, then merged
    ((150_001, 3), 1),      # many outputs of 3 values each
    ((3, 150_001), 1),      # a few long rows
    ((3, 150_001), 0),
    ((701, 401), None),
    ((701, 401), 0),
    ((64, 65, 66), (0, 2)),
    ((64, 65, 66), (1, 2)),
    ((2, 2, 70_001), (0, 2)),
]


def _views(x):
    yield "c", x
    yield "reversed", x[::-1]
    if x.ndim >= 2:
        yield "transposed", x.T
        yield "strided", x[:, ::2]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.float32,
                                   np.float64])
def test_parallel_reductions(backend, restore_threads, dtype, threads):
    zm.set_num_threads(threads)
    rng = np.random.default_rng(threads)
    for shape, axis in PARALLEL_CASES:
        if np.dtype(dtype).kind in "iu":
            info = np.iinfo(dtype)
            base = rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)
        else:
            base = (rng.standard_normal(shape) * 50 + 1000).astype(dtype)
        for label, x in _views(base):
            ax = axis
            if label == "transposed" and isinstance(axis, int):
                ax = x.ndim - 1 - axis
            elif label == "transposed" and isinstance(axis, tuple):
                ax = tuple(x.ndim - 1 - a for a in axis)
            axes = tuple(range(x.ndim)) if ax is None else (ax if isinstance(ax, tuple)
                                                            else (ax,))
            ref = Reference(x, axes)
            what = f"{label} {x.shape} axis={ax} threads={threads}"
            result_dtype = np.float64 if x.dtype.kind in "iu" else x.dtype
            assert_close_to_reference(zm.mean(x, axis=ax), ref.mean, result_dtype,
                                      atol=ref.mean_atol(), what="mean " + what)
            assert_close_to_reference(zm.var(x, axis=ax), ref.var(), result_dtype,
                                      atol=ref.var_atol(), what="var " + what)


@pytest.mark.parametrize("threads", [1, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_parallel_standardize(backend, restore_threads, dtype, threads):
    zm.set_num_threads(threads)
    rng = np.random.default_rng(threads)
    x = rng.integers(0, 256, (16, 67, 71, 3)).astype(dtype)
    mean, std = rng.uniform(0, 255, 3), rng.uniform(10, 80, 3)
    pixel_mean = rng.uniform(0, 255, (67, 71, 3))
    for view in (x, x[:, ::-1], x[1::3], x[..., :2]):
        for m in (mean[: view.shape[-1]], pixel_mean[..., : view.shape[-1]], 100.0):
            s = std[: view.shape[-1]]
            for channels_first in (False, True):
                got = zm.standardize(view, m, s, channels_first=channels_first)
                expected = rounded((view.astype(np.float64) - m) / s, np.float32)
                if channels_first:
                    expected = np.moveaxis(expected, -1, -3)
                assert got.shape == expected.shape
                assert np.max(ulp_distance(got, expected)) <= 1, (view.shape, channels_first)
