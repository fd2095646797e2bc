"""The sections of a pipeline config, their keys, and the check run before anything starts.

Every section of a config's `parameters:` is read by one strict pydantic model, a `_Section`
(`wals:` by `walsrec.models.wals_config.WALSConfig`, `promotion:` by `PromotionConfig` below, ...);
its keys are that model's fields. `check_parameters` rejects any other key, in every section,
with its path and the nearest valid name, then checks every section's values with its model
(`check_values`; none of the models' modules imports TensorFlow or ZenML), before data is read. It
reads the field names from the classes' source code rather than importing them (importing
`walsrec.models.wals` starts TensorFlow), so the keys it accepts are exactly the ones the code
reads: a field added or renamed there is known here at once (tests/cli/test_config_check.py holds
the two equal).
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from walsrec.errors import ConfigError


class _Section(BaseModel):
    """A config section as a pydantic model: typed values, no unknown keys, immutable.

    A pipeline passes its section to a step as a plain mapping; a step parameter annotated with
    one of these classes is stored by ZenML as the model's values (defaults included, shown on
    the step's page) and handed to the step as the model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    section: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, values: Any) -> Any:
        # Strict mode refuses numpy's integers for int fields (and would keep a numpy float):
        # values computed by code (profile rules, Optuna, tests) become the Python numbers YAML
        # gives, so that the stored config is the same JSON either way.
        if isinstance(values, Mapping):
            return {
                key: value.item() if _is_numpy_scalar(value) else value
                for key, value in values.items()
            }
        return values

    @classmethod
    def from_dict(cls, values: Any, path: str | None = None) -> Any:
        """Build from the section's mapping (or an instance, returned as is).

        Args:
            values: the section's mapping, None (every default) or an instance.
            path: how messages name the section (default: its name, e.g. "promotion").

        Raises:
            ConfigError: a non-mapping, an unknown key (its path and the nearest valid name) or
                an invalid value (its path, what is expected, what was given).
        """
        path = path or cls.section
        if isinstance(values, cls):
            return values
        if values is None:
            return cls()
        if not isinstance(values, Mapping):
            raise ConfigError(f"{path} must be a mapping of key -> value, got {values!r}")
        names = list(cls.model_fields)
        for key in values:  # an unknown key first, before any value is judged
            if key not in names:
                raise ConfigError(unknown_key_message(f"{path}.{key}", names))
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise _config_error_from(exc, path) from None

    def to_dict(self) -> dict[str, Any]:
        """The section as a plain dict (JSON- and YAML-able), the inverse of `from_dict`."""
        return self.model_dump()


def _config_error_from(exc: ValidationError, path: str) -> ConfigError:
    """The first error of `exc` as one line: its key's path, what is expected, what was given."""
    errors = exc.errors()
    error = errors[0]
    where = ".".join([path, *(str(part) for part in error["loc"])])
    alike = [other for other in errors if other["loc"][:1] == error["loc"][:1]]
    if len(alike) > 1 and error["loc"]:  # a union (`auto` or a number): every alternative
        where = f"{path}.{error['loc'][0]}"
        prefix = "Input should be "
        wanted = [other["msg"].removeprefix(prefix) for other in alike]
        return ConfigError(f"{where}: {prefix}{' or '.join(wanted)}, got {error['input']!r}")
    if error["type"] == CONFIG_ERROR:  # a rule over several keys: its own message
        return ConfigError(f"{where}: {error['msg']}")
    return ConfigError(f"{where}: {error['msg']}, got {error['input']!r}")


def _is_numpy_scalar(value: Any) -> bool:
    # Told by the type's module rather than isinstance: the check runs before numpy is needed.
    return type(value).__module__ == "numpy" and hasattr(value, "item")


CONFIG_ERROR = "walsrec_config"
"""The pydantic error type of `config_error`: `_Section.from_dict` shows its message as is."""


def config_error(message: str) -> PydanticCustomError:
    """An error for a model validator to raise: a rule over several keys, said in full."""
    return PydanticCustomError(CONFIG_ERROR, message)


