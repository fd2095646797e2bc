"""Every exported pipeline compiles through ZenML's Kubeflow orchestrator into a KFP v2 spec whose
tasks match the ZenML DAG and the Kubeflow overlay: image, resources, environment, dependencies.

No Docker engine, cluster or network: the orchestrator compiles for real; only the stack checks
and the upload are skipped (stacks/compile.py).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

import pipelines
import run as cli
from stacks.compile import (
    compare_tasks,
    compile_pipeline,
    expected_tasks,
    pin_images,
    read_compiled_spec,
)
from stacks.overlay import apply_stack_overlay, config_name_candidates, pipeline_config_path
from stacks.register import load_recipe
from tests.kubeflow.conftest import REPOSITORY

KUBEFLOW = load_recipe("kubeflow")


def _kubeflow_config(pipeline_name: str) -> dict:
    path = pipeline_config_path(pipeline_name)
    if path is None:
        pytest.fail(
            f"pipelines exports {pipeline_name} but there is no config for it: expected one of "
            + ", ".join(f"configs/{name}.yaml" for name in config_name_candidates(pipeline_name))
        )
    return apply_stack_overlay(cli.load_config(path), KUBEFLOW.overlay_dir, pipeline_name)


def _compile(pipeline_obj, config: dict):
    compiled = compile_pipeline(pipeline_obj, config, REPOSITORY)
    expected = expected_tasks(
        compiled.snapshot, pin_images(config, REPOSITORY, pipeline_obj.name), REPOSITORY
    )
    return compiled, expected


# Discovered, not listed: tuning and deployment are covered as soon as pipelines/ exports them.
EXPORTED = sorted(pipelines.__all__)


@pytest.mark.parametrize("export_name", EXPORTED)
def test_pipeline_compiles_to_the_configured_kubeflow_spec(export_name, kubeflow_secrets):
    pipeline_obj = getattr(pipelines, export_name)
    config = _kubeflow_config(pipeline_obj.name)

    compiled, expected = _compile(pipeline_obj, config)

    steps = compiled.snapshot.step_configurations
    assert set(compiled.tasks) == set(steps), "one task per ZenML step"
    assert compare_tasks(compiled.tasks, expected) == []
    for step_name, step in steps.items():
        # Dependencies also cover every data flow: each input's producer runs first.
        producers = {input_spec.step_name for input_spec in step.spec.inputs.values()}
        assert producers <= compiled.tasks[step_name].dependencies
        task = compiled.tasks[step_name]
        assert task.cpu_limit and task.memory_limit, f"{step_name} has no resource limits"
        assert task.environment["WALSREC_CACHE_DIR"] == config["environment"]["WALSREC_CACHE_DIR"]
        # TensorFlow's thread pool (the fused WALS kernel's) sized to the pod, not the node.
        assert task.environment["TF_NUM_INTRAOP_THREADS"] == str(math.ceil(float(task.cpu_limit)))
    # Secrets reach the pods from ZenML's secret store at run time, never through the spec.
    spec_text = compiled.path.read_text(encoding="utf-8")
    for value in kubeflow_secrets.values():
        assert value not in spec_text


def test_training_spec_gives_the_trainer_a_gpu_and_its_own_image(kubeflow_secrets):
    config = _kubeflow_config(pipelines.training_pipeline.name)

    compiled, _expected = _compile(pipelines.training_pipeline, config)

    trainer = compiled.tasks["model_trainer"]
    assert trainer.accelerator_type == "nvidia.com/gpu" and trainer.accelerator_count == 1
    assert trainer.image.endswith(":training_pipeline-model_trainer-orchestrator")
    others = [task for step, task in compiled.tasks.items() if step != "model_trainer"]
    assert others and all(task.accelerator_count == 0 for task in others)
    assert all(task.image.endswith(":training_pipeline-orchestrator") for task in others)


def test_comparison_detects_changed_resources_and_dependencies(kubeflow_secrets, tmp_path: Path):
    config = _kubeflow_config(pipelines.training_pipeline.name)
    compiled, expected = _compile(pipelines.training_pipeline, config)
    assert compare_tasks(compiled.tasks, expected) == []

    # Resources: compile with the trainer's memory changed, compare with the configured spec.
    changed = copy.deepcopy(config)
    changed["steps"]["model_trainer"]["settings"]["resources"]["memory"] = "16GB"
    recompiled, _ = _compile(pipelines.training_pipeline, changed)
    problems = compare_tasks(recompiled.tasks, expected)
    assert problems == ["step model_trainer: memory_limit is '16G', expected '8G'"]

    # Dependencies: the evaluator no longer waits for the trainer in the spec.
    spec = yaml.safe_load(compiled.path.read_text(encoding="utf-8"))
    evaluator = spec["root"]["dag"]["tasks"]["model-evaluator"]
    evaluator["dependentTasks"].remove("model-trainer")
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(spec), encoding="utf-8")
    problems = compare_tasks(read_compiled_spec(edited), expected)
    assert problems == [
        "step model_evaluator: dependencies is ['data_splitter'], "
        "expected ['data_splitter', 'model_trainer']"
    ]
