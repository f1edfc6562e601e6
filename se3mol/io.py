"""Readers: SDF, XYZ / extended XYZ, SMILES files, CSV / TSV tables of SMILES and any format ASE reads ->
:class:`Record` s.

One hop of the data path, file -> :class:`~se3mol.molecule.Molecule`. Everything here streams: files are
read line by line and one record is parsed at a time, so memory does not grow with the file. A bad record
becomes a :class:`Record` with ``molecule=None`` and a message saying what is wrong with it; reading then
goes on with the next record. Writers live elsewhere.

Chemistry is RDKit's (molfile parsing, sanitisation, 3D embedding, bond perception); element symbols and
the other file formats are ASE's.

RDKit explains a failed parse only through its log, so the first read routes RDKit's log through Python's
``logging`` module (``rdBase.LogToPythonLogger()``, logger ``"rdkit"``, a process-wide RDKit setting).
Messages that end up in a Record are not printed as well. That interception is not thread-safe: read from
one thread at a time.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import io
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import ase.io
import numpy as np
from ase.data import atomic_numbers, chemical_symbols
from ase.io.formats import UnknownFileTypeError, extension2format, filetype, ioformats
from rdkit import Chem

from se3mol.chem import (
    clean_rdkit_messages,
    embed_3d,
    embed_smiles,
    molecule_from_rdkit,
    perceive_bonds,
    perceive_rdkit,
    rdkit_messages,
    smiles_or_empty,
)
from se3mol.molecule import Molecule

__all__ = [
    "FORMATS",
    "Record",
    "csv_columns",
    "detect_format",
    "embed_smiles",
    "molecule_from_rdkit",
    "perceive_bonds",
    "read_molecules",
    "parse_shard",
    "read_records",
]

#: Formats with a reader of their own here; any other name ASE can read is passed through to ASE.
FORMATS: tuple[str, ...] = ("sdf", "xyz", "smi", "csv")

_EXTENSIONS = {
    ".sdf": "sdf", ".sd": "sdf", ".mol": "sdf",
    ".xyz": "xyz", ".extxyz": "xyz",
    ".smi": "smi", ".smiles": "smi", ".txt": "smi",
    ".csv": "csv", ".tsv": "csv",
}  # fmt: skip
# Names a user (or ASE's own guess) may give for the formats read here.
_ALIASES = {"mol": "sdf", "sd": "sdf", "extxyz": "xyz", "smiles": "smi", "tsv": "csv"}
# CSV field separators that the file name decides; any other name (and stdin) is sniffed from the header.
_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
# Header names taken as the SMILES column when none is named, in this order of preference (any case).
_SMILES_COLUMNS = ("smiles", "smi", "canonical_smiles", "mol", "molecule")
# CSV cells read as a missing value (None), compared lower-cased; an empty cell is missing too.
_MISSING_CELLS = frozenset({"na", "n/a", "nan", "null", "none"})
# How many column names an error message lists before it only counts the rest.
_MAX_COLUMNS_LISTED = 30

# All z within this of zero (Angstrom) with >= 3 atoms: a 2D depiction. Same tolerance as Molecule.is_flat.
_FLAT_TOL = 1e-3
# Bond perception for the best-effort SMILES of an XYZ frame is skipped above this size: RDKit's bond-order
# search can take very long on big systems, and a trajectory reader must not stall on it.
_MAX_ATOMS_FOR_SMILES = 200
# A record longer than this (lines) is almost surely a missing '$$$$'; stop buffering it.
_MAX_RECORD_LINES = 2_000_000


@dataclass
class Record:
    """One input record, read or not.

    Attributes:
        index: 0-based position of the record across all inputs, in input order.
        source: file path as given, or ``"-"`` for stdin.
        id: record title / name if non-empty, else ``"<basename of source>:<n>"`` with ``n`` the 1-based
            record number within that source.
        molecule: the molecule, or ``None`` when the record could not be read.
        error: why the record could not be read (``None`` when it was).
        smiles: canonical SMILES if known (SDF: from the molfile with H removed; SMILES and CSV input: the
            canonical input; XYZ: best effort from bonds perceived from the coordinates), else ``""``.
        notes: remarks on how the molecule was obtained, e.g. that its coordinates were embedded.
        properties: extra data carried by the record: SDF data fields, extxyz comment-line values,
            per-frame results such as ``energy``, and for CSV input the row's other columns (all but the
            SMILES and id columns, also on a row whose SMILES is bad). Numbers where they parse as numbers;
            in CSV rows an empty or NA / N/A / NaN / null / None cell is ``None``.
    """

    index: int
    source: str
    id: str
    molecule: Molecule | None
    error: str | None = None
    smiles: str = ""
    notes: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the record was read into a molecule."""
        return self.molecule is not None


