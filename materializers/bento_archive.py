"""The exported Bento as a file artifact, its local copy removed once it is stored."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from zenml.materializers.path_materializer import PathMaterializer

# `bento_builder` exports into a fresh folder with this prefix under the temp dir.
EXPORT_PREFIX = "walsrec-bento-"


class BentoArchive(type(Path())):
    """The path of a Bento exported by `bento_builder` (a `Path`): its own type, so that ZenML
    stores it with `BentoArchiveMaterializer`."""


def export_folder() -> Path:
    """A new folder for one `bentoml export` (removed by the materializer after storing)."""
    return Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX))


class BentoArchiveMaterializer(PathMaterializer):
    """ZenML's path materializer (the archive is copied to the artifact store as a file), then
    the exported folder is deleted: every `run.py deploy` used to leave a full copy of the Bento
    in the temp dir (a scheduled run, one per night). Loading is ZenML's (a `Path`)."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (BentoArchive,)

    def save(self, data: Any) -> None:
        super().save(data)
        folder = Path(data).parent
        if folder.name.startswith(EXPORT_PREFIX) and folder.parent == Path(tempfile.gettempdir()):
            shutil.rmtree(folder, ignore_errors=True)
