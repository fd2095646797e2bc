"""The submitting machine's side of a Kubeflow run, for tests/kubeflow/test_execute.py.

Run as its own process (`python -m tests.kubeflow.submit ...` from the project root) with a ZenML
client configured by the environment (ZENML_CONFIG_PATH, ZENML_STORE_URL, username, password), so
that it logs in to the test's ZenML server the way `zenml login` would, without touching the test
session's own ZenML store.

    compile: merge the Kubeflow overlay into a pipeline's config (plus overrides), compile it with
        ZenML's Kubeflow orchestrator on the registered `walsrec-kubeflow` stack, keep the run it
        registers, and write the spec's path, the run id and what each step's image holds.
    report: write a run's status, its steps' statuses, output URIs and output metadata, and its
        model version.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "registry.example.com/walsrec-harness/zenml"


def image_of(docker_settings) -> dict:
    """What the image ZenML would build from these Docker settings gives a process: the
    Dockerfile's ENV lines (ZenML's own Dockerfile generator), its workdir and build context."""
    from zenml.utils import source_utils
    from zenml.utils.pipeline_docker_image_builder import (
        DOCKER_IMAGE_WORKDIR,
        PipelineDockerImageBuilder,
    )

    dockerfile = PipelineDockerImageBuilder._generate_zenml_pipeline_dockerfile(
        parent_image=docker_settings.parent_image or "python",
        docker_settings=docker_settings,
    )
    environment = {}
    for line in dockerfile.splitlines():
        match = re.match(r"ENV (\w+)=(.*)$", line)
        if match:
            environment[match.group(1)] = match.group(2).strip("'")
    build_config = docker_settings.build_config
    return {
        "environment": environment,
        "workdir": DOCKER_IMAGE_WORKDIR,
        "build_context_root": docker_settings.build_context_root or source_utils.get_source_root(),
        "dockerignore": build_config.dockerignore if build_config else None,
    }


def compile_run(pipeline_name: str, overrides: dict, stack: str) -> dict:
    import pipelines
    import run as cli
    from stacks.compile import compile_pipeline
    from stacks.overlay import apply_stack_overlay, deep_merge, pipeline_config_path
    from stacks.register import load_recipe

    pipeline_obj = getattr(pipelines, pipeline_name)
    config = deep_merge(cli.load_config(pipeline_config_path(pipeline_obj.name)), overrides)
    config = apply_stack_overlay(config, load_recipe("kubeflow").overlay_dir, pipeline_obj.name)
    compiled = compile_pipeline(pipeline_obj, config, REPOSITORY, stack=stack, keep_run=True)
    steps = compiled.snapshot.step_configurations
    return {
        "spec": str(compiled.path),
        "run_id": str(compiled.run.id),
        "images": {name: image_of(step.config.docker_settings) for name, step in steps.items()},
    }


def report(run_id: str) -> dict:
    from zenml.client import Client

    run = Client().get_pipeline_run(run_id)
    steps = {}
    for name, step in run.steps.items():
        steps[name] = {
            "status": str(step.status.value),
            "outputs": {
                output: [artifact.uri for artifact in artifacts]
                for output, artifacts in step.outputs.items()
            },
            "output_metadata": {
                output: dict(artifacts[0].run_metadata)
                for output, artifacts in step.outputs.items()
                if artifacts
            },
        }
    version = run.model_version
    production = None
    if version is not None:
        with contextlib.suppress(KeyError):  # no production version
            production = Client().get_model_version(version.model.name, "production").number
    return {
        "status": str(run.status.value),
        "orchestrator_run_id": run.orchestrator_run_id,
        "steps": steps,
        "model": version.model.name if version else None,
        "model_version": version.number if version else None,
        "model_version_stage": str(version.stage) if version and version.stage else None,
        "production_version": production,
        "model_artifacts": sorted(version.model_artifact_ids) if version else [],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("compile", "report"))
    parser.add_argument("--pipeline")
    parser.add_argument("--overrides", default="{}", help="JSON merged into the config")
    parser.add_argument("--stack", default="walsrec-kubeflow")
    parser.add_argument("--run-id")
    parser.add_argument("--output", required=True, help="JSON file to write")
    arguments = parser.parse_args(argv)

    from zenml.utils import source_utils

    # What `zenml init` at the project root, or running run.py from it, gives: step sources are
    # the project's modules, as the image has them at its working directory.
    source_utils.set_custom_source_root(str(PROJECT_ROOT))
    if arguments.command == "compile":
        result = compile_run(arguments.pipeline, json.loads(arguments.overrides), arguments.stack)
    else:
        result = report(arguments.run_id)
    Path(arguments.output).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
