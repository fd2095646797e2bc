"""A profile of the training interactions, and the documented rules that turn it into defaults.

Users bring ratings, play counts, clicks and purchase logs from catalogues of a thousand to ten
million items. One set of constants cannot fit them all (the project's first defaults were
MovieLens-100K's, and a play-count set got half the quality that tuning finds), so the WALS
values a config leaves as `auto` are chosen from a `DataProfile` of the training matrix:

- **kind** of feedback (`detect_kind`): `binary` (no value, or one value everywhere), `ratings`
  (a bounded scale: at most 21 distinct values on a half-step grid, between -10 and 10),
  `counts` (non-negative values with a heavy tail: play counts, quantities), `events` (a typed
  event log aggregated into per-pair weights; declared by the loader), else `ratings` when
  values are negative and `counts` otherwise.
- **sizes**: users, items, interactions, density, and activity quantiles per user and item
  (the share of items with one or two interactions tells how long the tail is).
- **values**: min, max, mean, median, p90, p99, distinct count, whether all are integers.

`default_wals_values(profile)` applies these rules (each chosen value is returned with its
reason, logged by the steps and stored with the model):

- `observed_weighting`: `linear` for ratings (a 5 says more than a 1), `log` for counts and
  events (a play count of 10,000 is not 1,000 times a 10), `constant` for binary.
- `epsilon` (log weighting): the median value, so a typical interaction gets log 2.
- `alpha`: scaled so that the mean confidence added to an observed entry is about 3.5, what
  ratings 1-5 with alpha 1 give on MovieLens.
- `unobserved_weight`: 1 for ratings, 0.3 for counts, binary and events (where it was best on
  validation splits of synthetic data of each kind; the search keeps 0.3x .. 3x of it).
- `regularization`: 30 * (n_interactions / 75,000)^0.42: 30 for MovieLens-100K, 300 at
  1.5 * 10^7 (`regularization_rule`).
- `n_factors`: 16 * log10(n_interactions / 1000) rounded up to a multiple of 8, within
  16 .. 128: 32 at 10^5, 48 at 10^6, 72 at 1.5 * 10^7.
- `epochs`: 15, 10 above 10^7 interactions.

Magnitudes are rounded to the 1-1.5-2-3-5-7 series, so that on MovieLens-100K the rules give
exactly the values tuned there (linear, alpha 1, regularization 30, 32 factors, 15 epochs).

The tuning search (`walsrec.tuning.SearchSpace.fitted`) is centred on the same values: ranges
marked `relative` are multiples of the rule's choice, so both the default and the tuned model
adapt to the data.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec.errors import DataError

__all__ = [
    "AUTO",
    "AUTO_KEYS",
    "FEEDBACK_KINDS",
    "PROFILE_FORMAT_VERSION",
    "DataProfile",
    "default_wals_values",
    "profile_dataset",
    "detect_kind",
    "profile_matrix",
    "resolve_auto",
]

PROFILE_FORMAT_VERSION = 1
AUTO = "auto"
AUTO_KEYS = (
    "observed_weighting",
    "epsilon",
    "alpha",
    "unobserved_weight",
    "regularization",
    "n_factors",
    "epochs",
)
"""The `wals:` keys that may be `auto` (chosen from the data profile)."""
FEEDBACK_KINDS = ("ratings", "counts", "binary", "events")
# The mean confidence an observed entry adds over an unobserved one, for every kind: ratings
# 1-5 with alpha 1 (MovieLens's mean rating is about 3.5), the setting tuned on MovieLens-100K.
TARGET_MEAN_CONFIDENCE = 3.5
_QUANTILES = {"min": 0, "p25": 25, "median": 50, "p75": 75, "p90": 90, "p99": 99, "max": 100}


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {name: 0.0 for name in (*_QUANTILES, "mean")}
    points = np.percentile(values, list(_QUANTILES.values()))
    stats = {name: float(point) for name, point in zip(_QUANTILES, points, strict=True)}
    stats["mean"] = float(values.mean())
    return stats


@dataclass(frozen=True)
class DataProfile:
    """What the training interactions look like: kind, sizes, values and activity.

    Attributes:
        kind: one of FEEDBACK_KINDS.
        kind_reason: why that kind was detected, in words.
        n_users, n_items, n_interactions: sizes of the training matrix.
        density: n_interactions / (n_users * n_items).
        values: quantiles, mean, `distinct` and `integer` of the stored values.
        user_activity, item_activity: quantiles and mean of interactions per user (item);
            item_activity also holds `share_at_most_2` (items with one or two interactions).
        format_version: of the profile's plain-file form.
    """

    kind: str
    kind_reason: str
    n_users: int
    n_items: int
    n_interactions: int
    density: float
    values: Mapping[str, float] = field(default_factory=dict)
    user_activity: Mapping[str, float] = field(default_factory=dict)
    item_activity: Mapping[str, float] = field(default_factory=dict)
    format_version: int = PROFILE_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the artifact's file and its metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataProfile:
        """The inverse of `to_dict`.

        Raises:
            DataError: a profile of another format version, or missing fields.
        """
        version = values.get("format_version")
        if version != PROFILE_FORMAT_VERSION:
            raise DataError(
                f"data profile format version {version!r} is not {PROFILE_FORMAT_VERSION}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{key: value for key, value in values.items() if key in names})
        except TypeError as error:
            raise DataError(f"data profile: {error}") from None

    def summary(self) -> str:
        """One line for the log."""
        return (
            f"{self.kind} ({self.kind_reason}); {self.n_users:,} users x {self.n_items:,} items, "
            f"{self.n_interactions:,} interactions (density {self.density:.2e}); values "
            f"{self.values.get('min', 0):g}..{self.values.get('max', 0):g} "
            f"(median {self.values.get('median', 0):g}); items with <= 2 interactions "
            f"{self.item_activity.get('share_at_most_2', 0):.0%}"
        )

    def to_html(self, chosen: Mapping[str, Any] | None = None) -> str:
        """An HTML page: the profile's tables (and the defaults chosen from it)."""

        def table(title: str, rows: Mapping[str, Any]) -> str:
            cells = "".join(
                f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                for k, v in rows.items()
            )
            return f"<h3>{html.escape(title)}</h3><table>{cells}</table>"

        sizes = {
            "kind": f"{self.kind} ({self.kind_reason})",
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "density": self.density,
        }
        parts = [
            "<html><body><h2>Data profile</h2>",
            table("sizes", sizes),
            table("values", self.values),
            table("interactions per user", self.user_activity),
            table("interactions per item", self.item_activity),
        ]
        if chosen:
            parts.append(table("defaults chosen from it", chosen))
        parts.append("</body></html>")
        return "".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def detect_kind(values: np.ndarray, *, has_values: bool = True, declared: str | None = None):
    """The feedback kind of the stored values, and why.

    Args:
        values: the training matrix's stored values.
        has_values: False when the source had no value column (every value is 1).
        declared: a kind the loader knows (an event log is "events"); used as given.

    Returns:
        (kind, reason).
    """
    if declared is not None:
        if declared not in FEEDBACK_KINDS:
            raise DataError(f"unknown feedback kind {declared!r}: one of {FEEDBACK_KINDS}")
        return declared, "declared by the data source"
    if not has_values:
        return "binary", "the data has no value column"
    if values.size == 0:
        return "binary", "no interactions"
    low, high = float(values.min()), float(values.max())
    if low == high:
        return "binary", f"every value is {low:g}"
    distinct = np.unique(values[:1_000_000]) if values.size > 1_000_000 else np.unique(values)
    on_half_grid = bool(np.all(np.abs(distinct * 2 - np.rint(distinct * 2)) < 1e-6))
    if distinct.size <= 21 and on_half_grid and low >= -10 and high <= 10:
        return "ratings", f"{distinct.size} distinct values from {low:g} to {high:g}: a scale"
    if low < 0:
        return "ratings", f"negative values (min {low:g}): scores, not counts"
    median = float(np.median(values))
    tail = float(np.percentile(values, 99)) / max(median, 1e-12)
    return "counts", f"non-negative values up to {high:g}, p99 / median = {tail:.3g}"


