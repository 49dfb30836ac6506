"""Type stub of zmfast's C++ extension (csrc/bindings.cpp). Internal: use the zmfast API."""

import numpy as np
import numpy.typing as npt

openmp: bool
compiler: str
cxx_flags: str

def moments(x: np.ndarray, offset: int, kept_extent: list[int], kept_strides: list[int],
            out_strides: list[int], red_extent: list[int], red_strides: list[int],
            mean_out: npt.NDArray[np.float64],
            m2_out: npt.NDArray[np.float64] | None) -> None: ...
def affine(x: np.ndarray, x_offset: int, mean: npt.NDArray[np.float64],
           inv: npt.NDArray[np.float64], extent: list[int], x_strides: list[int],
           stats_strides: list[int], out: np.ndarray, out_offset: int,
           out_strides: list[int]) -> None: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
