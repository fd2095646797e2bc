"""Continuous training: new data -> validate -> profile -> train (or tune) -> evaluate ->
promote -> only when promoted: package, build the Bento and keep it in the artifact store."""

from __future__ import annotations

from zenml import pipeline

from pipelines.common import load_and_split, tune_and_retrain
from steps import bento_builder, data_profiler, model_evaluator, model_promoter
from walsrec.config import BentoConfig, ContinuousConfig


@pipeline
def continuous_training_pipeline(
    data: dict,
    preprocess: dict,
    split: dict,
    wals: dict,
    evaluation: dict,
    promotion: dict,
    bento: dict,
    continuous: dict,
    blend: dict | None = None,
    tuning: dict | None = None,
    bayes: dict | None = None,
) -> None:
    """One round of the automated workflow; `run.py continuous` runs it once, `--every` in a
    loop, and on Kubeflow a cron schedule runs it.

    The deployment step (`bento_builder`) runs in every round and does nothing unless
    `model_promoter` promoted this run's version: a model that does not win is never
    packaged, built or exported.

    Args:
        data, preprocess, split, wals, evaluation, promotion: as in the training pipeline.
        bento: `bento_model_name` (the BentoML model the service serves) and `build`.
        continuous: `tune` (this round tunes instead of training), `tune_validation_ratio`,
            `export` (keep the Bento archive in the artifact store) and the schedules.
        blend, tuning, bayes: as in the tuning pipeline (read when `continuous.tune`).
    """
    rounds = ContinuousConfig.from_dict(continuous)
    packaging = BentoConfig.from_dict(bento)
    if rounds.tune:
        split = {**split, "validation_ratio": rounds.tune_validation_ratio}
        dataset, _ = load_and_split(data, split, preprocess)
        profile = data_profiler(dataset)
        model, evaluation_dataset = tune_and_retrain(
            dataset, profile, data, split, wals, blend or {}, tuning or {}, evaluation, bayes
        )
    else:
        from steps import model_trainer

        dataset, _ = load_and_split(data, split, preprocess)
        profile = data_profiler(dataset)
        model = model_trainer(
            dataset, wals=wals, evaluation=evaluation, bayes=bayes, profile=profile
        )
        evaluation_dataset = dataset
    evaluation_result = model_evaluator(model, evaluation_dataset, evaluation=evaluation)[0]
    promoted = model_promoter(evaluation_result, promotion=promotion)[0]
    # version None: the version this run registered and just promoted, never "production",
    # which a concurrent run may have moved meanwhile. One step packages, builds and exports:
    # on Kubeflow each step is a pod with its own BentoML store.
    bento_builder(
        version=None,
        bento_model_name=packaging.bento_model_name,
        promoted=promoted,
        build=packaging.build,
        export=rounds.export,
    )
