"""zmfast: zero-mean centering and standardization of image batches at memory speed.

``import zmfast as zm`` gives NumPy-compatible ``mean``/``var``/``std``, mergeable
``moments`` and fused ``center``/``standardize`` into float32 (or float16/float64),
optionally channels-first.
"""

__version__ = "0.1.0"

from zmfast._config import (
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    show_config,
    use_backend,
)
from zmfast._estimators import (
    MinMaxScaler,
    StandardScaler,
    dataset_stats,
    fit_stream,
    iter_batches,
    minmax_scale,
    normalize,
)
from zmfast._normalize import center, destandardize, standardize
from zmfast._stats import Moments, mean, moments, std, var

__all__ = ["MinMaxScaler", "Moments", "StandardScaler", "__version__", "center", "dataset_stats",
           "destandardize", "fit_stream", "get_backend", "get_num_threads", "iter_batches",
           "mean", "minmax_scale", "moments", "normalize", "set_backend", "set_num_threads",
           "show_config", "standardize", "std", "use_backend", "var"]
