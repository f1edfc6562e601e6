"""Reading inputs into :class:`Record` s: one generator over every record of every file (or stdin), in order.

The format of each input decides its reader: :mod:`~se3mol.io.sdf`, :mod:`~se3mol.io.xyz` (also every other
format ASE reads), :mod:`~se3mol.io.smiles` or :mod:`~se3mol.io.tables` (CSV / TSV of SMILES); see
:func:`~se3mol.io.formats.detect_format`. Here they are driven, their records numbered, named, sharded and
validated.

One hop of the data path, file -> :class:`~se3mol.molecule.Molecule`. Everything here streams: files are
read line by line and one record is parsed at a time, so memory does not grow with the file. A bad record
becomes a :class:`Record` with ``molecule=None`` and a message saying what is wrong with it; reading then
goes on with the next record. Every record of the input is one Record, in order, read or not, so that a row
written per Record lines up with the user's own numbering. Writers live elsewhere.

Text is read as :mod:`se3mol.io.base` says (gzip told by its first bytes, also on stdin; lines end at LF or
CRLF only; binary data one error record). Titles and names are names, not chemistry, and are read leniently
(:func:`~se3mol.io.base.clean_name`): a title with bytes that are not UTF-8 or control characters keeps its
molecule, and the record's notes say what was shown as U+FFFD.

Chemistry is RDKit's (molfile parsing, sanitisation, 3D embedding, bond perception); element symbols and
the other file formats are ASE's.

RDKit explains a failed parse only through its log, so the first read routes RDKit's log through Python's
``logging`` module (``rdBase.LogToPythonLogger()``, logger ``"rdkit"``, a process-wide RDKit setting).
Messages that end up in a Record are not printed as well. That interception is not thread-safe: read from
one thread at a time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from se3mol import limits
from se3mol.chem import perceive_rdkit, smiles_or_empty
from se3mol.io.base import (
    READ_ERRORS,
    LazyParsed,
    Parsed,
    TextLines,
    clean_name,
    open_stdin,
    open_text,
    os_error_message,
    read_error_message,
    ready,
)
from se3mol.io.formats import FORMATS, detect_format, normalise_format
from se3mol.io.sdf import parse_sdf
from se3mol.io.smiles import parse_smiles
from se3mol.io.tables import CsvOptions, parse_csv
from se3mol.io.xyz import parse_with_ase, parse_xyz
from se3mol.molecule import Molecule

__all__ = ["Record", "parallel_records", "parse_shard", "read_molecules", "read_records"]

# Bond perception for the best-effort SMILES of an XYZ frame is skipped above this size: RDKit's bond-order
# search can take very long on big systems, and a trajectory reader must not stall on it.
_MAX_ATOMS_FOR_SMILES = 200


@dataclass
class Record:
    """One input record, read or not.

    Attributes:
        index: 0-based position of the record across all inputs, in input order.
        source: file path as given, or ``"-"`` for stdin.
        id: record title / name if non-empty (read leniently: :func:`~se3mol.io.base.clean_name`), else
            ``"<basename of source>:<n>"`` with ``n`` the 1-based record number within that source.
        molecule: the molecule, or ``None`` when the record could not be read.
        error: why the record could not be read (``None`` when it was).
        smiles: canonical SMILES if known (SDF: from the molfile with H removed; SMILES and CSV input: the
            canonical input; XYZ: best effort from bonds perceived from the coordinates), else ``""``.
        notes: remarks on how the molecule was obtained, e.g. that its coordinates were embedded, or on how
            its name was read (bytes that are not UTF-8 in a title); an error record may have notes too.
        properties: extra data carried by the record: SDF data fields, extxyz comment-line values,
            per-frame results such as ``energy``, and for CSV input the row's other columns (all but the
            SMILES and id columns, also on a row whose SMILES is bad). Numbers where they parse as numbers;
            in CSV rows an empty or NA / N/A / NaN / null / None cell is ``None``.
        input_smiles: the SMILES exactly as the input gave it (SMILES files and CSV tables, also when it could not
            be read), else ``""``.
    """

    index: int
    source: str
    id: str
    molecule: Molecule | None
    error: str | None = None
    smiles: str = ""
    notes: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    input_smiles: str = ""

    @property
    def ok(self) -> bool:
        """True when the record was read into a molecule."""
        return self.molecule is not None



def read_records(
    paths: Sequence[str],
    input_format: str | None = None,
    *,
    stdin: IO[Any] | Iterable[str] | None = None,
    embed_seed: int = 0,
    start_index: int = 0,
    shard: tuple[int, int] | str | None = None,
    smiles_column: str | None = None,
    id_column: str | None = None,
    workers: int = 1,
) -> Iterator[Record]:
    """Read every record of every file in ``paths``, in order, one :class:`Record` at a time.

    Bad data never raises: an unreadable file gives one error record for that file, a bad record gives an
    error record, and reading goes on. Molecules that are read are checked with
    :meth:`Molecule.validate`; a failed check is an error record too.

    Args:
        paths: files to read; ``"-"`` reads ``stdin``.
        input_format: ``"sdf"``, ``"xyz"``, ``"smi"``, ``"csv"`` or an ASE format name, for every path;
            ``None`` guesses each file's format with :func:`detect_format`. Required when reading stdin.
        stdin: stream read for ``"-"``: a text stream, read as it is, or a binary one, read as files are
            (gzip told by its first bytes). Default: ``sys.stdin``, read through its bytes.
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
        workers: processes that parse, embed and validate records at once (:func:`parallel_records`); the
            records still come in input order. 1: all in this process.

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
    fmt = None if input_format is None else normalise_format(input_format)
    if fmt is None and "-" in paths:
        raise ValueError(
            "reading from stdin ('-') needs input_format: the format cannot be told from a file name; "
            f"use one of {', '.join(FORMATS)} or an ASE format name"
        )
    i, n = (0, 1) if shard is None else parse_shard(shard)
    options = CsvOptions(smiles_column, id_column)
    if workers > 1:
        return parallel_records(_lazy_records(paths, fmt, stdin, embed_seed, start_index, i, n, options), workers)
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


