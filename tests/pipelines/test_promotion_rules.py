"""The promotion decision on hand-made evaluations."""

from steps.training.model_promoter import decide_promotion


def _evaluation(ours: float, popularity: float, fingerprint: str = "abc") -> dict:
    return {
        "metrics": {"wals": {"ndcg@10": ours, "rmse": 0.9}, "popularity": {"ndcg@10": popularity}},
        "test_fingerprint": fingerprint,
    }


def test_first_version_is_promoted_only_if_it_beats_popularity() -> None:
    assert decide_promotion(_evaluation(0.4, 0.3), None, "ndcg@10")[0] is True
    promote, reason = decide_promotion(_evaluation(0.2, 0.3), None, "ndcg@10")
    assert promote is False and "popularity" in reason


def test_must_beat_production_on_the_same_test_set() -> None:
    production = _evaluation(0.42, 0.3)
    assert decide_promotion(_evaluation(0.43, 0.3), production, "ndcg@10")[0] is True
    assert decide_promotion(_evaluation(0.41, 0.3), production, "ndcg@10")[0] is False
    promote, _ = decide_promotion(_evaluation(0.43, 0.3), production, "ndcg@10", 0.02)
    assert promote is False  # improvement below min_improvement


def test_lower_is_better_for_rmse() -> None:
    production = _evaluation(0.4, 0.3)
    production["metrics"]["wals"]["rmse"] = 0.95
    assert decide_promotion(_evaluation(0.4, 0.3), production, "rmse")[0] is True
    production["metrics"]["wals"]["rmse"] = 0.85
    assert decide_promotion(_evaluation(0.4, 0.3), production, "rmse")[0] is False


def test_other_test_set_cannot_be_compared() -> None:
    production = _evaluation(0.9, 0.3, fingerprint="old")
    promote, reason = decide_promotion(_evaluation(0.4, 0.3), production, "ndcg@10")
    assert promote is True and "another test set" in reason


def test_unknown_metric_is_not_promoted() -> None:
    promote, reason = decide_promotion(_evaluation(0.4, 0.3), None, "ndgc@10")
    assert promote is False and "ndgc@10" in reason
