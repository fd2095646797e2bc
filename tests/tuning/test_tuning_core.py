"""The tuning core: search space, storage resolution, the validation-only objective, blends,
posterior averaging."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from walsrec.data import SplitConfig, build_dataset, load_source
from walsrec.errors import ConfigError, DataError
from walsrec.evaluation.metrics import rating_metrics
from walsrec.models.bayes import BayesConfig, train_bayes
from walsrec.models.ensemble import BlendConfig, blend_model, blended_score_fn
from walsrec.models.itemknn import ease_item_weights
from walsrec.models.wals import WALSConfig
from walsrec.training import evaluate_model, train_model
from walsrec.tuning import (
    STORAGE_ENV,
    SearchSpace,
    TuningConfig,
    ValidationFold,
    ValidationObjective,
    derive_study_name,
    predict_every_pair,
    redact_url,
    resolve_storage_url,
    split_params,
    train_best_model,
    validation_folds,
)

FAST_WALS = {"n_factors": 8, "regularization": 10.0, "alpha": 1.0, "epochs": 3}
SPACE = {
    "regularization": {"type": "float", "low": 1.0, "high": 100.0, "log": True},
    "n_factors": {"type": "int", "low": 4, "high": 12, "step": 4},
    "item_item_weight": {"type": "float", "low": 0.0, "high": 0.6},
    "observed_weighting": {"choices": ["linear", "log"]},
    "epochs": 3,
}
RATING_WALS = {
    "mode": "explicit",
    "unobserved_weight": 0.0,
    "observed_weighting": "constant",
    "alpha": 1.0,
    "use_biases": True,
    "jit_compile": False,
}
BAYES = {"posterior_samples": 20, "burn_in": 5, "posterior_rank": 200}
BAYES_SPACE = {
    "n_factors": {"type": "int", "low": 4, "high": 6},
    "hyperprior_scale": {"type": "float", "low": 0.5, "high": 2.0, "log": True},
}


@pytest.fixture(scope="module")
def dataset(ml100k_dir: Path):
    interactions = load_source(str(ml100k_dir))
    return build_dataset(interactions, split=SplitConfig(test_ratio=0.25, validation_ratio=0.2))


def test_search_space_from_yaml_values_and_errors() -> None:
    space = SearchSpace.from_dict(SPACE)
    assert {p.name for p in space.parameters} == {
        "regularization",
        "n_factors",
        "item_item_weight",
        "observed_weighting",
    }
    assert space.fixed == {"epochs": 3}
    trial = optuna.create_study().ask()
    params = space.sample(trial)
    assert 1.0 <= params["regularization"] <= 100.0 and params["n_factors"] in (4, 8, 12)
    with pytest.raises(ConfigError, match="search_space.n_factor"):
        SearchSpace.from_dict({"n_factor": {"type": "int", "low": 1, "high": 2}})
    with pytest.raises(ConfigError, match="log scale needs low > 0"):
        SearchSpace.from_dict({"alpha": {"type": "float", "low": 0, "high": 2, "log": True}})
    with pytest.raises(ConfigError, match="tuning.objective: 'accuracy' is not a tuning obj"):
        TuningConfig.from_dict({"objective": "accuracy"})
    with pytest.raises(ConfigError, match="tuning.n_trails: unknown key; did you mean n_trials?"):
        TuningConfig.from_dict({"n_trails": 5})
    with pytest.raises(ConfigError, match="tuning.n_trials: Input should be greater than or eq"):
        TuningConfig.from_dict({"n_trials": 0})
    with pytest.raises(ConfigError, match=r"tuning: grace_period \(10\) must exceed heartbeat"):
        TuningConfig.from_dict({"grace_period": 10, "heartbeat_interval": 10})
    with pytest.raises(ConfigError, match="tuning.report_every: Input should be 'auto' or"):
        TuningConfig.from_dict({"report_every": "sometimes"})
    assert TuningConfig.from_dict({"report_every": "auto", "timeout": 60}).timeout == 60.0
    assert TuningConfig.from_dict({"objective": "rmse"}).direction == "minimize"


def test_tuning_config_is_stored_as_written_and_read_back_equal() -> None:
    """As a step parameter ZenML stores the section as JSON and validates it again: the search
    space is written the way the config writes it, and comes back as the same config (and so
    the same study name)."""
    content = yaml.safe_load((Path(__file__).parents[2] / "configs" / "tune.yaml").read_text())
    config = TuningConfig.from_dict(content["parameters"]["tuning"])
    stored = json.loads(json.dumps(config.model_dump(mode="json")))
    assert stored["search_space"]["n_factors"] == {
        "type": "int",
        "low": 0.5,
        "high": 3.0,
        "log": False,
        "step": 8,
        "relative": True,
    }
    again = TuningConfig.model_validate(stored)
    assert again == config and again.to_dict() == config.to_dict()


def test_storage_resolution_and_password_never_shown(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    default = resolve_storage_url(None, state_dir=tmp_path / "state")
    assert default == f"sqlite:///{(tmp_path / 'state' / 'optuna.db').resolve()}"
    assert resolve_storage_url("postgresql://u@h/db") == "postgresql://u@h/db"
    monkeypatch.setenv(STORAGE_ENV, "mysql+pymysql://user:s3cret@db:3306/optuna")
    url = resolve_storage_url("postgresql://u@h/db")
    assert url.endswith("@db:3306/optuna")  # the environment wins over the config
    assert "s3cret" not in redact_url(url) and "***" in redact_url(url)


def test_study_name_is_stable_and_ignores_the_budget() -> None:
    config = TuningConfig.from_dict({"search_space": SPACE, "n_trials": 5})
    bigger = config.model_copy(update={"n_trials": 50, "timeout": 60.0})
    name = derive_study_name(config, FAST_WALS, {}, {"seed": 42}, "ml-100k")
    assert name == derive_study_name(bigger, FAST_WALS, {}, {"seed": 42}, "ml-100k")
    assert name != derive_study_name(config, FAST_WALS, {}, {"seed": 7}, "ml-100k")
    # A config without a bayes section keeps the name it had before the section existed.
    assert name == derive_study_name(config, FAST_WALS, {}, {"seed": 42}, "ml-100k", {})
    assert name != derive_study_name(config, FAST_WALS, {}, {"seed": 42}, "ml-100k", BAYES)


def _objective_values(dataset, n_trials: int = 2) -> list[float]:
    folds = validation_folds(dataset.train, dataset.validation)
    objective = ValidationObjective(
        folds, SearchSpace.from_dict(SPACE), "ndcg@10", FAST_WALS, {"item_item_l2": 300.0}
    )
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(objective, n_trials=n_trials)
    return [trial.value for trial in study.trials]


def test_objective_never_sees_the_test_split(dataset) -> None:
    # Poison the test part: different pairs, absurd values. The objective is built from the
    # train and validation parts only, so its values can't change.
    rng = np.random.default_rng(0)
    poisoned_test = sp.random(
        dataset.n_users, dataset.n_items, density=0.05, format="csr", random_state=rng
    )
    poisoned_test.data[:] = 1e6
    poisoned = dataclasses.replace(dataset, test=poisoned_test)
    assert _objective_values(dataset) == _objective_values(poisoned)

    # The objective accepts validation folds only, never a whole dataset.
    with pytest.raises(DataError, match="ValidationFold"):
        ValidationObjective([dataset], SearchSpace.from_dict(SPACE))
    without_validation = dataclasses.replace(dataset, validation=None)
    with pytest.raises(DataError, match="validation_ratio"):
        validation_folds(without_validation.train, without_validation.validation)


def test_extra_validation_folds_are_disjoint_and_same_size(dataset) -> None:
    folds = validation_folds(dataset.train, dataset.validation, n_folds=3, seed=1)
    combined = (dataset.train + dataset.validation).tocsr()
    for fold in folds:
        assert (fold.train + fold.validation - combined).nnz == 0
        assert fold.train.multiply(fold.validation).nnz == 0
        assert abs(fold.validation.nnz - dataset.validation.nnz) < 0.02 * dataset.validation.nnz
    assert (folds[1].validation - folds[2].validation).nnz > 0


def test_blended_model_scores_like_the_objectives_blend(dataset) -> None:
    model = train_model(dataset, WALSConfig(**FAST_WALS), validation_every_epoch=False)
    blend = BlendConfig(item_item_weight=0.4, item_item_l2=200.0)
    blended = blend_model(model, blend)
    weights = ease_item_weights(model.seen, 200.0)
    assert np.allclose(np.diag(weights), 0)
    users = np.arange(25)
    expected = blended_score_fn(model.score_users, model.seen, weights, blend)(users)
    np.testing.assert_allclose(blended.score_users(users), expected, rtol=1e-4, atol=1e-5)
    assert blended.metadata["blend"]["method_used"] == "ease"  # ML-100K: 1682 items fit
    assert blended.n_factors == 8  # the WALS factors, the item-item part beside them
    assert blend_model(model, BlendConfig()) is model
    with pytest.raises(ConfigError, match="max_items"):
        ease_item_weights(model.seen, 10.0, max_items=100)


def test_every_test_pair_gets_a_prediction(dataset, caplog) -> None:
    config = WALSConfig(
        **{**FAST_WALS, "mode": "explicit", "use_biases": True, "unobserved_weight": 0.0}
    )
    with caplog.at_level(logging.WARNING):
        model = train_model(dataset, config, validation_every_epoch=False)
    known_user, known_item = str(model.user_ids[0]), str(model.item_ids[0])
    pairs = pd.DataFrame(
        {
            "user_id": [known_user, known_user, "nobody", "nobody"],
            "item_id": [known_item, "no-item", known_item, "no-item"],
        }
    )
    predicted = predict_every_pair(model, pairs)["prediction"].to_numpy()
    mean = model.global_mean
    assert predicted[0] == pytest.approx(float(model.predict(np.array([0]), np.array([0]))[0]))
    assert predicted[1] == pytest.approx(mean + model.user_bias[0], rel=1e-5)
    assert predicted[2] == pytest.approx(mean + model.item_bias[0], rel=1e-5)
    assert predicted[3] == pytest.approx(mean, rel=1e-6)


def test_posterior_objective_reports_samples_and_is_what_the_averaged_model_predicts(
    dataset,
) -> None:
    folds = validation_folds(dataset.train, dataset.validation)
    objective = ValidationObjective(
        folds,
        SearchSpace.from_dict(BAYES_SPACE),
        "rmse",
        RATING_WALS,
        {},
        BAYES,
        report_every=5,
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    # One report every 5 averaged samples, for the pruner; the value is the last one.
    assert sorted(trial.intermediate_values) == [5, 10, 15, 20]
    assert trial.value == trial.intermediate_values[20]

    # The averaged model trained with the trial's parameters predicts exactly that error
    # (rank 200 >= 20 samples x 6 factors: the compression is exact).
    wals, _, bayes = split_params(trial.params, RATING_WALS, {}, BAYES)
    model = train_bayes(folds[0].train, wals, bayes)
    held = folds[0].validation.tocoo()
    error = rating_metrics(model.predict(held.row, held.col), held.data)["rmse"]
    assert error == pytest.approx(trial.value, abs=1e-5)
    assert 0.85 < trial.value < 1.0  # ML-100K ratings: a real model, not a constant


def test_posterior_averaging_needs_a_rating_objective_and_model() -> None:
    ones = sp.csr_matrix(np.ones((2, 2)))
    folds = [ValidationFold(ones, ones)]
    with pytest.raises(ConfigError, match="tuning.objective rmse or mae, not ndcg@10"):
        ValidationObjective(folds, SearchSpace.from_dict(BAYES_SPACE), "ndcg@10", {}, {}, BAYES)
    with pytest.raises(ConfigError, match="tuning.objective rmse or mae"):
        ValidationObjective(
            folds,
            SearchSpace.from_dict({"posterior_samples": {"type": "int", "low": 0, "high": 9}}),
            "ndcg@10",
        )
    with pytest.raises(ConfigError, match="needs wals.mode: explicit"):
        split_params({"posterior_samples": 10}, {"mode": "implicit"}, {}, {})
    space = SearchSpace.from_dict({**BAYES_SPACE, "burn_in": 7})
    assert space.fixed == {"burn_in": 7}
    with pytest.raises(ConfigError, match="bayes key"):
        SearchSpace.from_dict({"posterior_sampels": 3})
    with pytest.raises(ConfigError, match="tuning.report_every"):
        TuningConfig.from_dict({"report_every": 0})


def test_best_model_with_posterior_averaging_is_retrained_on_train_and_validation(
    dataset,
) -> None:
    wals, blend, bayes = split_params({"n_factors": 5}, RATING_WALS, {}, BAYES)
    model, full = train_best_model(dataset, wals, blend, bayes)
    assert model.seen.nnz == dataset.train.nnz + dataset.validation.nnz == full.train.nnz
    # The saved factors are the compressed average: the config describes them, the metadata
    # describes the sampling.
    assert model.n_factors == model.config["n_factors"] == 100  # 20 samples x 5 factors
    assert model.metadata["bayes"]["sampled_factors"] == 5
    assert model.metadata["bayes"]["averaged_samples"] == 20
    assert len(model.metadata["history"]) == 25  # every sweep, burn-in included
    metrics = evaluate_model(model, full)["wals"]
    assert 0.85 < metrics["rmse"] < 1.0 and metrics["mae"] < metrics["rmse"]
    recorded = model.metadata["bayes"]
    assert BayesConfig.from_dict({k: recorded[k] for k in BAYES}) == BayesConfig.from_dict(BAYES)


def test_training_with_posterior_averaging_records_the_validation_curve(dataset) -> None:
    wals, _, bayes = split_params({"n_factors": 4}, RATING_WALS, {}, BAYES)
    model = train_model(dataset, wals, bayes=bayes, progress=False)
    history = model.metadata["history"]
    assert [row["epoch"] for row in history] == list(range(1, 26))
    # Validation error of the average so far, from the first averaged sample (sweep 6) on.
    curve = [row["validation"]["rmse"] for row in history if "validation" in row]
    assert [row["epoch"] for row in history if "validation" in row] == list(range(6, 26))
    assert curve[-1] < curve[0]  # averaging helps
    held = dataset.validation.tocoo()
    final = rating_metrics(model.predict(held.row, held.col), held.data)["rmse"]
    assert final == pytest.approx(curve[-1], abs=1e-5)


def _synthetic_fold(n_users: int, n_items: int, n_interactions: int) -> ValidationFold:
    """A train / validation fold of synthetic data: 20% of the interactions held out."""
    from walsrec.synthetic import generate_interactions

    coo = generate_interactions(n_users, n_items, n_interactions, feedback="binary", seed=5)
    coo = coo.to_csr().tocoo()
    held = np.random.default_rng(0).random(coo.nnz) < 0.2
    parts = [
        sp.csr_matrix((coo.data[m], (coo.row[m], coo.col[m])), shape=coo.shape)
        for m in (~held, held)
    ]
    return ValidationFold(*parts)


BLEND_SPACE = {
    "n_factors": 8,
    "epochs": 2,
    "item_item_weight": {"type": "float", "low": 0.1, "high": 0.6},
    "item_item_l2": {"type": "float", "low": 100.0, "high": 1000.0, "log": True},
    "neighbors": {"type": "int", "low": 20, "high": 60},
}


def test_tuning_a_catalogue_above_5000_items_runs_blend_trials(caplog) -> None:
    fold = _synthetic_fold(1500, 8000, 40_000)
    objective = ValidationObjective([fold], SearchSpace.from_dict(BLEND_SPACE), "ndcg@10")
    # auto on 8,000 items: the sparse kNN, so EASE's l2 is not searched.
    assert objective.item_item_method == "knn"
    assert {p.name for p in objective.search_space.parameters} == {
        "item_item_weight",
        "neighbors",
    }
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(3))
    study.optimize(objective, n_trials=3)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert all(
        t.params["item_item_weight"] >= 0.1 and "neighbors" in t.params for t in study.trials
    )
    assert all(0 < t.value < 1 for t in study.trials)

    # EASE alone can't fit 8,000 items under max_items: the blend leaves the search with one
    # logged reason, and the trials tune WALS alone instead of failing.
    with caplog.at_level(logging.WARNING, logger="walsrec.tuning"):
        ease_only = ValidationObjective(
            [fold], SearchSpace.from_dict(BLEND_SPACE), "ndcg@10", {}, {"method": "ease"}
        )
        study = optuna.create_study(direction="maximize")
        study.optimize(ease_only, n_trials=2)
    reasons = [r for r in caplog.records if "left out" in r.getMessage()]
    assert len(reasons) == 1 and "blend.max_items=3000" in reasons[0].getMessage()
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    assert all(not set(t.params) & {"item_item_weight", "neighbors"} for t in study.trials)


def test_best_model_carries_the_sparse_item_item_part(dataset) -> None:
    wals, blend, _ = split_params(
        {"item_item_weight": 0.3, "neighbors": 50}, FAST_WALS, {"method": "knn"}
    )
    model, full = train_best_model(dataset, wals, blend)
    assert model.blended and model.blend_weight == pytest.approx(0.3)
    assert model.item_item.nnz <= model.n_items * 50
    assert model.metadata["blend"]["method_used"] == "knn"
    metrics = evaluate_model(model, full)["wals"]
    assert metrics["ndcg@10"] > evaluate_model(model, full)["popularity"]["ndcg@10"]


def test_a_new_study_starts_with_the_base_values_in_the_search_domain(tmp_path: Path) -> None:
    from walsrec.tuning import base_values, open_storage, prepare_study, run_worker

    space = SearchSpace.from_dict(SPACE)
    base = base_values({"regularization": 300.0, "n_factors": 7}, {"item_item_weight": 0.0}, None)
    baseline = space.baseline({**base, "observed_weighting": "item_power"})
    # Clipped to the range, on the step grid; a value outside the choices is left to TPE.
    assert baseline == {"regularization": 100.0, "n_factors": 8, "item_item_weight": 0.0}

    config = TuningConfig(search_space=space, n_trials=3, progress=False)
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert prepare_study(storage, "s", config, baseline)["enqueued"] == 3
    seen = []

    def objective(trial):
        values = space.sample(trial)
        seen.append(values)
        return float(values["regularization"])

    run_worker(storage, "s", objective, config)
    assert seen[0] == {**baseline, "epochs": 3, "observed_weighting": seen[0]["observed_weighting"]}
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.user_attrs.get("baseline", False) for t in study.trials] == [True, False, False]
    assert seen[1] != seen[0] and len(study.trials) == 3
    # A resumed study is topped up with sampled trials only: the baseline ran once.
    prepare_study(storage, "s", config.model_copy(update={"n_trials": 4}), baseline)
    run_worker(storage, "s", objective, config.model_copy(update={"n_trials": 4}))
    study = optuna.load_study(study_name="s", storage=storage)
    assert sum(t.user_attrs.get("baseline", False) for t in study.trials) == 1


def test_large_validation_is_scored_on_a_fixed_sample_of_its_users(dataset) -> None:
    n_items = dataset.train.shape[1]
    full = validation_folds(dataset.train, dataset.validation)[0]
    every_user = validation_folds(dataset.train, dataset.validation, max_scores=10**9)[0]
    assert (every_user.validation != full.validation).nnz == 0  # below the cap: all users
    sampled = validation_folds(dataset.train, dataset.validation, max_scores=300 * n_items)[0]
    again = validation_folds(dataset.train, dataset.validation, max_scores=300 * n_items)[0]
    users = np.flatnonzero(np.diff(sampled.validation.indptr))
    assert users.size == 300
    assert (sampled.validation != again.validation).nnz == 0  # the same sample every time
    # The sampled users keep every validation entry; the others have none; train is untouched.
    np.testing.assert_array_equal(
        sampled.validation[users].toarray(), full.validation[users].toarray()
    )
    assert sampled.validation.nnz == full.validation[users].nnz
    assert sampled.train is full.train or (sampled.train != full.train).nnz == 0
    for bad in (0, True, 2.5):
        with pytest.raises(ConfigError, match="max_validation_scores"):
            TuningConfig.from_dict({"max_validation_scores": bad})
