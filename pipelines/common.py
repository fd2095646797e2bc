"""Pieces of pipeline definitions shared by training and tuning."""

from __future__ import annotations

from typing import Any

from steps import data_loader, data_splitter


def load_and_split(data: dict, split: dict, preprocess: dict) -> Any:
    """load -> validate -> split.

    Returns:
        The `dataset` artifact and the test file's `interactions` (None without a test file).
    """
    interactions = data_loader(source=data["source"], data=data, id="data_loader")
    test_interactions = None
    if data.get("test_path"):
        test_interactions = data_loader(source=data["test_path"], data=data, id="test_data_loader")
    dataset = data_splitter(
        interactions, split=split, preprocess=preprocess, test_interactions=test_interactions
    )
    return dataset, test_interactions