@dataclass
class _Parsed:
    """What a format reader hands back for one record; read_records numbers, names and validates it."""

    name: str = ""
    molecule: Molecule | None = None
    error: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    perceive_smiles: bool = False


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


def detect_format(path: str) -> str:
    """Guess the input format of ``path``: ``"sdf"``, ``"xyz"``, ``"smi"``, ``"csv"`` or an ASE format name.

    Known extensions decide (``.sdf .sd .mol``, ``.xyz .extxyz``, ``.smi .smiles .txt``, ``.csv .tsv``,
    each optionally followed by ``.gz``); otherwise ASE guesses from the name and the first bytes of the
    file.

    Raises:
        ValueError: if neither the extension nor the contents tell the format.
    """
    path = os.fspath(path)
    stem = path[:-3] if path.lower().endswith(".gz") else path
    ext = os.path.splitext(stem)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    try:
        guess = filetype(path, read=True, guess=False)
    except (UnknownFileTypeError, OSError) as exc:
        raise ValueError(_unknown_format_message(path, str(exc))) from None
    fmt = _ALIASES.get(guess, guess)
    if fmt not in FORMATS and not (fmt in ioformats and ioformats[fmt].can_read):
        raise ValueError(_unknown_format_message(path, f"ASE calls it {guess!r}, which it cannot read"))
    return fmt


def read_records(
    paths: Sequence[str],
    input_format: str | None = None,
    *,
    stdin: TextIO | None = None,
    embed_seed: int = 0,
    start_index: int = 0,
    shard: tuple[int, int] | str | None = None,
    smiles_column: str | None = None,
    id_column: str | None = None,
) -> Iterator[Record]:
    """Read every record of every file in ``paths``, in order, one :class:`Record` at a time.

    Bad data never raises: an unreadable file gives one error record for that file, a bad record gives an
    error record, and reading goes on. Molecules that are read are checked with
    :meth:`Molecule.validate`; a failed check is an error record too.

    Args:
        paths: files to read; ``"-"`` reads ``stdin``.
        input_format: ``"sdf"``, ``"xyz"``, ``"smi"``, ``"csv"`` or an ASE format name, for every path;
            ``None`` guesses each file's format with :func:`detect_format`. Required when reading stdin.
        stdin: stream read for ``"-"`` (default ``sys.stdin``).
        embed_seed: random seed for RDKit ETKDG when 3D coordinates have to be generated (SMILES and CSV
            input, 2D SDF records), so results are reproducible.
        start_index: ``Record.index`` of the first record.
        shard: ``(i, n)`` or ``"i/n"``: only the records whose index is ``i`` modulo ``n`` (0 <= i < n),
            so that ``n`` processes split the same inputs between them. In SDF, XYZ and SMILES files the
            others are only delimited (``$$$$``, frame headers, lines), not parsed, so a shard costs about
            ``1/n`` of the parsing; indices and ids stay those of the whole input.
        smiles_column: CSV input: the header name of the SMILES column (exact, else the one name equal to it
            in any case). ``None``: the first column named ``smiles``, ``smi``, ``canonical_smiles``,
            ``mol`` or ``molecule`` (in that order of preference, any case). A file without it gives one
            error record saying which columns it has.
        id_column: CSV input: the column holding the record ids (a file without it gives one error
            record); ``None``, or an empty cell: ``"<basename>:<n>"``.

    CSV input is a table with a header line: one record per data row, its SMILES embedded in 3D as for
    SMILES files, every other column in :attr:`Record.properties`. The separator is a comma for ``.csv``
    and a tab for ``.tsv`` (also gzipped); for other names and stdin, a tab if the header line has one,
    else a comma. Empty header names become ``column_<k>``, repeated ones get ``.1``, ``.2``, ... added.
    A row with a different number of fields than the header is an error record naming its line.

    Returns:
        A generator of records. Arguments are checked at the call, before anything is read.

    Raises:
        ValueError: for an unknown ``input_format``, ``"-"`` without ``input_format``, or a bad ``shard``.

    >>> import io
    >>> rec = next(read_records(["-"], "smi", stdin=io.StringIO("CCO ethanol\\n")))
    >>> rec.id, rec.molecule.formula, rec.smiles
    ('ethanol', 'C2H6O', 'CCO')
    >>> table = io.StringIO("name,smiles,logS\\nwater,O,NA\\n")
    >>> rec = next(read_records(["-"], "csv", stdin=table, id_column="name"))
    >>> rec.id, rec.molecule.formula, rec.properties
    ('water', 'H2O', {'logS': None})
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    fmt = None if input_format is None else _normalise_format(input_format)
    if fmt is None and "-" in paths:
        raise ValueError(
            "reading from stdin ('-') needs input_format: the format cannot be told from a file name; "
            f"use one of {', '.join(FORMATS)} or an ASE format name"
        )
    i, n = (0, 1) if shard is None else parse_shard(shard)
    options = CsvOptions(smiles_column, id_column)
    return _read_records(paths, fmt, stdin, embed_seed, start_index, i, n, options)


def parse_shard(shard: str | tuple[int, int]) -> tuple[int, int]:
    """``"I/N"`` (or ``(I, N)``) -> ``(I, N)``: the records with index ``I`` modulo ``N``, ``0 <= I < N``.

    >>> parse_shard("1/4")
    (1, 4)

    Raises:
        ValueError: saying what is wrong with ``shard``.
    """
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if m is None:
            raise ValueError(f"shard {shard!r} is not of the form I/N (e.g. 0/4: records 0, 4, 8, ...)")
        i, n = int(m[1]), int(m[2])
    else:
        i, n = (int(x) for x in shard)
    if n < 1:
        raise ValueError(f"shard {i}/{n}: the number of shards N must be at least 1")
    if not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: I must be between 0 and N-1 = {n - 1} (shards are numbered from 0)")
    return i, n


def csv_columns(path: str, smiles_column: str | None = None, id_column: str | None = None) -> list[str]:
    """The pass-through columns of a CSV / TSV file: its header less the SMILES and id columns, in file order.

    These are the keys of :attr:`Record.properties` of the file's records; the columns are found as in
    :func:`read_records` (same arguments, same separator rule). Only the header line is read.

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
        with _open_text(path) as stream:
            lineno, header, _ = _csv_header(iter(stream))
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read the file: {_os_error(exc)}") from None
    if header is None:
        raise ValueError(f"{path}: {_EMPTY_CSV}")
    try:
        layout = _csv_layout(header, _csv_delimiter(path, header), CsvOptions(smiles_column, id_column))
    except ValueError as exc:
        raise ValueError(f"{path}: line {lineno}: {exc}") from None
    return layout.passthrough_names


