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
from click.testing import CliRunner

import pipelines
import run as cli
from stacks.compile import (
    compare_tasks,
    compile_pipeline,
    expected_tasks,
    pin_images,
    read_compiled_spec,
)
from stacks.overlay import (
    accelerator_problems,
    apply_stack_overlay,
    config_name_candidates,
    fused_kernel_devices,
    pipeline_config_path,
)
from stacks.register import load_recipe
from tests.kubeflow.conftest import REPOSITORY
from walsrec.errors import ConfigError

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


def test_training_spec_asks_for_no_accelerator_the_trainer_would_leave_idle(kubeflow_secrets):
    config = _kubeflow_config(pipelines.training_pipeline.name)

    compiled, _expected = _compile(pipelines.training_pipeline, config)

    # The default kernel is the fused one, registered for the CPU only: no GPU, 4 CPUs, and the
    # image every other step runs (tensorflow-cpu; no CUDA image to pull).
    assert fused_kernel_devices() == {"CPU"}
    assert config["parameters"]["wals"]["kernel"] == "auto"
    assert all(task.accelerator_count == 0 for task in compiled.tasks.values())
    assert all(task.accelerator_type is None for task in compiled.tasks.values())
    trainer = compiled.tasks["model_trainer"]
    assert trainer.cpu_limit == "4" and trainer.memory_limit == "8G"
    assert all(
        task.image.endswith(":training_pipeline-orchestrator") for task in compiled.tasks.values()
    )


def _with_trainer_gpu(config: dict, **trainer_settings) -> dict:
    config = copy.deepcopy(config)
    settings = (
        config.setdefault("steps", {}).setdefault("model_trainer", {}).setdefault("settings", {})
    )
    settings.setdefault("resources", {})["gpu_count"] = 1
    settings.update(trainer_settings)
    return config


def test_a_gpu_the_code_would_not_use_is_refused_and_a_real_gpu_path_accepted():
    overlay_dir = KUBEFLOW.overlay_dir
    train = cli.load_config(pipeline_config_path("training_pipeline"))
    with pytest.raises(ConfigError) as error:
        apply_stack_overlay(_with_trainer_gpu(train), overlay_dir, "training_pipeline")
    assert str(error.value) == (
        "training_pipeline with the configs/kubeflow overlay asks for GPUs it would not use: "
        "model_trainer: wals.kernel 'auto' runs the fused kernel, which has kernels for CPU only "
        "(set wals.kernel: graph); model_trainer: its image installs tensorflow-cpu, which sees "
        "no GPU"
    )
    # Standard TensorFlow ops on a CUDA build of TensorFlow: TensorFlow places them on the GPU.
    cuda = {
        "docker": {
            "parent_image": "tensorflow/tensorflow:2.21.0-gpu",
            "requirements": {
                "files": ["requirements.txt", "configs/kubeflow/requirements-remote.txt"],
                "without": ["tensorflow-cpu"],
            },
        }
    }
    graph = _with_trainer_gpu(train, **cuda)
    graph["parameters"]["wals"]["kernel"] = "graph"
    overlaid = apply_stack_overlay(graph, overlay_dir, "training_pipeline")
    assert overlaid["steps"]["model_trainer"]["settings"]["resources"]["gpu_count"] == 1
    # Batch inference never runs TensorFlow.
    batch = cli.load_config(pipeline_config_path("batch_inference_pipeline"))
    batch.setdefault("steps", {})["recommendation_writer"] = {
        "settings": {"resources": {"gpu_count": 1}}
    }
    assert accelerator_problems(batch) == [
        "recommendation_writer: the pipeline trains no WALS model (no TensorFlow)"
    ]


def test_stack_kubeflow_with_an_idle_gpu_stops_before_compiling(tmp_path: Path):
    config = _with_trainer_gpu(cli.load_config(pipeline_config_path("training_pipeline")))
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    result = CliRunner().invoke(cli.cli, ["--stack", "kubeflow", "--config", str(path)])

    assert result.exit_code != 0
    assert "asks for GPUs it would not use: model_trainer: wals.kernel 'auto'" in result.output
    assert "Traceback" not in result.output and "Compiled" not in result.output


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