def profile_matrix(
    matrix: sp.spmatrix, *, has_values: bool = True, declared_kind: str | None = None
) -> DataProfile:
    """Profile a users x items training matrix (stored entries are the interactions).

    Args:
        matrix: the training interactions (values are ratings, counts or weights).
        has_values: False when the source had no value column.
        declared_kind: the kind the loader knows, if any (e.g. "events").

    Raises:
        DataError: not a 2-D sparse matrix.
    """
    if not sp.issparse(matrix) or len(matrix.shape) != 2:
        raise DataError("data profile: the training matrix must be a 2-D scipy.sparse matrix")
    csr = sp.csr_matrix(matrix)
    values = np.asarray(csr.data, dtype=np.float64)
    kind, reason = detect_kind(values, has_values=has_values, declared=declared_kind)
    n_users, n_items = csr.shape
    per_user = np.diff(csr.indptr)
    per_item = np.bincount(csr.indices, minlength=n_items)
    value_stats = _quantiles(values)
    value_stats["distinct"] = int(np.unique(values).size) if values.size else 0
    value_stats["integer"] = bool(values.size and np.all(values == np.rint(values)))
    item_stats = _quantiles(per_item.astype(np.float64))
    item_stats["share_at_most_2"] = float(np.mean(per_item <= 2)) if n_items else 0.0
    return DataProfile(
        kind=kind,
        kind_reason=reason,
        n_users=int(n_users),
        n_items=int(n_items),
        n_interactions=int(csr.nnz),
        density=float(csr.nnz / max(n_users * n_items, 1)),
        values=value_stats,
        user_activity=_quantiles(per_user.astype(np.float64)),
        item_activity=item_stats,
    )


