"""XYZ and extended XYZ (frames delimited here, each parsed by ASE), and every other format ASE reads.

XYZ frames are delimited by hand so that a bad frame is one error record and reading resumes at the next
frame header; ``ase.io.iread`` cannot resume after a bad frame, so for other ASE formats the rest of a file
after one is lost (one error record says so).
"""

from __future__ import annotations

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


def _xyz_frames(stream: Iterable[str]) -> Iterator[tuple[int, list[str], str | None]]:
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
    mol = Molecule(z=atoms.numbers, pos=atoms.positions, charge=charge, name=name)
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
    if re.fullmatch(r"\+?\d+", text) and int(text) > 0:
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
        mol = Molecule(z=atoms.numbers, pos=atoms.positions, name=name)
        yield ready(Parsed(name=name, molecule=mol, properties=properties, perceive_smiles=True))
