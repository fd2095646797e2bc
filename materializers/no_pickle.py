"""No artifact is ever pickled: ZenML's fallback for a type without a materializer refuses.

ZenML stores an output whose type has no registered materializer with cloudpickle, logging a
warning. Here every artifact is a plain file (the standards: never pickle a model), so an
output of such a type is a bug: this materializer, installed as ZenML's default, stops the step
with the type's name instead. It loads nothing either: an artifact that was pickled elsewhere
keeps its own materializer (ZenML records it with the artifact).
"""

from __future__ import annotations

from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.materializers.materializer_registry import materializer_registry

from walsrec.errors import WalsrecError


class NoPickleMaterializer(BaseMaterializer):
    """The default materializer: refuses to store a type that has no plain-file materializer."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (object,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA
    SKIP_REGISTRATION: ClassVar[bool] = True

    def save(self, data: Any) -> None:
        kind = type(data)
        raise WalsrecError(
            f"no materializer stores a {kind.__module__}.{kind.__qualname__} as plain files, and "
            "walsrec pickles no artifact: return a type of materializers/ or a JSON value, or "
            "name a materializer in the step's output_materializers"
        )

    def load(self, data_type: type[Any]) -> Any:
        raise WalsrecError(f"no plain-file materializer loads a {data_type!r}")


def install() -> None:
    """Make `NoPickleMaterializer` ZenML's fallback in this process."""
    materializer_registry.default_materializer = NoPickleMaterializer
