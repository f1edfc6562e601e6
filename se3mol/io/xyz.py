"""XYZ and extended XYZ (frames delimited here, each parsed by ASE), and every other format ASE reads.

XYZ frames are delimited by hand so that every frame of the file is one record, a broken frame one error record,
and reading goes on with the next frame; ``ase.io.iread`` cannot resume after a bad frame, so for other ASE formats
the rest of a file after one is lost (one error record says so).

A frame is a count line (a lone positive integer), a comment line (free text, or extxyz ``key=value`` pairs) and
that many atom lines (``symbol x y z ...``; an atomic number for the symbol is read too). Blank lines between
frames are skipped. A frame is broken when its count line is not a positive integer, when a line that is not an
atom line (or the end of the file) comes before the announced number of atom lines, or when another atom line
(a symbol or atomic number and three numbers) follows right after them.

How the next frame is found after a broken one: every line up to the next one holding nothing but an integer
(signed or not: a bad count starts a frame too) belongs to the broken frame, and that line starts the next frame.
The one exception is the line right after a broken count line: that is the broken frame's comment line, whatever
it holds (a frame number, say), unless it is a lone integer followed by a line that is not an atom line, which
makes it the next frame's count line (a line of garbage between two frames). So one frame in is one record out,
and the ``index`` of every later frame is its number in the file, counted from 0; a line of garbage where a frame
should start is a frame of its own (an error record naming its line).
"""

from __future__ import annotations

import collections
import functools
import io
import re
from collections.abc import Iterable, Iterator
from typing import Any, cast

import ase.io
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from se3mol.io.base import LazyParsed, Parsed, plain_value, ready, text_problem
from se3mol.molecule import Molecule

__all__ = ["parse_with_ase", "parse_xyz"]


def parse_xyz(stream: Iterable[str], embed_seed: int) -> Iterator[LazyParsed]:
    """The frames of an (ext)XYZ file, each parsed by ASE when called; a broken frame is an error record."""
    del embed_seed  # XYZ frames are 3D already
    for first_line, lines, error in _xyz_frames(stream):
        if error is not None:
            yield ready(Parsed(error=error))
        else:
            yield functools.partial(_xyz_frame_to_parsed, lines, first_line)


class _Lines:
    """Numbered lines (from 1) with two lines of look-ahead."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = enumerate(lines, start=1)
        self._ahead: collections.deque[tuple[int, str]] = collections.deque()

    def peek(self, k: int = 0) -> tuple[int, str] | None:
        """The line ``k`` lines ahead of the next one (0: the next one), or ``None`` past the end."""
        while len(self._ahead) <= k:
            item = next(self._lines, None)
            if item is None:
                return None
            self._ahead.append(item)
        return self._ahead[k]

    def next(self) -> tuple[int, str] | None:
        item = self.peek()
        if item is not None:
            self._ahead.popleft()
        return item

    def skip_broken_frame(self) -> None:
        """Skip the rest of a broken frame: every line up to the next count line (see the module docstring)."""
        while (item := self.peek()) is not None and not _COUNT_LINE.fullmatch(item[1].strip()):
            self.next()


def _xyz_frames(stream: Iterable[str]) -> Iterator[tuple[int, list[str], str | None]]:
    """Split (ext)XYZ text into frames ``(count line number, lines, error)``, one per frame, broken ones included.

    The module docstring says what a frame is, and how the next one is found after a broken one.
    """
    lines = _Lines(stream)
    while (item := lines.next()) is not None:
        lineno, line = item
        text = line.strip()
        if not text:
            continue  # blank lines between frames are harmless
        count = _positive_int(text)
        if count is None:
            if problem := text_problem(text):
                error = f"line {lineno} (where a frame should start) is not text: it has {problem} (binary data?)"
            else:
                why = "must be a positive integer" if _COUNT_LINE.fullmatch(text) else "is not an integer"
                error = f"line {lineno}: atom count {text!r} {why}"
            if not _starts_a_frame(lines):
                lines.next()  # its comment line (a frame number, say)
            lines.skip_broken_frame()
            yield lineno, [], error
            continue
        comment = lines.next()
        if comment is None:
            yield lineno, [], f"line {lineno}: the file ends after the atom count ({count})"
            return
        atoms: list[str] = []
        while len(atoms) < count and (item := lines.peek()) is not None and len(item[1].split()) >= 4:
            atoms.append(item[1])  # "symbol x y z": what is wrong with the symbol or numbers, ASE will say
            lines.next()
        if len(atoms) < count:
            where = "the file ends" if item is None else f"line {item[0]} ({item[1].strip()!r}) is not an atom line"
            lines.skip_broken_frame()
            yield lineno, [], f"line {lineno}: {count} atoms announced, {len(atoms)} atom lines ({where})"
            continue
        if (item := lines.peek()) is not None and _is_atom_line(item[1]):
            lines.skip_broken_frame()
            yield lineno, [], (f"line {lineno}: {count} atoms announced, but line {item[0]} after them is another "
                               f"atom line ({item[1].strip()!r})")
            continue
        yield lineno, [line, comment[1], *atoms], None


def _starts_a_frame(lines: _Lines) -> bool:
    """Whether the next line, right after a broken count line, is the next frame's count line rather than the
    broken frame's comment: a lone integer not followed by an atom line (a line of garbage between two frames)."""
    item, after = lines.peek(), lines.peek(1)
    return item is not None and _COUNT_LINE.fullmatch(item[1].strip()) is not None and (
        after is None or not _is_atom_line(after[1]))