def _confidence_scale(profile: DataProfile, weighting: str, epsilon: float) -> float:
    """The mean of f(r) / alpha over the training values, for `weighting`, from the profile's
    quantiles (a trapezoid over min, p25, median, p75, p90, p99, max: close enough for a
    default, and the profile need not keep every value)."""
    if weighting == "constant":
        return 1.0
    v = profile.values
    if weighting in ("linear", "proportional"):
        return max(float(v.get("mean", 1.0)), 1e-12)
    points = np.array([v["min"], v["p25"], v["median"], v["p75"], v["p90"], v["p99"], v["max"]])
    weights = np.array([0.0, 0.25, 0.25, 0.25, 0.15, 0.09, 0.01])
    mids = (points[:-1] + points[1:]) / 2
    return max(float(np.sum(weights[1:] * np.log1p(np.maximum(mids, 0) / epsilon))), 1e-12)


# The regularization shipped for MovieLens-100K (tuned on its validation split; 75,000
# training interactions in the default 75/25 split) and the one chosen on a held-out split of
# the synthetic MovieLens-20M shape (15 million): 30 and 300. A power law through both.
_REGULARIZATION_ANCHOR = (75_000, 30.0)
_REGULARIZATION_EXPONENT = 0.42
# Rule-chosen magnitudes are rounded to this series (per decade), so that nearby datasets get
# the same value and the choice reads as a setting, not a measurement.
_ROUND_SERIES = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0)


def round_to_series(value: float) -> float:
    """The nearest (in log scale) of 1, 1.5, 2, 3, 5, 7 times a power of ten."""
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"round_to_series needs a positive finite value, got {value!r}")
    decade = math.floor(math.log10(value))
    mantissa = value / 10**decade
    nearest = min(_ROUND_SERIES, key=lambda step: abs(math.log(mantissa / step)))
    return float(f"{nearest * 10**decade:.3g}")


def regularization_rule(n_interactions: int) -> float:
    """The L2 penalty for `n_interactions` training interactions, with confidences scaled to
    a mean of `TARGET_MEAN_CONFIDENCE` (so the penalty does not depend on the value scale).

    Each row's data term grows with its interactions and the factors' scale with the number of
    rows, so the penalty that balances them grows with the data, more slowly than linearly: a
    power law through the two sizes where it was tuned (30 at 7.5 * 10^4, 300 at 1.5 * 10^7),
    rounded to the 1-1.5-2-3-5-7 series and kept within 1 .. 3000.
    """
    size, penalty = _REGULARIZATION_ANCHOR
    value = penalty * (max(n_interactions, 1) / size) ** _REGULARIZATION_EXPONENT
    return round_to_series(min(max(value, 1.0), 3000.0))


