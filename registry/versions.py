"""Which model version a name means, promotion with its history, and rollback.

A version is usable only once it holds its `recommender` artifact: a run killed before the
trainer finished leaves a version without one. `latest` is the newest usable version, and
`production` is only ever given to a usable version (promotion happens after training, and
rollback skips versions that lost their model).

Each promotion records the version it replaced (`promotion.previous_production`), so rollback
walks back the production history one step at a time: from 5 back to 3, then to 2.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from registry.locks import store_lock
from walsrec.errors import ConfigError, WalsrecError

logger = logging.getLogger(__name__)

MODEL_ARTIFACT = "recommender"
STAGE_NAMES = ("production", "staging", "latest", "archived")


def promotion_lock_name(model_name: str) -> str:
    return f"promotion:{model_name}"


def has_model(version: Any) -> bool:
    """Whether `version` holds its model artifact (a killed run's version does not)."""
    return version.get_model_artifact(MODEL_ARTIFACT) is not None


def _versions_newest_first(model_name: str) -> list[Any]:
    from zenml.client import Client

    client = Client()
    found, page = [], 1
    while True:
        batch = client.list_model_versions(
            model=model_name, sort_by="desc:number", page=page, size=100
        )
        found.extend(batch.items)
        if page >= batch.total_pages:
            return found
        page += 1


def _missing_version(model_name: str, version: str) -> ConfigError:
    return ConfigError(
        f"model {model_name!r} has no version {version!r} with a trained model: train one "
        "first (python run.py train) or name an existing version with --model-version"
    )


def resolve_model_version(model_name: str, version: str) -> Any:
    """The model version for a stage name (production, staging, latest) or a version number.

    `latest` is the newest version holding a model; a stage or number naming a version without
    one is an error that says so (and names `python run.py cleanup`).

    Raises:
        ConfigError: no such version, or it holds no model.
    """
    from zenml.client import Client
    from zenml.enums import ModelStages

    wanted = str(version).lower()
    if wanted == "latest":
        try:
            versions = _versions_newest_first(model_name)
        except KeyError:
            versions = []
        for candidate in versions:
            if has_model(candidate):
                return candidate
        raise _missing_version(model_name, version)
    stages = {stage.value: stage for stage in ModelStages}
    # A number is the version's number (its name may differ), anything else a stage or name.
    # A listing, not `get_model_version`: ZenML's client answers it at once also while a
    # pipeline is being composed, where `get_model_version` returns a deferred lookup.
    if wanted in stages:
        filters: dict[str, Any] = {"stage": stages[wanted].value}
    elif wanted.isdigit():
        filters = {"number": int(wanted)}
    else:
        filters = {"name": str(version)}
    try:
        listed = Client().list_model_versions(
            model=model_name, sort_by="desc:number", size=1, **filters
        )
    except KeyError as exc:
        raise _missing_version(model_name, version) from exc
    if not listed.items:
        raise _missing_version(model_name, version)
    found = listed.items[0]
    if not has_model(found):
        raise ConfigError(
            f"model {model_name!r} version {found.number} ({version}) holds no "
            f"{MODEL_ARTIFACT!r} artifact: its run did not finish training; "
            "`python run.py cleanup` removes such versions"
        )
    return found


def production_version(model_name: str) -> Any | None:
    """The current production version, read from the store now (None: there is none)."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        return Client().get_model_version(model_name, ModelStages.PRODUCTION)
    except KeyError:
        return None


def _log_on_version(model_name: str, version: Any, metadata: dict) -> None:
    from zenml import log_metadata

    log_metadata(metadata=metadata, model_name=model_name, model_version=str(version.number))


def _set_production(model_name: str, version: Any) -> None:
    from zenml.client import Client
    from zenml.enums import ModelStages

    # force: the current production version is archived in the same update.
    Client().update_model_version(model_name, version.id, stage=ModelStages.PRODUCTION, force=True)


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    reason: str
    previous_production: int | None


def promote_if_better(
    model_name: str,
    candidate: Any,
    decide: Callable[[dict | None], tuple[bool, str]],
    *,
    lock_timeout: float = 600,
) -> PromotionResult:
    """Read production, decide and set the stage as one step under the promotion lock.

    Two runs finishing together each read production only after the other's promotion is
    complete, so the better of the two ends in production whichever finishes first.

    Args:
        model_name: the Model Control Plane model.
        candidate: the new model version (a ModelVersionResponse).
        decide: production's metadata (None: no production version) -> (promote, reason).
    """
    with store_lock(promotion_lock_name(model_name), timeout=lock_timeout):
        current = production_version(model_name)
        if current is not None and str(current.id) == str(candidate.id):
            current = None
        promote, reason = decide(None if current is None else current.run_metadata)
        previous = None if current is None else int(current.number)
        if promote:
            _set_production(model_name, candidate)
        _log_on_version(
            model_name,
            candidate,
            {
                "promotion": {
                    "promoted": promote,
                    "reason": reason,
                    "previous_production": previous if promote else None,
                    "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
            },
        )
    return PromotionResult(promote, reason, previous)


def _previous_production(model_name: str, current: Any, versions: list[Any]) -> Any | None:
    """The version `current` replaced in production, else (for versions promoted before the
    history was recorded) the newest older version that was promoted; skipping any that no
    longer hold a model."""
    by_number = {int(version.number): version for version in versions}
    seen = {int(current.number)}
    step = current
    while True:
        promotion = step.run_metadata.get("promotion") or {}
        number = promotion.get("previous_production")
        if number is None or int(number) in seen or int(number) not in by_number:
            break
        seen.add(int(number))
        step = by_number[int(number)]
        if has_model(step):
            return step
    for version in versions:  # newest first
        if int(version.number) >= int(current.number) or int(version.number) in seen:
            continue
        if (version.run_metadata.get("promotion") or {}).get("promoted") and has_model(version):
            return version
    return None


def rollback(model_name: str) -> tuple[Any, Any]:
    """Put the version that production replaced back into production.

    Returns:
        (the version taken out, the version now in production).

    Raises:
        WalsrecError: no production version, or none before it to go back to.
    """
    with store_lock(promotion_lock_name(model_name)):
        current = production_version(model_name)
        if current is None:
            raise WalsrecError(f"model {model_name!r} has no production version to roll back")
        target = _previous_production(model_name, current, _versions_newest_first(model_name))
        if target is None:
            raise WalsrecError(
                f"model {model_name!r} version {current.number} is in production and no "
                "earlier production version (with its model) exists: nothing to roll back to"
            )
        _set_production(model_name, target)
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _log_on_version(
            model_name, current, {"rollback": {"replaced_by": int(target.number), "at": at}}
        )
        # The restored version's history continues from where it was: its own
        # `promotion.previous_production` is the next rollback's target.
        _log_on_version(
            model_name, target, {"restored": {"replacing": int(current.number), "at": at}}
        )
    return current, target
