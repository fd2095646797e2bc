"""Data layer: loading and validating interactions, MovieLens downloads, splits and datasets.

Everything here is framework-free (no ZenML, no BentoML) and vectorized with numpy, pandas and
pyarrow. Errors meant for users are :class:`walsrec.errors.DataError` / ``ConfigError``.
"""

from walsrec.data.dataset import Dataset, build_dataset
from walsrec.data.events import DEFAULT_EVENT_WEIGHTS, EventOptions
from walsrec.data.movielens import (
    VARIANTS,
    default_cache_dir,
    fetch_archive,
    load_movielens,
    load_movielens_folder,
)
from walsrec.data.readers import ColumnSpec, Interactions, detect_format, load_interactions
from walsrec.data.sources import check_source, load_source, source_fingerprint
from walsrec.data.splits import PreprocessConfig, SplitConfig
from walsrec.data.validation import RejectedRow, ValidationOptions, ValidationReport

__all__ = [
    "DEFAULT_EVENT_WEIGHTS",
    "VARIANTS",
    "ColumnSpec",
    "Dataset",
    "EventOptions",
    "Interactions",
    "PreprocessConfig",
    "RejectedRow",
    "SplitConfig",
    "ValidationOptions",
    "ValidationReport",
    "build_dataset",
    "check_source",
    "default_cache_dir",
    "detect_format",
    "fetch_archive",
    "load_interactions",
    "load_movielens",
    "load_movielens_folder",
    "load_source",
    "source_fingerprint",
]