def n_factors_rule(n_interactions: int) -> int:
    """16 * log10(n / 1000) rounded up to a multiple of 8, within 16..128: 24 at 2 * 10^4,
    32 from 3.2 * 10^4 to 10^5 interactions, 48 at 10^6, 72 at 1.5 * 10^7."""
    value = 16 * math.log10(max(n_interactions, 1) / 1000)
    return int(min(max(8 * math.ceil(value / 8 - 1e-9), 16), 128))


def default_wals_values(profile: DataProfile) -> dict[str, tuple[Any, str]]:
    """The rule-chosen WALS values for this profile: key -> (value, reason).

    Keys: observed_weighting, alpha, epsilon, regularization, n_factors, epochs. See the module
    docstring for the rules.
    """
    chosen: dict[str, tuple[Any, str]] = {}
    kind = profile.kind
    if kind == "ratings":
        weighting, why = "linear", "ratings: confidence grows with the rating"
    elif kind == "binary":
        weighting, why = "constant", "binary feedback: every interaction counts the same"
    else:
        weighting, why = "log", f"{kind}: heavy-tailed values, confidence grows with log(value)"
    chosen["observed_weighting"] = (weighting, why)
    epsilon, why = 1.0, f"unused by the {weighting} weighting"
    if weighting == "log":
        epsilon = float(f"{max(profile.values.get('median', 1.0), 1e-6):.3g}")
        why = "the median value: a typical interaction gets log 2"
    chosen["epsilon"] = (epsilon, why)
    scale = _confidence_scale(profile, weighting, epsilon)
    chosen["alpha"] = (
        round_to_series(TARGET_MEAN_CONFIDENCE / scale),
        f"mean added confidence about {TARGET_MEAN_CONFIDENCE} (mean f(r)/alpha is {scale:.3g})",
    )
    if kind == "ratings":
        chosen["unobserved_weight"] = (1.0, "ratings: the value tuned on MovieLens-100K")
    else:
        chosen["unobserved_weight"] = (
            0.3,
            f"{kind}: an unobserved pair says less against implicit feedback (chosen on "
            "validation splits of synthetic counts, binary and event data)",
        )
    n = profile.n_interactions
    chosen["regularization"] = (
        regularization_rule(n),
        f"30 * ({n:,} / 75,000)^{_REGULARIZATION_EXPONENT}, rounded",
    )
    chosen["n_factors"] = (n_factors_rule(n), f"16 * log10({n:,} / 1000), up to a multiple of 8")
    epochs = 15 if n <= 10_000_000 else 10
    chosen["epochs"] = (epochs, "15, 10 above 10^7 interactions")
    return chosen


def resolve_auto(
    values: Mapping[str, Any], profile: DataProfile | None, *, section: str = "wals"
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """`values` with every `auto` of a key in `AUTO_KEYS` replaced by the rule's choice.

    Other keys keep their value, `auto` included (`wals.kernel: auto` means something else).

    Returns:
        (resolved values, {key: {"value", "reason"}} for every key a rule chose).

    Raises:
        ConfigError: `auto` values but no profile to choose them from.
    """
    from walsrec.errors import ConfigError

    autos = [key for key in AUTO_KEYS if values.get(key) == AUTO]
    if not autos:
        return dict(values), {}
    if profile is None:
        raise ConfigError(f"{section}: {', '.join(autos)} set to auto, but no data profile")
    rules = default_wals_values(profile)
    resolved = dict(values)
    chosen = {}
    for key in autos:
        value, reason = rules[key]
        resolved[key] = value
        chosen[key] = {"value": value, "reason": reason}
    return resolved, chosen


def profile_dataset(dataset: Any) -> DataProfile:
    """The profile of a `walsrec.data.Dataset`'s training part (what the model is fitted on).

    The kind is the loader's when it knows it (`dataset.stats["feedback_kind"]`, e.g. an
    event log), else detected from the values.
    """
    return profile_matrix(
        dataset.train,
        has_values=bool(dataset.has_ratings),
        declared_kind=dataset.stats.get("feedback_kind"),
    )
