"""SD files: split on ``$$$$`` lines, parse each record with RDKit, add missing hydrogens, re-embed 2D depictions.

Records are delimited here, by hand, and parsed one at a time only when asked for (records of other shards are
never parsed): RDKit's SDMolSupplier also loses the record after a truncated one. A record ends at a line that is
exactly ``$$$$`` (trailing whitespace allowed); a data line that only starts with ``$$$$`` is data. SD data fields
become :attr:`~se3mol.io.Record.properties`.

The title, program and comment lines (1-3) and the data fields are free text, read leniently (a title with bytes
that are not UTF-8 keeps its molecule; see :func:`~se3mol.io.base.clean_name`); the counts line, atom and bond
blocks up to ``M  END`` are chemistry and must be plain text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from rdkit import Chem

from se3mol.chem import clean_rdkit_messages, embed_3d, molecule_from_rdkit, rdkit_messages, select_fragments
from se3mol.io.base import LazyParsed, Parsed, number_or_text, text_problem
from se3mol.molecule import Molecule

__all__ = ["molecule_from_molblock", "parse_sdf"]

# All z within this of zero (Angstrom) with >= 3 atoms: a 2D depiction. Same tolerance as Molecule.is_flat.
_FLAT_TOL = 1e-3
# A record longer than this (lines) is almost surely a missing '$$$$'; stop buffering it.
_MAX_RECORD_LINES = 2_000_000
# What may follow the '$$$$' of a record separator: ASCII whitespace (not U+0085 or U+2028, which str.rstrip() takes).
_TRAILING_SPACE = " \t\r\n\v\f"


def parse_sdf(stream: Iterable[str], embed_seed: int) -> Iterator[LazyParsed]:
    """The records of an SD file (its lines), each parsed (:func:`molecule_from_molblock`) when called."""
    for first_line, lines, error in _sdf_blocks(stream):
        yield functools.partial(_sdf_record, first_line, lines, error, embed_seed)


def _sdf_record(first_line: int, lines: list[str], error: str | None, embed_seed: int) -> Parsed:
    title = lines[0].strip() if lines else ""
    if error is not None:
        return Parsed(name=title, error=error)
    try:
        mol = molecule_from_molblock(lines, first_line, embed_seed)
    except ValueError as exc:
        return Parsed(name=title, error=str(exc))
    return Parsed(name=title, molecule=mol, properties=_sdf_data_fields(lines))


def _sdf_blocks(stream: Iterable[str]) -> Iterator[tuple[int, list[str], str | None]]:
    """Split an SD file into records ``(first line number, lines, error)`` on ``$$$$`` lines.

    Done by hand because RDKit's SDMolSupplier also loses the record after a truncated one.
    """
    lines: list[str] = []
    first = 1
    too_long = False
    for lineno, line in enumerate(stream, start=1):
        if line.startswith("$$$$") and line.rstrip(_TRAILING_SPACE) == "$$$$":
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


def molecule_from_molblock(lines: list[str], first_line: int, embed_seed: int) -> Molecule:
    """Parse one molfile with RDKit (H kept, sanitised); add missing H; re-embed 2D depictions in 3D.

    Hydrogens that RDKit counts on an atom but that the file does not give as atoms (implicit H: a
    heavy-atom-only record, or some H left out) are added as atoms after the others, placed by RDKit
    (``AddHs(addCoords=True)``): a model scoring the molecule without them would see another molecule.
    """
    block = "".join(lines)
    # Lines 4 to M  END are chemistry; RDKit's own message for binary data there is an unreadable Boost.Python
    # internals error. (Titles and data fields may hold anything: RDKit keeps them as strings.)
    for k, line in enumerate(lines[3:], start=3):
        if problem := text_problem(line):
            raise ValueError(f"record is not text: line {k + 1} of the record (line {first_line + k} of the file) "
                             f"has {problem} (binary data?)")
        if line.startswith("M  END"):
            break
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
    # Salts, hydrates, mixtures: the fragment policy (--fragments) before hydrogens and any re-embedding, so that
    # a depiction's fragments are not embedded on top of each other.
    mol, fragment_notes = select_fragments(mol)
    rdkit_notes = fragment_notes + rdkit_notes

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
    molecule.name = lines[0].strip() if lines else ""  # as read: names are cleaned where records are made
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
            props[key] = number_or_text("\n".join(values))
            key = None
    return props