def read_molecules(path: str, input_format: str | None = None) -> list[Molecule]:
    """Read all molecules of one file, stopping at the first bad record.

    Raises:
        ValueError: naming the first record that could not be read and why.
    """
    molecules = []
    for n, rec in enumerate(read_records([path], input_format), start=1):
        if rec.molecule is None:
            raise ValueError(f"{path}: record {n} ({rec.id!r}) could not be read: {rec.error}")
        molecules.append(rec.molecule)
    return molecules


# --------------------------------------------------------------------------------------------------------
# Driving the readers
# --------------------------------------------------------------------------------------------------------


# A delimited record, parsed only when called: records of other shards are never parsed.
_Lazy = Callable[[], "_Parsed"]


def _ready(parsed: _Parsed) -> _Lazy:
    return lambda: parsed


def _read_records(
    paths: list[str], fmt: str | None, stdin: TextIO | None, embed_seed: int, start_index: int,
    shard_i: int = 0, shard_n: int = 1, options: CsvOptions | None = None,
) -> Iterator[Record]:
    options = options or CsvOptions()
    index = start_index
    for path in paths:
        n = 0
        for lazy in _parse_source(path, fmt, stdin, embed_seed, options):
            n += 1
            if (index - start_index) % shard_n == shard_i:
                yield _finish(lazy(), index, path, n)
            index += 1


def _parse_source(
    path: str, fmt: str | None, stdin: TextIO | None, embed_seed: int, options: CsvOptions
) -> Iterator[_Lazy]:
    """All records of one source; failing to open or to keep reading it gives one error record."""
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin
        assert fmt is not None  # read_records insists on a format for stdin
        if fmt not in FORMATS:
            yield from _parse_with_ase(stream, fmt)
        else:
            yield from _io_guard(_reader(fmt, stream, embed_seed, path, options))
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        yield _ready(_Parsed(error=f"cannot open file: {_os_error(exc)}"))
        return
    if fmt is None:
        try:
            fmt = detect_format(path)
        except ValueError as exc:
            yield _ready(_Parsed(error=str(exc)))
            return
    if fmt not in FORMATS:
        yield from _parse_with_ase(path, fmt)
        return
    try:
        stream = _open_text(path)
    except OSError as exc:
        yield _ready(_Parsed(error=f"cannot open file: {_os_error(exc)}"))
        return
    with stream:
        yield from _io_guard(_reader(fmt, stream, embed_seed, path, options))


def _reader(fmt: str, stream: TextIO, embed_seed: int, path: str, options: CsvOptions) -> Iterator[_Lazy]:
    """The reader here for ``fmt`` on ``stream`` (``path``: the file's name, ``"-"`` for stdin)."""
    if fmt == "csv":
        return _parse_csv(stream, embed_seed, path, options)
    return {"sdf": _parse_sdf, "xyz": _parse_xyz, "smi": _parse_smiles}[fmt](stream, embed_seed)


