"""Tuning: load -> split (with validation) -> study -> N workers -> best -> retrain -> register."""

from __future__ import annotations

from zenml import pipeline

from pipelines.common import load_and_split, tune_and_retrain
from steps import (
    data_profiler,
    model_evaluator,
    model_promoter,
    recommendation_writer,
    test_pair_predictor,
)


@pipeline
def tuning_pipeline(
    data: dict,
    preprocess: dict,
    split: dict,
    wals: dict,
    blend: dict,
    tuning: dict,
    evaluation: dict,
    promotion: dict,
    output: dict,
    bayes: dict | None = None,
) -> None:
    """Tune WALS (+ item-item blend) on validation, retrain the best on train + validation.

    `tuning.n_workers` worker steps (`tuning_worker_0` .. `tuning_worker_{N-1}`) share one
    study through its storage: one pod each on Kubeflow, one after the other locally. The
    select-best step runs after all of them; the rest is the training pipeline's tail, so the
    tuned model is evaluated, registered (with the study name and best parameters) and
    promoted exactly like a trained one.

    Args:
        data, preprocess, split: as in the training pipeline; split.validation_ratio > 0.
        wals: base WALS values (the search space overrides the tuned ones).
        blend: base item-item blend values.
        tuning: study, budget, storage, sampler, pruner and search space.
        evaluation: ranking cut-off `k`.
        promotion: the metric deciding promotion to production.
        output: optional `topk_path` and `predictions_path` (every test pair).
        bayes: base values of posterior averaging (rating prediction; off when absent).
    """
    dataset, test_interactions = load_and_split(data, split, preprocess)
    profile = data_profiler(dataset)
    model, evaluation_dataset = tune_and_retrain(
        dataset, profile, data, split, wals, blend, tuning, evaluation, bayes
    )
    evaluation_result = model_evaluator(model, evaluation_dataset, evaluation=evaluation)[0]
    model_promoter(evaluation_result, promotion=promotion)
    if output.get("topk_path"):
        recommendation_writer(model, output=output)
    if output.get("predictions_path"):
        test_pair_predictor(
            model,
            evaluation_dataset,
            output_path=output["predictions_path"],
            test_interactions=test_interactions,
        )


def tuning_report(run_id: str) -> str:
    """What `python run.py tune` prints: model version, study, best params, test metrics."""
    from zenml.client import Client

    from walsrec.evaluation.reports import metrics_table_markdown

    run = Client().get_pipeline_run(run_id)
    best = run.steps["best_params_selector"].outputs["best_params"][0].load()
    evaluation = run.steps["model_evaluator"].outputs["metrics"][0].load()
    promoted = run.steps["model_promoter"].outputs["promoted"][0].load()
    lines = ["", f"Pipeline run:   {run.name} ({run.status})"]
    version = run.model_version
    if version is not None:
        stage = "production" if promoted else (version.stage or "none")
        lines.append(f"Model version:  {version.model.name} version {version.number} ({stage})")
    lines += [
        f"Study:          {best['study_name']} on {best['storage']} ({best['states']})",
        f"Trials:         {best['budget']['message']}",
        f"Best trial:     {best['best_trial']}: validation {best['objective']} = "
        f"{best['best_value']:.5f}",
        f"Best params:    {best['best_params']}",
        f"Test metrics (k={evaluation.get('k')}), retrained on train + validation:",
        metrics_table_markdown(evaluation.get("metrics") or {}),
    ]
    for step_name, key in (("recommendation_writer", "topk_path"), ("test_pair_predictor", "")):
        if step_name in run.steps:
            parameters = run.steps[step_name].config.parameters
            path = parameters.get("output", {}).get(key) if key else parameters.get("output_path")
            lines.append(f"Wrote:          {path}")
    return "\n".join(lines)
