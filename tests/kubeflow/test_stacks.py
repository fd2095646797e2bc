"""Stack recipes are validated before anything is registered; overlays merge predictably; the
`--stack kubeflow` command compiles without a cluster and says what the cluster run needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import run as cli
from stacks.kubeflow_orchestrator import FLAVOR_NAME, kubernetes_memory
from stacks.overlay import (
    apply_stack_overlay,
    deep_merge,
    expand_requirements,
    pipeline_config_path,
)
from stacks.register import available_recipes, load_recipe, register_stack, render_recipe
from walsrec.errors import ConfigError

VALID = {"kube_context": "kind-walsrec", "bucket": "s3://walsrec/runs", "registry": "ghcr.io/org"}


def test_both_recipes_exist_and_load():
    assert {"local", "kubeflow"} <= set(available_recipes())
    assert load_recipe("kubeflow").remote and not load_recipe("local").remote


def test_kubeflow_recipe_names_every_missing_value():
    with pytest.raises(ConfigError) as error:
        render_recipe(load_recipe("kubeflow"), {})
    message = str(error.value)
    assert "stacks/kubeflow.yaml" in message
    for option in ("--kube-context", "--bucket", "--registry"):
        assert f"missing {option}" in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"bucket": "/home/me/artifacts"}, "no remote artifact store"),
        ({"bucket": "file:///tmp/artifacts"}, "no remote artifact store"),
        ({"registry": "localhost:5000"}, "no container registry the cluster can pull from"),
        ({"registry": "127.0.0.1:5000/walsrec"}, "no container registry"),
    ],
)
def test_kubeflow_recipe_rejects_local_store_or_registry(override, expected):
    with pytest.raises(ConfigError, match=expected):
        render_recipe(load_recipe("kubeflow"), {**VALID, **override})


def test_s3_bucket_gets_credentials_from_a_zenml_secret_and_optional_endpoint():
    rendered = render_recipe(load_recipe("kubeflow"), VALID)
    store = rendered.component("artifact_store")
    assert store.flavor == "s3" and store.configuration["path"] == "s3://walsrec/runs"
    # References resolved by ZenML at run time; no credential is in the repository.
    assert store.configuration["key"] == "{{walsrec-artifact-store.aws_access_key_id}}"
    assert "client_kwargs" not in store.configuration  # no --s3-endpoint: AWS S3
    assert rendered.secrets == {
        "walsrec-artifact-store": ["aws_access_key_id", "aws_secret_access_key"]
    }
    minio = render_recipe(load_recipe("kubeflow"), {**VALID, "s3_endpoint": "http://minio:9000"})
    assert minio.component("artifact_store").configuration["client_kwargs"] == {
        "endpoint_url": "http://minio:9000"
    }
    gcs = render_recipe(load_recipe("kubeflow"), {**VALID, "bucket": "gs://walsrec/runs"})
    assert gcs.component("artifact_store").flavor == "gcp"
    assert rendered.component("orchestrator").configuration["kubernetes_context"] == "kind-walsrec"


def test_register_kubeflow_stack_then_refuse_to_overwrite_without_replace():
    from zenml.client import Client
    from zenml.enums import StackComponentType

    registration = register_stack("kubeflow", VALID)
    stack = Client().get_stack(registration.stack_name)
    orchestrator = stack.components[StackComponentType.ORCHESTRATOR][0]
    assert orchestrator.flavor_name == FLAVOR_NAME
    assert stack.components[StackComponentType.ARTIFACT_STORE][0].flavor_name == "s3"
    assert any("walsrec-artifact-store" in warning for warning in registration.warnings)

    with pytest.raises(ConfigError, match="already registered.*--replace"):
        register_stack("kubeflow", VALID)
    replaced = register_stack("kubeflow", {**VALID, "kube_context": "prod"}, replace=True)
    stack = Client().get_stack(replaced.stack_name)
    orchestrator = stack.components[StackComponentType.ORCHESTRATOR][0]
    assert orchestrator.configuration["kubernetes_context"] == "prod"


def test_memory_becomes_a_kubernetes_quantity():
    assert kubernetes_memory("8GB") == "8G"
    assert kubernetes_memory("512MiB") == "512Mi"
    with pytest.raises(ValueError, match="4 gigs"):
        kubernetes_memory("4 gigs")


def test_overlay_merges_mappings_and_replaces_everything_else():
    base = {"a": {"x": 1, "y": 2}, "list": [1, 2], "keep": True}
    merged = deep_merge(base, {"a": {"y": 3}, "list": [9]})
    assert merged == {"a": {"x": 1, "y": 3}, "list": [9], "keep": True}
    assert base["a"]["y"] == 2  # not modified


def test_requirements_expand_to_the_pinned_lines_minus_dropped_packages(tmp_path: Path):
    (tmp_path / "req.txt").write_text("# pins\ntensorflow_cpu==2.21.0\nkfp==2.16.1  # ok\n")
    lines = expand_requirements({"files": ["req.txt"], "without": ["tensorflow-cpu"]}, tmp_path)
    assert lines == ["kfp==2.16.1"]
    (tmp_path / "loose.txt").write_text("numpy>=2\n")
    with pytest.raises(ConfigError, match="not pinned"):
        expand_requirements({"files": ["loose.txt"]}, tmp_path)


def test_kubeflow_overlay_keeps_parameters_and_sets_packaging():
    config = cli.load_config(pipeline_config_path("training_pipeline"))
    overlaid = apply_stack_overlay(config, load_recipe("kubeflow").overlay_dir, "training_pipeline")
    assert overlaid["parameters"] == config["parameters"]
    # Kubeflow supports only continue_on_failure; train.yaml's fail_fast would be rejected.
    assert overlaid["execution_mode"] == "continue_on_failure"
    docker = overlaid["settings"]["docker"]
    assert "zenml[local]==0.98.0" in docker["requirements"]  # the server: requirements-dev.txt
    assert docker["allow_download_from_artifact_store"] is False
    # The trainer runs in the image every step runs in (CPU TensorFlow: no step asks for a GPU).
    assert "docker" not in overlaid["steps"]["model_trainer"]["settings"]
    assert "tensorflow_cpu==2.21.0" in docker["requirements"]
    assert Path(docker["build_config"]["dockerignore"]).is_file()


def test_stack_kubeflow_without_a_cluster_compiles_and_says_what_is_missing(kubeflow_secrets):
    result = CliRunner().invoke(cli.cli, ["--stack", "kubeflow", "batch"])

    assert result.exit_code == 1
    assert "Compiled batch_inference_pipeline for Kubeflow: " in result.output
    compiled_path = result.output.split("Kubeflow: ", 1)[1].split()[0]
    assert Path(compiled_path).is_file()
    assert "not submitted, a Kubeflow cluster run needs" in result.output
    assert "not in this machine's kubeconfig" in result.output or "not registered" in result.output
    assert "zenml login" in result.output


def test_local_stack_runs_configs_unchanged_and_is_active_only_for_the_run():
    from types import SimpleNamespace

    from zenml.client import Client

    from stacks.switch import stack_run

    config = cli.load_config(pipeline_config_path("training_pipeline"))
    before = Client().active_stack_model.id
    with stack_run("local", SimpleNamespace(name="training_pipeline"), config) as run_config:
        active = Client().active_stack_model
        assert active.name == "walsrec-local"
        assert run_config == config
    assert Client().active_stack_model.id == before


def test_a_url_data_source_on_a_stack_that_cannot_read_it_names_the_artifact_store():
    # On Kubeflow the data must be where the pods read it (tests/kubeflow/test_execute.py reads
    # s3:// through the S3 artifact store); the local store reads no URLs, and says so.
    result = CliRunner().invoke(
        cli.cli, ["--stack", "local", "--data", "s3://walsrec-nowhere/interactions.csv"]
    )

    assert result.exit_code == 1
    assert "data source s3://walsrec-nowhere/interactions.csv: a URL is read with the" in (
        result.output
    )
    assert "flavor local, which reads no URLs" in result.output
    assert "Traceback" not in result.output