def _io_guard(records: Iterator[_Lazy]) -> Iterator[_Lazy]:
    """Run one of the readers here; an I/O error mid-file ends that file with one error record.

    (A corrupt .gz or a vanished network share should not end the whole run.)
    """
    while True:
        try:
            parsed = next(records)
        except StopIteration:
            return
        except (OSError, EOFError) as exc:
            yield _ready(_Parsed(error=f"could not read the rest of the file: {_os_error(exc)}"))
            return
        yield parsed


def _finish(parsed: _Parsed, index: int, source: str, n: int) -> Record:
    """Number and name a parsed record, validate its molecule and fill in the SMILES."""
    mol, error = parsed.molecule, parsed.error
    if mol is not None:
        try:
            mol.validate()
        except ValueError as exc:
            mol, error = None, str(exc)
    if mol is not None and parsed.perceive_smiles and not mol.smiles and mol.n_atoms <= _MAX_ATOMS_FOR_SMILES:
        try:
            rd, fallback_note = perceive_rdkit(mol)
            if fallback_note is None:
                mol.smiles = smiles_or_empty(rd)
        except ValueError:
            pass  # best effort: an XYZ record is fine without a SMILES
    name = (mol.name if mol is not None else "") or parsed.name
    if not _is_text(name):
        name = ""  # a binary title line would make an unusable id; fall back to source:N
    if mol is not None and not mol.name:
        mol.name = name
    return Record(
        index=index,
        source=source,
        id=name or f"{os.path.basename(source) or source}:{n}",
        molecule=mol,
        error=error if mol is None else None,
        smiles=mol.smiles if mol is not None else "",
        notes=list(mol.notes) if mol is not None else [],
        properties=parsed.properties,
    )


# ASCII characters that str.isprintable() rejects, less tab and line ends.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _is_text(text: str) -> bool:
    """No undecodable bytes (read as U+FFFD) and no control characters other than tabs and line ends."""
    if text.isascii():  # the usual case, checked in C rather than character by character
        return _ASCII_CONTROL.search(text) is None
    return "\ufffd" not in text and all(c.isprintable() or c in "\t\r\n" for c in text)


def _normalise_format(input_format: str) -> str:
    name = input_format.strip().lower().lstrip(".")
    name = _ALIASES.get(name, name)
    if name in FORMATS:
        return name
    if name in ioformats and ioformats[name].can_read:
        return name
    if name in extension2format and extension2format[name].can_read:  # "pdb" -> "proteindatabank"
        return _ALIASES.get(extension2format[name].name, extension2format[name].name)
    raise ValueError(
        f"unknown input format {input_format!r}: use one of {', '.join(FORMATS)} or a format ASE can read "
        "(e.g. pdb, cif, traj)"
    )


def _unknown_format_message(path: str, why: str) -> str:
    return (
        f"cannot tell the format of {path!r} ({why}); give the input format explicitly: one of "
        f"{', '.join(FORMATS)} (extensions {', '.join(_EXTENSIONS)}) or a format ASE can read"
    )


def _open_text(path: str) -> TextIO:
    # Undecodable bytes become U+FFFD and then fail as bad records, rather than aborting the file.
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename!r}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------------------------------------
# SDF
# --------------------------------------------------------------------------------------------------------


def _parse_sdf(stream: TextIO, embed_seed: int) -> Iterator[_Lazy]:
    for first_line, lines, error in _sdf_blocks(stream):
        yield functools.partial(_sdf_record, first_line, lines, error, embed_seed)


def _sdf_record(first_line: int, lines: list[str], error: str | None, embed_seed: int) -> _Parsed:
    title = lines[0].strip() if lines else ""
    if error is not None:
        return _Parsed(name=title, error=error)
    try:
        mol = _molecule_from_molblock(lines, first_line, embed_seed)
    except ValueError as exc:
        return _Parsed(name=title, error=str(exc))
    return _Parsed(name=title, molecule=mol, properties=_sdf_data_fields(lines))


def _sdf_blocks(stream: TextIO) -> Iterator[tuple[int, list[str], str | None]]:
    """Split an SD file into records ``(first line number, lines, error)`` on ``$$$$`` lines.

    Done by hand because RDKit's SDMolSupplier also loses the record after a truncated one.
    """
    lines: list[str] = []
    first = 1
    too_long = False
    for lineno, line in enumerate(stream, start=1):
        if line.startswith("$$$$"):
            if too_long:
                yield first, lines[:1], _too_long_message(first)
            elif any(s.strip() for s in lines):
                yield first, lines, None
            else:
                yield first, [], f"line {lineno}: empty record (nothing before this '$$$$')"
            lines, first, too_long = [], lineno + 1, False
        elif len(lines) < _MAX_RECORD_LINES:
            lines.append(line)
        else:
            too_long = True
    # A last record without '$$$$' is still a record; trailing blank lines are not.
    if too_long:
        yield first, lines[:1], _too_long_message(first)
    elif any(s.strip() for s in lines):
        yield first, lines, None


