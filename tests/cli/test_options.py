"""What the user types is what runs: options before or after a subcommand, early checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import run
from tests.cli.conftest import probe_cli
from tests.conftest import PROJECT_ROOT
from walsrec import __version__


def _invoke(*args: str):
    return CliRunner().invoke(run.cli, list(args))


def test_options_before_a_subcommand_apply_to_it(captured: dict, ml100k_dir: Path) -> None:
    """`run.py --data X tune` tunes on X (it once tuned on ml-100k without a word)."""
    data = str(ml100k_dir / "ua.base")
    result = _invoke("--data", data, "-v", "--stack", "local", "tune", "--n-trials", "1")
    assert "captured" in result.output, result.output
    assert captured["pipeline"] == "tuning_pipeline"
    assert captured["config"]["parameters"]["data"]["source"] == data
    assert captured["config"]["parameters"]["tuning"]["n_trials"] == 1
    assert captured["stack"] == "local" and captured["debug"]


@pytest.mark.parametrize(
    "args",
    [
        ["train", "-v", "--stack", "local"],  # both only after the subcommand
        ["-v", "train", "--stack", "local"],
        ["--stack", "local", "-v", "train"],
        ["-v", "--stack", "local"],  # no subcommand: train
    ],
)
def test_verbose_and_stack_work_before_or_after(captured: dict, args: list[str]) -> None:
    result = _invoke(*args)
    assert "captured" in result.output, result.output
    assert captured["pipeline"] == "training_pipeline"
    assert captured["stack"] == "local" and captured["debug"]


def test_batch_takes_topk_output_typed_before_it(captured: dict, tmp_path: Path) -> None:
    out = tmp_path / "recs.csv"
    result = _invoke("--topk-output", str(out), "batch", "-k", "5")
    assert "captured" in result.output, result.output
    assert captured["config"]["parameters"]["output"]["topk_path"] == str(out)
    assert captured["config"]["parameters"]["output"]["k"] == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "ml-1m", "deploy"], "--data (typed before `deploy`) is not an option of"),
        (["--stack", "local", "serve"], "--stack (typed before `serve`) is not an option of"),
        (["-v", "--data", "x", "stack", "register", "kubeflow"], "are not options of `stack`"),
        (["--test-data", "t.tsv", "batch"], "--test-data (typed before `batch`)"),
        (["--data", "ml-100k", "tune", "--data", "ml-1m"], "--data is given twice: 'ml-100k'"),
        (["continuous", "--rounds", "2"], "--rounds counts the rounds of --every"),
        (["serve", "--model", "walsrec"], "--model picks the ZenML model of --model-version"),
    ],
)
def test_misplaced_or_contradicting_options_are_refused(
    captured: dict, args: list[str], message: str
) -> None:
    result = _invoke(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert not captured, "nothing may run"


def test_version() -> None:
    result = _invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"walsrec {__version__}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{tmp}/missing.tsv"], "--data: data source '{tmp}/missing.tsv' not found"),
        (["tune", "--data", "{tmp}/missing.csv"], "--data: data source '{tmp}/missing.csv'"),
        (["--test-data", "{tmp}/no-test.tsv"], "--test-data: data source '{tmp}/no-test.tsv'"),
        (["--data", "{tmp}"], "--data: {tmp}: folder holds no MovieLens ratings file"),
        (["train", "--config", "{tmp}/none.yaml"], "config file {tmp}/none.yaml does not exist"),
        (["batch", "--users", "{tmp}/ids.txt"], "--users: {tmp}/ids.txt is not a file"),
        (["batch", "--pairs", "{tmp}/pairs.tsv"], "--pairs: data source '{tmp}/pairs.tsv'"),
    ],
)
def test_missing_paths_fail_before_tensorflow_or_zenml(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """A mistyped path: one line, in about a second, and no run, model version or TensorFlow."""
    result = probe_cli(*(arg.format(tmp=tmp_path) for arg in args))
    assert result["exit_code"] == 1
    assert f"error: {message.format(tmp=tmp_path)}" in result["output"]
    assert result["imported"] == []


def test_a_failed_run_leaves_no_model_version(ml100k_dir: Path, tmp_path: Path) -> None:
    """A value only the trainer rejects (posterior sampling of an implicit model: it needs the
    WALS values the profile chooses): the run fails after it has created a model version,
    which is then deleted (the failed run itself stays, for its logs)."""
    from zenml.client import Client

    config = yaml.safe_load((PROJECT_ROOT / "configs/train.yaml").read_text())
    config["model"]["name"] = "walsrec-failing-run"
    config["parameters"]["bayes"] = {"posterior_samples": 2}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _invoke("--config", str(path), "--data", str(ml100k_dir / "ua.test"))
    assert result.exit_code == 1
    assert "error: bayes.posterior_samples: 2 samples a rating model" in result.output
    assert "deleted model version walsrec-failing-run 1" in result.output
    assert Client().list_model_versions("walsrec-failing-run").total == 0
    runs = Client().list_pipeline_runs(pipeline="training_pipeline", sort_by="desc:created")
    assert runs.items[0].status == "failed"