class DataConfig(_Section):
    """The `data:` section: where the interactions come from and how files are read.

    Attributes:
        source: a MovieLens variant name, a folder holding one, or an interactions file.
        test_path: a separate test file (`split.method: file`).
        format: "auto" (by extension), "csv", "tsv", "dat" or "parquet".
        header: None detects a header line; true or false forces it.
        columns: column names (the keys of `walsrec.data.ColumnSpec`).
        strict: fail on the first bad row instead of skipping and counting it.
        rating_min, rating_max: inclusive bounds; rows outside are rejected.
        download: false never reaches the network (cache or local copies only).
        events: event-log options (the keys of `walsrec.data.EventOptions`).
        cache_dir: where downloads and archives go (default $WALSREC_CACHE_DIR or ~/.cache/walsrec).
    """

    section: ClassVar[str] = "data"
    source: str = "ml-100k"
    test_path: str | None = None
    format: Literal["auto", "csv", "tsv", "dat", "parquet"] = "auto"
    header: bool | None = None
    columns: dict[str, Any] | None = Field(default_factory=dict)
    strict: bool = False
    rating_min: float | None = None
    rating_max: float | None = None
    download: bool = True
    events: dict[str, Any] | None = Field(default_factory=dict)
    cache_dir: str | None = None


class EvaluationConfig(_Section):
    """The `evaluation:` section.

    Attributes:
        k: the ranking cut-off of every metric.
        validation_every_epoch: score the validation part after each epoch (learning curve).
        progress: a progress bar over epochs (shown only on a terminal).
        max_users: rank at most this many test users, a seeded uniform sample (the metrics'
            `n_users_evaluated` says how many were); null: every test user.
    """

    section: ClassVar[str] = "evaluation"
    k: int = Field(default=10, ge=1)
    validation_every_epoch: bool = True
    progress: bool = True
    max_users: int | None = Field(default=None, ge=1)


class PromotionConfig(_Section):
    """The `promotion:` section.

    Attributes:
        metric: the metric a new version must win on (e.g. "ndcg@10", "rmse"); checked at the
            command's start against the metrics the evaluation computes (`check_parameters`).
        min_improvement: by how much it must beat the production version.
    """

    section: ClassVar[str] = "promotion"
    metric: str = "ndcg@10"
    min_improvement: float = 0.0


class OutputConfig(_Section):
    """The `output:` section: what a run writes besides its artifacts.

    Attributes:
        topk_path: every user's (or `users_path`'s users') top-k, CSV or Parquet.
        predictions_path: a prediction for every test pair (tuning) or every `pairs_path` pair.
        users_path: batch inference: the users to recommend for.
        pairs_path: batch inference: (user, item) pairs to score.
        k: items per user.
        exclude_seen: leave out the items a user had in training.
        chunk_users: users whose top-k is computed and written at once (one Parquet row group
            or CSV block): bounds the memory of writing top-k, whatever the number of users.
    """

    section: ClassVar[str] = "output"
    topk_path: str | None = None
    predictions_path: str | None = None
    users_path: str | None = None
    pairs_path: str | None = None
    k: int = Field(default=10, ge=1)
    exclude_seen: bool = True
    chunk_users: int = Field(default=65536, ge=1)


class BentoConfig(_Section):
    """The `bento:` section of the deployment config.

    Attributes:
        bento_model_name: the BentoML model the service serves.
        build: also build a Bento (false: only the model store, enough for `run.py serve`).
        item_metadata: a catalogue table (CSV/TSV/Parquet, an `item_id` column) packaged with
            the model; the service filters recommendations on its columns (`where`).
    """

    section: ClassVar[str] = "bento"
    bento_model_name: str = "walsrec"
    build: bool = True
    item_metadata: str | None = None


class ContinuousConfig(_Section):
    """The `continuous:` section of the continuous-training config.

    Attributes:
        tune: this run tunes (Optuna study, then retrain) instead of training with the config.
        tune_every: with `run.py continuous --every`, every N-th run tunes (0: never).
        tune_validation_ratio: the validation part carved from training when tuning.
        cron: the Kubeflow schedule of training runs (`--stack kubeflow`).
        tune_cron: the Kubeflow schedule of tuning runs (`--stack kubeflow --tune`).
        export: keep the built Bento as an archive artifact (`bentoml export`) in the stack's
            artifact store, where `run.py serve --model-version` finds it.
    """

    section: ClassVar[str] = "continuous"
    tune: bool = False
    tune_every: int = Field(default=0, ge=0)
    tune_validation_ratio: float = Field(default=0.2, gt=0.0, lt=1.0)
    cron: str | None = "0 2 * * *"
    tune_cron: str | None = "0 3 * * 0"
    export: bool = True


