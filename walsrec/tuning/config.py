"""The `tuning:` section, `TuningConfig`, its search space and `split_params` (a trial's
parameters as WALS, blend and bayes configs), without TensorFlow or Optuna.

It imports neither the study, the objective nor the workers of `walsrec.tuning`, so that the
command checks a config's `tuning:` values when it starts, before any data is read or TensorFlow
imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from walsrec.config import _Section, config_error
from walsrec.errors import ConfigError
from walsrec.evaluation.metrics import RANKING_METRICS
from walsrec.models.bayes import BayesConfig
from walsrec.models.ensemble import BlendConfig
from walsrec.models.wals_config import WALSConfig
from walsrec.profile import FEEDBACK_KINDS, DataProfile, resolve_auto

__all__ = [
    "BAYES_KEYS",
    "BLEND_KEYS",
    "PARAMETER_TYPES",
    "RATING_OBJECTIVES",
    "WALS_KEYS",
    "ParameterSpec",
    "SearchSpace",
    "TuningConfig",
    "base_values",
    "metric_k",
    "report_interval",
    "split_params",
]

RATING_OBJECTIVES = ("rmse", "mae")
WALS_KEYS = tuple(WALSConfig.model_fields)
BLEND_KEYS = tuple(BlendConfig.model_fields)
BAYES_KEYS = tuple(BayesConfig.model_fields)
ParameterType = Literal["int", "float", "categorical"]
PARAMETER_TYPES = get_args(ParameterType)
FeedbackKind = Literal["ratings", "counts", "binary", "events"]  # walsrec.profile.FEEDBACK_KINDS
OBJECTIVE_EXAMPLES = [f"{m}@10" for m in RANKING_METRICS if m != "coverage"] + list(
    RATING_OBJECTIVES
)


# --------------------------------------------------------------------------------------------
# Search space and configuration
# --------------------------------------------------------------------------------------------


class ParameterSpec(BaseModel):
    """One tuned parameter: an int or float range (optionally log-scaled), or choices.

    Built from the config by `from_dict`, which checks the rules between its keys; the model
    itself holds the types (strict and frozen, like every section). Int bounds stay ints (and
    relative ones floats), so a study's derived name is the same as when this was a dataclass.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    name: str
    type: ParameterType
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: tuple = ()
    relative: bool = False
    kinds: tuple[FeedbackKind, ...] = ()

    @classmethod
    def from_dict(cls, name: str, values: Mapping[str, Any]) -> ParameterSpec:
        """Build from `{type, low, high, log, step, relative, kinds}` or `{type: categorical,
        choices, kinds}`.

        `relative: true` makes low and high multiples of the parameter's base value (the
        rule-chosen default when the base is `auto`), fixed by `SearchSpace.fitted`; `kinds`
        limits the parameter to data of those feedback kinds (walsrec.profile.FEEDBACK_KINDS).
        """
        where = f"tuning.search_space.{name}"
        allowed = {"type", "low", "high", "log", "step", "choices", "relative", "kinds"}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        kinds = values.get("kinds") or ()
        if isinstance(kinds, str):
            kinds = (kinds,)
        bad_kinds = sorted(set(kinds) - set(FEEDBACK_KINDS))
        if bad_kinds:
            raise ConfigError(
                f"{where}.kinds: {', '.join(map(str, bad_kinds))} is not a feedback kind "
                f"({', '.join(FEEDBACK_KINDS)})"
            )
        kinds = tuple(kinds)
        kind = values.get("type") or ("categorical" if "choices" in values else "float")
        if kind not in PARAMETER_TYPES:
            raise ConfigError(f"{where}.type must be one of {', '.join(PARAMETER_TYPES)}")
        if kind == "categorical":
            choices = values.get("choices")
            if not isinstance(choices, list | tuple) or not choices:
                raise ConfigError(f"{where}.choices must be a non-empty list")
            if values.get("relative"):
                raise ConfigError(f"{where}: choices can't be relative")
            return cls(name=name, type=kind, choices=tuple(choices), kinds=kinds)
        low, high = values.get("low"), values.get("high")
        for key, bound in (("low", low), ("high", high)):
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise ConfigError(f"{where}.{key} must be a number, got {bound!r}")
        if low > high:
            raise ConfigError(f"{where}: low {low} is above high {high}")
        log = bool(values.get("log", False))
        if log and low <= 0:
            raise ConfigError(f"{where}: a log scale needs low > 0, got {low}")
        step = values.get("step")
        if step is not None and log:
            raise ConfigError(f"{where}: step and log can't be combined")
        relative = bool(values.get("relative", False))
        if relative and low <= 0:
            raise ConfigError(f"{where}: relative bounds are factors > 0, got low {low}")
        if kind == "int" and not relative:
            low, high = int(low), int(high)
        else:
            low, high = float(low), float(high)
        if step:
            step = int(step) if kind == "int" else float(step)
        return cls(
            name=name,
            type=kind,
            low=low,
            high=high,
            log=log,
            step=step or None,
            relative=relative,
            kinds=kinds,
        )

    def describe(self) -> str:
        """One line: "n_factors: int 16..96 step 8", "alpha: float 0.2..5 log"."""
        if self.type == "categorical":
            return f"{self.name}: one of {', '.join(map(str, self.choices))}"
        text = f"{self.name}: {self.type} {self.low:g}..{self.high:g}"
        text += " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return text + (" (x base)" if self.relative else "")

    def fitted(self, base: Any) -> ParameterSpec:
        """This spec with relative bounds turned into absolute ones around `base`.

        Int bounds are rounded to the step (and kept >= one step); floats to 6 significant
        digits, so that 30 * 0.1 is 3.0.

        Raises:
            ConfigError: a relative spec whose base value is not a positive number.
        """
        if not self.relative:
            return self
        where = f"tuning.search_space.{self.name}"
        if isinstance(base, bool) or not isinstance(base, int | float) or not base > 0:
            raise ConfigError(f"{where} is relative, but its base value is {base!r}")
        low, high = self.low * base, self.high * base
        if self.type == "int":
            step = int(self.step or 1)
            low = max(step, int(round(low / step)) * step)
            high = max(low, int(round(high / step)) * step)
        else:
            low, high = float(f"{low:.6g}"), float(f"{high:.6g}")
        return self.model_copy(update={"low": low, "high": high, "relative": False})

    def snapped(self, value: Any) -> Any:
        """`value` moved into this parameter's domain (clipped, on the step grid), or None when
        it can't be (not a number, or not one of the choices)."""
        if self.type == "categorical":
            return value if value in self.choices else None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return None
        value = min(max(value, self.low), self.high)
        if self.step:
            value = self.low + round((value - self.low) / self.step) * self.step
            value = min(value, self.high)
        return int(round(value)) if self.type == "int" else float(value)

    def suggest(self, trial: Any) -> Any:
        """Sample this parameter from an Optuna trial."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


class SearchSpace(BaseModel):
    """`tuning.search_space`: tuned parameters (WALS, blend and bayes keys), and values fixed
    for every trial. Built from the config's mapping by `from_dict`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    parameters: tuple[ParameterSpec, ...] = ()
    fixed: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> SearchSpace:
        """Each key is a WALS, blend or bayes key: a mapping is a range or choices, a scalar is
        fixed.

        Raises:
            ConfigError: an unknown key or an invalid range.
        """
        if values is None:
            return cls()
        if not isinstance(values, Mapping):
            raise ConfigError("tuning.search_space must be a mapping of parameter -> range")
        parameters, fixed = [], {}
        for name, spec in values.items():
            if name not in WALS_KEYS + BLEND_KEYS + BAYES_KEYS:
                raise ConfigError(
                    f"tuning.search_space.{name} is neither a WALS key ({', '.join(WALS_KEYS)}), "
                    f"a blend key ({', '.join(BLEND_KEYS)}) nor a bayes key "
                    f"({', '.join(BAYES_KEYS)})"
                )
            if isinstance(spec, Mapping):
                parameters.append(ParameterSpec.from_dict(name, spec))
            else:
                fixed[name] = spec
        return cls(parameters=tuple(parameters), fixed=fixed)

    def to_dict(self) -> dict[str, Any]:
        """The space as the config writes it, the inverse of `from_dict`: a mapping per tuned
        parameter (in order), then the fixed values."""
        values: dict[str, Any] = {}
        for parameter in self.parameters:
            if parameter.type == "categorical":
                spec: dict[str, Any] = {"type": "categorical", "choices": list(parameter.choices)}
            else:
                spec = {"type": parameter.type, "low": parameter.low, "high": parameter.high}
                spec["log"] = parameter.log
                if parameter.step is not None:
                    spec["step"] = parameter.step
                spec["relative"] = parameter.relative
            if parameter.kinds:
                spec["kinds"] = list(parameter.kinds)
            values[parameter.name] = spec
        return {**values, **self.fixed}

    def fitted(self, base: Mapping[str, Any], kind: str | None = None) -> SearchSpace:
        """The space for one dataset: relative ranges around the `base` values (with `auto`
        already resolved), and only the parameters that apply to data of feedback `kind`."""
        parameters = tuple(
            parameter.fitted(base.get(parameter.name))
            for parameter in self.parameters
            if kind is None or not parameter.kinds or kind in parameter.kinds
        )
        return self.model_copy(update={"parameters": parameters})

    def baseline(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """The base values (after `auto`) of the tuned parameters, each in its domain: the
        study's first trial, so the tuned result is never worse on validation than the
        defaults it started from. Parameters without a usable base value are left to the
        sampler."""
        values = {}
        for parameter in self.parameters:
            value = parameter.snapped(base.get(parameter.name))
            if value is not None:
                values[parameter.name] = value
        return values

    def sample(self, trial: Any) -> dict[str, Any]:
        """The fixed values plus one sample of every tuned parameter."""
        values = dict(self.fixed)
        for parameter in self.parameters:
            values[parameter.name] = parameter.suggest(trial)
        return values


class TuningConfig(_Section):
    """The `tuning:` section of a config.

    Attributes:
        search_space: what is tuned (see `SearchSpace`).
        objective: "ndcg@10" (or any ranking metric at k, maximized) or "rmse"/"mae"
            (minimized, rating prediction).
        n_trials: trials in the study, over all workers together.
        timeout: seconds after which a worker starts no new trial (None: no limit).
        n_workers: parallel tuning steps of the pipeline (one pod each on Kubeflow).
        study_name: None derives it from the config (so a rerun resumes the same study).
        storage: an SQLAlchemy URL or journal:///path; None: env var, else the SQLite default.
        sampler_seed, n_startup_trials, multivariate: the TPE sampler.
        pruning, pruner_startup_trials, pruner_warmup_epochs: the median pruner on the
            per-epoch validation metric (with `bayes:`, per posterior sample: the warm-up
            counts samples).
        report_every: epochs (posterior samples) between two reports of the validation metric
            to the pruner; each report is a write to the study's storage and a scoring of
            every validation user. "auto": `report_interval` of the data profile.
        max_validation_scores: when validation users x items exceeds it, the objective scores
            a seeded sample of max_validation_scores // n_items validation users (the same
            sample in every trial); None: every validation user.
        validation_folds: average the objective over this many validation splits (the
            configured one, then re-draws of the same size from train + validation).
        heartbeat_interval, grace_period: seconds; a RUNNING trial without a heartbeat for
            grace_period is failed and retried.
        progress: a progress bar over trials with the best value.
    """

    section: ClassVar[str] = "tuning"
    search_space: SearchSpace = SearchSpace()
    objective: str = "ndcg@10"
    n_trials: int = Field(default=50, ge=1)
    timeout: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    n_workers: int = Field(default=1, ge=1)
    study_name: str | None = None
    storage: str | None = None
    sampler_seed: int = 42
    n_startup_trials: int = Field(default=10, ge=0)
    multivariate: bool = True
    pruning: bool = True
    pruner_startup_trials: int = Field(default=5, ge=0)
    pruner_warmup_epochs: int = Field(default=3, ge=0)
    report_every: Literal["auto"] | Annotated[int, Field(ge=1)] = 1
    validation_folds: int = Field(default=1, ge=1)
    max_validation_scores: int | None = Field(default=250_000_000, ge=1)
    heartbeat_interval: int = Field(default=10, ge=1)
    grace_period: int = Field(default=30, ge=1)
    progress: bool = True

    @classmethod
    def from_dict(cls, values: Any, path: str | None = None) -> TuningConfig:
        """Build and validate from the `tuning:` section (or an instance, returned as is).

        Raises:
            ConfigError: an unknown key or an invalid value, naming it.
        """
        if isinstance(values, Mapping) and all(key in cls.model_fields for key in values):
            # Parsed here for its own messages (`tuning.search_space.alpha: ...`); an unknown
            # key is reported first, by `_Section.from_dict`.
            space = values.get("search_space")
            if not isinstance(space, SearchSpace):
                values = {**values, "search_space": SearchSpace.from_dict(space)}
        return super().from_dict(values, path)

    @field_validator("search_space", mode="before")
    @classmethod
    def _space_as_written(cls, space: Any) -> Any:
        # A step parameter comes back from ZenML as the mapping `_space_as_written_out` wrote.
        if space is None or isinstance(space, Mapping):
            try:
                return SearchSpace.from_dict(space)
            except ConfigError as exc:
                raise config_error(str(exc)) from None
        return space

    @field_serializer("search_space")
    def _space_as_written_out(self, space: SearchSpace) -> dict[str, Any]:
        # Stored (and shown) by ZenML the way the config writes it, not as parsed specs.
        return space.to_dict()

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, objective: str) -> str:
        try:
            metric_k(objective)
        except ConfigError:
            allowed = ", ".join(OBJECTIVE_EXAMPLES)
            raise config_error(
                f"{objective!r} is not a tuning objective; use one of {allowed}"
            ) from None
        return objective

    @model_validator(mode="after")
    def _heartbeat_before_grace(self) -> TuningConfig:
        if self.grace_period <= self.heartbeat_interval:
            raise config_error(
                f"grace_period ({self.grace_period}) must exceed heartbeat_interval "
                f"({self.heartbeat_interval}), or live trials would be failed"
            )
        return self

    @property
    def first_report_epoch(self) -> int:
        """The first epoch the pruner can act on: scoring earlier ones would be wasted."""
        return self.pruner_warmup_epochs if self.pruning else 1

    @property
    def direction(self) -> str:
        """'minimize' for rating errors, 'maximize' for ranking metrics."""
        return "minimize" if self.objective in RATING_OBJECTIVES else "maximize"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (used for the derived study name)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        parameters = []
        for parameter in self.search_space.parameters:
            spec = parameter.model_dump()
            # Left out at their defaults, so a study named before they existed still resumes.
            for key, default in (("relative", False), ("kinds", ())):
                if spec[key] == default:
                    del spec[key]
            parameters.append(spec)
        values["search_space"] = {
            "parameters": parameters,
            "fixed": dict(self.search_space.fixed),
        }
        return values

    def fitted(
        self,
        wals: Mapping[str, Any],
        profile: DataProfile | None,
        blend: Mapping[str, Any] | None = None,
        bayes: Mapping[str, Any] | None = None,
    ) -> tuple[TuningConfig, dict[str, Any], dict[str, dict[str, Any]]]:
        """This config for one dataset: `auto` base values chosen from its profile, relative
        ranges centred on them, parameters for other feedback kinds left out.

        Every step of a study calls this with the same inputs, so they all see one space.

        Returns:
            (the fitted config, the resolved base WALS values, the rule choices by key).
        """
        base, chosen = resolve_auto(wals, profile)
        space = self.search_space.fitted(
            base_values(base, blend, bayes), profile.kind if profile else None
        )
        report_every = self.report_every
        if report_every == "auto":
            report_every = report_interval(profile)
        fitted = self.model_copy(update={"search_space": space, "report_every": report_every})
        return fitted, base, chosen