# A line holding nothing but an integer: a count line, a bad one (0, -3) included. ASCII digits only: \d would take
# other scripts' digits too.
_COUNT_LINE = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _is_atom_line(line: str) -> bool:
    """An atom line for sure: an element symbol or atomic number (up to 3 ASCII letters or digits), then three
    numbers (``nan`` and ``inf`` included)."""
    fields = line.split()
    if len(fields) < 4 or len(fields[0]) > 3 or not fields[0].isascii():
        return False
    return (fields[0].isalpha() or fields[0].isdigit()) and all(_is_number(f) for f in fields[1:4])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _xyz_frame_to_parsed(lines: list[str], first_line: int) -> Parsed:
    comment = lines[1].strip()
    key_value = _is_extxyz_comment(comment)
    for k, line in enumerate(lines[2:], start=2):
        if problem := text_problem(line):
            return Parsed(name="" if key_value else comment, error=f"frame starting on line {first_line}: line "
                          f"{first_line + k} is not text: it has {problem} (binary data?)")
    if not key_value:
        # A free-text comment is the name, read leniently where records are made; ASE need not see it.
        lines = _symbols_for_atomic_numbers([lines[0], "\n", *lines[2:]])
    try:
        # One frame, so one Atoms (ASE's annotation also allows a list, for slices).
        atoms = cast(Atoms, ase.io.read(io.StringIO("".join(lines)), format="extxyz"))
    except KeyError as exc:  # ASE looks the symbol up in its periodic table
        symbol = str(exc.args[0]) if exc.args else "?"
        where = ""
        for i, line in enumerate(lines[2:], start=1):
            if line.split()[0].capitalize() not in atomic_numbers:
                symbol, where = line.split()[0], f" on atom {i} (line {first_line + 1 + i})"
                break
        return Parsed(name="" if key_value else comment, error=f"unknown element symbol {symbol!r}{where}")
    except Exception as exc:  # ASE raises ValueError, XYZError, IndexError, ... on bad text
        message = str(exc).removeprefix("ase.io.extxyz: ")
        error = f"frame starting on line {first_line}: {message}"
        return Parsed(name="" if key_value else comment, error=error)

    properties: dict[str, Any] = {}
    name = comment
    charge = 0
    if key_value:
        info = dict(atoms.info)
        name = str(info.pop("name", "")).strip()
        properties.update({k: plain_value(v) for k, v in info.items()})
        if atoms.calc is not None:  # ASE moves energy, forces, ... of the comment/columns into a calculator
            properties.update({k: plain_value(v) for k, v in atoms.calc.results.items()})
        raw_charge = properties.get("charge", 0)
        if isinstance(raw_charge, (int, float)) and float(raw_charge).is_integer():
            charge = int(raw_charge)
        elif isinstance(raw_charge, (int, float)):
            return Parsed(name=name, properties=properties, error=f"total charge {raw_charge:g} in the comment line "
                          "is not a whole number: no molecule has it")
    mol = Molecule(z=atoms.numbers, pos=atoms.positions, charge=charge, name=name, periodic=bool(atoms.pbc.any()))
    return Parsed(name=name, molecule=mol, properties=properties, perceive_smiles=True)


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
    if _COUNT_LINE.fullmatch(text) and not text.startswith("-") and int(text) > 0:
        return int(text)
    return None


def parse_with_ase(source: Any, fmt: str) -> Iterator[LazyParsed]:
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
            yield ready(Parsed(error=f"ASE ({fmt}) could not read the file {where}: {type(exc).__name__}: {exc}"))
            return
        n_read += 1
        info = dict(atoms.info)
        name = str(info.pop("name", "") or "").strip()
        properties = {k: plain_value(v) for k, v in info.items()}
        if atoms.calc is not None:
            properties.update({k: plain_value(v) for k, v in atoms.calc.results.items()})
        raw_charge = properties.get("charge", 0)
        if not (isinstance(raw_charge, (int, float)) and float(raw_charge).is_integer()):
            yield ready(Parsed(name=name, properties=properties, error=f"total charge {raw_charge!r} is not a whole "
                               "number: no molecule has it"))
            continue
        mol = Molecule(z=atoms.numbers, pos=atoms.positions, charge=int(raw_charge), name=name,
                       periodic=bool(atoms.pbc.any()))
        yield ready(Parsed(name=name, molecule=mol, properties=properties, perceive_smiles=True))
