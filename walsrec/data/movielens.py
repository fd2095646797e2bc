"""MovieLens: verified downloads from GroupLens, a local cache, and the per-variant file layouts.

Archives are downloaded to a temporary file next to the cache entry and renamed into place only
after their SHA-256 matches the pinned value, so the cache never holds a partial or altered file.
A cached archive is verified again before every use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from walsrec.data.readers import ColumnSpec, Interactions, load_interactions
from walsrec.data.validation import ValidationOptions
from walsrec.errors import ConfigError, DataError

_GROUPLENS = "https://files.grouplens.org/datasets/movielens"
_DOWNLOAD_TIMEOUT_SECONDS = 60
_CHUNK_BYTES = 1 << 20
_EXTRACTED_MARKER = ".walsrec-archive-sha256"
_LOCAL_COPY_HINT = "pass a local copy with --data PATH (or `data.source` in the YAML config)"


@dataclass(frozen=True)
class MovieLensLayout:
    """Where a MovieLens variant keeps its ratings and how they are written."""

    ratings_file: str
    fmt: str
    header: bool
    columns: ColumnSpec
    rating_min: float
    rating_max: float


LAYOUTS = {
    "u.data": MovieLensLayout("u.data", "tsv", False, ColumnSpec(), 1.0, 5.0),
    "ratings.dat": MovieLensLayout("ratings.dat", "dat", False, ColumnSpec(), 1.0, 5.0),
    "ratings.csv": MovieLensLayout(
        "ratings.csv", "csv", True, ColumnSpec("userId", "movieId", "rating", "timestamp"), 0.5, 5.0
    ),
}


@dataclass(frozen=True)
class MovieLensVariant:
    """One published MovieLens archive."""

    name: str
    url: str
    sha256: str
    size_bytes: int
    layout: MovieLensLayout


# SHA-256 and sizes as pinned by tensorflow/datasets (tensorflow_datasets/url_checksums/
# movielens.txt); the same SHA-256 values are pinned independently by other public projects.
VARIANTS: dict[str, MovieLensVariant] = {
    "ml-100k": MovieLensVariant(
        "ml-100k",
        f"{_GROUPLENS}/ml-100k.zip",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        4924029,
        LAYOUTS["u.data"],
    ),
    "ml-1m": MovieLensVariant(
        "ml-1m",
        f"{_GROUPLENS}/ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        5917549,
        LAYOUTS["ratings.dat"],
    ),
    "ml-20m": MovieLensVariant(
        "ml-20m",
        f"{_GROUPLENS}/ml-20m.zip",
        "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        198702078,
        LAYOUTS["ratings.csv"],
    ),
    "ml-latest-small": MovieLensVariant(
        "ml-latest-small",
        f"{_GROUPLENS}/ml-latest-small.zip",
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        978202,
        LAYOUTS["ratings.csv"],
    ),
}


def default_cache_dir() -> Path:
    """Returns $WALSREC_CACHE_DIR, else ~/.cache/walsrec."""
    configured = os.environ.get("WALSREC_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "walsrec"


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _download(variant: MovieLensVariant, target: Path) -> None:
    """Downloads the archive to a temp file and renames it to ``target`` once verified."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the cache folder {target.parent} ({exc})") from exc
    partial: Path | None = None
    digest = hashlib.sha256()
    try:
        with tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{variant.name}-", suffix=".part", delete=False
        ) as handle:
            partial = Path(handle.name)
            with urllib.request.urlopen(variant.url, timeout=_DOWNLOAD_TIMEOUT_SECONDS) as resp:
                while chunk := resp.read(_CHUNK_BYTES):
                    digest.update(chunk)
                    handle.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        raise DataError(
            f"could not download {variant.name} from {variant.url} ({reason}); {_LOCAL_COPY_HINT}"
        ) from exc
    if digest.hexdigest() != variant.sha256:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {variant.name} downloaded from {variant.url}: expected sha256 "
            f"{variant.sha256}, got {digest.hexdigest()}; the download is corrupt or the file "
            f"changed upstream, nothing was cached; {_LOCAL_COPY_HINT}"
        )
    os.replace(partial, target)


def fetch_archive(
    variant_name: str, *, cache_dir: Path | None = None, download: bool = True
) -> Path:
    """Returns the path of the verified archive for ``variant_name``, downloading it if needed.

    Args:
        variant_name: One of ``VARIANTS``.
        cache_dir: Cache root; defaults to :func:`default_cache_dir`.
        download: When False, only a cached archive is used.

    Raises:
        DataError: When the download fails, the checksum does not match, or the archive is not
            cached and ``download`` is False.
    """
    variant = _variant(variant_name)
    archive = Path(cache_dir or default_cache_dir()) / "movielens" / f"{variant.name}.zip"
    if archive.is_file():
        if _sha256_of(archive) == variant.sha256:
            return archive
        # A corrupt cache entry is never used; it is replaced by a fresh download when allowed.
        archive.unlink()
        if not download:
            raise DataError(
                f"cached {archive} failed its checksum and was removed; downloading is off; "
                f"{_LOCAL_COPY_HINT}"
            )
    elif not download:
        raise DataError(
            f"{variant.name} is not in the cache ({archive}) and downloading is off; "
            f"{_LOCAL_COPY_HINT}"
        )
    _download(variant, archive)
    return archive


