"""Merge a stack's config overlay (configs/<stack>/) into a pipeline config.

The pipeline configs (configs/train.yaml, ...) say what a pipeline computes; a stack's overlay
says how its steps are packaged and scheduled there: Docker settings, per-step resources,
orchestrator settings, environment and secret names. `configs/<stack>/common.yaml` applies to
every pipeline, `configs/<stack>/<config>.yaml` (e.g. train.yaml) to one pipeline; overlay values
win, mappings merge key by key, lists are replaced.

One extension to ZenML's Docker settings: `requirements: {files: [...], without: [...]}` expands
into the pinned lines of those files minus the named packages, so the image installs exactly
what requirements.txt pins (a GPU step can drop tensorflow-cpu).
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import yaml

from walsrec.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = PROJECT_ROOT / "configs"

# Pipelines whose config file is not named after them (training_pipeline -> configs/train.yaml).
CONFIG_NAME_ALIASES = {"training": "train", "tuning": "tune", "deployment": "deploy"}

# Docker settings holding a path, resolved against the project root so `run.py` works from any
# folder.
_DOCKER_PATH_KEYS = ("dockerfile", "build_context_root")


def config_name_candidates(pipeline_name: str) -> list[str]:
    """Config file stems that may belong to a pipeline, most specific first.

    Args:
        pipeline_name: e.g. "training_pipeline".

    Returns:
        e.g. ["training", "train"] for "training_pipeline".
    """
    base = pipeline_name.removesuffix("_pipeline")
    names = [base]
    if base in CONFIG_NAME_ALIASES:
        names.append(CONFIG_NAME_ALIASES[base])
    return names


def pipeline_config_path(pipeline_name: str, configs_dir: Path = CONFIGS) -> Path | None:
    """configs/<name>.yaml of a pipeline, or None when there is none.

    Args:
        pipeline_name: the ZenML pipeline name, e.g. "batch_inference_pipeline".
        configs_dir: folder holding the pipeline configs.

    Returns:
        The path of the first existing candidate (see `config_name_candidates`).
    """
    for name in config_name_candidates(pipeline_name):
        path = configs_dir / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def deep_merge(base: dict, overlay: dict) -> dict:
    """`base` with `overlay` merged in: mappings merge recursively, anything else is replaced.

    Args:
        base: the config to start from (not modified).
        overlay: values that win.

    Returns:
        A new dict.
    """
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return content


def load_overlay(overlay_dir: Path, pipeline_name: str) -> dict:
    """The overlay for one pipeline: common.yaml merged with its pipeline-specific file.

    Args:
        overlay_dir: e.g. configs/kubeflow.
        pipeline_name: the ZenML pipeline name.

    Returns:
        The overlay (empty when the folder has neither file).
    """
    overlay: dict = {}
    common = overlay_dir / "common.yaml"
    if common.is_file():
        overlay = _read_yaml(common)
    for name in config_name_candidates(pipeline_name):
        specific = overlay_dir / f"{name}.yaml"
        if specific.is_file():
            overlay = deep_merge(overlay, _read_yaml(specific))
            break
    return overlay


def _package_name(requirement_line: str) -> str:
    name = re.split(r"[\s\[<>=!~;@]", requirement_line, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def expand_requirements(spec: dict, root: Path = PROJECT_ROOT) -> list[str]:
    """The pinned requirement lines of `spec["files"]` without the packages in `spec["without"]`.

    Args:
        spec: {"files": [paths relative to the project root], "without": [package names]}.
        root: where relative paths start.

    Returns:
        Requirement lines in file order, comments and blank lines dropped.

    Raises:
        ConfigError: if a file is missing or a line is not pinned with `==`.
    """
    unknown = set(spec) - {"files", "without"}
    if unknown or not spec.get("files"):
        raise ConfigError(
            f"docker requirements: expected {{files: [...], without: [...]}}, got {spec}"
        )
    dropped = {_package_name(name) for name in spec.get("without", [])}
    lines: list[str] = []
    for file in spec["files"]:
        path = Path(file) if Path(file).is_absolute() else root / file
        if not path.is_file():
            raise ConfigError(f"docker requirements: {path} does not exist")
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if "==" not in line:
                raise ConfigError(f"{path}: {line!r} is not pinned with ==")
            if _package_name(line) not in dropped:
                lines.append(line)
    return lines


def _resolve_docker(docker: dict, root: Path) -> dict:
    docker = dict(docker)
    if isinstance(docker.get("requirements"), dict):
        docker["requirements"] = expand_requirements(docker["requirements"], root)
    elif isinstance(docker.get("requirements"), str):
        docker["requirements"] = str(root / docker["requirements"])
    for key in _DOCKER_PATH_KEYS:
        if isinstance(docker.get(key), str) and not Path(docker[key]).is_absolute():
            docker[key] = str(root / docker[key])
    build_config = docker.get("build_config")
    if isinstance(build_config, dict) and isinstance(build_config.get("dockerignore"), str):
        docker["build_config"] = {
            **build_config,
            "dockerignore": str(root / build_config["dockerignore"]),
        }
    return docker


def resolve_settings(config: dict, root: Path = PROJECT_ROOT) -> dict:
    """The config with every Docker settings block (pipeline and steps) made concrete.

    Args:
        config: a ZenML run config.
        root: where relative paths start.

    Returns:
        A new config: requirements expanded to pinned lines, paths absolute.
    """
    config = copy.deepcopy(config)
    settings = config.get("settings") or {}
    if isinstance(settings.get("docker"), dict):
        settings["docker"] = _resolve_docker(settings["docker"], root)
    for step in (config.get("steps") or {}).values():
        step_settings = (step or {}).get("settings") or {}
        if isinstance(step_settings.get("docker"), dict):
            step_settings["docker"] = _resolve_docker(step_settings["docker"], root)
    return config


def apply_stack_overlay(
    config: dict, overlay_dir: Path | None, pipeline_name: str, root: Path = PROJECT_ROOT
) -> dict:
    """A pipeline config ready for a stack: its overlay merged in, Docker settings resolved.

    Args:
        config: the pipeline's run config (as `run.py` loaded it, with command-line overrides).
        overlay_dir: the stack's overlay folder (None: the stack needs no overlay).
        pipeline_name: the ZenML pipeline name, selecting the pipeline-specific overlay file.
        root: where relative paths in the overlay start.

    Returns:
        A new config; `config` is not modified.
    """
    if overlay_dir is None:
        return copy.deepcopy(config)
    merged = deep_merge(config, load_overlay(overlay_dir, pipeline_name))
    problems = accelerator_problems(merged)
    if problems:
        where = overlay_dir.relative_to(root) if overlay_dir.is_relative_to(root) else overlay_dir
        raise ConfigError(
            f"{pipeline_name} with the {where} overlay asks for GPUs it would not use: "
            + "; ".join(problems)
        )
    return resolve_settings(match_threads_to_cpus(merged), root)


WALS_OPS_SOURCE = PROJECT_ROOT / "walsrec" / "native" / "wals_ops.cc"


def fused_kernel_devices(source: Path = WALS_OPS_SOURCE) -> set[str]:
    """The devices the fused WALS op has kernels for, read from its registrations.

    Returns:
        e.g. {"CPU"}: `REGISTER_KERNEL_BUILDER(... .Device(DEVICE_CPU) ...)` lines.
    """
    return set(re.findall(r"\.Device\(DEVICE_([A-Z]+)\)", source.read_text(encoding="utf-8")))


def accelerator_problems(config: dict) -> list[str]:
    """Steps whose resources ask for a GPU that the code they run would leave idle.

    A GPU is used only by WALS on standard TensorFlow ops (`wals.kernel: graph`) with a CUDA
    build of TensorFlow in the step's image: the fused kernel (the default, `auto`, whenever it
    builds) has kernels only for the devices its source registers (the CPU), the `tensorflow-cpu`
    package sees no GPU, and a pipeline without a `wals` section (batch inference, deployment)
    never runs TensorFlow at all.

    Args:
        config: a run config with the stack's overlay merged in (Docker requirements not yet
            expanded, or expanded: both are read).

    Returns:
        One line per step asking for a GPU it would not use; empty when none does.
    """
    problems = []
    wals = (config.get("parameters") or {}).get("wals")
    for step, step_config in sorted((config.get("steps") or {}).items()):
        step_settings = (step_config or {}).get("settings") or {}
        resources = {
            **((config.get("settings") or {}).get("resources") or {}),
            **(step_settings.get("resources") or {}),
        }
        if not int(resources.get("gpu_count") or 0):
            continue
        if wals is None:
            problems.append(f"{step}: the pipeline trains no WALS model (no TensorFlow)")
            continue
        kernel = wals.get("kernel", "auto")
        if kernel in ("auto", "fused") and "GPU" not in fused_kernel_devices():
            problems.append(
                f"{step}: wals.kernel {kernel!r} runs the fused kernel, which has kernels for "
                f"{', '.join(sorted(fused_kernel_devices()))} only (set wals.kernel: graph)"
            )
        docker = {
            **((config.get("settings") or {}).get("docker") or {}),
            **(step_settings.get("docker") or {}),
        }
        if any(_package_name(line) == "tensorflow-cpu" for line in _requirement_lines(docker)):
            problems.append(f"{step}: its image installs tensorflow-cpu, which sees no GPU")
    return problems


def _requirement_lines(docker: dict) -> list[str]:
    requirements = docker.get("requirements")
    if isinstance(requirements, dict):
        return expand_requirements(requirements)
    return list(requirements) if isinstance(requirements, list) else []


def match_threads_to_cpus(config: dict) -> dict:
    """Set TF_NUM_INTRAOP_THREADS in each pod to the CPUs its resources ask for.

    TensorFlow sizes its intra-op pool (which runs the fused WALS kernel) from the CPUs it
    sees, which in a pod are the node's, not the pod's CPU limit: a 4-CPU trainer on a 32-core
    node would run 32 threads and be throttled. The pipeline-level resources set the default,
    a step's own resources its own value; an explicit TF_NUM_INTRAOP_THREADS is kept.

    Args:
        config: a ZenML run config after the overlay is merged in; modified and returned.
    """

    def threads(resources: dict | None) -> str | None:
        cpus = (resources or {}).get("cpu_count")
        return None if cpus is None else str(max(1, math.ceil(float(cpus))))

    key = "TF_NUM_INTRAOP_THREADS"
    environment = config.setdefault("environment", {})
    if key in environment:
        return config  # the user chose, for every pod
    default = threads((config.get("settings") or {}).get("resources"))
    if default is not None:
        environment[key] = default
    for step in (config.get("steps") or {}).values():
        own = threads(((step or {}).get("settings") or {}).get("resources"))
        if own is not None and key not in (step.get("environment") or {}):
            # A step's environment replaces the pipeline's: carry the pipeline's along.
            step["environment"] = {**environment, **(step.get("environment") or {}), key: own}
    return config
