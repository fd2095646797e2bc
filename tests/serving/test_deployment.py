"""Packaging for real: `bentoml build` offline, and a trained model served by `bentoml serve`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import bentoml
import pytest
import yaml
from click.testing import CliRunner
from zenml.client import Client
from zenml.enums import ExecutionStatus

import run as cli
from pipelines import training_pipeline
from serving.cli import stop_server, wait_until_ready
from serving.packaging import build_bento
from tests.conftest import PROJECT_ROOT
from tests.pipelines.conftest import make_config

# Any attempt to reach a package index during the build fails fast instead of hanging.
OFFLINE = {
    "PIP_NO_INDEX": "1",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
}


def test_bentoml_build_makes_a_bento_offline(packaged_model: str, monkeypatch) -> None:
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    tag = build_bento(packaged_model)
    bento = bentoml.get(tag)
    source = Path(bento.path, "src")
    assert (source / "serving" / "service.py").is_file()
    assert (source / "walsrec" / "models" / "recommender.py").is_file()
    assert not (source / "serving" / "cli.py").exists()
    assert not (source / "tests").exists() and not (source / "steps").exists()
    (service_info,) = bento.info.services
    assert [str(model.tag) for model in service_info.models] == [packaged_model]
    # The Bento's environment pins exactly what serving/requirements-bento.txt pins.
    installed = Path(bento.path, "env", "python", "requirements.txt").read_text().splitlines()
    expected = (PROJECT_ROOT / "serving" / "requirements-bento.txt").read_text().splitlines()
    assert {line for line in expected if "==" in line} <= set(installed)
    assert not any(">=" in line for line in installed)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_trained_model_is_packaged_and_served_over_http(
    train_config, tmp_path, monkeypatch
) -> None:
    model_name = "serving-integration"
    trained = cli.run_pipeline(training_pipeline, train_config(model_name, wals={"epochs": 3}))
    assert trained.status == ExecutionStatus.COMPLETED
    # Its own BentoML model name: the in-process tests serve `walsrec` models.
    config = make_config("deployment", model_name, bento={"bento_model_name": model_name})
    config_path = tmp_path / "deployment.yaml"
    config_path.write_text(yaml.safe_dump(config))
    # Through the command a user types: `run.py deploy` once failed for every user because
    # the CLI added parameters the deployment pipeline does not take.
    # A catalogue table for `where` filters: ML-100K's items, plus rows the model never saw.
    items = tmp_path / "items.csv"
    rows = [
        f"{i},{'even' if i % 2 == 0 else 'odd'},{str(i % 3 != 0).lower()}" for i in range(1, 1700)
    ]
    items.write_text("item_id,parity,in_stock\n" + "\n".join(rows) + "\n")
    # The step's temp files in a folder of the test's own, to see what a deploy leaves there.
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    result = CliRunner().invoke(
        cli.cli, ["deploy", "--config", str(config_path), "--item-metadata", str(items)]
    )
    monkeypatch.undo()
    assert result.exit_code == 0, result.output
    # The exported Bento was copied to the artifact store and its local copy removed: a deploy
    # used to leave a full Bento in the temp dir, one per (nightly) run.
    assert not list(temp.glob("walsrec-bento-*"))
    assert "BentoML model:" in result.output and "Bento:" in result.output
    (deploy,) = (
        Client()
        .list_pipeline_runs(pipeline_name="deployment_pipeline", sort_by="desc:created", size=1)
        .items
    )
    assert deploy.status == ExecutionStatus.COMPLETED
    # One step packages, builds and exports (one pod on Kubeflow).
    (step_name,) = Client().get_pipeline_run(deploy.id).steps
    assert step_name == "bento_builder"
    outputs = Client().get_pipeline_run(deploy.id).steps["bento_builder"].outputs
    model_tag = outputs["bento_model_tag"][0].load()
    bento_tag = outputs["bento_tag"][0].load()
    assert outputs["bento_archive"][0].run_metadata["bento_tag"] == bento_tag
    # The archive is linked to the model version it packages, so `run.py serve --model-version`
    # finds it from any machine that reaches the artifact store.
    number = trained.model_version.number
    assert f"Linked to:     model {model_name} version {number}" in result.output
    linked = Client().get_model_version(model_name, number).get_artifact("bento_archive")
    assert linked is not None and linked.id == outputs["bento_archive"][0].id

    stored = bentoml.models.get(model_tag)
    assert stored.info.labels["zenml_model"] == model_name
    assert stored.info.labels["zenml_version"] == str(trained.model_version.number)
    assert float(stored.info.labels["ndcg_at_10"]) > 0

    # The Bento moved to a fresh BentoML home, as to another machine: `bentoml serve` wipes its
    # home's prometheus_multiproc_dir at start, which would erase the /metrics of the session's
    # live server if both shared one home (docs/serving.md).
    archive = tmp_path / "walsrec.bento"
    bentoml.export_bento(bento_tag, str(archive))
    env = {
        **os.environ,
        "WALSREC_API_TOKEN": "integration-token",
        "BENTOML_HOME": str(tmp_path / "serving-home"),
    }
    subprocess.run(
        [sys.executable, "-m", "bentoml", "import", str(archive)],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", bento_tag, "--port", str(port)],
        cwd=PROJECT_ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/readyz", server, timeout=120)
        token = "integration-token"
        status, info = _post(f"{base}/model_info", {}, token)
        assert status == 200 and info["bento_model"] == model_tag
        assert info["n_users"] == 943 and info["n_items"] > 1600

        status, answer = _post(f"{base}/recommend", {"user_id": "1", "k": 5}, token)
        assert status == 200 and answer["fallback"] is False and len(answer["items"]) == 5
        assert all(item["title"] for item in answer["items"])  # ML-100K has titles
        # Toy Story (1) and GoldenEye (2) as a new user's history: a fold-in, no fallback.
        status, new_user = _post(
            f"{base}/recommend_for_items", {"item_ids": ["1", "2"], "k": 5}, token
        )
        assert status == 200 and new_user["fallback"] is False
        assert not {"1", "2"} & {item["item_id"] for item in new_user["items"]}

        assert info["item_fields"] == ["in_stock", "parity"]
        docs = urllib.request.Request(
            f"{base}/docs.json", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(docs, timeout=10) as response:
            spec = json.loads(response.read())
        recommend = spec["paths"]["/recommend"]["post"]["requestBody"]["content"]
        where_schema = recommend["application/json"]["schema"]["properties"]["where"]
        assert sorted(where_schema["properties"]) == ["in_stock", "parity"]
        assert where_schema["additionalProperties"] is False
        where = {"parity": "even", "in_stock": True}
        status, filtered = _post(
            f"{base}/recommend", {"user_id": "1", "k": 20, "where": where}, token
        )
        assert status == 200 and len(filtered["items"]) == 20
        assert all(int(x["item_id"]) % 2 == 0 and int(x["item_id"]) % 3 for x in filtered["items"])
        status, ranked = _post(
            f"{base}/rank", {"user_id": "1", "item_ids": ["1", "50", "181", "99999"]}, token
        )
        assert status == 200 and {x["item_id"] for x in ranked["items"]} == {"1", "50", "181"}
        assert ranked["unknown_items"] == ["99999"]
        status, neighbours = _post(f"{base}/similar_users", {"user_id": "1", "k": 3}, token)
        assert status == 200 and len(neighbours["users"]) == 3

        status, error = _post(f"{base}/recommend", {"user_id": "1", "k": 0}, token)
        assert status == 400
        assert _post(f"{base}/recommend", {"user_id": "1"})[0] == 401
    finally:
        stop_server(server, timeout=30)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/readyz", timeout=2)
