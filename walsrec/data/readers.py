"""Readers for interaction files: CSV, TSV, MovieLens ``::`` files and Parquet.

Every reader produces whole columns (no per-row Python) and hands them to
:func:`walsrec.data.validation.validate_columns`, so every file gets the same checks and report.

Header auto-detection (``header=None``) for text files: the first line is a header when one of its
fields equals a configured column name (case-insensitive), or when none of its fields is a number
while the second line has at least one number (so ``userId,movieId,rating`` is a header but
``u1,i9`` followed by ``u2,i7`` is data). Pass ``header=True`` or ``header=False`` to override.

Headerless files map columns by position: user, item, then rating (unless ``columns.rating`` is
None), then timestamp (unless ``columns.timestamp`` is None), as many as the file has. A file with
two columns is implicit feedback; extra columns are ignored with a warning.

Event logs: when ``columns.event`` names a column, each row is one event (view, cart, purchase,
...) and ``columns.quantity`` may name a quantity column. ``columns.rating`` is then not read: the
value of a (user, item) pair is derived from its events (:mod:`walsrec.data.events`). Headerless
event logs map by position: user, item, timestamp (unless None), event, quantity (unless None).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from walsrec.data.validation import (
    RawColumns,
    ValidationOptions,
    ValidationReport,
    validate_columns,
)
from walsrec.errors import ConfigError, DataError
from walsrec.lazy import LazyModule

pd = LazyModule("pandas")
pa = LazyModule("pyarrow")
pa_csv = LazyModule("pyarrow.csv")
pq = LazyModule("pyarrow.parquet")

FORMATS = ("auto", "csv", "tsv", "dat", "parquet")
_EXTENSION_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".data": "tsv",
    ".base": "tsv",
    ".test": "tsv",
    ".txt": "tsv",
    ".dat": "dat",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_DELIMITERS = {"csv": ",", "tsv": "\t", "dat": "::"}
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".zst", ".lz4"}
# pyarrow's CSV reader takes one-byte delimiters, so "::" is rewritten to a byte no text uses.
_DAT_SUBSTITUTE = "\x1f"
_BLOCK_SIZE = 16 << 20
_SNIFF_BYTES = 1 << 16
FIELDS = ("user", "item", "rating", "timestamp", "event", "quantity")
FEEDBACK_KINDS = ("ratings", "binary", "events")


@dataclass(frozen=True)
class ColumnSpec:
    """Names of the columns in the user's file (None: the file has no such column).

    ``event`` makes the file an event log (one row per event; ``rating`` is then not read) and
    ``quantity`` is read only with it.
    """

    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = "rating"
    timestamp: str | None = "timestamp"
    event: str | None = None
    quantity: str | None = None

    @property
    def is_event_log(self) -> bool:
        """Whether the file has one row per event (``event`` is set)."""
        return self.event is not None

    def configured(self) -> dict[str, str]:
        """Returns the configured fields in positional order, mapped to their column names."""
        names = {"user": self.user, "item": self.item}
        if self.rating is not None and not self.is_event_log:
            names["rating"] = self.rating
        if self.timestamp is not None:
            names["timestamp"] = self.timestamp
        if self.is_event_log:
            names["event"] = self.event
            if self.quantity is not None:
                names["quantity"] = self.quantity
        return names


@dataclass
class Interactions:
    """Validated interactions of one source.

    Attributes:
        frame: Columns user_id and item_id (pandas Categoricals of str: each id is stored
            once, the rows hold codes), rating (float32) and, when present, timestamp
            (int64), in file order. For an event log, one row per (user, item) pair
            in order of its first event; rating is the sum of its weighted (decayed) events, an
            implicit confidence, and timestamp is its latest event's.
        has_ratings: False for implicit feedback: no rating column (ratings are then 1.0) or an
            event log.
        has_timestamps: Whether ``frame`` has a timestamp column.
        item_titles: item_id -> title, empty when no metadata was found.
        report: What happened to every input row (for event logs also the events per type).
        source: Where the data came from.
        feedback: What ``rating`` holds: "ratings" (a rating column was read: ratings, counts
            or any other value), "binary" (no rating column: 1.0) or "events" (aggregated
            events).
    """

    frame: pd.DataFrame
    has_ratings: bool
    has_timestamps: bool
    item_titles: dict[str, str] = field(default_factory=dict)
    report: ValidationReport | None = None
    source: str = ""
    feedback: str = "ratings"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """An instance check, for ZenML's pydantic check of a step's inputs: without it pydantic
        reads every field's annotation, and `pd.DataFrame` would import pandas (about 0.3 s)
        when a pipeline is merely defined."""
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls)


def detect_format(path: Path, fmt: str = "auto") -> str:
    """Returns "csv", "tsv", "dat" or "parquet" for ``path``.

    Args:
        path: The data file; with ``fmt="auto"`` its extension decides (``.gz`` and similar
            compression suffixes are looked through).
        fmt: "auto" or one of the formats.

    Raises:
        ConfigError: When ``fmt`` is unknown.
        DataError: When the extension is not recognized.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"data.format: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    suffixes = [suffix.lower() for suffix in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes.pop()
    detected = _EXTENSION_FORMATS.get(suffixes[-1] if suffixes else "")
    if detected is None:
        known = ", ".join(sorted(_EXTENSION_FORMATS))
        raise DataError(
            f"{path}: cannot tell the file format from its extension; use one of {known} "
            f"or set the format explicitly (data.format: csv | tsv | dat | parquet)"
        )
    return detected


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split_line(line: str, delimiter: str) -> list[str]:
    return [part.strip().strip('"').strip() for part in line.split(delimiter)]


