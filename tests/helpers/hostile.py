"""A hostile corpus for the io layer: small files, each nasty in one way, with what reading them must give.

:func:`write_corpus` writes one file per :data:`CASES` entry into a directory (a test's ``tmp_path``); nothing is
committed. Each case says how many records :func:`se3mol.io.read_records` gives for it (one per record of the
file, broken ones included: rows must line up with the user's own numbering) and a fragment of each error
record's message, in order, so that a test can check that every error names its problem. The file name's
extension tells the format, as it does for ``se3mol predict``.

Most cases come from issue 31 ("Real molecules in, honest rows out"); the others are what real files do.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CASES", "Case", "write_corpus"]

# ------------------------------------------------------------------------------------------- building blocks

_WATER_XYZ = "3\n{name}\nO 0.0 0.0 0.119\nH 0.0 0.763 -0.477\nH 0.0 -0.763 -0.477\n"
_METHANE_XYZ = ("5\nmethane\nC 0.0 0.0 0.0\nH 0.629 0.629 0.629\nH -0.629 -0.629 0.629\nH -0.629 0.629 -0.629\n"
                "H 0.629 -0.629 -0.629\n")
# Methanol as a V2000 molfile with its hydrogens (lines 1-3 are the header: title, program, comment).
_METHANOL_CTAB = """\
     se3mol         3D
comment line
  6  5  0  0  0  0  0  0  0  0999 V2000
   -0.0500    0.6600    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
   -0.0500   -0.7600    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0
   -1.0900    0.9700    0.0000 H   0  0  0  0  0  0  0  0  0  0  0  0
    0.4400    1.0800    0.8900 H   0  0  0  0  0  0  0  0  0  0  0  0
    0.4400    1.0800   -0.8900 H   0  0  0  0  0  0  0  0  0  0  0  0
    0.8700   -1.0300    0.0000 H   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  1  3  1  0
  1  4  1  0
  1  5  1  0
  2  6  1  0
