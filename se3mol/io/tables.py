"""CSV / TSV tables of SMILES: one record per data row, its SMILES embedded in 3D, the other columns passed through.

The header line names the columns: the SMILES column is found by name (or given), an id column may be given,
every other column becomes :attr:`~se3mol.io.Record.properties`. :func:`plan_csv` reads the headers of all
inputs ahead of their records, so that a writer knows its columns before the first row.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from se3mol.chem import embed_smiles
from se3mol.io.base import (
    READ_ERRORS,
    LazyParsed,
    Parsed,
    extension,
    number_or_text,
    open_stdin,
    open_text,
    read_error_message,
    ready,
)
from se3mol.io.formats import detect_format, normalise_format

__all__ = ["CsvOptions", "CsvPlan", "csv_columns", "parse_csv", "plan_csv"]

# CSV field separators that the file name decides; any other name (and stdin) is sniffed from the header.
_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
# Header names taken as the SMILES column when none is named, in this order of preference (any case).
_SMILES_COLUMNS = ("smiles", "smi", "canonical_smiles", "mol", "molecule")
# CSV cells read as a missing value (None), compared lower-cased; an empty cell is missing too.
_MISSING_CELLS = frozenset({"na", "n/a", "nan", "null", "none"})
# How many column names an error message lists before it only counts the rest.
_MAX_COLUMNS_LISTED = 30
_EMPTY_CSV = "empty file: no header line naming the columns (CSV input needs one, with a SMILES column)"


@dataclass(frozen=True)
class CsvOptions:
    """Which columns of a CSV input hold the SMILES and the ids (``None``: found / not used)."""

    smiles_column: str | None = None
    id_column: str | None = None


@dataclass(frozen=True)
class _CsvLayout:
    """What the header of a CSV input says: its columns and where a row's SMILES, id and the rest are."""

    delimiter: str
    columns: tuple[str, ...]  # header names, made unique
    smiles: int  # index into a row
    id: int | None
    passthrough: tuple[int, ...]  # indices of the other columns, in file order

    @property
    def passthrough_names(self) -> list[str]:
        return [self.columns[k] for k in self.passthrough]


def csv_columns(path: str, smiles_column: str | None = None, id_column: str | None = None) -> list[str]:
    """The pass-through columns of a CSV / TSV file: its header less the SMILES and id columns, in file order.

    These are the keys of :attr:`~se3mol.io.Record.properties` of the file's records; the columns are found as in
    :func:`~se3mol.io.read_records` (same arguments, same separator rule). Only the header line is read.

    Raises:
        ValueError: if the file cannot be read, has no header line, or lacks the SMILES column or the
            ``id_column`` (the message names the columns it has).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
    ...     _ = f.write("name,SMILES,logS,source\\n")
    >>> csv_columns(f.name, id_column="name")
    ['logS', 'source']
    """
    path = os.fspath(path)
    if path == "-":
        raise ValueError("csv_columns reads a file's header ahead of its records; stdin ('-') cannot be read twice")
    try:
        with open_text(path) as lines:
            lineno, header, _ = _csv_header(lines)
    except READ_ERRORS as exc:
        raise ValueError(f"{path}: cannot read the file: {read_error_message(exc)}") from None
    if header is None:
        raise ValueError(f"{path}: {_EMPTY_CSV}")
    try:
        layout = _csv_layout(header, _csv_delimiter(path, header), CsvOptions(smiles_column, id_column))
    except ValueError as exc:
        raise ValueError(f"{path}: line {lineno}: {exc}") from None
    return layout.passthrough_names


