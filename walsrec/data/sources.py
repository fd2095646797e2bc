"""One entry point for every data source: a MovieLens variant name, a folder, or a file."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from walsrec.data.movielens import (
    VARIANTS,
    default_cache_dir,
    extract_archive,
    find_movielens_folder,
    load_movielens,
    load_movielens_folder,
)
from walsrec.data.readers import ColumnSpec, Interactions, load_interactions
from walsrec.data.validation import ValidationOptions
from walsrec.errors import DataError


def load_source(
    spec: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    fmt: str = "auto",
    columns: ColumnSpec = ColumnSpec(),
    header: bool | None = None,
    options: ValidationOptions = ValidationOptions(),
) -> Interactions:
    """Loads interactions from whatever ``spec`` names.

    Resolution order: an existing path wins over a variant name (so a local folder called
    ``ml-100k`` is used as is). A folder must hold a MovieLens layout (u.data, ratings.dat or
    ratings.csv, directly or one level down); a ``.zip`` is extracted into the cache (the
    official archive of a known variant is checksum-verified); any other file is read with
    :func:`load_interactions`. Otherwise ``spec`` must be a MovieLens variant name, which is
    downloaded (verified) and cached.

    Args:
        spec: A variant name ("ml-100k", "ml-1m", "ml-20m", "ml-latest-small"), folder or file.
        cache_dir: Cache root for downloads and extracted archives.
        download: When False, a variant must already be cached.
        fmt: File format for plain files ("auto" detects from the extension).
        columns: Column names for plain files (MovieLens layouts use their own).
        header: Header flag for plain text files (None detects).
        options: Validation options (MovieLens sources default to the variant's rating range).

    Returns:
        The validated interactions.

    Raises:
        DataError: When ``spec`` is neither an existing path nor a known variant, or loading fails.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    check_source(text)
    if path.is_dir():
        return load_movielens_folder(path, options=options)
    if path.is_file() and path.suffix.lower() == ".zip":
        if path.stem in VARIANTS:
            return load_movielens(path.stem, local_path=path, cache_dir=cache_root, options=options)
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path}: not a valid zip archive")
        # Unknown archives are cached by content, so two different zips never share a folder.
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        folder = extract_archive(path, cache_root / "archives" / f"{path.stem}-{digest}")
        return load_movielens_folder(folder, options=options)
    if path.exists():
        return load_interactions(path, fmt=fmt, columns=columns, header=header, options=options)
    return load_movielens(text, cache_dir=cache_root, download=download, options=options)


def source_fingerprint(spec: str | os.PathLike) -> str | None:
    """What identifies the data behind `spec` without reading it: the cache key of loading it.

    A file is its absolute path, size and modification time (in nanoseconds); a folder, the same
    for every file under it; a MovieLens variant name, the SHA-256 its archive is verified
    against (the data behind the name never changes). Rewriting a file, even with the same
    bytes, changes the fingerprint: what it guarantees is that a changed file is never taken for
    the old one.

    Returns:
        The fingerprint, or None when `spec` names nothing local that can be fingerprinted (the
        loader then reads it on every run).
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(candidate for candidate in path.rglob("*") if candidate.is_file())
    elif text in VARIANTS:
        return f"movielens:{text}:sha256={VARIANTS[text].sha256}"
    else:
        return None
    digest = hashlib.sha256(str(path.resolve()).encode())
    for file in files:
        stat = file.stat()
        digest.update(
            f"\0{file.relative_to(path) if file != path else ''}"
            f"\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
        )
    return f"{'file' if path.is_file() else 'folder'}:{digest.hexdigest()[:32]}"


def check_source(spec: str | os.PathLike) -> None:
    """Raise the error `load_source` would give for a `spec` that names no data, without reading
    anything: the command line checks its paths with it before a run starts.

    Raises:
        DataError: `spec` is neither an existing file, a folder holding MovieLens ratings, nor a
            known dataset name.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_dir() and find_movielens_folder(path) is None:
        raise DataError(
            f"{path}: folder holds no MovieLens ratings file (u.data, ratings.dat or "
            f"ratings.csv); pass the interactions file itself instead"
        )
    if not path.exists() and text not in VARIANTS:
        raise DataError(
            f"data source {text!r} not found: it is neither an existing file or folder nor a "
            f"known dataset ({', '.join(VARIANTS)})"
        )