# --------------------------------------------------------------------------------------------
# Which class reads which section
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """A config section: the dataclass whose fields are its keys, and its nested sections."""

    module: str
    class_name: str
    subsections: Mapping[str, Section | SearchSpaceSection | MappingOf] = field(
        default_factory=dict
    )
    not_keys: tuple[str, ...] = ()

    def key_names(self) -> tuple[str, ...]:
        names = class_field_names(self.module, self.class_name)
        return tuple(name for name in names if name not in self.not_keys)

    def check(self, path: str, values: Any) -> None:
        """Raise ConfigError for the first key of `values` (at `path`) this section lacks."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{path} must be a mapping of key -> value, got {values!r}")
        keys = self.key_names()
        for key, value in values.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in keys:
                raise ConfigError(unknown_key_message(where, keys))
            if key in self.subsections and value is not None:
                self.subsections[key].check(where, value)


@dataclass(frozen=True)
class MappingOf:
    """A mapping of free names (e.g. a run config's `steps:`) whose values are `section`s."""

    section: Section

    def check(self, path: str, values: Any) -> None:
        if not isinstance(values, Mapping):
            raise ConfigError(f"{path} must be a mapping, got {values!r}")
        for name, value in values.items():
            if value is not None:
                self.section.check(f"{path}.{name}", value)


@dataclass(frozen=True)
class SearchSpaceSection:
    """`tuning.search_space`: each key a key of `targets`; a mapping value is a range or
    choices with the keys of `spec` (walsrec.tuning.config.ParameterSpec), a scalar a fixed
    value."""

    targets: tuple[str, ...]
    spec: Section

    def check(self, path: str, values: Any) -> None:
        if not isinstance(values, Mapping):
            raise ConfigError(f"{path} must be a mapping of parameter -> range, got {values!r}")
        targets = [key for name in self.targets for key in SECTIONS[name].key_names()]
        for name, spec in values.items():
            if name not in targets:
                raise ConfigError(unknown_key_message(f"{path}.{name}", targets))
            if isinstance(spec, Mapping):
                self.spec.check(f"{path}.{name}", spec)


SECTIONS: dict[str, Section] = {
    "data": Section(
        "walsrec.config",
        "DataConfig",
        {
            "columns": Section("walsrec.data.readers", "ColumnSpec"),
            "events": Section("walsrec.data.events", "EventOptions"),
        },
    ),
    "preprocess": Section("walsrec.data.splits", "PreprocessConfig"),
    "split": Section("walsrec.data.splits", "SplitConfig"),
    "wals": Section("walsrec.models.wals_config", "WALSConfig"),
    "bayes": Section("walsrec.models.bayes", "BayesConfig"),
    "blend": Section("walsrec.models.ensemble", "BlendConfig"),
    "tuning": Section(
        "walsrec.tuning.config",
        "TuningConfig",
        {
            "search_space": SearchSpaceSection(
                ("wals", "blend", "bayes"),
                Section("walsrec.tuning.config", "ParameterSpec", not_keys=("name",)),
            )
        },
    ),
    "evaluation": Section("walsrec.config", "EvaluationConfig"),
    "promotion": Section("walsrec.config", "PromotionConfig"),
    "output": Section("walsrec.config", "OutputConfig"),
    "bento": Section("walsrec.config", "BentoConfig"),
    "continuous": Section("walsrec.config", "ContinuousConfig"),
}


def unknown_key_message(path: str, valid: list[str] | tuple[str, ...]) -> str:
    """ "promotion.metrc: unknown key; did you mean metric? (valid: metric, min_improvement)"."""
    key = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{path}: unknown key{hint} (valid: {', '.join(valid)})"


def check_parameters(parameters: Mapping[str, Any], pipeline: tuple[str, str]) -> None:
    """Check a config's `parameters:` against a pipeline's arguments and every section's keys.

    Only names are checked here: values are checked by the classes that read them.

    Args:
        parameters: the `parameters:` mapping of a run config.
        pipeline: (module, function) of the pipeline, e.g. ("pipelines.training",
            "training_pipeline"); its arguments are the valid top-level names.

    Raises:
        ConfigError: the first unknown key (its path, the nearest valid name), a section that
            is not a mapping, or a missing argument.
    """
    arguments = function_arguments(*pipeline)
    for name, value in parameters.items():
        if name not in arguments:
            raise ConfigError(unknown_key_message(f"parameters.{name}", list(arguments)))
        optional = arguments[name]
        if name in SECTIONS and not (value is None and optional):
            SECTIONS[name].check(f"parameters.{name}", value)
    missing = [name for name, optional in arguments.items() if not optional]
    missing = [name for name in missing if name not in parameters]
    if missing:
        raise ConfigError(f"parameters: {', '.join(missing)} missing (needed by {pipeline[1]})")
    check_values(parameters)


def typed_sections() -> dict[str, type[_Section]]:
    """The sections read by a pydantic model, by name (`tuning:` aside: `check_values` checks
    it with its search space): their values are checked at the command's start (their modules
    import neither TensorFlow nor ZenML)."""
    from walsrec.data.splits import PreprocessConfig, SplitConfig
    from walsrec.models.bayes import BayesConfig
    from walsrec.models.ensemble import BlendConfig

    return {
        "data": DataConfig,
        "preprocess": PreprocessConfig,
        "split": SplitConfig,
        "bayes": BayesConfig,
        "blend": BlendConfig,
        "evaluation": EvaluationConfig,
        "promotion": PromotionConfig,
        "output": OutputConfig,
        "bento": BentoConfig,
        "continuous": ContinuousConfig,
    }


def check_values(parameters: Mapping[str, Any]) -> None:
    """Check the values of the sections that can be checked without TensorFlow or the data.

    The typed sections above, `wals:` (a value may be `auto` where the data profile can choose
    it; the rules over several keys are checked among the values not left to `auto`), and
    `promotion.metric` against the metrics the evaluation computes at `evaluation.k`.

    Raises:
        ConfigError: the first invalid value, with its path.
    """
    for name, cls in typed_sections().items():
        if parameters.get(name) is not None:
            cls.from_dict(parameters[name], f"parameters.{name}")
    from walsrec.evaluation.metrics import RANKING_METRICS

    if parameters.get("wals") is not None:
        from walsrec.models.wals_config import WALSConfig, WALSParameters
        from walsrec.profile import AUTO, AUTO_KEYS

        WALSParameters.from_dict(parameters["wals"], "parameters.wals")
        given = {
            key: value
            for key, value in parameters["wals"].items()
            if not (key in AUTO_KEYS and value == AUTO)
        }
        WALSConfig.from_dict(given, "parameters.wals")  # the rules over several keys
    if parameters.get("tuning") is not None:
        from walsrec.tuning.config import TuningConfig

        try:
            TuningConfig.from_dict(parameters["tuning"], "parameters.tuning")
        except ConfigError as exc:  # the search space's messages start at `tuning.`
            message = str(exc)
            if not message.startswith("parameters."):
                message = f"parameters.{message}"
            raise ConfigError(message) from None
    if parameters.get("promotion") is not None and "evaluation" in parameters:
        metric = PromotionConfig.from_dict(parameters["promotion"]).metric
        k = EvaluationConfig.from_dict(parameters["evaluation"]).k
        computed = [f"{name}@{k}" for name in RANKING_METRICS] + ["rmse", "mae"]
        if metric not in computed:
            close = difflib.get_close_matches(metric, computed, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(
                f"parameters.promotion.metric: {metric!r} is not a metric the evaluation computes "
                f"(evaluation.k is {k}){hint} (valid: {', '.join(computed)})"
            )


# --------------------------------------------------------------------------------------------
# Names read from source code
# --------------------------------------------------------------------------------------------


def _module_file(module: str) -> Path:
    """The source file of `module`, found without importing it or its parent packages."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        raise ConfigError(f"module {top} not found")
    path = Path(spec.origin)
    if not rest:
        return path
    folder = path.parent.joinpath(*rest)
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


@functools.cache
def _definitions(module: str) -> dict[str, ast.AST]:
    tree = ast.parse(_module_file(module).read_text(encoding="utf-8"))
    return {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    }


def class_field_names(module: str, class_name: str) -> tuple[str, ...]:
    """The fields of the dataclass (or pydantic model) `module.class_name`, in order, read from
    its source: annotated names of its body, but class variables and private attributes."""
    node = _definitions(module)[class_name]
    return tuple(
        statement.target.id
        for statement in node.body
        if isinstance(statement, ast.AnnAssign)
        and isinstance(statement.target, ast.Name)
        and not statement.target.id.startswith("_")
        and "ClassVar" not in ast.unparse(statement.annotation)
    )


def function_arguments(module: str, function_name: str) -> dict[str, bool]:
    """The arguments of `module.function_name` -> whether each has a default, from its source."""
    args = _definitions(module)[function_name].args
    positional = args.posonlyargs + args.args
    with_default = {arg.arg for arg in positional[len(positional) - len(args.defaults) :]}
    keyword_defaults = zip(args.kwonlyargs, args.kw_defaults, strict=True)
    with_default |= {arg.arg for arg, default in keyword_defaults if default is not None}
    return {arg.arg: arg.arg in with_default for arg in positional + args.kwonlyargs}
