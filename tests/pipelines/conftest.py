"""Helpers for running the real pipelines on the real local ZenML stack (state in a temp dir)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import run as cli


def make_config(name: str, model_name: str, **sections: dict) -> dict:
    """configs/<name>.yaml with the model renamed and sections' keys overridden."""
    config = copy.deepcopy(cli.load_config(cli.CONFIGS / f"{name}.yaml"))
    if model_name and "model" in config:
        config["model"]["name"] = model_name
    if model_name and "model_name" in config["parameters"]:
        config["parameters"]["model_name"] = model_name
    for section, values in sections.items():
        config["parameters"].setdefault(section, {}).update(values)
    return config


@pytest.fixture
def train_config(ml100k_dir: Path):
    """A fast training config on the shared ML-100K copy (fewer epochs, no progress bar)."""

    def build(model_name: str, **sections: dict) -> dict:
        sections.setdefault("data", {})
        sections["data"] = {"source": str(ml100k_dir), **sections["data"]}
        sections["wals"] = {"epochs": 6, **sections.get("wals", {})}
        sections["evaluation"] = {"progress": False, **sections.get("evaluation", {})}
        return make_config("train", model_name, **sections)

    return build
