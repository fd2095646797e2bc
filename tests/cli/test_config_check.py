"""Every key of every config section is checked when the command starts, before data is read."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import run
from cli.configs import run_config_section
from tests.cli.conftest import probe_cli
from walsrec.config import SECTIONS, SearchSpaceSection, Section, check_parameters

CONFIG_COMMANDS = {
    "train": "train",
    "train_large": "train",
    "tune": "tune",
    "tune_rating": "tune",
    "batch_inference": "batch",
    "deployment": "deploy",
}


def _sections() -> list[tuple[str, Section]]:
    found = []
    for name, section in SECTIONS.items():
        found.append((name, section))
        for key, child in section.subsections.items():
            found.append(
                (f"{name}.{key}", child.spec if isinstance(child, SearchSpaceSection) else child)
            )
    return found


@pytest.mark.parametrize(("path", "section"), _sections(), ids=[p for p, _ in _sections()])
def test_keys_read_from_source_are_the_class_fields(path: str, section: Section) -> None:
    """The check reads fields from source (no TensorFlow import); they must be the real ones."""
    cls = getattr(importlib.import_module(section.module), section.class_name)
    names = cls.model_fields if hasattr(cls, "model_fields") else dataclasses.fields(cls)
    names = [getattr(name, "name", name) for name in names]
    fields = [name for name in names if name not in section.not_keys]
    assert list(section.key_names()) == fields


def test_run_config_keys_read_from_source_are_zenmls() -> None:
    """ZenML ignores unknown keys of a run config, its `model:` and `steps.<name>:`; the check
    takes their valid names from ZenML's own classes."""
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.config.step_configurations import StepConfigurationUpdate
    from zenml.model.model import Model

    section = run_config_section()
    assert section.key_names() == tuple(PipelineRunConfiguration.model_fields)
    assert section.subsections["model"].key_names() == tuple(Model.model_fields)
    step = section.subsections["steps"].section
    assert step.key_names() == tuple(StepConfigurationUpdate.model_fields)


@pytest.mark.parametrize("command", sorted(run.PIPELINES))
def test_sections_are_the_pipelines_arguments(command: str) -> None:
    from walsrec.config import function_arguments

    module, name = run.PIPELINES[command]
    entrypoint = getattr(importlib.import_module(module), name).entrypoint
    signature = inspect.signature(entrypoint).parameters
    expected = {
        key: param.default is not inspect.Parameter.empty for key, param in signature.items()
    }
    assert function_arguments(module, name) == expected
    assert set(expected) - {"model_name", "version"} <= set(SECTIONS)


@pytest.mark.parametrize("config", sorted(CONFIG_COMMANDS))
def test_every_shipped_config_passes(config: str) -> None:
    content = run.load_config(run.CONFIGS / f"{config}.yaml")
    run_config_section().check("", content)
    check_parameters(content["parameters"], run.PIPELINES[CONFIG_COMMANDS[config]])


@pytest.mark.parametrize("overlay", sorted((run.CONFIGS / "kubeflow").glob("*.yaml")))
def test_every_kubeflow_overlay_passes(overlay: Path) -> None:
    run_config_section().check("", yaml.safe_load(overlay.read_text()))