def _too_long_message(first: int) -> str:
    return f"record starting on line {first} has more than {_MAX_RECORD_LINES} lines (a missing '$$$$'?)"


def _molecule_from_molblock(lines: list[str], first_line: int, embed_seed: int) -> Molecule:
    """Parse one molfile with RDKit (H kept, sanitised); add missing H; re-embed 2D depictions in 3D.

    Hydrogens that RDKit counts on an atom but that the file does not give as atoms (implicit H: a
    heavy-atom-only record, or some H left out) are added as atoms after the others, placed by RDKit
    (``AddHs(addCoords=True)``): a model scoring the molecule without them would see another molecule.
    """
    block = "".join(lines)
    if not _is_text(block):
        # RDKit's own message for such input is an unreadable Boost.Python internals error.
        raise ValueError("record is not text: it contains bytes that are not UTF-8 characters (binary data?)")
    # The counts line, atom and bond blocks are fixed-width ASCII columns. RDKit cuts a non-ASCII character
    # there in the middle of its bytes, and its log message about that cannot be decoded, which surfaces as
    # a Boost.Python internals error; so say what is wrong before RDKit sees it. (Title, comment and data
    # lines may hold any text.)
    for k, line in enumerate(lines[3:], start=3):
        if line.startswith("M  END"):
            break
        if not line.isascii():
            raise ValueError(f"line {k + 1} of the record (line {first_line + k} of the file) has non-ASCII "
                             f"characters where the molfile needs plain ASCII columns: {line.strip()!r}")
    with rdkit_messages() as messages:
        try:
            mol = Chem.MolFromMolBlock(block, removeHs=False, sanitize=True)
        except Exception as exc:  # some RDKit parse failures raise instead of returning None
            # A message RDKit could not hand to Python surfaces as a Boost.Python internals error.
            unreadable = "Boost.Python" in str(exc) or "exception set" in str(exc)
            messages.append("RDKit could not parse the record (its error message was unreadable)"
                            if unreadable else str(exc))
            mol = None
    if mol is None:
        raise ValueError(_molblock_error(lines, messages, first_line))
    if mol.GetNumAtoms() == 0:
        raise ValueError("molecule has no atoms")
    if mol.GetNumConformers() == 0:
        raise ValueError("no coordinates")
    # Warnings on a record RDKit did read (e.g. ambiguous stereo) are worth keeping; the 2D one is ours below.
    rdkit_notes = [f"RDKit: {m}" for m in clean_rdkit_messages(messages).split("; ") if m]
    rdkit_notes = [m for m in rdkit_notes if "Z coords are zero" not in m]

    # Before the 2D check, so that a depiction is embedded with its hydrogens and their sp3 centres count.
    missing_h = sum(a.GetTotalNumHs() for a in mol.GetAtoms())  # H counted on atoms, not given as atoms
    if missing_h:
        with rdkit_messages() as messages:
            try:
                mol = Chem.AddHs(mol, addCoords=True)
            except Exception as exc:  # RDKit raises several types; say what it said
                detail = str(exc) or clean_rdkit_messages(messages)
                raise ValueError(f"{missing_h} hydrogen(s) missing from the input could not be added "
                                 f"(RDKit: {detail})") from None

    notes = []
    header = lines[1] if len(lines) > 1 else ""
    z_coords = mol.GetConformer().GetPositions()[:, 2]  # [N]
    flagged_2d = header[20:22] == "2D"
    all_z_zero = mol.GetNumAtoms() >= 3 and bool(np.all(np.abs(z_coords) < _FLAT_TOL))
    # A genuinely planar molecule (water, benzene) may sit in the z = 0 plane of a real 3D geometry,
    # so flatness alone is not proof of a depiction; an atom with four neighbours (sp3) is: it
    # cannot be planar in 3D, whatever the header says.
    tetrahedral = any(a.GetDegree() >= 4 for a in mol.GetAtoms())
    reembed = flagged_2d or (all_z_zero and tetrahedral)
    if missing_h:
        notes.append(
            f"{missing_h} hydrogen(s) missing from the input were added "
            + ("(RDKit AddHs), then embedded in 3D with the other atoms" if reembed
               else "with 3D coordinates (RDKit AddHs addCoords)")
        )
    if reembed:
        # A depiction's coordinates are not a geometry: a model would see a flattened molecule.
        why = "2D coordinates in input" if flagged_2d else "all z coordinates are zero (a 2D depiction)"
        try:
            ff_notes = embed_3d(mol, embed_seed)
        except ValueError as exc:
            raise ValueError(f"{why} and re-embedding in 3D failed: {exc}") from None
        notes += [f"{why}: re-embedded in 3D ({ff_notes[0]}, seed {embed_seed})", *ff_notes[1:]]

    molecule = molecule_from_rdkit(mol)
    molecule.notes = notes + rdkit_notes
    return molecule


