"""Load and validate interactions: a MovieLens name, a folder or a CSV/TSV/Parquet file."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import log_metadata, step

from steps.data.remote_source import local_copy
from walsrec.config import DataConfig
from walsrec.data import ColumnSpec, EventOptions, Interactions, ValidationOptions, load_source
from walsrec.errors import ConfigError, reject_unknown_keys

logger = logging.getLogger(__name__)


def loader_options(data: dict) -> dict:
    """The keyword arguments of `load_source` from the `data:` section of a config.

    Raises:
        ConfigError: An unknown key in `data`, `data.columns` or `data.events`, or a bad event
            weight.
    """
    config = DataConfig.from_dict(data)
    columns = config.columns or {}
    events = config.events or {}
    for section, values, config_class in (
        ("data.columns", columns, ColumnSpec),
        ("data.events", events, EventOptions),
    ):
        if not isinstance(values, dict):
            raise ConfigError(f"{section} must be a mapping, got {values!r}")
        reject_unknown_keys(section, values, config_class)
    return {
        "fmt": config.format,
        "columns": ColumnSpec(**columns),
        "header": config.header,
        "options": ValidationOptions(
            strict=bool(config.strict),
            rating_min=config.rating_min,
            rating_max=config.rating_max,
            # Only read when columns.event is set; null weights mean the defaults.
            events=EventOptions(
                **{key: value for key, value in events.items() if value is not None}
            ),
        ),
        "cache_dir": config.cache_dir,
        "download": bool(config.download),
    }


@step
def data_loader(
    source: str, data: dict, source_fingerprint: str | None = None
) -> Annotated[Interactions, "interactions"]:
    """Read `source` and validate every row.

    Args:
        source: a MovieLens variant (ml-100k, ml-1m, ml-20m, ml-latest-small), a folder holding
            one, or an interactions file: a local path, or a URL the stack's artifact store
            reads (s3://..., what a Kubeflow pod can reach).
        data: the `data:` section of the config (format, columns, header, strict, ranges,
            event weights).
        source_fingerprint: what identifies the data behind `source` (`walsrec.data.
            source_fingerprint`), computed when the pipeline is composed. Not read here: as a
            step parameter it is part of the cache key, so the step is served from ZenML's
            cache exactly while the file is unchanged. None (a source that can't be
            fingerprinted): the pipeline turns caching off for the step.

    Returns:
        The validated interactions with the report of what was rejected.
    """
    with local_copy(source) as local_source:
        interactions = load_source(local_source, **loader_options(data))
    report = interactions.report
    logger.info("%s", report.summary())
    log_metadata(metadata={"validation": report.to_dict()}, infer_artifact=True)
    return interactions