# (config, path to the mistyped key, the typo, what the message must say)
TYPOS = [
    (
        "train",
        "promotion",
        "metrc",
        "parameters.promotion.metrc: unknown key; did you mean metric?",
    ),
    ("train", "split", "test_ration", "split.test_ration: unknown key; did you mean test_ratio?"),
    ("train", "data", "formt", "data.formt: unknown key; did you mean format?"),
    ("train", "data.columns", "usr", "data.columns.usr: unknown key; did you mean user?"),
    (
        "train",
        "data.events",
        "half_life",
        "events.half_life: unknown key; did you mean half_life_days?",
    ),
    ("train", "preprocess", "min_user_interaction", "did you mean min_user_interactions?"),
    ("train", "wals", "n_factor", "parameters.wals.n_factor: unknown key; did you mean n_factors?"),
    ("train", "evaluation", "kk", "parameters.evaluation.kk: unknown key; did you mean k?"),
    (
        "train",
        "output",
        "topk_pth",
        "parameters.output.topk_pth: unknown key; did you mean topk_path?",
    ),
    ("train", "", "promotoin", "parameters.promotoin: unknown key; did you mean promotion?"),
    (
        "tune",
        "blend",
        "item_item_weigth",
        "blend.item_item_weigth: unknown key; did you mean item_item_weight?",
    ),
    ("tune", "tuning", "n_trial", "parameters.tuning.n_trial: unknown key; did you mean n_trials?"),
    (
        "tune",
        "tuning.search_space",
        "alpah",
        "search_space.alpah: unknown key; did you mean alpha?",
    ),
    (
        "tune",
        "tuning.search_space.alpha",
        "hihg",
        "search_space.alpha.hihg: unknown key; did you mean high?",
    ),
    (
        "tune_rating",
        "bayes",
        "burnin",
        "parameters.bayes.burnin: unknown key; did you mean burn_in?",
    ),
    (
        "batch_inference",
        "output",
        "users_pth",
        "output.users_pth: unknown key; did you mean users_path?",
    ),
    ("deployment", "bento", "buidl", "parameters.bento.buidl: unknown key; did you mean build?"),
    ("deployment", "", "verison", "parameters.verison: unknown key; did you mean version?"),
    # Outside parameters: ZenML would ignore these without a word.
    ("train", "^", "enable_cahce", ": enable_cahce: unknown key; did you mean enable_cache?"),
    ("train", "^model", "descripton", "model.descripton: unknown key; did you mean description?"),
    ("train", "^steps.data_loader", "enable_cach", "steps.data_loader.enable_cach: unknown key"),
]


def _config_with_typo(tmp_path: Path, config: str, path: str, typo: str) -> Path:
    content = yaml.safe_load((run.CONFIGS / f"{config}.yaml").read_text())
    section = content if path.startswith("^") else content["parameters"]
    for key in filter(None, path.lstrip("^").split(".")):
        section = section.setdefault(key, {})
    section[typo] = 1
    written = tmp_path / f"{config}.yaml"
    written.write_text(yaml.safe_dump(content, sort_keys=False))
    return written


@pytest.mark.parametrize(("config", "path", "typo", "message"), TYPOS, ids=[t[2] for t in TYPOS])
def test_a_typo_in_any_section_stops_the_command(
    captured: dict, tmp_path: Path, config: str, path: str, typo: str, message: str
) -> None:
    written = _config_with_typo(tmp_path, config, path, typo)
    command = CONFIG_COMMANDS[config]
    result = CliRunner().invoke(run.cli, [command, "--config", str(written)])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: config file {written}: ")
    assert message in result.output
    assert not captured, "nothing may run"


def test_a_typo_is_reported_before_data_tensorflow_or_zenml(tmp_path: Path) -> None:
    """Even with a data path that does not exist: the config is checked first, in a second."""
    written = _config_with_typo(tmp_path, "train", "promotion", "metrc")
    result = probe_cli("--config", str(written), "--data", str(tmp_path / "missing.csv"))
    assert result["exit_code"] == 1
    assert "promotion.metrc: unknown key; did you mean metric?" in result["output"]
    assert result["imported"] == []


# (config, section path, key, bad value, what the message must say)
BAD_VALUES = [
    ("train", "promotion", "metric", "rsme", "parameters.promotion.metric: 'rsme' is not a metric"),
    ("train", "promotion", "metric", "ndcg@5", "(evaluation.k is 10); did you mean ndcg@10?"),
    (
        "train",
        "split",
        "method",
        "tempral",
        "parameters.split.method: Input should be 'random', 'temporal' or 'file', got 'tempral'",
    ),
    (
        "train",
        "split",
        "test_ratio",
        2.0,
        "parameters.split.test_ratio: Input should be less than 1, got 2.0",
    ),
    ("train", "split", "seed", "42", "parameters.split.seed: Input should be a valid integer"),
    (
        "train",
        "preprocess",
        "min_user_interactions",
        0,
        "parameters.preprocess.min_user_interactions: Input should be greater than or equal to 1,"
        " got 0",
    ),
    (
        "train",
        "wals",
        "n_factors",
        -1,
        "parameters.wals.n_factors: Input should be 'auto' or greater than or equal to 1, got -1",
    ),
    (
        "train",
        "wals",
        "solver",
        "lu",
        "parameters.wals.solver: Input should be 'cholesky' or 'cg', got 'lu'",
    ),
    ("train", "evaluation", "k", "ten", "parameters.evaluation.k: Input should be a valid integer"),
    ("train", "data", "format", "xlsx", "parameters.data.format: Input should be 'auto', 'csv'"),
    ("train", "output", "exclude_seen", "yes", "parameters.output.exclude_seen: Input should be"),
    ("deployment", "bento", "build", "no", "parameters.bento.build: Input should be a valid bool"),
    (
        "tune",
        "blend",
        "method",
        "eas",
        "parameters.blend.method: Input should be 'auto', 'ease' or 'knn', got 'eas'",
    ),
    (
        "tune",
        "blend",
        "item_item_weight",
        1.5,
        "parameters.blend.item_item_weight: Input should be less than 1, got 1.5",
    ),
    (
        "tune",
        "tuning",
        "n_workers",
        0,
        "parameters.tuning.n_workers: Input should be greater than or equal to 1, got 0",
    ),
    (
        "tune",
        "tuning",
        "objective",
        "ndcg",
        "parameters.tuning.objective: 'ndcg' is not a tuning objective; use one of",
    ),
    (
        "tune",
        "tuning",
        "search_space",
        {"alpha": {"type": "float", "low": 0, "high": 2, "log": True}},
        "parameters.tuning.search_space.alpha: a log scale needs low > 0, got 0",
    ),
    (
        "tune_rating",
        "bayes",
        "burn_in",
        -1,
        "parameters.bayes.burn_in: Input should be greater than or equal to 0, got -1",
    ),
    (
        "tune_rating",
        "bayes",
        "noise_precision",
        "high",
        "parameters.bayes.noise_precision: Input should be a valid number, got 'high'",
    ),
]