M  END
"""


def _water(name: str = "water") -> str:
    return _WATER_XYZ.format(name=name)


def _methanol(title: str = "methanol", data: str = "") -> str:
    """One SD record of methanol, ``$$$$`` included; ``data``: data field lines after ``M  END``."""
    return f"{title}\n{_METHANOL_CTAB}{data}$$$$\n"


def _random_bytes(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(n))


def _gzip(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return gzip.compress(data, mtime=0)  # mtime=0: the same bytes on every run


_SMILES = "".join(f"{smiles} molecule {k}\n" for k, smiles in enumerate(["C", "CC", "CCO", "CO", "N", "O"]))


@dataclass(frozen=True)
class Case:
    """One hostile file: its name (the extension tells the format), bytes and what reading it must give."""

    name: str
    data: bytes
    records: int  # records read_records gives, error records included
    errors: tuple[str, ...] = ()  # a fragment of each error record's message, in record order
    why: str = ""  # what is hostile about it


def _case(name: str, data: str | bytes, records: int, errors: tuple[str, ...] = (), why: str = "") -> Case:
    return Case(name, data.encode() if isinstance(data, str) else data, records, errors, why)


_FIVE_FRAMES = (
    _water("frame 1")
    + "x3\n2\nO 0.0 0.0 0.119\nH 0.0 0.763 -0.477\nH 0.0 -0.763 -0.477\n"  # bad count; its comment is a lone 2
    + "-1\nframe 3\nO 0.0 0.0 0.119\n"
    + "0\nframe 4\n"
    + _water("frame 5")
)

CASES: tuple[Case, ...] = (
    # ---- issue 31, item 7: XYZ frames after broken ones
    _case("xyz_five_frames_three_broken.xyz", _FIVE_FRAMES, 5,
          ("atom count 'x3' is not an integer", "atom count '-1' must be a positive integer",
           "atom count '0' must be a positive integer"),
          "5 frames in, 3 rows out: a broken frame's comment line is a lone integer, negative and zero counts"),
    _case("xyz_short_atom_line.xyz", "3\nbroken\nO 0 0 0.119\nH 0 0.763\nH 0 -0.763 -0.477\n" + _water(), 2,
          ("3 atoms announced, 1 atom lines (line 4 ('H 0 0.763') is not an atom line)",),
          "an atom line without z: one broken frame, not two rows"),
    _case("xyz_more_atoms_than_announced.xyz", "2\ntoo many\nO 0 0 0.119\nH 0 0.763 -0.477\nH 0 -0.763 -0.477\n"
          + _water(), 2, ("2 atoms announced, but line 5 after them is another atom line",),
          "a count one short: the extra atom line is no frame of its own"),
    _case("xyz_blank_line_inside_a_frame.xyz", "3\nbroken\nO 0 0 0.119\n\nH 0 0.763 -0.477\nH 0 -0.763 -0.477\n"
          + _water(), 2, ("3 atoms announced, 1 atom lines (line 4 ('') is not an atom line)",)),
    _case("xyz_trailing_garbage.xyz", _water() + _METHANE_XYZ + "end of trajectory\n", 3,
          ("line 13: atom count 'end of trajectory' is not an integer",),
          "a line of garbage where a frame should start is a frame of its own"),
    _case("xyz_garbage_between_frames.xyz", _water() + "garbage\n" + _METHANE_XYZ, 3,
          ("line 6: atom count 'garbage' is not an integer",), "the frame after the garbage is kept"),
    # ---- item 8: '$$$$' inside data
    _case("sdf_data_line_starting_with_dollars.sdf",
          _methanol("first", "> <note>\n$$$$ is not the end\n\n> <code>\n$$$$x\n\n")
          + _methanol("second").removesuffix("$$$$\n") + "$$$$ \t\n", 2, (),
          "data lines that start with $$$$; a separator with trailing whitespace"),
    # ---- item 9: commas in SMILES file ids
    _case("smi_comma_in_the_id.smi", "CCO ethyl alcohol, absolute\nC,methane, natural gas\n", 2),
    # ---- item 10: names are names
    _case("sdf_odd_titles.sdf",
          b"\xef\xbb\xbf" + _methanol("methanol \xe2\x80\xa8 line separator").encode()
          + b"caf\xe9 latin-1\n" + _methanol("").split("\n", 1)[1].encode()
          + _methanol("bell \x07 nel \u0085 bom \ufeff").encode()
          + b"\xef\xbb\xbf" + _methanol("concatenated file with a BOM").encode(), 4, (),
          "a BOM, U+2028, a Latin-1 byte, BEL, U+0085, U+FEFF in titles, a BOM mid-file"),
    _case("xyz_latin1_comment.xyz", _water("caf\xe9").encode("latin-1") + _water("\u2028 \u0085").encode(), 2),
    _case("smi_odd_names.smi", b"CCO caf\xe9\nC bell \x07\nN nel \xc2\x85 and \xe2\x80\xa8 separator\n", 3, (),
          "U+0085 and U+2028 are no line ends, a lone Latin-1 byte no reason to drop a molecule"),
    _case("csv_bom_crlf_quoted_comma.csv", "\ufeffsmiles,name\r\nCCO,\"ethyl alcohol, absolute\"\r\n", 1),
    _case("long_title.sdf", _methanol("m" * 10_000), 1, (), "a title of 10,000 characters"),
    _case("long_comment.xyz", _water("w" * 10_000), 1),
    # ---- item 11: gzip told by its bytes
    _case("gzip_named_plainly.sdf", _gzip(_methanol() * 2), 2, (), "gzip content, no .gz in the name"),
    _case("plain_named_gz.xyz.gz", _water() * 2, 2, (), "plain text named .gz"),
    _case("truncated.smi.gz", _gzip(_SMILES)[:-4], 7, ("gzip data is cut short",),
          "the last bytes of the gzip trailer missing: every line is there, then one error record says so"),
    _case("truncated_in_the_header.sdf.gz", _gzip(_methanol())[:6], 1, ("gzip data is cut short",)),
    _case("corrupt_gzip.sdf", _gzip(_methanol())[:12] + b"\x00not deflate data" * 10, 1, ("corrupt gzip data",)),
    # ---- line ends
    _case("crlf.sdf", (_methanol() * 2).replace("\n", "\r\n"), 2),
    _case("crlf.xyz", (_water() + _METHANE_XYZ).replace("\n", "\r\n"), 2),
    _case("crlf.smi", _SMILES.replace("\n", "\r\n"), 6),
    _case("cr_only.xyz", (_water() + _METHANE_XYZ).replace("\n", "\r"), 2, (), "classic Mac line ends"),
    _case("no_final_line_end.xyz", _water() + _METHANE_XYZ.rstrip("\n"), 2),
    # ---- empty and binary
    _case("empty.sdf", "", 0),
    _case("empty.xyz", "", 0),
    _case("empty.smi", "", 0),
    _case("blank_lines_only.xyz", "\n\n  \n", 0),
    _case("empty.csv", "", 1, ("empty file",), "CSV needs a header line"),
    _case("random_bytes.sdf", _random_bytes(3000), 1, ("not text but binary data",)),
    _case("zeros.xyz", b"\x00" * 4096, 1, ("not text but binary data",)),
    _case("utf16.smi", "CCO ethanol\n".encode("utf-16"), 1, ("UTF-16",)),
    _case("nul_bytes_mid_file.sdf", _methanol("one") + _methanol("two").replace("-0.7600", "\x00" * 7)
          + _methanol("three"), 3, ("line 6 of the record (line 23 of the file) has NUL bytes",)),
    _case("nul_bytes_mid_file.xyz", _water("one") + _water("two").replace("0.763", "\x00" * 5)
          + _water("three"), 3, ("line 9 is not text: it has NUL bytes",)),
    _case("trailing_garbage.sdf", _methanol() + "trailing garbage\n", 2, ("Counts line too short",)),
    # ---- size limits and salts (se3mol.limits, se3mol.chem.select_fragments): error rows, never crashes
    _case("polymer.smi", f"CCO ethanol\n{'C' * 20000} polymer\nCCN amine\n", 3,
          ("SMILES of 20000 characters, more than the limit of 4000",), "RDKit's canonical ranking segfaulted on it"),
    _case("long_chain.smi", f"{'C' * 200} C200\nCCO\n", 2, ("SMILES has 602 atoms, more than the limit of 400",)),
    _case("salts.smi", "CCN.Cl amine-hcl\nCC(=O)[O-].[Na+] acetate-na\nO.O.OC(=O)c1ccccc1 hydrate\n", 3, (),
          "several fragments: the largest organic one is kept"),
    _case("too_many_atoms.xyz", "600\nbig\n" + "".join(f"C {k * 1.5:.1f} 0.0 0.0\n" for k in range(600))
          + _water(), 2, ("600 atoms, more than the limit of 400",), "checked before any all-pairs work"),
    _case("fractional_charge.extxyz", "3\nProperties=species:S:1:pos:R:3 charge=0.5\n"
          + _WATER_XYZ.split("\n", 2)[2], 1, ("total charge 0.5 in the comment line is not a whole number",)),
    _case("periodic.extxyz", '3\nLattice="9 0 0 0 9 0 0 0 9" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
          + _WATER_XYZ.split("\n", 2)[2], 1, (), "scored, with a warning that the cell is ignored"),
)


def write_corpus(directory: str | Path) -> list[tuple[Path, Case]]:
    """Write every case of :data:`CASES` into ``directory``; returns each file's path with its case."""
    directory = Path(directory)
    out = []
    for case in CASES:
        path = directory / case.name
        path.write_bytes(case.data)
        out.append((path, case))
    return out
