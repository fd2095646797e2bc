"""The objective of a trial: validation data only.

`validation_folds` + `ValidationObjective`: the objective sees the train and validation matrices
and nothing else, so the test split cannot reach it. Each trial trains WALS and reports the
validation metric after every epoch (with posterior averaging, `bayes:`, the validation error of
the average so far after every `report_every` samples), so the pruner stops hopeless trials
early.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec.data.splits import random_holdout
from walsrec.errors import ConfigError, DataError
from walsrec.evaluation.metrics import evaluate, rating_metrics
from walsrec.models.bayes import BayesConfig, PairAverage, gibbs_samples
from walsrec.models.ensemble import (
    METHOD_KEYS,
    BlendConfig,
    blended_score_fn,
    item_item_matrix,
    neighbourhood_scores,
    resolve_method,
)
from walsrec.models.wals import WALSConfig, WALSModel, train_wals
from walsrec.tuning.config import (
    BLEND_KEYS,
    SearchSpace,
    metric_k,
    split_params,
)

logger = logging.getLogger(__name__)
# WALS's per-epoch INFO lines would drown the trial lines: trials log at WARNING and above.
_TRIAL_LOG = logging.getLogger("walsrec.tuning.trial")
_TRIAL_LOG.setLevel(logging.WARNING)


@dataclass(frozen=True)
class ValidationFold:
    """A training matrix and the validation matrix scored against it; never test data."""

    train: sp.csr_matrix
    validation: sp.csr_matrix


def validation_folds(
    train: sp.spmatrix,
    validation: sp.spmatrix,
    n_folds: int = 1,
    seed: int = 42,
    max_scores: int | None = None,
) -> list[ValidationFold]:
    """The configured split, then `n_folds - 1` re-draws of a same-sized per-user holdout.

    Only the training part and the validation part of a dataset go in, so nothing derived from
    them can contain a test interaction.

    Raises:
        DataError: there is no validation data.
    """
    if validation is None or validation.nnz == 0:
        raise DataError(
            "tuning needs a validation split: set split.validation_ratio > 0 (e.g. 0.2)"
        )
    train, validation = sp.csr_matrix(train), sp.csr_matrix(validation)
    folds = [ValidationFold(train, validation)]
    if n_folds > 1:
        folds += _redrawn_folds(train, validation, n_folds, seed)
    if max_scores is None:
        return folds
    return [_sampled_fold(fold, max_scores, seed, index) for index, fold in enumerate(folds)]


def _sampled_fold(fold: ValidationFold, max_scores: int, seed: int, index: int) -> ValidationFold:
    """The fold with its validation rows cut to a seeded sample of users when scoring them all
    against every item would exceed `max_scores` scores."""
    users = np.flatnonzero(np.diff(fold.validation.indptr))
    n_items = fold.validation.shape[1]
    keep = max(1, max_scores // max(n_items, 1))
    if users.size * n_items <= max_scores or keep >= users.size:
        return fold
    chosen = np.sort(np.random.default_rng([seed, 2000 + index]).choice(users, keep, replace=False))
    mask = np.zeros(fold.validation.shape[0], dtype=bool)
    mask[chosen] = True
    sampled = sp.csr_matrix(sp.diags(mask.astype(fold.validation.dtype)) @ fold.validation)
    sampled.eliminate_zeros()
    sampled.sort_indices()
    if index == 0:
        logger.info(
            "validation: %d of %d users sampled (all of them x %d items is more than "
            "tuning.max_validation_scores = %d scores per report)",
            keep,
            users.size,
            n_items,
            max_scores,
        )
    return ValidationFold(fold.train, sampled)


def _redrawn_folds(
    train: sp.csr_matrix, validation: sp.csr_matrix, n_folds: int, seed: int
) -> list[ValidationFold]:
    """`n_folds - 1` re-draws of a validation holdout of the configured one's size."""
    folds = []
    combined = (train + validation).tocoo()
    ratio = validation.nnz / combined.nnz
    for fold in range(1, n_folds):
        held = random_holdout(combined.row, ratio, np.random.default_rng([seed, 1000 + fold]))
        parts = []
        for mask in (~held, held):
            part = sp.csr_matrix(
                (combined.data[mask], (combined.row[mask], combined.col[mask])),
                shape=combined.shape,
            )
            part.sort_indices()
            parts.append(part)
        folds.append(ValidationFold(*parts))
    return folds


