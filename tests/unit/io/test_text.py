"""Reading text (se3mol.io.base): gzip told by its bytes, stdin read as files are, line ends, binary data, and
titles and names read leniently."""

import gzip
import io
import random
import sys

import pytest

from se3mol.io import read_records
from se3mol.io.base import clean_name
from tests.helpers import EXAMPLES

# Ethanol's molfile without its title line (lines 2 to M  END, then the '$$$$').
_CTAB = (EXAMPLES / "molecules.sdf").read_text().split("$$$$\n")[0].lstrip("\n").split("\n", 1)[1] + "$$$$\n"
_WATER_XYZ = "3\n{}\nO 0.0 0.0 0.119\nH 0.0 0.763 -0.477\nH 0.0 -0.763 -0.477\n"


def read(path, fmt=None, **kwargs):
    return list(read_records([str(path)], fmt, **kwargs))


# ------------------------------------------------------------------------------------------------ names


def test_sdf_titles_are_names_read_leniently(tmp_path):
    # Issue 31 #10: a BOM, U+0085, U+2028, U+FEFF or BEL in a title rejected the molecule as "not UTF-8 (binary
    # data?)", and so did a single Latin-1 byte.
    titles = [b"\xef\xbb\xbfstarts the file with a BOM", "nel \u0085 inside".encode(), "line\u2028separator".encode(),
              "zero\ufeffwidth".encode(), b"bell \x07", b"caf\xe9"]
    path = tmp_path / "titles.sdf"
    path.write_bytes(b"".join(title + b"\n" + _CTAB.encode() for title in titles))
    recs = read(path)
    assert [r.ok for r in recs] == [True] * 6
    assert [r.id for r in recs] == ["starts the file with a BOM", "nel \u0085 inside", "line\u2028separator",
                                    "zerowidth", "bell \ufffd", "caf\ufffd"]
    assert [r.molecule.name for r in recs] == [r.id for r in recs]
    assert [r.notes for r in recs] == [[], [], [], [], ["name: 1 control character(s) shown as U+FFFD"],
                                       ["name: 1 byte sequence(s) that are not UTF-8 shown as U+FFFD"]]


def test_xyz_comment_and_smiles_names_are_read_leniently(tmp_path):
    xyz = tmp_path / "names.xyz"
    xyz.write_bytes(_WATER_XYZ.format("caf\xe9").encode("latin-1") + _WATER_XYZ.format("a\u2028b").encode())
    assert [(r.ok, r.id) for r in read(xyz)] == [(True, "caf\ufffd"), (True, "a\u2028b")]
    smi = tmp_path / "names.smi"
    smi.write_bytes(b"CCO caf\xe9\nC nel \xc2\x85 and \xe2\x80\xa8 inside\nN lone \r CR\nO water\n")
    recs = read(smi)
    assert [(r.ok, r.id) for r in recs] == [(True, "caf\ufffd"), (True, "nel \u0085 and \u2028 inside"),
                                            (True, "lone \ufffd CR"), (True, "water")]
    assert recs[0].notes[-1] == "name: 1 byte sequence(s) that are not UTF-8 shown as U+FFFD"


def test_a_property_with_bytes_that_are_not_utf8_is_kept_and_noted(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"smiles,source\nCCO,Universit\xe4t\n")
    (rec,) = read(path)
    assert rec.ok and rec.properties == {"source": "Universit\ufffdt"}
    assert rec.notes[-1] == "property 'source': bytes that are not UTF-8 shown as U+FFFD"


@pytest.mark.parametrize("raw, name, notes", [
    ("  ethanol  ", "ethanol", []),
    ("\ufeffethanol", "ethanol", []),
    ("a\x00b\x1bc", "a\ufffdb\ufffdc", ["name: 2 control character(s) shown as U+FFFD"]),
    ("\ufffd\ufffd\x07x", "", ["name dropped: it is not text (binary data?)"]),
    ("x\u2028\u0085y", "x\u2028\u0085y", []),
])
def test_clean_name(raw, name, notes):
    assert clean_name(raw) == (name, notes)


def test_truly_binary_files_still_get_their_clear_error(tmp_path):
    rng = random.Random(0)
    for name, data in [("random.sdf", bytes(rng.randrange(256) for _ in range(3000))), ("zeros.smi", bytes(500)),
                       ("utf16.xyz", _WATER_XYZ.format("w").encode("utf-16"))]:
        (tmp_path / name).write_bytes(data)
        (rec,) = read(tmp_path / name)
        assert rec.error.startswith("the file is not text but binary data: ")
        assert rec.id == f"{name}:1"


# ------------------------------------------------------------------------------------------------ line ends


@pytest.mark.parametrize("end", ["\r\n", "\r"], ids=["CRLF", "CR only"])
def test_crlf_and_cr_only_line_ends(tmp_path, end):
    path = tmp_path / "t.sdf"
    path.write_bytes(("ethanol\n" + _CTAB + "methanol\n" + _CTAB).replace("\n", end).encode())
    assert [(r.ok, r.id) for r in read(path)] == [(True, "ethanol"), (True, "methanol")]


# ------------------------------------------------------------------------------------------------ gzip


def test_gzip_is_told_by_its_bytes_not_by_the_name(tmp_path):
    # Issue 31 #11: gzip content in a file named .sdf was read as text.
    (tmp_path / "zipped.sdf").write_bytes(gzip.compress(("ethanol\n" + _CTAB).encode()))
    (tmp_path / "plain.xyz.gz").write_text(_WATER_XYZ.format("water"))
    assert [(r.ok, r.id) for r in read(tmp_path / "zipped.sdf")] == [(True, "ethanol")]
    assert [(r.ok, r.id) for r in read(tmp_path / "plain.xyz.gz")] == [(True, "water")]


def test_gzip_on_stdin_binary_and_sys_stdin(monkeypatch):
    zipped = gzip.compress(b"CCO ethanol\nC methane\n")
    recs = list(read_records(["-"], "smi", stdin=io.BytesIO(zipped)))
    assert [(r.ok, r.id) for r in recs] == [(True, "ethanol"), (True, "methane")]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(zipped), encoding="utf-8"))
    recs = list(read_records(["-"], "smi"))  # sys.stdin is read through its bytes
    assert [(r.ok, r.id) for r in recs] == [(True, "ethanol"), (True, "methane")]


def test_gzip_cut_short_gives_the_records_before_the_cut_and_one_error(tmp_path):
    lines = "".join(f"{s} m{k}\n" for k, s in enumerate(["C", "CC", "CO", "N"]))
    path = tmp_path / "cut.smi.gz"
    path.write_bytes(gzip.compress(lines.encode())[:-4])  # the trailer's length field missing
    recs = read(path)
    assert [r.ok for r in recs] == [True, True, True, True, False]
    assert recs[-1].error.startswith("could not read the rest of the file: the gzip data is cut short")