def _molblock_error(lines: list[str], messages: list[str], first_line: int) -> str:
    """Turn RDKit's log lines for a failed molfile into one message that points into the file."""
    detail = clean_rdkit_messages(messages) or "not a valid MDL molfile"

    # RDKit counts lines within the record; the user needs the line of the file.
    def file_line(match: re.Match[str]) -> str:
        n = int(match[2])
        return f"{match[1]} {n} of the record (line {first_line + n - 1} of the file)"

    detail, n_located = re.subn(r"(on line) ?(\d+)", file_line, detail)
    where = "" if n_located else f" (record starting on line {first_line} of the file)"

    if unknown := re.search(r"Element '([^']*)' not found", detail):
        atom = _molfile_atom_with_symbol(lines, unknown[1])
        on_atom = f" on atom {atom}" if atom else ""
        return f"RDKit: {detail}: unknown element symbol {unknown[1]!r}{on_atom}{where}"
    if valence := re.search(r"Explicit valence for atom # (\d+) (\w+)", detail):
        # RDKit numbers atoms from 0, molfiles and chemists from 1.
        atom = int(valence[1]) + 1
        return f"RDKit: {detail}: atom {atom} ({valence[2]}) has more bonds than it can have{where}"
    coords = re.search(r"Cannot process coordinates on line (\d+)", detail)
    if coords and 4 < int(coords[1]) <= len(lines):
        fields = lines[int(coords[1]) - 1].split()[:3]
        if any(f.lower().lstrip("+-") in ("nan", "inf", "infinity") for f in fields):
            return f"RDKit: {detail}: atom {int(coords[1]) - 4} has a NaN or infinite coordinate"
    return f"RDKit: {detail}{where}"


def _molfile_atom_with_symbol(lines: list[str], symbol: str) -> int | None:
    """1-based number of the first atom with this symbol in a V2000 or V3000 atom block, if found."""
    for i, line in enumerate(lines[4:], start=1):
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "M" and fields[1] == "V30" and fields[3] == symbol:
            return int(fields[2]) if fields[2].isdigit() else None
        if len(fields) >= 4 and fields[3] == symbol:
            return i
    return None


def _sdf_data_fields(lines: list[str]) -> dict[str, Any]:
    """SD data fields after ``M  END``: ``>  <name>`` followed by value lines up to a blank line."""
    props: dict[str, Any] = {}
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("M  END")) + 1
    except StopIteration:
        return props
    key: str | None = None
    values: list[str] = []
    for line in [*lines[start:], ""]:
        if key is None:
            match = re.match(r">.*<([^>]+)>", line)
            key = match[1] if match else None
            values = []
        elif line.strip():
            values.append(line.rstrip("\r\n"))
        else:
            props[key] = _number_or_text("\n".join(values))
            key = None
    return props


# --------------------------------------------------------------------------------------------------------
# XYZ and extended XYZ
# --------------------------------------------------------------------------------------------------------


def _parse_xyz(stream: TextIO, embed_seed: int) -> Iterator[_Lazy]:
    del embed_seed  # XYZ frames are 3D already
    for first_line, lines, error in _xyz_frames(stream):
        if error is not None:
            yield _ready(_Parsed(error=error))
        else:
            yield functools.partial(_xyz_frame_to_parsed, lines, first_line)


def _xyz_frames(stream: TextIO) -> Iterator[tuple[int, list[str], str | None]]:
    """Split (ext)XYZ text into frames ``(count line number, lines, error)``.

    A frame is a count line, a comment line and exactly that many atom lines. After a bad count line, or a
    frame cut short, reading resumes at the next line holding a lone positive integer.
    """
    lines_iter = enumerate(stream, start=1)
    pending: tuple[int, str] | None = None  # a line read ahead that may start the next frame

    def next_line() -> tuple[int, str] | None:
        nonlocal pending
        if pending is not None:
            item, pending = pending, None
            return item
        return next(lines_iter, None)

    while (item := next_line()) is not None:
        lineno, line = item
        text = line.strip()
        if not text:
            continue  # blank lines between frames are harmless
        count = _positive_int(text)
        if count is None:
            why = "must be a positive integer" if re.fullmatch(r"[+-]?\d+", text) else "is not an integer"
            for ahead in lines_iter:
                if _positive_int(ahead[1].strip()) is not None:
                    pending = ahead
                    break
            yield lineno, [], f"line {lineno}: atom count {text!r} {why}"
            continue
        comment = next_line()
        if comment is None:
            yield lineno, [], f"line {lineno}: the file ends after the atom count ({count})"
            return
        atoms: list[str] = []
        while len(atoms) < count and (item := next_line()) is not None:
            if len(item[1].split()) < 4:  # not "symbol x y z": the frame is shorter than announced
                pending = item
                break
            atoms.append(item[1])
        if len(atoms) < count:
            where = (
                f"line {pending[0]} ({pending[1].strip()!r}) is not an atom line"
                if pending is not None
                else "the file ends"
            )
            yield lineno, [], f"line {lineno}: {count} atoms announced, {len(atoms)} atom lines ({where})"
            continue
        yield lineno, [line, comment[1], *atoms], None