@pytest.mark.parametrize(
    ("config", "path", "key", "value", "message"), BAD_VALUES, ids=[str(b[3]) for b in BAD_VALUES]
)
def test_a_bad_value_stops_the_command_before_data_is_read(
    tmp_path: Path, config: str, path: str, key: str, value: object, message: str
) -> None:
    """Through the command in a fresh interpreter, with a data path that does not exist: the
    value is reported (not the path), and neither ZenML nor TensorFlow was imported, so no
    model version can exist."""
    content = yaml.safe_load((run.CONFIGS / f"{config}.yaml").read_text())
    content["parameters"].setdefault(path, {})[key] = value
    written = tmp_path / f"{config}.yaml"
    written.write_text(yaml.safe_dump(content, sort_keys=False))
    command = CONFIG_COMMANDS[config]
    result = probe_cli(command, "--config", str(written))
    assert result["exit_code"] == 1
    assert result["output"].startswith(f"error: config file {written}: ")
    assert message in result["output"]
    assert result["imported"] == []


def test_yaml_integers_are_accepted_for_float_keys(tmp_path: Path) -> None:
    """Strict types, but `regularization: 300` is the float 300.0, as YAML users write it."""
    content = run.load_config(run.CONFIGS / "tune.yaml")
    parameters = content["parameters"]
    parameters["wals"]["regularization"] = 300
    parameters["split"]["test_ratio"] = 0
    parameters["blend"]["item_item_l2"] = 500
    parameters["bayes"] = {"noise_precision": 2, "hyperprior_scale": 1}
    check_parameters(parameters, run.PIPELINES["tune"])


def test_step_parameters_are_the_typed_sections() -> None:
    """ZenML stores a pydantic-typed step parameter with every default and hands the step the
    model: the splitter, promoter, evaluator, trainer and writer take their sections typed."""
    from steps import (
        data_splitter,
        model_evaluator,
        model_promoter,
        model_trainer,
        recommendation_writer,
    )
    from walsrec.config import EvaluationConfig, OutputConfig, PromotionConfig
    from walsrec.data import PreprocessConfig, SplitConfig
    from walsrec.models.wals_config import WALSParameters

    for step_obj, name, cls in (
        (model_trainer, "wals", WALSParameters),
        (data_splitter, "split", SplitConfig),
        (data_splitter, "preprocess", PreprocessConfig),
        (model_promoter, "promotion", PromotionConfig),
        (model_evaluator, "evaluation", EvaluationConfig),
        (model_trainer, "evaluation", EvaluationConfig),
        (recommendation_writer, "output", OutputConfig),
    ):
        assert step_obj.entrypoint_definition.inputs[name].annotation is cls
    from steps import best_params_selector, tuning_study, tuning_worker
    from walsrec.models.bayes import BayesConfig
    from walsrec.tuning.config import TuningConfig

    assert model_trainer.entrypoint_definition.inputs["bayes"].annotation == BayesConfig | None
    for step_obj in (tuning_study, tuning_worker, best_params_selector):
        assert step_obj.entrypoint_definition.inputs["tuning"].annotation is TuningConfig