def parse_csv(stream: Iterable[str], embed_seed: int, path: str, options: CsvOptions) -> Iterator[LazyParsed]:
    """One record per data row of a table with a header line; the rows are split here, embedded lazily."""
    lines = iter(stream)
    header_lineno, header, _ = _csv_header(lines)
    if header is None:
        yield ready(Parsed(error=_EMPTY_CSV))
        return
    try:
        layout = _csv_layout(header, _csv_delimiter(path, header), options)
    except ValueError as exc:
        yield ready(Parsed(error=f"line {header_lineno}: {exc}"))
        return
    reader = csv.reader(lines, delimiter=layout.delimiter)
    n_columns = len(layout.columns)
    while True:
        first = header_lineno + reader.line_num + 1  # the row's first line (a quoted field may span lines)
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (a stray quote); reading goes on
            yield ready(Parsed(error=f"line {first}: not a valid CSV row ({exc})"))
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank lines are not records
        if len(row) != n_columns:
            yield ready(Parsed(error=f"line {first}: {len(row)} field(s) where the header (line {header_lineno}) "
                                       f"has {n_columns} column(s)"))
            continue
        yield functools.partial(_csv_record, row, layout, first, embed_seed)


def _csv_record(row: list[str], layout: _CsvLayout, lineno: int, embed_seed: int) -> Parsed:
    name = row[layout.id].strip() if layout.id is not None else ""
    properties = {layout.columns[k]: _cell_value(row[k]) for k in layout.passthrough}
    given = row[layout.smiles].strip()
    try:
        molecule = embed_smiles(given, seed=embed_seed, name=name)
    except ValueError as exc:
        return Parsed(name=name, error=f"line {lineno}: {exc}", properties=properties, input_smiles=given)
    return Parsed(name=name, molecule=molecule, properties=properties, input_smiles=given)


def _csv_header(lines: Iterator[str]) -> tuple[int, str | None, list[str]]:
    """The first non-blank line of ``lines`` and its line number, and every line read (to hand out again)."""
    read: list[str] = []
    for lineno, line in enumerate(lines, start=1):
        read.append(line)
        if line.strip().lstrip("\ufeff"):
            return lineno, line, read
    return len(read), None, read


def _csv_delimiter(path: str, header: str) -> str:
    """Comma for ``.csv``, tab for ``.tsv`` (also gzipped); other names and stdin: tab if the header has one."""
    ext = extension(path)
    if path != "-" and ext in _CSV_DELIMITERS:
        return _CSV_DELIMITERS[ext]
    return "\t" if "\t" in header else ","


def _csv_layout(header: str, delimiter: str, options: CsvOptions) -> _CsvLayout:
    """Read the header line; ValueError (naming the columns there are) if a needed column is missing."""
    fields = next(csv.reader([header.lstrip("\ufeff")], delimiter=delimiter), [])  # a UTF-8 BOM from Excel
    columns: list[str] = []
    for k, raw in enumerate(fields, start=1):
        name = raw.strip() or f"column_{k}"
        unique, j = name, 0
        while unique in columns:
            j += 1
            unique = f"{name}.{j}"
        columns.append(unique)
    if options.smiles_column is not None:
        smiles = _find_column(columns, options.smiles_column, "SMILES")
    else:
        found = (k for want in _SMILES_COLUMNS for k, c in enumerate(columns) if c.lower() == want)
        maybe = next(found, None)
        if maybe is None:
            hint = " (the first line is read as the header)" if len(columns) == 1 else ""
            raise ValueError(
                f"no SMILES column: none is named {', '.join(_SMILES_COLUMNS[:-1])} or {_SMILES_COLUMNS[-1]} "
                f"(any case); the columns are {_list_columns(columns)}{hint}. Name the SMILES column with "
                "smiles_column (se3mol predict --smiles-column)"
            )
        smiles = maybe
    id_: int | None
    if options.id_column is not None:
        id_ = _find_column(columns, options.id_column, "id")
    else:  # a column the user called id is the records' id, not a pass-through column renamed input_id
        id_ = next((k for k, c in enumerate(columns) if c.lower() == "id" and k != smiles), None)
    passthrough = tuple(k for k in range(len(columns)) if k not in (smiles, id_))
    return _CsvLayout(delimiter, tuple(columns), smiles, id_, passthrough)