def _xyz_frame_to_parsed(lines: list[str], first_line: int) -> _Parsed:
    comment = lines[1].strip()
    key_value = _is_extxyz_comment(comment)
    if not key_value:
        lines = _symbols_for_atomic_numbers(lines)
    try:
        atoms = ase.io.read(io.StringIO("".join(lines)), format="extxyz")
    except KeyError as exc:  # ASE looks the symbol up in its periodic table
        symbol = str(exc.args[0]) if exc.args else "?"
        where = ""
        for i, line in enumerate(lines[2:], start=1):
            if line.split()[0].capitalize() not in atomic_numbers:
                symbol, where = line.split()[0], f" on atom {i} (line {first_line + 1 + i})"
                break
        return _Parsed(name="" if key_value else comment, error=f"unknown element symbol {symbol!r}{where}")
    except Exception as exc:  # ASE raises ValueError, XYZError, IndexError, ... on bad text
        message = str(exc).removeprefix("ase.io.extxyz: ")
        error = f"frame starting on line {first_line}: {message}"
        return _Parsed(name="" if key_value else comment, error=error)

    properties: dict[str, Any] = {}
    name = comment
    charge = 0
    if key_value:
        info = dict(atoms.info)
        name = str(info.pop("name", "")).strip()
        properties.update({k: _plain(v) for k, v in info.items()})
        if atoms.calc is not None:  # ASE moves energy, forces, ... of the comment/columns into a calculator
            properties.update({k: _plain(v) for k, v in atoms.calc.results.items()})
        raw_charge = properties.get("charge", 0)
        if isinstance(raw_charge, (int, float)) and float(raw_charge).is_integer():
            charge = int(raw_charge)
    mol = Molecule(z=atoms.numbers, pos=atoms.positions, charge=charge, name=name)
    return _Parsed(name=name, molecule=mol, properties=properties, perceive_smiles=True)


def _is_extxyz_comment(comment: str) -> bool:
    """True for an extxyz ``key=value`` comment line, False for free text such as a molecule's name."""
    return re.search(r"(?:^|\s)[A-Za-z_][\w:.\-]*=\S", comment) is not None


def _symbols_for_atomic_numbers(lines: list[str]) -> list[str]:
    """Plain XYZ from some programs gives atomic numbers instead of symbols; ASE only reads symbols."""
    out = lines[:2]
    for line in lines[2:]:
        first, *rest = line.split(None, 1)
        if first.isdigit() and 0 < int(first) < len(chemical_symbols):
            line = f"{chemical_symbols[int(first)]} {rest[0] if rest else ''}"
        out.append(line)
    return out


def _positive_int(text: str) -> int | None:
    if re.fullmatch(r"\+?\d+", text) and int(text) > 0:
        return int(text)
    return None


# --------------------------------------------------------------------------------------------------------
# SMILES files and ASE formats
# --------------------------------------------------------------------------------------------------------


