"""The compiled Kubeflow spec, executed: every task of the KFP v2 spec ZenML's Kubeflow
orchestrator compiles runs as its own process with its pod's command, arguments and environment,
in DAG order, against a real ZenML server and an S3 artifact store (tests/kubeflow/harness.py).

The machine that submits (tests/kubeflow/submit.py, its own process and ZenML client) registers
the stack with `run.py stack register kubeflow`, logs in to the server, compiles; the tasks then
find the run, the stack and the secrets on the server, exactly as pods in a cluster would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.kubeflow.harness import (
    Image,
    PipelineJob,
    Service,
    dag_order,
    s3_server,
    substitute_placeholders,
    zenml_server,
)
from walsrec.synthetic import generate_interactions

BUCKET = "walsrec-harness"
ARTIFACTS = f"s3://{BUCKET}/artifacts"
DATA = f"s3://{BUCKET}/data/interactions.csv"
S3_KEY, S3_SECRET = "harness-access-key", "harness-secret-key"
PASSWORD = "harness-password"

# Small runs: a synthetic shape that is not MovieLens, few epochs. The pipeline configs and the
# Kubeflow overlay are otherwise those of `python run.py --stack kubeflow`.
TRAINING = {
    "parameters": {
        "data": {"source": DATA},
        "wals": {"epochs": 4, "n_factors": 8},
        "evaluation": {"progress": False},
    }
}
# One round of continuous training on the same data, as its own model (a first version is
# promoted when it beats popularity; a second version of `walsrec` would tie the training run's
# and rightly not be promoted). The steps up to training may be served from the training run's
# cache on the server, as on a cluster.
CONTINUOUS = {
    "model": {"name": "walsrec-continuous"},
    "parameters": {**TRAINING["parameters"], "bento": {"bento_model_name": "walsrec"}},
}
# Pipelines whose executed spec must end with a promoted model version (and, where the
# pipeline builds one, a Bento whose archive is in the bucket): one more is one more entry,
# pytest.param(<exported pipeline name>, <config overrides>, id=...).
PIPELINES = [
    pytest.param("training_pipeline", TRAINING, id="training"),
    pytest.param("continuous_training_pipeline", CONTINUOUS, id="continuous-training"),
]


@dataclass
class Cluster:
    """What a Kubeflow cluster's pods reach: a ZenML server, an S3 bucket; and the submitting
    machine's ZenML client configuration (logged in to that server)."""

    zenml: Service
    s3: Service
    client_env: dict[str, str]
    folder: Path

    def command(self, *argv: str) -> str:
        """Run a command on the submitting machine (project root, its own ZenML client)."""
        result = subprocess.run(
            argv, cwd=PROJECT_ROOT, env=self.client_env, capture_output=True, text=True,
            timeout=900, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}"
        return result.stdout

    def submit(self, command: str, *options: str) -> dict:
        output = self.folder / f"{command}.json"
        self.command(
            sys.executable,
            "-m",
            "tests.kubeflow.submit",
            command,
            *options,
            "--output",
            str(output),
        )
        return json.loads(output.read_text(encoding="utf-8"))

    def s3_client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.s3.url, aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET, region_name="us-east-1",
        )  # fmt: skip

    def s3_keys(self, prefix: str) -> set[str]:
        pages = (
            self.s3_client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        )
        return {item["Key"] for page in pages for item in page.get("Contents", [])}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    folder = tmp_path_factory.mktemp("kfp-cluster")
    with s3_server(folder / "s3") as s3, zenml_server(folder / "zenml", PASSWORD) as server:
        client_env = {
            "PATH": os.environ["PATH"],
            "HOME": str(folder / "client-home"),
            "ZENML_CONFIG_PATH": str(folder / "client-zenml"),
            "ZENML_STORE_URL": server.url,
            "ZENML_STORE_USERNAME": "default",
            "ZENML_STORE_PASSWORD": PASSWORD,
            "ZENML_ANALYTICS_OPT_IN": "false",
            "ZENML_ENABLE_RICH_TRACEBACK": "false",
            "BENTOML_DO_NOT_TRACK": "true",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        cluster = Cluster(server, s3, client_env, folder)
        cluster.s3_client().create_bucket(Bucket=BUCKET)
        data = generate_interactions(300, 240, 9000, seed=3)
        data.write_csv(folder / "interactions.csv")
        cluster.s3_client().upload_file(
            str(folder / "interactions.csv"), BUCKET, DATA.split("/", 3)[3]
        )
        # docs/kubeflow.md "From nothing to a finished run", steps 1 and 2, as a user types them.
        zenml = str(Path(sys.executable).parent / "zenml")
        cluster.command(
            zenml, "secret", "create", "walsrec-artifact-store",
            f"--aws_access_key_id={S3_KEY}", f"--aws_secret_access_key={S3_SECRET}",
        )  # fmt: skip
        cluster.command(
            zenml, "secret", "create", "walsrec-optuna",
            f"--WALSREC_TUNING_STORAGE=sqlite:///{folder / 'optuna.db'}",
        )  # fmt: skip
        cluster.command(
            sys.executable, "run.py", "stack", "register", "kubeflow",
            "--kube-context", "harness-cluster", "--bucket", ARTIFACTS,
            "--registry", "registry.example.com/walsrec-harness", "--s3-endpoint", s3.url,
        )  # fmt: skip
        yield cluster


@dataclass
class Execution:
    """A compiled spec executed task by task, and what the ZenML server says of the run."""

    job: PipelineJob
    report: dict

    def output_uris(self) -> list[str]:
        steps = self.report["steps"].values()
        return [uri for step in steps for out in step["outputs"].values() for uri in out]


def execute(cluster: Cluster, pipeline_name: str, overrides: dict, folder: Path) -> Execution:
    """Compile on the submitting machine, run every task as its pod would, report the run."""
    compiled = cluster.submit(
        "compile", "--pipeline", pipeline_name, "--overrides", json.dumps(overrides)
    )
    images = {step: Image.from_dict(image) for step, image in compiled["images"].items()}
    job = PipelineJob(Path(compiled["spec"]), images, folder)
    assert set(job.tasks) == set(images), "one task per step"
    job.run()
    return Execution(job, cluster.submit("report", "--run-id", compiled["run_id"]))


def assert_completed_in_the_bucket(cluster: Cluster, execution: Execution) -> None:
    """The run the tasks filled in completed on the server, its artifacts are all in S3."""
    job, report = execution.job, execution.report
    # The tasks filled in the run ZenML registered when it compiled (ZenML's orchestrator run id
    # is the KFP job name the backend substitutes), and every step completed on the server.
    assert report["orchestrator_run_id"] == job.job_name
    assert report["status"] == "completed"
    assert {name: step["status"] for name, step in report["steps"].items()} == dict.fromkeys(
        job.tasks, "completed"
    )
    # Every artifact went to the S3 server's bucket, through the artifact store the tasks read
    # from the server with the secret's credentials; none to a local folder.
    uris = execution.output_uris()
    assert uris and all(uri.startswith(ARTIFACTS + "/") for uri in uris), uris
    stored = cluster.s3_keys("artifacts/")
    for uri in uris:
        key = uri.split("/", 3)[3]
        assert any(name.startswith(key) for name in stored), f"{uri} is not in the bucket"


def assert_bento_in_the_bucket(cluster: Cluster, execution: Execution, home: Path) -> str:
    """The run's `bento_archive` is a file in the S3 bucket that `bentoml import` takes into a
    fresh BentoML home (another machine's), holding the Bento and the model packed into it.

    Returns:
        The Bento tag.
    """
    built = execution.report["steps"]["bento_builder"]
    bento_tag = built["output_metadata"]["bento_tag"]["bento_tag"]
    assert built["output_metadata"]["bento_archive"]["bento_tag"] == bento_tag
    model_tag = built["output_metadata"]["bento_archive"]["bento_model_tag"]
    (uri,) = built["outputs"]["bento_archive"]
    # ZenML's path materializer keeps a single file as <uri>/file_data.
    key = uri.split("/", 3)[3] + "/file_data"
    assert key in cluster.s3_keys(key)
    home.mkdir(parents=True)
    archive = home / "walsrec.bento"
    cluster.s3_client().download_file(BUCKET, key, str(archive))
    env = {**cluster.client_env, "BENTOML_HOME": str(home / "bentoml")}
    bentoml = [sys.executable, "-m", "bentoml"]
    for argv in (["import", str(archive)], ["get", bento_tag, "-o", "json"]):
        result = subprocess.run(
            bentoml + argv, cwd=home, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"bentoml {argv[0]}:\n{result.stdout}{result.stderr}"
    info = json.loads(result.stdout)  # bento.yaml: name, version, each service's models
    assert f"{info['name']}:{info['version']}" == bento_tag
    packed = [str(model["tag"]) for service in info["services"] for model in service["models"]]
    assert packed == [model_tag]
    # The import put the packed model into that home's model store, and it loads (every file's
    # SHA-256 checked): the synthetic data's 300 users.
    load = (
        "import sys, bentoml\nfrom walsrec.models.recommender import RecommenderModel\n"
        "print(len(RecommenderModel.load(bentoml.models.get(sys.argv[1]).path).user_ids))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", load, model_tag],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["300"]
    return bento_tag


@pytest.fixture(scope="module")
def training_run(cluster: Cluster, tmp_path_factory) -> Execution:
    """The training spec executed once (the deployment spec needs its production version)."""
    return execute(cluster, "training_pipeline", TRAINING, tmp_path_factory.mktemp("pods"))


@pytest.mark.parametrize(("pipeline_name", "overrides"), PIPELINES)
def test_compiled_training_spec_runs_task_by_task_and_promotes_a_model(
    cluster: Cluster, training_run: Execution, pipeline_name: str, overrides: dict, tmp_path: Path
):
    execution = (
        training_run
        if (pipeline_name, overrides) == ("training_pipeline", TRAINING)
        else execute(cluster, pipeline_name, overrides, tmp_path / "pods")
    )

    assert_completed_in_the_bucket(cluster, execution)
    # A new model version, with its model artifact, promoted to production.
    report = execution.report
    assert report["model_version"] is not None
    assert "recommender" in report["model_artifacts"]
    assert report["model_version_stage"] == "production"
    assert report["production_version"] == report["model_version"]
    if "bento_builder" in report["steps"]:  # continuous training deploys what it promoted
        assert_bento_in_the_bucket(cluster, execution, tmp_path / "another-machine")


def test_compiled_deployment_spec_builds_the_bento(
    cluster: Cluster, training_run: Execution, tmp_path: Path
):
    production = training_run.report["production_version"]
    assert production is not None

    execution = execute(cluster, "deployment_pipeline", {}, tmp_path / "pods")

    assert_completed_in_the_bucket(cluster, execution)
    # Packaged, built and exported in one pod: a pod's BentoML store dies with it.
    assert list(execution.report["steps"]) == ["bento_builder"]
    assert_bento_in_the_bucket(cluster, execution, tmp_path / "another-machine")
    archive = execution.report["steps"]["bento_builder"]["output_metadata"]["bento_archive"]
    assert archive["zenml_model"] == "walsrec"
    assert archive["zenml_version"] == str(production)
    # The stack has a container registry but a pod has no Docker engine: not pushed, and said.
    assert "image" not in archive and archive["image_not_pushed"].startswith("docker info")


def test_pods_get_only_their_image_and_spec_environment(cluster: Cluster, tmp_path: Path):
    compiled = cluster.submit(
        "compile", "--pipeline", "training_pipeline", "--overrides", json.dumps(TRAINING)
    )
    images = {step: Image.from_dict(image) for step, image in compiled["images"].items()}
    job = PipelineJob(Path(compiled["spec"]), images, tmp_path / "pods")

    argv, environment, workdir = job.pod("model_trainer")

    assert argv[:3] == ["python", "-m", "zenml.entrypoints.entrypoint"]
    # The image's `python` is the stand-in for the image's Python: this environment's.
    assert shutil.which("python", path=environment["PATH"]) == str(
        Path(sys.executable).parent / "python"
    )
    assert "--step_name" in argv and argv[argv.index("--step_name") + 1] == "model_trainer"
    spec_env = job.tasks["model_trainer"].environment
    # The KFP job name the backend substitutes is ZenML's orchestrator run id.
    assert spec_env["KFP_RUN_ID"] == "{{$.pipeline_job_name}}"
    assert environment["KFP_RUN_ID"] == job.job_name
    # The server URL and a run-scoped token come through the spec, never the password.
    assert environment["ZENML_STORE_URL"] == cluster.zenml.url
    assert environment["ZENML_STORE_API_TOKEN"]
    assert PASSWORD not in json.dumps(environment)
    assert S3_SECRET not in json.dumps(environment) and S3_SECRET not in job.spec_path.read_text()
    # The image's ENV (ZenML's config inside the image, the overlay's docker environment).
    assert environment["ZENML_CONFIG_PATH"] == str(workdir / ".zenconfig")
    assert environment["TF_CPP_MIN_LOG_LEVEL"] == "2"
    # Nothing of the test process leaks in (its ZenML store, its Python path).
    for key in ("PYTHONPATH", "PYTEST_CURRENT_TEST", "WALSREC_ML100K", "VIRTUAL_ENV"):
        assert key not in environment
    assert environment["WALSREC_CACHE_DIR"] == spec_env["WALSREC_CACHE_DIR"]
    # The image's files: the code, not what the dockerignore leaves out.
    assert (workdir / "steps" / "training" / "model_trainer.py").is_file()
    assert not (workdir / "tests").exists() and not (workdir / ".venv").exists()


def test_dag_order_and_placeholders_refuse_what_a_cluster_would_not_run():
    from stacks.compile import TaskSpec

    tasks = {
        "b": TaskSpec("b", "image", {"a"}),
        "a": TaskSpec("a", "image", set()),
        "c": TaskSpec("c", "image", {"a", "b"}),
    }
    assert dag_order(tasks) == ["a", "b", "c"]
    tasks["a"].dependencies = {"c"}
    with pytest.raises(ValueError, match="a cycle"):
        dag_order(tasks)
    tasks["a"].dependencies = {"z"}
    with pytest.raises(ValueError, match=r"unknown dependencies \['z'\]"):
        dag_order(tasks)

    values = {"{{$.pipeline_job_name}}": "training-pipeline-1a2b3"}
    assert (
        substitute_placeholders("{{$.pipeline_job_name}}", values, "t") == "training-pipeline-1a2b3"
    )
    with pytest.raises(ValueError, match=r"trainer: env X: KFP placeholder \{\{\$.inputs"):
        substitute_placeholders("{{$.inputs.parameters['x']}}", values, "trainer: env X")