def base_values(
    wals: Mapping[str, Any], blend: Mapping[str, Any] | None, bayes: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Every base value by key (WALS keys, `auto` resolved, over blend and bayes keys): what a
    relative range is a multiple of, and what `SearchSpace.baseline` starts the study with."""
    return {**(bayes or {}), **(blend or {}), **wals}


def report_interval(profile: DataProfile | None) -> int:
    """Epochs between two reports to the pruner for `report_every: auto`.

    Each report scores every validation user against every item: 1 up to 10^7 users x items
    (MovieLens-100K has 1.5 * 10^6), 2 up to 10^8, 3 above, so that validation does not cost
    several times the training on long-tail catalogues.
    """
    if profile is None:
        return 1
    cells = profile.n_users * profile.n_items
    return 1 if cells <= 10**7 else 2 if cells <= 10**8 else 3


def metric_k(objective: str) -> int | None:
    """k of a ranking objective like "ndcg@10", None for rmse/mae; ConfigError otherwise."""
    if objective in RATING_OBJECTIVES:
        return None
    name, _, k = str(objective).partition("@")
    if name not in RANKING_METRICS or name == "coverage" or not k.isdigit() or int(k) < 1:
        allowed = ", ".join(OBJECTIVE_EXAMPLES)
        raise ConfigError(f"tuning.objective {objective!r} must be one of {allowed}")
    return int(k)


def split_params(
    params: Mapping[str, Any],
    base_wals: Mapping[str, Any],
    base_blend: Mapping[str, Any] | None,
    base_bayes: Mapping[str, Any] | None = None,
) -> tuple[WALSConfig, BlendConfig, BayesConfig]:
    """The WALS, blend and bayes configs of a set of params over the base values.

    Raises:
        ConfigError: an invalid value, or posterior averaging of a WALS config that is not a
            rating model (see `BayesConfig.check_model`).
    """
    wals = {**base_wals, **{k: v for k, v in params.items() if k in WALS_KEYS}}
    blend = {**(base_blend or {}), **{k: v for k, v in params.items() if k in BLEND_KEYS}}
    bayes = {**(base_bayes or {}), **{k: v for k, v in params.items() if k in BAYES_KEYS}}
    wals_config, bayes_config = WALSConfig.from_dict(wals), BayesConfig.from_dict(bayes)
    bayes_config.check_model(wals_config)
    return wals_config, BlendConfig.from_dict(blend), bayes_config
