"""The flat layout's module paths still import, as the very modules of the new layout
(walsrec._moved): ZenML stores record artifact types by dotted path, users import them."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from walsrec._moved import MOVED

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_every_old_path_is_gone_from_the_tree() -> None:
    for old in MOVED:
        relative = old.replace(".", "/")
        assert not (PROJECT_ROOT / f"{relative}.py").exists(), old
        assert not (PROJECT_ROOT / relative).is_dir() or old == "walsrec.tuning", old


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_name_is_the_new_module(old: str) -> None:
    new = importlib.import_module(MOVED[old])
    assert importlib.import_module(old) is new
    assert sys.modules[old] is new
    assert new.__name__ == MOVED[old] and new.__spec__.name == MOVED[old]
    parent, _, leaf = old.rpartition(".")
    assert getattr(sys.modules[parent], leaf) is new
    names = [name for name in vars(new) if not name.startswith("__")]
    assert names
    for name in names:
        assert getattr(importlib.import_module(old), name) is getattr(new, name)


def test_import_statements_give_the_same_class_by_old_and_new_paths() -> None:
    import walsrec.model
    from walsrec.model import RecommenderModel as Old

    from walsrec.models.recommender import RecommenderModel as New

    assert Old is New and walsrec.model.RecommenderModel is New
    assert importlib.import_module("walsrec.model").RecommenderModel is New
    assert Old.__module__ == "walsrec.models.recommender"


def test_zenml_resolves_a_stored_source_path_to_the_new_class() -> None:
    from zenml.utils import source_utils

    from walsrec.inference.topk import top_k
    from walsrec.models.recommender import RecommenderModel

    assert source_utils.load("walsrec.model.RecommenderModel") is RecommenderModel
    assert source_utils.load("walsrec.topk.top_k") is top_k
    assert source_utils.resolve(RecommenderModel).import_path == (
        "walsrec.models.recommender.RecommenderModel"
    )


def test_import_walsrec_stays_cheap_and_old_names_import_in_a_fresh_process() -> None:
    probe = (
        "import sys, walsrec\n"
        "heavy = ('numpy', 'scipy', 'pydantic', 'walsrec.models')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import walsrec.wals_config, walsrec.models.wals_config as new\n"
        "assert walsrec.wals_config is new and 'tensorflow' not in sys.modules\n"
        "from walsrec.model import RecommenderModel\n"
        "print('ok')"
    )
    env = {**os.environ, "ZENML_ANALYTICS_OPT_IN": "false"}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


# What the single-file walsrec.tuning defined (and the config names it imported), by name.
OLD_TUNING_NAMES = (
    "BAYES_KEYS",
    "BLEND_KEYS",
    "JOURNAL_PREFIX",
    "STATE_DIR_ENV",
    "STORAGE_ENV",
    "WALS_KEYS",
    "ParameterSpec",
    "SearchSpace",
    "TuningConfig",
    "ValidationFold",
    "ValidationObjective",
    "_sampler_and_pruner",
    "base_values",
    "best_trial_params",
    "budget_summary",
    "default_state_dir",
    "derive_study_name",
    "metric_k",
    "one_run_per_sqlite_storage",
    "open_storage",
    "predict_every_pair",
    "prepare_study",
    "redact_url",
    "resolve_storage_url",
    "run_worker",
    "split_params",
    "study_plots_html",
    "study_summary",
    "train_best_model",
    "trials_frame",
    "validation_folds",
)


def test_the_tuning_package_exports_what_the_tuning_module_did() -> None:
    import walsrec.tuning

    for name in OLD_TUNING_NAMES:
        value = getattr(walsrec.tuning, name)
        module = importlib.import_module(walsrec.tuning._MODULES_OF[name])
        assert getattr(module, name) is value, name
    assert set(walsrec.tuning.__all__) <= set(OLD_TUNING_NAMES)
    with pytest.raises(AttributeError):
        walsrec.tuning.no_such_name  # noqa: B018


def test_the_tuning_config_imports_neither_tensorflow_nor_optuna() -> None:
    probe = (
        "import sys\nfrom walsrec.tuning import TuningConfig, resolve_storage_url\n"
        "from walsrec.tuning_config import SearchSpace\n"
        "print(sorted(m for m in ('tensorflow', 'optuna', 'walsrec.tuning.objective') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_an_unknown_old_looking_name_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("walsrec.no_such_module")