def _first_lines(data_head: bytes, delimiter: str) -> list[list[str]]:
    """Splits the first two non-empty lines of a file into fields, for header detection."""
    text = data_head.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [line for line in text.splitlines() if line.strip()][:2]
    return [_split_line(line, delimiter) for line in lines]


def detect_header(first_lines: list[list[str]], columns: ColumnSpec) -> bool:
    """Decides whether the first line is a header (the rule is in the module docstring)."""
    if not first_lines:
        return False
    configured = {name.lower() for name in columns.configured().values()}
    if any(name.lower() in configured for name in first_lines[0]):
        return True
    if len(first_lines) < 2:
        return False
    first_has_number = any(_is_number(value) for value in first_lines[0])
    second_has_number = any(_is_number(value) for value in first_lines[1])
    return not first_has_number and second_has_number


# Optional columns at their default names (ColumnSpec's): absent from a file's header, the file
# is read without them, with a warning in the validation report.
_OPTIONAL_DEFAULTS = {key: getattr(ColumnSpec(), key) for key in ("rating", "timestamp")}
_READ_WITHOUT = {
    "rating": "ratings (implicit feedback: every row is one interaction)",
    "timestamp": "timestamps",
}


def _map_header_columns(
    source: str, found: list[str], columns: ColumnSpec, options: ValidationOptions
) -> tuple[dict[str, str], list[str]]:
    """Maps configured fields to the file's header names; returns (field -> name, warnings)."""
    mapping: dict[str, str] = {}
    warnings = []
    absent_defaults = []
    configured = columns.configured()
    for field_key, name in configured.items():
        if name in found:
            mapping[field_key] = name
        elif field_key in _OPTIONAL_DEFAULTS and name == _OPTIONAL_DEFAULTS[field_key]:
            absent_defaults.append(field_key)
        else:
            raise _missing_column(source, found, field_key, name)
    unmapped = [name for name in found if name not in mapping.values()]
    if absent_defaults and unmapped:
        # An optional column at its default name is absent, and the file has columns nothing
        # reads: one of them is probably it under another name (`score` for `rating`).
        raise _missing_column(source, found, absent_defaults[0], configured[absent_defaults[0]])
    for field_key in absent_defaults:
        # (user, item, rating) has no timestamps; (user, item) is implicit feedback.
        name = configured[field_key]
        warnings.append(f"no {name!r} column: read without {_READ_WITHOUT[field_key]}")
    extra = [name for name in found if name not in mapping.values()]
    if extra:
        if options.strict:
            raise DataError(
                f"{source}: unexpected columns {', '.join(extra)} [strict mode: set strict: false "
                f"to ignore extra columns]"
            )
        warnings.append(f"extra columns ignored: {', '.join(extra)}")
    return mapping, warnings


def _missing_column(source: str, found: list[str], field_key: str, name: str) -> DataError:
    """The error for a configured column the file's header lacks, with what to set."""
    hint = f"set columns.{field_key} to the name used in the file"
    if field_key in ("rating", "timestamp", "event", "quantity"):
        kind = {
            "rating": "has no ratings",
            "timestamp": "has no timestamps",
            "event": "is not an event log",
            "quantity": "has no quantities",
        }[field_key]
        hint += f", or columns.{field_key}: null if the file {kind}"
    close = [other for other in found if other.lower() == name.lower()]
    if close:
        hint = f"did you mean {close[0]!r}? " + hint
    return DataError(
        f"{source}: column {name!r} (columns.{field_key}) not found; the file has columns: "
        f"{', '.join(found)}; {hint}"
    )


