"""`python run.py continuous`: rounds that deploy only what they promote, the Bento kept in the
artifact store and served from there, and the Kubeflow cron schedule (compiled, no cluster)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml
from click.testing import CliRunner

import run as cli
from serving.cli import stop_server, wait_until_ready
from tests.commands import environment, run_command
from tests.conftest import PROJECT_ROOT
from tests.kubeflow.conftest import kubeflow_secrets  # noqa: F401  (fixture)
from tests.pipelines.conftest import make_config
from tests.serving.conftest import free_port
from walsrec.synthetic import generate_interactions

MODEL = "continuous"


def _config(tmp_path: Path, data: Path) -> Path:
    config = make_config(
        "continuous_training",
        MODEL,
        data={"source": str(data)},
        wals={"epochs": 4},
        evaluation={"progress": False},
        bento={"bento_model_name": MODEL},
    )
    path = tmp_path / "continuous.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


_BENTOS = """
import json, sys
import bentoml
from zenml.client import Client
version = Client().get_model_version(sys.argv[1], "production")
archives = [a for a in Client().list_artifact_versions(artifact="bento_archive").items]
print(json.dumps({
    "production": version.number,
    "bentos": sorted(str(b.tag) for b in bentoml.list("walsrec")),
    "archives": [a.run_metadata.get("bento_tag") for a in archives],
}))
"""


def test_rounds_deploy_only_what_they_promote_and_serve_takes_the_bento(tmp_path: Path) -> None:
    env = environment(tmp_path)
    data = generate_interactions(800, 1_200, 40_000, feedback="ratings", seed=11)
    config = _config(tmp_path, data.write_parquet(tmp_path / "ratings.parquet"))

    # Two rounds on the same data: the first promotes and deploys, the second ties and skips.
    result = run_command(
        env, "continuous", "--config", str(config), "--every", "1s", "--rounds", "2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = result.stdout.split("Pipeline run:")[1:]
    assert len(rounds) == 2, result.stdout
    assert "version 1 (promoted to production" in rounds[0]
    assert re.search(r"Bento:\s+walsrec:\S+, archive in the artifact store: ", rounds[0])
    assert "version 2 (not promoted: ndcg@10" in rounds[1]
    assert "does not beat production" in rounds[1]
    assert "Deployment:     skipped (production unchanged)" in rounds[1]
    assert "Next round in" in result.stdout

    state = subprocess.run(
        [sys.executable, "-c", _BENTOS, MODEL],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert state.returncode == 0, state.stderr[-2000:]
    state = json.loads(state.stdout.splitlines()[-1])
    assert state["production"] == 1
    # One Bento and one archive: the round that did not win built nothing (its output is None).
    assert len(state["bentos"]) == 1
    assert [tag for tag in state["archives"] if tag] == state["bentos"]
    assert len(state["archives"]) == 2

    # Another machine's BentoML store (empty): `serve --model-version production` imports the
    # archive from the artifact store and serves that Bento over HTTP.
    other = {**env, "BENTOML_HOME": str(tmp_path / "other-bentoml")}
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "run.py", "serve", "--model", MODEL, "--model-version", "production",
         "--port", str(port), "--workers", "1"],
        cwd=PROJECT_ROOT, env=other, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", server, timeout=180)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/model_info",
            b"{}",
            {"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            info = json.loads(response.read())
        assert info["model_version"] == "1" and info["n_users"] == 800
    finally:
        stop_server(server, timeout=30)
    assert Path(other["BENTOML_HOME"], "bentos", "walsrec").is_dir()


def test_serve_a_version_without_an_exported_bento_is_one_line(tmp_path: Path) -> None:
    env = environment(tmp_path)
    train = make_config(
        "train",
        MODEL,
        data={"source": str(generate_interactions(300, 400, 8_000, seed=2).write_parquet(
            tmp_path / "small.parquet"))},
        wals={"epochs": 2},
        evaluation={"progress": False},
    )  # fmt: skip
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(train))
    assert run_command(env, "train", "--config", str(path)).returncode == 0
    served = run_command(env, "serve", "--model", MODEL, "--model-version", "1", timeout=120)
    assert served.returncode != 0
    assert "version 1 has no exported Bento" in served.stderr
    assert "Traceback" not in served.stderr


def test_continuous_on_kubeflow_compiles_with_its_cron_schedule(
    kubeflow_secrets,  # noqa: F811
    tmp_path: Path,
) -> None:
    from zenml.client import Client

    config = make_config("continuous_training", "continuous-kubeflow")
    path = tmp_path / "continuous.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = CliRunner().invoke(
        cli.cli, ["continuous", "--stack", "kubeflow", "--config", str(path)]
    )
    assert "Schedule:       cron '0 2 * * *'" in result.output
    assert "Compiled continuous_training_pipeline for Kubeflow" in result.output
    assert "bento_builder:" in result.output and "model_trainer:" in result.output
    schedules = Client().list_schedules(name="walsrec-continuous-0 2 * * *").items
    assert [schedule.cron_expression for schedule in schedules] == ["0 2 * * *"]

    tuned = CliRunner().invoke(
        cli.cli, ["continuous", "--stack", "kubeflow", "--config", str(path), "--tune"]
    )
    assert "Schedule:       cron '0 3 * * 0'" in tuned.output
    assert "tuning_worker_0:" in tuned.output and "best_params_selector:" in tuned.output
    refused = CliRunner().invoke(
        cli.cli, ["continuous", "--stack", "kubeflow", "--config", str(path), "--every", "1d"]
    )
    assert refused.exit_code != 0 and "cron schedule" in refused.output
