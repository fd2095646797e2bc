"""E-commerce event logs: per-type weights, optional time decay, and aggregation per pair.

An event log has one row per event (user, item, event type such as view / cart / purchase,
timestamp, optional quantity) instead of one row per (user, item) pair. Its rows are validated
like any other file's (:mod:`walsrec.data.validation`), then every pair's events are summed
into one implicit-feedback value (the confidence WALS weights the pair with):

    value(u, i) = sum over the pair's events e of weight[type_e] * quantity_e * decay_e
    decay_e     = 0.5 ** (age_days_e / half_life_days)   (1 when no half-life is set)

where ``age_days_e`` is the event's age relative to the newest kept event of the file. The pair's
timestamp is its latest event's. Events of a pair may come in any order (logs are often written
by several servers): they are summed, so out-of-order timestamps are not an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from walsrec.errors import ConfigError
from walsrec.lazy import LazyModule

pa = LazyModule("pyarrow")
pc = LazyModule("pyarrow.compute")

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {"view": 1.0, "cart": 3.0, "purchase": 10.0}
_SECONDS_PER_DAY = 86_400.0
# An observed pair stays observed however old: decay never rounds a value to 0 in float32.
_MIN_VALUE = float(np.finfo(np.float32).tiny)


def _is_positive_number(value: object) -> bool:
    """A finite int or float > 0 (a bool is not a number here)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True)
class EventOptions:
    """How event-log rows become one value per (user, item) pair.

    Used only when ``ColumnSpec.event`` names a column; other files ignore it.

    Attributes:
        weights: Event type -> weight (> 0). Types are matched after trimming whitespace and
            ignoring case; a row whose type is not listed is rejected ("unknown event type").
        half_life_days: When set (> 0), an event counts 0.5 ** (age_days / half_life_days),
            its age measured from the newest kept event of the file; needs a timestamp column.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.weights, Mapping) or not self.weights:
            raise ConfigError(
                "data.events.weights: give at least one event type and its weight, e.g. "
                "{view: 1.0, cart: 3.0, purchase: 10.0}"
            )
        normalized: dict[str, float] = {}
        for name, weight in self.weights.items():
            key = str(name).strip().lower()
            if not key:
                raise ConfigError("data.events.weights: an event type name is empty")
            if key in normalized:
                raise ConfigError(
                    f"data.events.weights: event type {name!r} is listed twice (types are "
                    f"matched ignoring case)"
                )
            if not _is_positive_number(weight):
                # A zero weight would make pairs that are observed yet carry no signal.
                raise ConfigError(
                    f"data.events.weights.{name}: weight must be a finite number > 0, got "
                    f"{weight!r} (leave a type out to reject its rows, counted)"
                )
            normalized[key] = float(weight)
        object.__setattr__(self, "weights", normalized)
        half_life = self.half_life_days
        if half_life is not None and not _is_positive_number(half_life):
            raise ConfigError(
                f"data.events.half_life_days: must be a number of days > 0 or null, got "
                f"{half_life!r}"
            )


def event_type_codes(
    values: pa.Array | pa.ChunkedArray, options: EventOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps raw event types to indices into ``options.weights``.

    Returns:
        codes (int64, -1 where missing or unknown), the missing mask and the unknown mask.
    """
    if pa.types.is_dictionary(values.type):
        values = pc.cast(values, pa.string())
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        # Numeric event codes (0, 1, 2) are matched as their text.
        values = pc.cast(values, pa.string())
    text = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    missing = np.asarray(
        pc.fill_null(pc.or_kleene(pc.is_null(text), pc.equal(text, "")), True).to_numpy(
            zero_copy_only=False
        ),
        dtype=bool,
    )
    names = pa.array(list(options.weights), pa.string())
    codes = pc.fill_null(pc.index_in(text, value_set=names), -1)
    codes = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)
    unknown = ~missing & (codes < 0)
    return codes, missing, unknown


def event_values(
    codes: np.ndarray,
    quantities: np.ndarray,
    timestamps: np.ndarray | None,
    options: EventOptions,
) -> np.ndarray:
    """Per-event contribution weight * quantity * decay (float64) of valid rows.

    Args:
        codes: Index of each row's type in ``options.weights`` (all >= 0).
        quantities: Quantity of each row (1 where the file gives none).
        timestamps: Seconds of each row, needed when ``options.half_life_days`` is set.
        options: Weights and half-life.
    """
    weights = np.fromiter(options.weights.values(), dtype=np.float64, count=len(options.weights))
    values = weights[codes] * quantities
    if options.half_life_days is not None and timestamps is not None and len(timestamps):
        age_days = (timestamps.max() - timestamps).astype(np.float64) / _SECONDS_PER_DAY
        values = values * np.exp2(-age_days / options.half_life_days)
    return values


@dataclass
class Aggregated:
    """Events summed per (user, item) pair, pairs in order of their first event in the file.

    Attributes:
        rows: Index (into the aggregated input) of each pair's first event.
        values: float32 sum of the pair's event values (at least the smallest float32 > 0).
        timestamps: int64 latest timestamp of the pair's events, or None.
    """

    rows: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray | None


def aggregate_pairs(
    user: pa.ChunkedArray,
    item: pa.ChunkedArray,
    values: np.ndarray,
    timestamps: np.ndarray | None,
) -> Aggregated:
    """Sums ``values`` over rows sharing a (user, item) pair, vectorized (sort + reduceat)."""
    if len(user) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Aggregated(empty, np.zeros(0, np.float32), None if timestamps is None else empty)
    user_codes = np.asarray(user.dictionary_encode().combine_chunks().indices, dtype=np.int64)
    item_encoded = item.dictionary_encode().combine_chunks()
    item_codes = np.asarray(item_encoded.indices, dtype=np.int64)
    keys = user_codes * len(item_encoded.dictionary) + item_codes
    # A stable sort keeps each pair's events in file order, so a group's first is its earliest.
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sums = np.add.reduceat(values[order], starts)
    latest = None if timestamps is None else np.maximum.reduceat(timestamps[order], starts)
    first_rows = order[starts]
    file_order = np.argsort(first_rows, kind="stable")
    return Aggregated(
        rows=first_rows[file_order],
        values=np.maximum(sums[file_order], _MIN_VALUE).astype(np.float32),
        timestamps=None if latest is None else latest[file_order].astype(np.int64),
    )