def _line_mapper(first_data_line: int, malformed_lines: np.ndarray):
    """Maps parsed-row indices to physical lines, skipping lines the parser rejected."""
    # Valid rows before the j-th rejected line; the k-th valid row sits after every rejected
    # line whose count is <= k.
    valid_before = malformed_lines - first_data_line - np.arange(len(malformed_lines))

    def row_lines(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        return first_data_line + rows + np.searchsorted(valid_before, rows, side="right")

    return row_lines


def _read_text(
    path: Path,
    fmt: str,
    columns: ColumnSpec,
    header: bool | None,
    options: ValidationOptions,
) -> tuple[RawColumns, dict[str, str]]:
    """Reads a delimited text file into raw string columns with line numbers."""
    source = str(path)
    delimiter = _DELIMITERS[fmt]
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            data = stream.read() if fmt == "dat" else stream.read(_SNIFF_BYTES)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{source}: cannot read the file ({exc})") from exc
    first_lines = _first_lines(data, delimiter)
    if not first_lines:
        raise DataError(f"{source} is empty (no data rows)")
    if header is None:
        header = detect_header(first_lines, columns)
    file_columns = (
        first_lines[0] if header else [f"column {i + 1}" for i in range(len(first_lines[0]))]
    )
    warnings: list[str] = []
    if header:
        mapping, warnings = _map_header_columns(source, file_columns, columns, options)
    else:
        mapping = dict(zip(columns.configured(), file_columns, strict=False))
        if "item" not in mapping:
            raise DataError(
                f"{source}: line 1 has {len(file_columns)} field(s) but user and item are needed; "
                f"is the delimiter right? (format {fmt!r} expects {delimiter!r})"
            )
        extra = file_columns[len(mapping) :]
        if extra and options.strict:
            raise DataError(
                f"{source}: line 1 has {len(file_columns)} fields, more than the "
                f"{len(mapping)} configured [strict mode: set strict: false to ignore them]"
            )
        if extra:
            warnings.append(f"extra columns ignored: {', '.join(extra)}")
        if "event" in columns.configured() and "event" not in mapping:
            raise DataError(
                f"{source}: line 1 has {len(file_columns)} field(s), too few for the event "
                f"column (columns.event): headerless event logs are user, item, "
                f"{'timestamp, ' if columns.timestamp is not None else ''}event"
                f"{', quantity' if columns.quantity is not None else ''}"
            )
        if "rating" not in mapping and not columns.is_event_log:
            warnings.append("no rating column: treated as implicit feedback (rating 1.0)")

    malformed: list[tuple[int, str, int]] = []

    def on_invalid_row(row) -> str:
        # Physical line numbers are only known with single-threaded parsing (set below).
        malformed.append((int(row.number), row.text, int(row.actual_columns)))
        return "skip"

    if fmt == "dat":
        data = data.replace(b"::", _DAT_SUBSTITUTE.encode())
    internal_names = [f"c{i}" for i in range(len(file_columns))]
    wanted = {key: internal_names[file_columns.index(name)] for key, name in mapping.items()}
    try:
        stream = (
            io.BytesIO(data) if fmt == "dat" else pa.input_stream(str(path), compression="detect")
        )
        table = pa_csv.read_csv(
            stream,
            read_options=pa_csv.ReadOptions(
                use_threads=False,
                block_size=_BLOCK_SIZE,
                column_names=internal_names,
                skip_rows=1 if header else 0,
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=_DAT_SUBSTITUTE if fmt == "dat" else delimiter,
                quote_char=False if fmt == "dat" else '"',
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid_row,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in internal_names},
                include_columns=list(wanted.values()),
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowException as exc:
        raise DataError(f"{source}: cannot parse as {fmt} ({exc})") from exc
    malformed.sort()
    first_data_line = 2 if header else 1
    raw = RawColumns(
        source=source,
        **_role_columns(table, wanted),
        row_lines=_line_mapper(first_data_line, np.array([m[0] for m in malformed], np.int64)),
        line_kind="line",
        malformed=malformed,
        expected_fields=len(file_columns),
        warnings=warnings,
    )
    return raw, mapping


def _role_columns(table: pa.Table, names: dict[str, str]) -> dict[str, pa.ChunkedArray | None]:
    """RawColumns' user, item, rating, timestamp, event and quantity from `table`; names: role ->
    column name (all but user and item may be absent)."""
    columns = {role: table.column(names[role]) for role in ("user", "item")}
    for role in ("rating", "timestamp", "event", "quantity"):
        columns[role] = table.column(names[role]) if role in names else None
    return columns


def _read_parquet(
    path: Path, columns: ColumnSpec, options: ValidationOptions
) -> tuple[RawColumns, dict[str, str]]:
    """Reads the configured columns of a Parquet file; rows are located as "row N" (1-based)."""
    source = str(path)
    try:
        found = list(pq.ParquetFile(str(path)).schema_arrow.names)
        mapping, warnings = _map_header_columns(source, found, columns, options)
        table = pq.read_table(str(path), columns=list(mapping.values()))
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{source}: cannot read as Parquet ({exc})") from exc
    raw = RawColumns(
        source=source,
        **_role_columns(table, mapping),
        row_lines=lambda rows: np.asarray(rows, dtype=np.int64) + 1,
        line_kind="row",
        expected_fields=len(found),
        warnings=warnings,
    )
    return raw, mapping


def read_item_titles(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Reads MovieLens item titles from ``folder`` (u.item, movies.dat or movies.csv).

    Args:
        folder: A MovieLens folder; files that are absent are skipped.

    Returns:
        item_id -> title (empty when no metadata file exists) and warnings for metadata files
        that could not be read (titles are optional, so they never fail a load).
    """
    try:
        if (folder / "u.item").is_file():
            titles = pd.read_csv(
                folder / "u.item",
                sep="|",
                header=None,
                usecols=[0, 1],
                names=["item_id", "title"],
                dtype=str,
                encoding="latin-1",
                quoting=3,  # csv.QUOTE_NONE: titles contain bare quotes
                keep_default_na=False,
            )
        elif (folder / "movies.dat").is_file():
            lines = (folder / "movies.dat").read_text(encoding="latin-1").splitlines()
            pairs = [line.split("::")[:2] for line in lines if line.strip()]
            titles = pd.DataFrame(pairs, columns=["item_id", "title"])
        elif (folder / "movies.csv").is_file():
            titles = pd.read_csv(
                folder / "movies.csv",
                usecols=["movieId", "title"],
                dtype=str,
                encoding="utf-8",
                keep_default_na=False,
            ).rename(columns={"movieId": "item_id"})
        else:
            return {}, []
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return {}, [f"item titles in {folder} not read: {exc}"]
    item_ids = titles["item_id"].astype(str).str.strip()
    return dict(zip(item_ids, titles["title"].astype(str).str.strip(), strict=True)), []


def load_interactions(
    path: str | os.PathLike,
    *,
    fmt: str = "auto",
    columns: ColumnSpec = ColumnSpec(),
    header: bool | None = None,
    options: ValidationOptions = ValidationOptions(),
) -> Interactions:
    """Loads and validates one interactions file.

    Args:
        path: A CSV, TSV, ``::``-separated or Parquet file (see the module docstring).
        fmt: "auto" (from the extension), "csv", "tsv", "dat" or "parquet".
        columns: Column names in the file (headerless files map by position).
        header: Whether the first line is a header; None detects it.
        options: Strictness, rating range, number of examples and event weights.

    Returns:
        The validated interactions; titles are attached when the file's folder holds MovieLens
        metadata (u.item, movies.dat or movies.csv). With ``columns.event`` set, one row per
        (user, item) pair with its events summed (``feedback == "events"``).

    Raises:
        DataError: When the file is missing, empty, unreadable, lacks a configured column, or
            (strict mode) has a bad row.
        ConfigError: When ``fmt`` or ``columns`` is invalid.
    """
    path = Path(path)
    if not columns.user or not columns.item:
        raise ConfigError("columns.user and columns.item must name columns of the file")
    if columns.quantity is not None and not columns.is_event_log:
        raise ConfigError(
            "columns.quantity is only read for event logs: set columns.event too, or "
            "columns.quantity: null"
        )
    decay = options.events.half_life_days is not None
    if columns.is_event_log and decay and columns.timestamp is None:
        raise ConfigError(
            "data.events.half_life_days needs timestamps: set columns.timestamp, or "
            "half_life_days: null"
        )
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass a data file (or a MovieLens folder as a source)")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes)")
    file_format = detect_format(path, fmt)
    if file_format == "parquet":
        raw, mapping = _read_parquet(path, columns, options)
    else:
        raw, mapping = _read_text(path, file_format, columns, header, options)
    frame, report = validate_columns(raw, options, mapping)
    has_ratings, has_timestamps = raw.rating is not None, raw.timestamp is not None
    feedback = "events" if raw.event is not None else "ratings" if has_ratings else "binary"
    # The file's Arrow columns and the checks' temporaries are freed, but pyarrow's allocator
    # (mimalloc) keeps their pages: on the ML-20M shape 1 GB the rest of the run never used.
    del raw
    pa.default_memory_pool().release_unused()
    titles, title_warnings = read_item_titles(path.parent)
    report.warnings.extend(title_warnings)
    return Interactions(
        frame=frame,
        has_ratings=has_ratings,
        has_timestamps=has_timestamps,
        item_titles=titles,
        report=report,
        source=str(path),
        feedback=feedback,
    )