class ValidationObjective:
    """Optuna objective: train WALS (and the blend) per fold, score on validation.

    It holds `ValidationFold`s only. The value after each epoch of the first fold (every
    `report_every` epochs) is reported to the trial, so the pruner can stop a trial early; with
    several folds, the objective is their mean. With posterior averaging (`bayes:`) the steps
    are the averaged samples and the value is the validation error of the average so far,
    which is what the final averaged model predicts.
    """

    def __init__(
        self,
        folds: list[ValidationFold],
        search_space: SearchSpace,
        objective: str = "ndcg@10",
        base_wals: Mapping[str, Any] | None = None,
        base_blend: Mapping[str, Any] | None = None,
        base_bayes: Mapping[str, Any] | None = None,
        report_every: int = 1,
        report_from: int = 1,
    ) -> None:
        if not folds or not all(isinstance(fold, ValidationFold) for fold in folds):
            raise DataError("the tuning objective needs at least one ValidationFold")
        self.folds = list(folds)
        self.search_space = search_space
        self.objective = objective
        self.k = metric_k(objective)
        self.base_wals = dict(base_wals or {})
        self.base_blend = dict(base_blend or {})
        self.base_bayes = dict(base_bayes or {})
        self.report_every = int(report_every)
        # Epochs before the pruner's warm-up can't stop a trial: scoring them (all users x
        # all items) would be wasted; the last epoch is always scored.
        self.report_from = max(int(report_from), 1)
        fixed_samples = search_space.fixed.get(
            "posterior_samples", self.base_bayes.get("posterior_samples")
        )
        tuned = any(p.name == "posterior_samples" for p in search_space.parameters)
        if self.k is not None and (tuned or fixed_samples):
            raise ConfigError(
                f"bayes.posterior_samples > 0 averages rating predictions: tune it on "
                f"tuning.objective rmse or mae, not {objective}"
            )
        self.item_item_method = self._adapt_to_catalogue()
        # The last item-item matrix of each fold and the blend values it was built with: it
        # depends on the fold and the blend's method keys only, not on WALS's parameters.
        self._item_item: dict[int, tuple[tuple, Any]] = {}

    def _adapt_to_catalogue(self) -> str | None:
        """Resolve the item-item method for the folds' catalogue; drop keys that can't apply.

        When the item-item part is left out (`blend.method: ease` on a catalogue above
        `blend.max_items`), every blend key leaves the search space and trials run WALS
        alone, with the reason logged once here; otherwise the keys of the other method go
        (EASE's l2 under kNN, kNN's neighbours and shrinkage under EASE).
        """
        tuned = {parameter.name for parameter in self.search_space.parameters}
        fixed_blend = {k: v for k, v in self.search_space.fixed.items() if k in BLEND_KEYS}
        base = BlendConfig.from_dict({**self.base_blend, **fixed_blend})
        if "method" in tuned:
            return base.method  # chosen per trial: nothing to drop up front
        method, reason = resolve_method(base, self.folds[0].train.shape[1])
        if method is None:
            dropped = set(BLEND_KEYS)
        else:
            others = (keys for other, keys in METHOD_KEYS.items() if other != method)
            dropped = {key for keys in others for key in keys}
        dropped &= tuned
        if method is None and (dropped or base.enabled):
            logger.warning("%s; trials tune WALS alone (dropped: %s)", reason, sorted(dropped))
        elif dropped:
            logger.info("blend.method %s: not tuning %s", method, ", ".join(sorted(dropped)))
        if dropped:
            kept = tuple(p for p in self.search_space.parameters if p.name not in dropped)
            self.search_space = SearchSpace(parameters=kept, fixed=self.search_space.fixed)
        return method

    def configs(self, params: Mapping[str, Any]) -> tuple[WALSConfig, BlendConfig, BayesConfig]:
        """The WALS, blend and bayes configs of one trial's parameters over the base values.

        Raises:
            ConfigError: an invalid value, or posterior averaging of a WALS config that is not
                a rating model.
        """
        wals, blend, bayes = split_params(params, self.base_wals, self.base_blend, self.base_bayes)
        if self.k is None or self.item_item_method is None:
            # Rating prediction (the item-item scores are not ratings), or no item-item model
            # for this catalogue (its reason was logged once, when the objective was built).
            blend = blend.model_copy(update={"item_item_weight": 0.0})
        return wals, blend, bayes

    def score(self, model: WALSModel, fold: ValidationFold, score_fn: Callable | None) -> float:
        """The objective on one fold's validation matrix."""
        if self.k is None:
            held = fold.validation.tocoo()
            predicted = model.predict(held.row, held.col)
            return rating_metrics(predicted, held.data)[self.objective]
        metrics = evaluate(score_fn or model.score_users, fold.train, fold.validation, k=self.k)
        return float(metrics[self.objective])

    def __call__(self, trial: Any) -> float:
        wals_config, blend, bayes = self.configs(self.search_space.sample(trial))
        values = [
            self._posterior_value(trial, index, fold, wals_config, bayes)
            if bayes.enabled
            else self._fold_value(trial, index, fold, wals_config, blend)
            for index, fold in enumerate(self.folds)
        ]
        trial.set_user_attr("fold_values", [float(v) for v in values])
        return float(np.mean(values))

    def _fold_value(
        self,
        trial: Any,
        index: int,
        fold: ValidationFold,
        wals_config: WALSConfig,
        blend: BlendConfig,
    ) -> float:
        """Train on one fold; the first fold reports to the pruner (every `report_every` epochs).

        The blend is scored with the same formula as the final model (`blend_scores`); its
        item-item matrix is built once per fold and blend values, before WALS trains.
        """
        item_item = self._fold_item_item(index, fold, blend) if blend.enabled else None
        weighted = None
        if item_item is not None:
            weighted = neighbourhood_scores(fold.train, item_item, blend.item_item_weight)
        curve: list[float] = []

        def on_epoch(epoch: int, model: WALSModel) -> bool:
            # Only the first fold reports to the pruner; the others need their last epoch only.
            reporting = index == 0 and epoch >= self.report_from and epoch % self.report_every == 0
            if not reporting and epoch != wals_config.epochs:
                return False
            score_fn = blended_score_fn(model.score_users, fold.train, item_item, blend, weighted)
            curve.append(self.score(model, fold, score_fn))
            if index == 0:
                self._report(trial, curve[-1], epoch)
            return False

        # The loss is not the objective: skipping it saves a pass over the data per epoch.
        train_wals(fold.train, wals_config, callback=on_epoch, log=_TRIAL_LOG, track_loss=False)
        return curve[-1]

    def _fold_item_item(self, index: int, fold: ValidationFold, blend: BlendConfig) -> Any:
        """The fold's item-item matrix for these blend values (the last one is kept per fold)."""
        method, _ = resolve_method(blend, fold.train.shape[1])
        key = (method, *(getattr(blend, name) for name in METHOD_KEYS.get(method, ())))
        cached = self._item_item.get(index)
        if cached is None or cached[0] != key:
            cached = (key, item_item_matrix(fold.train, blend))
            self._item_item[index] = cached
        return cached[1]

    def _posterior_value(
        self,
        trial: Any,
        index: int,
        fold: ValidationFold,
        wals_config: WALSConfig,
        bayes: BayesConfig,
    ) -> float:
        """Sample on one fold; the validation error of the running average of the samples.

        The averaged model itself is not built (its SVD compression is for the final model):
        the running average of the validation pairs' predictions is exactly what it predicts
        before compression.
        """
        held = fold.validation.tocoo()
        average = PairAverage(held.row, held.col)
        value = math.nan
        for sample in gibbs_samples(fold.train, wals_config, bayes, log=_TRIAL_LOG):
            value = rating_metrics(average.add(sample), held.data)[self.objective]
            if index == 0:
                self._report(trial, value, sample.number)
        return value

    def _report(self, trial: Any, value: float, step: int) -> None:
        """Report to the pruner every `report_every` steps; raises TrialPruned to stop."""
        import optuna

        if step % self.report_every:
            return
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: {value:.5f}")