def _read_records(
    paths: list[str], fmt: str | None, stdin: IO[Any] | Iterable[str] | None, embed_seed: int, start_index: int,
    shard_i: int = 0, shard_n: int = 1, options: CsvOptions | None = None,
) -> Iterator[Record]:
    for lazy, index, path, n in _lazy_records(paths, fmt, stdin, embed_seed, start_index, shard_i, shard_n, options):
        yield _finish(lazy(), index, path, n)


def _lazy_records(
    paths: list[str], fmt: str | None, stdin: IO[Any] | Iterable[str] | None, embed_seed: int, start_index: int,
    shard_i: int = 0, shard_n: int = 1, options: CsvOptions | None = None,
) -> Iterator[tuple[LazyParsed, int, str, int]]:
    """The records of this shard, delimited but not parsed: ``(lazy, index, path, number in its file)``."""
    options = options or CsvOptions()
    index = start_index
    for path in paths:
        n = 0
        for lazy in _parse_source(path, fmt, stdin, embed_seed, options):
            n += 1
            if (index - start_index) % shard_n == shard_i:
                yield lazy, index, path, n
            index += 1


def _finish_lazy(lazy: LazyParsed, index: int, path: str, n: int) -> Record:
    return _finish(lazy(), index, path, n)


def _worker_limits(settings: limits.Limits) -> None:
    limits.set_current(settings)


