"""The command line's configs: which pipeline and YAML each command runs, the options written
into the YAML, and every check made before a run starts (keys, values, local paths)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import click
import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent


CONFIGS = PROJECT_ROOT / "configs"


# The pipeline of each command, as (module, function): its arguments are the config's sections.
PIPELINES = {
    "train": ("pipelines.training", "training_pipeline"),
    "batch": ("pipelines.batch_inference", "batch_inference_pipeline"),
    "tune": ("pipelines.tuning", "tuning_pipeline"),
    "deploy": ("pipelines.deployment", "deployment_pipeline"),
    "continuous": ("pipelines.continuous_training", "continuous_training_pipeline"),
}


DEFAULT_CONFIGS = {
    "train": CONFIGS / "train.yaml",
    "batch": CONFIGS / "batch_inference.yaml",
    "tune": CONFIGS / "tune.yaml",
    "deploy": CONFIGS / "deployment.yaml",
    "continuous": CONFIGS / "continuous_training.yaml",
}


class UserError(click.ClickException):
    """An error shown as one clear line, without a stack trace."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def load_config(path: Path) -> dict:
    """Read a pipeline config (ZenML run-config YAML)."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except FileNotFoundError as exc:
        raise UserError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(config.get("parameters"), dict):
        raise UserError(f"config file {path}: needs a `parameters:` mapping")
    return config


def _path(value: str | None) -> str | None:
    """Absolute path for a local file or folder; other sources (ml-100k, s3://...) as given."""
    if value is None:
        return None
    if "://" in value or not Path(value).expanduser().exists():
        return value
    return str(Path(value).expanduser().resolve())


def _output_path(value: str | None) -> str | None:
    if value is None or "://" in value:
        return value
    path = Path(value).expanduser().resolve()
    if not path.parent.is_dir():
        raise UserError(f"cannot write {value}: folder {path.parent} does not exist")
    return str(path)


def apply_overrides(config: dict, options: dict) -> dict:
    """The config with the command-line options written into its `parameters:`."""
    config = copy.deepcopy(config)
    params = config["parameters"]

    def section(name: str) -> dict:
        # Created only when an option writes into it: a pipeline's parameters are validated
        # strictly, and the deployment pipeline takes no `data` or `output`.
        return params.setdefault(name, {})

    if options.get("data"):
        section("data")["source"] = _path(options["data"])
    if options.get("test_data"):
        section("data")["test_path"] = _path(options["test_data"])
        section("split")["method"] = "file"
    if options.get("topk_output"):
        section("output")["topk_path"] = _output_path(options["topk_output"])
    if options.get("predictions_output"):
        section("output")["predictions_path"] = _output_path(options["predictions_output"])
    if options.get("users"):
        section("output")["users_path"] = _path(options["users"])
    if options.get("pairs"):
        section("output")["pairs_path"] = _path(options["pairs"])
    if options.get("k"):
        section("output")["k"] = options["k"]
    if options.get("model_version"):
        params["version"] = options["model_version"]
    if options.get("no_cache"):
        config["enable_cache"] = False
    return config


def check_local_paths(config: dict, options: dict) -> None:
    """Fail before anything runs when a local input the run would read does not exist.

    Raises:
        UserError: naming the option (or config key) and the path.
    """
    from walsrec.data import check_source
    from walsrec.errors import DataError

    params = config["parameters"]
    data, output = params.get("data") or {}, params.get("output") or {}
    sources = [("data", "data.source", data.get("source"))] if "source" in data else []
    sources.append(("test_data", "data.test_path", data.get("test_path")))
    sources.append(("pairs", "output.pairs_path", output.get("pairs_path")))
    for option, key, value in sources:
        if value is None or "://" in str(value):
            continue
        try:
            check_source(str(value))
        except DataError as exc:
            where = f"--{option.replace('_', '-')}" if options.get(option) else key
            raise UserError(f"{where}: {exc}") from exc
    users = output.get("users_path")
    if users is not None and not Path(users).expanduser().is_file():
        where = "--users" if options.get("users") else "output.users_path"
        raise UserError(f"{where}: {users} is not a file")


def run_config_section() -> Any:
    """The keys of a run config outside `parameters:`, as ZenML reads them: it ignores unknown
    ones without a word (`enable_cahce: false` would cache)."""
    from walsrec.config import MappingOf, Section

    step = Section("zenml.config.step_configurations", "StepConfigurationUpdate")
    return Section(
        "zenml.config.pipeline_run_configuration",
        "PipelineRunConfiguration",
        {"model": Section("zenml.model.model", "Model"), "steps": MappingOf(step)},
    )


def prepare_config(command: str, options: dict) -> dict:
    """The run configuration of `command`: its config file with the options written into it,
    every key and local path checked, all before ZenML or TensorFlow is imported."""
    from walsrec.config import check_parameters
    from walsrec.errors import ConfigError

    path = Path(options.get("config_path") or DEFAULT_CONFIGS[command])
    config = apply_overrides(load_config(path), options)
    try:
        run_config_section().check("", config)
        check_parameters(config["parameters"], PIPELINES[command])
    except ConfigError as exc:
        raise UserError(f"config file {path}: {exc}") from exc
    check_local_paths(config, options)
    return config


def default_model_name() -> str:
    return load_config(DEFAULT_CONFIGS["train"]).get("model", {}).get("name", "walsrec")