def _parse_smiles(stream: TextIO, embed_seed: int) -> Iterator[_Lazy]:
    """One record per non-blank, non-``#`` line: ``SMILES [name]``, separated by whitespace, tab or comma."""
    first_data_line = True
    for lineno, line in enumerate(stream, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if "\t" in text:
            fields = text.split("\t", 1)
        elif "," in text:
            fields = text.split(",", 1)
        else:
            fields = text.split(None, 1)
        smiles = fields[0].strip()
        name = fields[1].strip() if len(fields) > 1 else ""
        if first_data_line and smiles.lower() in ("smiles", "smi", "canonical_smiles"):
            first_data_line = False
            continue  # a column header, not a molecule
        first_data_line = False
        yield functools.partial(_smiles_record, smiles, name, lineno, embed_seed)


def _smiles_record(smiles: str, name: str, lineno: int, embed_seed: int) -> _Parsed:
    try:
        return _Parsed(name=name, molecule=embed_smiles(smiles, seed=embed_seed, name=name))
    except ValueError as exc:
        return _Parsed(name=name, error=f"line {lineno}: {exc}")


def _parse_with_ase(source: Any, fmt: str) -> Iterator[_Lazy]:
    """Frames of any other format through ``ase.io.iread``, which cannot resume after a bad frame."""
    frames = ase.io.iread(source, index=":", format=fmt)
    n_read = 0
    while True:
        try:
            atoms = next(frames)
        except StopIteration:
            return
        except Exception as exc:  # ASE readers raise anything; the rest of the file is lost
            where = f"after record {n_read}" if n_read else "at the first record"
            yield _ready(_Parsed(error=f"ASE ({fmt}) could not read the file {where}: {type(exc).__name__}: {exc}"))
            return
        n_read += 1
        info = dict(atoms.info)
        name = str(info.pop("name", "") or "").strip()
        properties = {k: _plain(v) for k, v in info.items()}
        if atoms.calc is not None:
            properties.update({k: _plain(v) for k, v in atoms.calc.results.items()})
        mol = Molecule(z=atoms.numbers, pos=atoms.positions, name=name)
        yield _ready(_Parsed(name=name, molecule=mol, properties=properties, perceive_smiles=True))


# --------------------------------------------------------------------------------------------------------
# CSV / TSV tables of SMILES
# --------------------------------------------------------------------------------------------------------

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


def _parse_csv(stream: TextIO, embed_seed: int, path: str, options: CsvOptions) -> Iterator[_Lazy]:
    """One record per data row of a table with a header line; the rows are split here, embedded lazily."""
    lines = iter(stream)
    header_lineno, header, _ = _csv_header(lines)
    if header is None:
        yield _ready(_Parsed(error=_EMPTY_CSV))
        return
    try:
        layout = _csv_layout(header, _csv_delimiter(path, header), options)
    except ValueError as exc:
        yield _ready(_Parsed(error=f"line {header_lineno}: {exc}"))
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
            yield _ready(_Parsed(error=f"line {first}: not a valid CSV row ({exc})"))
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank lines are not records
        if len(row) != n_columns:
            yield _ready(_Parsed(error=f"line {first}: {len(row)} field(s) where the header (line {header_lineno}) "
                                       f"has {n_columns} column(s)"))
            continue
        yield functools.partial(_csv_record, row, layout, first, embed_seed)


def _csv_record(row: list[str], layout: _CsvLayout, lineno: int, embed_seed: int) -> _Parsed:
    name = row[layout.id].strip() if layout.id is not None else ""
    properties = {layout.columns[k]: _cell_value(row[k]) for k in layout.passthrough}
    try:
        molecule = embed_smiles(row[layout.smiles], seed=embed_seed, name=name)
    except ValueError as exc:
        return _Parsed(name=name, error=f"line {lineno}: {exc}", properties=properties)
    return _Parsed(name=name, molecule=molecule, properties=properties)


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
    stem = path[:-3] if path.lower().endswith(".gz") else path
    ext = os.path.splitext(stem)[1].lower()
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
        smiles = next(found, None)
        if smiles is None:
            hint = " (the first line is read as the header)" if len(columns) == 1 else ""
            raise ValueError(
                f"no SMILES column: none is named {', '.join(_SMILES_COLUMNS[:-1])} or {_SMILES_COLUMNS[-1]} "
                f"(any case); the columns are {_list_columns(columns)}{hint}. Name the SMILES column with "
                "smiles_column (se3mol predict --smiles-column)"
            )
    id_ = None if options.id_column is None else _find_column(columns, options.id_column, "id")
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
    return _number_or_text(text)


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


@dataclass
class CsvPlan:
    """The pass-through columns of some inputs, known before their records are read (see plan_csv)."""

    columns: list[str]  # union over the CSV inputs, in first-seen order
    sources: frozenset[str]  # the paths (as given; "-" for stdin) read as CSV
    stdin: Any  # the stream to read "-" from: stdin itself, or one that hands the peeked header out again


def plan_csv(
    paths: Sequence[str], input_format: str | None, stdin: TextIO | None, options: CsvOptions
) -> CsvPlan:
    """Which inputs are CSV and their pass-through columns (:func:`csv_columns`), before reading any record.

    Columns of a file that cannot be read, or lacks its SMILES / id column, are left out: reading it gives
    the error record that says why. From stdin the header line is read here and handed out again after.
    Raises ValueError for an unknown ``input_format``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    fmt = None if input_format is None else _normalise_format(input_format)
    columns: dict[str, None] = {}  # an ordered set
    sources = set()
    for path in paths:
        if path == "-":
            if fmt != "csv" or "-" in sources:  # stdin is read once; a second "-" gives no records
                continue
            lines = iter(stdin if stdin is not None else sys.stdin)
            _, header, ahead = _csv_header(lines)
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


# --------------------------------------------------------------------------------------------------------
# RDKit helpers
# --------------------------------------------------------------------------------------------------------


def _number_or_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers, so properties print and serialise plainly."""
    return value.item() if isinstance(value, np.generic) else value
