"""The data profile and its rules: kinds detected, defaults chosen, search spaces fitted."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from walsrec.errors import ConfigError, DataError
from walsrec.profile import (
    DataProfile,
    default_wals_values,
    detect_kind,
    n_factors_rule,
    profile_matrix,
    regularization_rule,
    resolve_auto,
    round_to_series,
)
from walsrec.synthetic import generate_interactions
from walsrec.tuning import SearchSpace, TuningConfig, budget_summary


def _ml100k_train(ml100k_dir) -> sp.csr_matrix:
    frame = pd.read_csv(ml100k_dir / "ua.base", sep="\t", header=None)
    users = frame[0].astype("category").cat.codes.to_numpy()
    items = frame[1].astype("category").cat.codes.to_numpy()
    return sp.csr_matrix((frame[2].to_numpy(np.float32), (users, items)))


def test_kinds_are_detected_from_the_values() -> None:
    assert detect_kind(np.array([1.0, 3, 5, 4]))[0] == "ratings"
    assert detect_kind(np.array([0.5, 3.5, 5.0, 4.5]))[0] == "ratings"  # half stars
    assert detect_kind(np.array([1.0, 1, 1]))[0] == "binary"
    assert detect_kind(np.array([4.0, 2]), has_values=False)[0] == "binary"
    assert detect_kind(np.array([-2.5, 0.3, 1.7]))[0] == "ratings"  # scores, not counts
    counts = generate_interactions(300, 400, 9_000, feedback="counts", seed=1).ratings
    kind, reason = detect_kind(counts)
    assert kind == "counts" and "p99 / median" in reason
    assert detect_kind(counts, declared="events") == ("events", "declared by the data source")
    with pytest.raises(DataError, match="unknown feedback kind"):
        detect_kind(counts, declared="stars")


def test_profile_sizes_and_activity() -> None:
    matrix = sp.csr_matrix(np.array([[1, 0, 2, 0], [0, 0, 3, 0], [4, 0, 5, 6]], np.float32))
    profile = profile_matrix(matrix)
    assert (profile.n_users, profile.n_items, profile.n_interactions) == (3, 4, 6)
    assert profile.density == pytest.approx(0.5)
    assert profile.user_activity["max"] == 3 and profile.user_activity["min"] == 1
    assert profile.item_activity["share_at_most_2"] == pytest.approx(0.75)  # 2, 0, 3, 1
    assert profile.values["median"] == pytest.approx(3.5) and profile.values["integer"]
    restored = DataProfile.from_dict(profile.to_dict())
    assert restored == profile
    with pytest.raises(DataError, match="format version"):
        DataProfile.from_dict({**profile.to_dict(), "format_version": 99})
    assert "interactions per item" in profile.to_html()


def test_rules_give_the_values_tuned_on_movielens(ml100k_dir) -> None:
    profile = profile_matrix(_ml100k_train(ml100k_dir))  # 90,570 ratings
    assert profile.kind == "ratings"
    values = {key: value for key, (value, _) in default_wals_values(profile).items()}
    assert values == {
        "observed_weighting": "linear",
        "epsilon": 1.0,
        "alpha": 1.0,
        "unobserved_weight": 1.0,
        "regularization": 30.0,
        "n_factors": 32,
        "epochs": 15,
    }


def test_rules_for_counts_use_log_confidence_near_the_target_mean() -> None:
    data = generate_interactions(1_000, 3_000, 40_000, feedback="counts", seed=2)
    profile = profile_matrix(data.to_csr())
    chosen = {key: value for key, (value, _) in default_wals_values(profile).items()}
    assert chosen["observed_weighting"] == "log"
    assert chosen["epsilon"] == pytest.approx(float(np.median(data.ratings)), rel=1e-2)
    # The mean confidence an observed entry adds is near 3.5, as for ratings 1-5 with alpha 1
    # (rounding alpha to the 1-1.5-2-3-5-7 series moves it by at most about 25%).
    added = chosen["alpha"] * np.log1p(data.ratings / chosen["epsilon"])
    assert 2.6 < added.mean() < 4.6
    binary = profile_matrix(generate_interactions(500, 800, 9_000, feedback="binary").to_csr())
    assert default_wals_values(binary)["observed_weighting"][0] == "constant"
    assert default_wals_values(binary)["unobserved_weight"][0] == 0.3
    assert chosen["unobserved_weight"] == 0.3


def test_size_rules_grow_with_the_data_and_stay_bounded() -> None:
    sizes = [1_000, 10**4, 10**5, 10**6, 10**7, 10**8, 10**12]
    penalties = [regularization_rule(n) for n in sizes]
    factors = [n_factors_rule(n) for n in sizes]
    assert penalties == sorted(penalties) and penalties[0] >= 1 and penalties[-1] <= 3000
    assert regularization_rule(15_000_000) == 300.0  # the synthetic ML-20M choice
    assert factors == sorted(factors) and factors[0] == 16 and factors[-1] == 128
    assert all(f % 8 == 0 for f in factors)
    assert [round_to_series(v) for v in (0.991, 3.4, 43, 278)] == [1.0, 3.0, 50.0, 300.0]


def test_resolve_auto_replaces_only_rule_keys() -> None:
    profile = profile_matrix(generate_interactions(300, 400, 9_000, seed=1).to_csr())
    values = {"n_factors": "auto", "alpha": 2.5, "kernel": "auto", "regularization": "auto"}
    resolved, chosen = resolve_auto(values, profile)
    assert resolved["kernel"] == "auto" and resolved["alpha"] == 2.5
    assert isinstance(resolved["n_factors"], int) and set(chosen) == {"n_factors", "regularization"}
    assert "log10" in chosen["n_factors"]["reason"]
    with pytest.raises(ConfigError, match="no data profile"):
        resolve_auto(values, None)


def test_search_space_is_fitted_to_the_profile(ml100k_dir) -> None:
    space = SearchSpace.from_dict(
        {
            "n_factors": {"type": "int", "low": 0.5, "high": 3.0, "step": 8, "relative": True},
            "regularization": {"type": "float", "low": 0.1, "high": 5.0, "relative": True},
            "epsilon": {
                "low": 0.1,
                "high": 10.0,
                "log": True,
                "relative": True,
                "kinds": ["counts"],
            },
            "epochs": {"type": "int", "low": 6, "high": 15},
        }
    )
    ratings = profile_matrix(_ml100k_train(ml100k_dir))
    base, _ = resolve_auto({"n_factors": "auto", "regularization": "auto"}, ratings)
    fitted = {p.name: p for p in space.fitted(base, ratings.kind).parameters}
    assert set(fitted) == {"n_factors", "regularization", "epochs"}  # epsilon: counts only
    assert (fitted["n_factors"].low, fitted["n_factors"].high) == (16, 96)
    assert (fitted["regularization"].low, fitted["regularization"].high) == (3.0, 150.0)
    assert not fitted["n_factors"].relative

    counts = profile_matrix(generate_interactions(500, 800, 9_000, feedback="counts").to_csr())
    base, _ = resolve_auto({"epsilon": "auto", "n_factors": 32, "regularization": 10}, counts)
    fitted = {p.name: p for p in space.fitted(base, counts.kind).parameters}
    median = counts.values["median"]
    assert fitted["epsilon"].low == pytest.approx(0.1 * median, rel=0.01)
    assert fitted["epsilon"].high == pytest.approx(10 * median, rel=0.01)
    with pytest.raises(ConfigError, match="relative, but its base value"):
        space.fitted({"n_factors": "auto"}, "ratings")
    with pytest.raises(ConfigError, match="not a feedback kind"):
        SearchSpace.from_dict({"alpha": {"low": 1, "high": 2, "kinds": ["stars"]}})


def test_budget_summary_says_when_the_time_budget_cut_the_study() -> None:
    config = TuningConfig.from_dict({"n_trials": 50, "timeout": 270})
    cut = budget_summary({"COMPLETE": 15, "PRUNED": 8, "WAITING": 27}, config)
    assert cut["cut_short"] and cut["trials_run"] == 23
    assert cut["message"].startswith("23 of 50 trials ran")
    assert "27 still queued" in cut["message"] and "run the same command again" in cut["message"]
    done = budget_summary({"COMPLETE": 40, "PRUNED": 9, "FAIL": 1}, config)
    assert not done["cut_short"] and done["message"] == "49 of 50 trials ran"


def test_report_interval_grows_with_the_scoring_cost() -> None:
    small = profile_matrix(generate_interactions(300, 400, 9_000, seed=1).to_csr())
    large = dataclasses.replace(small, n_users=3_000, n_items=100_000)
    config = TuningConfig.from_dict({"report_every": "auto"})
    assert config.fitted({}, small)[0].report_every == 1
    assert config.fitted({}, large)[0].report_every == 3
    assert TuningConfig.from_dict({"report_every": 4}).fitted({}, large)[0].report_every == 4
    with pytest.raises(ConfigError, match="report_every"):
        TuningConfig.from_dict({"report_every": "often"})