def _find_column(columns: list[str], wanted: str, what: str) -> int:
    """Index of the column named ``wanted``: exactly, else the only one equal to it in any case."""
    if wanted in columns:
        return columns.index(wanted)
    folded = [k for k, c in enumerate(columns) if c.lower() == wanted.strip().lower()]
    if len(folded) == 1:
        return folded[0]
    raise ValueError(f"no column {wanted!r} (the {what} column asked for); the columns are {_list_columns(columns)}")


def _list_columns(columns: Sequence[str]) -> str:
    listed = ", ".join(repr(c) for c in columns[:_MAX_COLUMNS_LISTED])
    more = f", ... ({len(columns)} in all)" if len(columns) > _MAX_COLUMNS_LISTED else ""
    return listed + more


def _cell_value(text: str) -> Any:
    """A CSV cell: ``None`` when empty or NA; an ``int`` for a plain integer, a ``float`` for another number.

    Integers stay exact (``float`` would round long ids); one written with leading zeros (``007``) is kept as
    text, since it is most likely a code.
    """
    text = text.strip()
    if not text or text.lower() in _MISSING_CELLS:
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        if re.fullmatch(r"[+-]?0\d+", text):
            return text
        try:
            return int(text)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            return text
    return number_or_text(text)


class _Replay:
    """A text stream whose first lines were read ahead (to look at a header) and are handed out again."""

    def __init__(self, ahead: list[str], rest: Iterator[str]) -> None:
        self._ahead = list(ahead)
        self._rest = rest

    def __iter__(self) -> _Replay:
        return self

    def __next__(self) -> str:
        if self._ahead:
            return self._ahead.pop(0)
        return next(self._rest)


class _Unreadable:
    """Stdin that could not be read while its header was looked for: reading it again raises the same error."""

    def __init__(self, exc: BaseException) -> None:
        self._exc = exc

    def __iter__(self) -> _Unreadable:
        return self

    def __next__(self) -> str:
        raise self._exc


@dataclass
class CsvPlan:
    """The pass-through columns of some inputs, known before their records are read (see plan_csv)."""

    columns: list[str]  # union over the CSV inputs, in first-seen order
    sources: frozenset[str]  # the paths (as given; "-" for stdin) read as CSV
    stdin: Any  # the stream to read "-" from: stdin itself, or one that hands the peeked header out again


def plan_csv(
    paths: Sequence[str], input_format: str | None, stdin: IO[Any] | Iterable[str] | None, options: CsvOptions
) -> CsvPlan:
    """Which inputs are CSV and their pass-through columns (:func:`csv_columns`), before reading any record.

    Columns of a file that cannot be read, or lacks its SMILES / id column, are left out: reading it gives
    the error record that says why. From stdin (read as :func:`~se3mol.io.base.open_stdin` reads it) the header
    line is read here and handed out again after. Raises ValueError for an unknown ``input_format``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    fmt = None if input_format is None else normalise_format(input_format)
    columns: dict[str, None] = {}  # an ordered set
    sources = set()
    for path in paths:
        if path == "-":
            if fmt != "csv" or "-" in sources:  # stdin is read once; a second "-" gives no records
                continue
            try:
                lines = open_stdin(stdin)
                _, header, ahead = _csv_header(lines)
            except READ_ERRORS as exc:
                stdin = _Unreadable(exc)  # reading it gives the error record
                sources.add(path)
                continue
            stdin = _Replay(ahead, lines)
            sources.add(path)
            if header is not None:
                with contextlib.suppress(ValueError):
                    columns.update(dict.fromkeys(_csv_layout(header, _csv_delimiter("-", header), options)
                                                 .passthrough_names))
            continue
        try:
            is_csv = (fmt or detect_format(path)) == "csv"
        except ValueError:
            is_csv = False
        if not is_csv:
            continue
        sources.add(path)
        with contextlib.suppress(ValueError):
            columns.update(dict.fromkeys(csv_columns(path, options.smiles_column, options.id_column)))
    return CsvPlan(list(columns), frozenset(sources), stdin)