def _variant(name: str) -> MovieLensVariant:
    if name not in VARIANTS:
        raise ConfigError(
            f"data.source: unknown MovieLens variant {name!r}; known: {', '.join(VARIANTS)}"
        )
    return VARIANTS[name]


def extract_archive(archive: Path, destination: Path) -> Path:
    """Extracts a MovieLens zip once into ``destination`` and returns the folder with ratings.

    The extracted folder carries the archive's SHA-256, so a changed archive is extracted again.

    Raises:
        DataError: When the file is not a zip archive or holds no MovieLens ratings file.
    """
    archive_sha = _sha256_of(archive)
    marker = destination / _EXTRACTED_MARKER
    if marker.is_file() and marker.read_text().strip() == archive_sha:
        found = find_movielens_folder(destination)
        if found is not None:
            return found
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}-"))
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(staging)
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    except (zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{archive}: cannot extract the archive ({exc})") from exc
    marker.write_text(archive_sha)
    found = find_movielens_folder(destination)
    if found is None:
        raise DataError(f"{archive}: no MovieLens ratings file ({', '.join(LAYOUTS)}) inside")
    return found


def find_movielens_folder(folder: Path) -> Path | None:
    """Returns ``folder`` or a direct subfolder holding u.data, ratings.dat or ratings.csv."""
    candidates = [folder] + sorted(path for path in folder.iterdir() if path.is_dir())
    for candidate in candidates:
        if any((candidate / name).is_file() for name in LAYOUTS):
            return candidate
    return None


def _with_rating_range(options: ValidationOptions, layout: MovieLensLayout) -> ValidationOptions:
    """Fills in the variant's rating range unless the caller set one."""
    return dataclasses.replace(
        options,
        rating_min=layout.rating_min if options.rating_min is None else options.rating_min,
        rating_max=layout.rating_max if options.rating_max is None else options.rating_max,
    )


def load_movielens_folder(
    folder: str | os.PathLike, *, options: ValidationOptions = ValidationOptions()
) -> Interactions:
    """Loads an extracted MovieLens folder (ml-100k, ml-1m, ml-20m or ml-latest-small layout).

    Args:
        folder: The folder (or its parent) holding u.data, ratings.dat or ratings.csv.
        options: Validation options; the variant's rating range is used unless set.

    Returns:
        The ratings with item titles from u.item, movies.dat or movies.csv.

    Raises:
        DataError: When no MovieLens ratings file is found or the file is invalid.
    """
    folder = Path(folder)
    found = find_movielens_folder(folder) if folder.is_dir() else None
    if found is None:
        raise DataError(
            f"{folder}: no MovieLens ratings file found ({', '.join(LAYOUTS)}); "
            f"pass the data file itself for other formats"
        )
    layout = next(layout for name, layout in LAYOUTS.items() if (found / name).is_file())
    return load_interactions(
        found / layout.ratings_file,
        fmt=layout.fmt,
        columns=layout.columns,
        header=layout.header,
        options=_with_rating_range(options, layout),
    )


def load_movielens(
    variant: str = "ml-100k",
    *,
    local_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    options: ValidationOptions = ValidationOptions(),
) -> Interactions:
    """Loads a MovieLens variant from a local copy or the verified, cached GroupLens archive.

    Args:
        variant: "ml-100k", "ml-1m", "ml-20m" or "ml-latest-small".
        local_path: An extracted folder (loaded as is) or the official zip (checksum verified).
        cache_dir: Cache root; defaults to $WALSREC_CACHE_DIR, else ~/.cache/walsrec.
        download: When False, never touch the network (the cache or ``local_path`` must hold it).
        options: Validation options; the variant's rating range is used unless set.

    Returns:
        The ratings with item titles.

    Raises:
        ConfigError: For an unknown variant.
        DataError: When the data cannot be downloaded, verified, found or parsed.
    """
    spec = _variant(variant)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if local_path is not None:
        local = Path(local_path).expanduser()
        if not local.exists():
            raise DataError(f"{local}: local copy of {variant} not found")
        if local.is_dir():
            return load_movielens_folder(local, options=options)
        if _sha256_of(local) != spec.sha256:
            raise DataError(
                f"{local}: not the official {variant} archive (sha256 differs from the pinned "
                f"{spec.sha256}); pass the extracted folder instead to use it unverified"
            )
        archive = local
    else:
        archive = fetch_archive(variant, cache_dir=cache_root, download=download)
    folder = extract_archive(archive, cache_root / "movielens" / variant)
    return load_movielens_folder(folder, options=options)
