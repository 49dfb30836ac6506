"""Backends: each decides *how* to compute what the public layer has already validated.

Every backend module provides the same small interface:

``moments(x, axes, want_m2) -> (mean, m2)``
    ``x`` is an aligned, native-endian ndarray of a supported dtype whose reduction over
    ``axes`` (a sorted tuple of distinct non-negative ints) is non-empty. Returns float64
    arrays of the kept shape (``m2`` is None when ``want_m2`` is false).
``affine(x, mean, std, out, layout)``
    Writes ``(x - mean) / std`` into ``out`` (rounded half to even and clamped for integer
    outputs). ``layout`` is ``"same"``, ``"channels_first"`` (last axis of ``x`` to -3) or
    ``"channels_last"`` (axis -3 of ``x`` to last). ``mean`` and ``std`` are float64 arrays
    of one shape that broadcasts against ``x`` seen channels-last; ``std`` is finite and
    non-zero; ``out`` is a C-contiguous array of the output shape that does not overlap ``x``.
``all_finite(values) -> bool`` (the compiled backends)
    Whether every value of a float64 result of ``moments`` is finite: the public layer's
    check for an overflow on the way.
``set_num_threads(n)``
    Number of threads for later calls.
"""

NAMES = ("cpp", "numba", "numpy")