def parallel_records(lazy: Iterable[tuple[LazyParsed, int, str, int]], workers: int) -> Iterator[Record]:
    """Records finished (parsed, embedded in 3D where needed, validated) by ``workers`` processes, yielded in
    input order, at most ``8 x workers`` in flight (memory stays flat). A record a reader has already parsed
    (an error found while delimiting) is finished here. The limits in force (:mod:`se3mol.limits`) hold in the
    workers too. Embedding SMILES in 3D (ETKDG + MMFF, ~0.2 s for a drug-sized molecule) is what this spreads.
    """
    import functools
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor

    pending: deque[Future | Record] = deque()
    # Python's default start method (fork on Linux before 3.14): a script calling this needs no __main__ guard
    # there; where it is spawn or forkserver (macOS, Python 3.14+), it does, as for any process pool.
    with ProcessPoolExecutor(workers, initializer=_worker_limits, initargs=(limits.current(),)) as pool:
        for item in lazy:
            if isinstance(item[0], functools.partial):  # picklable: a reader's function and its arguments
                pending.append(pool.submit(_finish_lazy, *item))
            else:
                pending.append(_finish_lazy(*item))
            while len(pending) > 8 * workers or (pending and not isinstance(pending[0], Future)):
                head = pending.popleft()
                yield head.result() if isinstance(head, Future) else head
        while pending:
            head = pending.popleft()
            yield head.result() if isinstance(head, Future) else head


def _parse_source(
    path: str, fmt: str | None, stdin: IO[Any] | Iterable[str] | None, embed_seed: int, options: CsvOptions
) -> Iterator[LazyParsed]:
    """All records of one source; failing to open or to keep reading it gives one error record."""
    if path == "-":
        assert fmt is not None  # read_records insists on a format for stdin
        try:
            lines = open_stdin(stdin)
        except READ_ERRORS as exc:
            yield ready(Parsed(error=f"cannot read stdin: {read_error_message(exc)}"))
            return
        with lines:  # leaves stdin itself open
            if fmt not in FORMATS:
                yield from parse_with_ase(lines.stream, fmt)
            else:
                yield from _io_guard(_reader(fmt, lines, embed_seed, path, options))
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        yield ready(Parsed(error=f"cannot open file: {os_error_message(exc)}"))
        return
    if fmt is None:
        try:
            fmt = detect_format(path)
        except ValueError as exc:
            yield ready(Parsed(error=str(exc)))
            return
    if fmt not in FORMATS:
        yield from parse_with_ase(path, fmt)
        return
    try:
        lines = open_text(path)
    except READ_ERRORS as exc:  # an I/O error; binary data; gzip data corrupt or cut short in the first block
        io_error = isinstance(exc, OSError) and exc.strerror
        yield ready(Parsed(error=("cannot open file: " if io_error else "") + read_error_message(exc)))
        return
    with lines:
        yield from _io_guard(_reader(fmt, lines, embed_seed, path, options))


def _reader(fmt: str, lines: TextLines, embed_seed: int, path: str, options: CsvOptions) -> Iterator[LazyParsed]:
    """The reader here for ``fmt`` on ``lines`` (``path``: the file's name, ``"-"`` for stdin)."""
    if fmt == "csv":
        return parse_csv(lines, embed_seed, path, options)
    return {"sdf": parse_sdf, "xyz": parse_xyz, "smi": parse_smiles}[fmt](lines, embed_seed)


def _io_guard(records: Iterator[LazyParsed]) -> Iterator[LazyParsed]:
    """Run one of the readers here; an I/O error mid-file ends that file with one error record.

    (A corrupt .gz or a vanished network share should not end the whole run.)
    """
    while True:
        try:
            parsed = next(records)
        except StopIteration:
            return
        except READ_ERRORS as exc:
            yield ready(Parsed(error=f"could not read the rest of the file: {read_error_message(exc)}"))
            return
        yield parsed


def _finish(parsed: Parsed, index: int, source: str, n: int) -> Record:
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
    name, notes = clean_name((mol.name if mol is not None else "") or parsed.name)
    for key, value in parsed.properties.items():
        if isinstance(value, str) and "\ufffd" in value:
            notes.append(f"property {key!r}: bytes that are not UTF-8 shown as U+FFFD")
    if mol is not None:
        mol.name = name
        notes = [*mol.notes, *notes]
    return Record(
        index=index,
        source=source,
        id=name or f"{os.path.basename(source) or source}:{n}",
        molecule=mol,
        error=error if mol is None else None,
        smiles=mol.smiles if mol is not None else "",
        notes=notes,
        properties=parsed.properties,
        input_smiles=parsed.input_smiles,
    )

