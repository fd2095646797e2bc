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
    return resolve_settings(deep_merge(config, load_overlay(overlay_dir, pipeline_name)), root)
