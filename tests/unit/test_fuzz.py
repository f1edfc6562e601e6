"""Property-based fuzzing of the readers and of predict (hypothesis).

Real SDF, XYZ and SMILES records from examples/ are mutated (lines deleted, duplicated, swapped or garbled,
counts lines truncated, coordinates made NaN/inf/text, unknown or untrained elements, binary junk), and
files of random bytes are thrown in too. Each file goes through ``read_records``, through
``Predictor.predict_files`` (with the background featurising thread) and, in one test, through the CLI.

Properties: nothing raises; there is exactly one output row per record that the format delimits (an
independent count below, restating the documented rules: ``$$$$`` lines for SDF, frames for XYZ, lines for
SMILES, one record for a binary file), in order; every row is either ``ok`` with finite predictions or ``error``
with a specific message.

The default suite runs a bounded number of examples per test; the ``slow`` variants run ten times more
(``pytest -m slow tests/unit/test_fuzz.py --hypothesis-show-statistics`` prints the counts).
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from se3mol.io import read_records
from tests.helpers import EXAMPLES

SUFFIX = {"sdf": ".sdf", "xyz": ".xyz", "smi": ".smi"}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAVY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Messages that say nothing about what is wrong with the record.
GENERIC = re.compile(r"^(record could not be read|error|invalid|unknown error|none|nan|\W*)$", re.IGNORECASE)
NOT_FOR_CHEMISTS = ("Traceback", "Boost.Python", "<built-in", "object at 0x")


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


SDF_RECORDS = [_lines(b.lstrip(b"\n") + b"$$$$\n")
               for b in (EXAMPLES / "molecules.sdf").read_bytes().split(b"$$$$\n") if b.strip()]
XYZ_FRAMES: list[list[bytes]] = []
for _line in _lines((EXAMPLES / "molecules.xyz").read_bytes()):
    if re.fullmatch(rb"\s*\d+\s*", _line):
        XYZ_FRAMES.append([])
    XYZ_FRAMES[-1].append(_line)
SMILES_LINES = [x for x in _lines((EXAMPLES / "molecules.smi").read_bytes()) if x.strip()]
SEEDS = {"sdf": SDF_RECORDS, "xyz": XYZ_FRAMES, "smi": [[x] for x in SMILES_LINES]}

junk_bytes = st.binary(min_size=1, max_size=40)
text_junk = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=30)


@st.composite
def mutated_record(draw, fmt: str) -> list[bytes]:
    """One seed record with 0-3 mutations."""
    lines = list(draw(st.sampled_from(SEEDS[fmt])))
    for _ in range(draw(st.integers(0, 3))):
        if not lines:
            break
        k = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "garble", "truncate", "coordinate",
                                     "element", "binary"]))
        fields = lines[k].split()
        if kind == "delete":
            del lines[k]
        elif kind == "duplicate":
            lines.insert(k, lines[k])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[j] = lines[j], lines[k]
        elif kind == "garble":
            a = draw(st.integers(0, len(lines[k])))
            b = draw(st.integers(a, len(lines[k])))
            lines[k] = lines[k][:a] + draw(text_junk).encode() + lines[k][b:]
        elif kind == "truncate":  # e.g. an SDF counts line or an XYZ atom count cut short
            target = 3 if fmt == "sdf" and len(lines) > 3 else (0 if fmt == "xyz" else k)
            lines[target] = lines[target][:draw(st.integers(0, max(0, len(lines[target]) - 2)))] + b"\n"
        elif kind == "coordinate" and len(fields) >= 4:
            bad = draw(st.sampled_from([b"nan", b"NaN", b"inf", b"-inf", b"1e999", b"abc", b"-", b"1.2.3"]))
            col = draw(st.integers(0, 2)) + (0 if fmt == "sdf" else 1)
            fields[col] = bad
            lines[k] = b" ".join(fields) + b"\n"
        elif kind == "element" and len(fields) >= 4:
            sym = draw(st.sampled_from([b"Xx", b"Q", b"U", b"Na", b"Cl", b"D", b"*", b"0"]))
            fields[3 if fmt == "sdf" else 0] = sym
            lines[k] = b" ".join(fields) + b"\n"
        elif kind == "element" and fmt == "smi":
            lines[k] = draw(st.sampled_from([b"[Xx]", b"[U]", b"C[Na]", b"[Cl-]", b"[CH3]", b"C(C"])) + b" e\n"
        elif kind == "binary":
            lines.insert(k, draw(junk_bytes) + b"\n")
    return lines


@st.composite
def fuzzed_file(draw, fmt: str) -> bytes:
    if draw(st.integers(0, 9)) == 0:  # one file in ten: random bytes, no structure at all
        return draw(st.binary(max_size=3000))
    records = draw(st.lists(mutated_record(fmt), min_size=1, max_size=6))
    return b"".join(b"".join(r) for r in records)


# ----------------------------------------------------------------------------------- independent record count


_SNIFF = 8192  # se3mol.io.base: how much of a file tells text from binary data and its line ends
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _is_binary(data: bytes) -> bool:
    """se3mol.io.base's rule: a first block mostly NUL, control or not UTF-8, with control characters or no line end."""
    sample = data[:_SNIFF]
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    text = sample.decode("utf-8", errors="replace")
    one_line = len(sample) >= 1024 and b"\n" not in sample and b"\r" not in sample
    if not text or not (_CONTROL.search(text) or one_line):
        return False
    return text.count("\ufffd") + len(_CONTROL.findall(text)) > 0.3 * len(text)


def _text_lines(data: bytes) -> list[str]:
    """The lines a reader sees: UTF-8 with replacement characters, no BOM, ending at LF (CRLF read as LF), or at
    CR in a file whose first block has CRs but no LF."""
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    sample = data[:_SNIFF]
    end = "\r" if b"\n" not in sample and b"\r" in sample[:-1] else "\n"
    parts = text.split(end)
    lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    return [line[:-2] + "\n" if line.endswith("\r\n") else line for line in lines]


def _positive_int(text: str) -> bool:
    return re.fullmatch(r"\+?[0-9]+", text) is not None and int(text) > 0


def _lone_int(text: str) -> bool:
    return re.fullmatch(r"[+-]?[0-9]+", text) is not None


def _atom_line(line: str) -> bool:
    """A symbol or atomic number (up to 3 ASCII letters or digits), then three numbers."""
    fields = line.split()
    if len(fields) < 4 or len(fields[0]) > 3 or not fields[0].isascii():
        return False
    if not (fields[0].isalpha() or fields[0].isdigit()):
        return False
    try:
        for f in fields[1:4]:
            float(f)
    except ValueError:
        return False
    return True


def expected_records(fmt: str, data: bytes) -> int:
    """How many records the format delimits, counted without the readers."""
    if _is_binary(data) or data.startswith(b"\x1f\x8b"):  # binary data; gzip's magic, but no gzip stream after it
        return 1
    lines = _text_lines(data)
    if fmt == "sdf":  # every line that is exactly '$$$$' ends a record; non-blank text after the last is one more
        n, pending = 0, False
        for line in lines:
            if line.rstrip(" \t\r\n\v\f") == "$$$$":
                n, pending = n + 1, False
            elif line.strip():
                pending = True
        return n + pending
    if fmt == "smi":  # one per non-blank, non-comment line, less a header line naming the column
        data_lines = [x.strip() for x in lines if x.strip() and not x.strip().startswith("#")]
        if data_lines and re.split(r"[ \t,]", data_lines[0], maxsplit=1)[0].lower() in ("smiles", "smi",
                                                                                          "canonical_smiles"):
            data_lines = data_lines[1:]
        return len(data_lines)
    # XYZ (the module docstring of se3mol.io.xyz): a frame is a count line, a comment line and that many atom lines;
    # a broken frame runs to the next lone integer, the line after a broken count line being its comment unless
    # it is a lone integer not followed by an atom line.
    n, i = 0, 0
    while i < len(lines):
        text = lines[i].strip()
        if not text:
            i += 1
            continue
        n += 1
        if not _positive_int(text):
            i += 1
            next_frame = i < len(lines) and _lone_int(lines[i].strip()) and not (
                i + 1 < len(lines) and _atom_line(lines[i + 1]))
            i += 0 if next_frame else 1
            while i < len(lines) and not _lone_int(lines[i].strip()):
                i += 1
            continue
        if i + 1 >= len(lines):
            break
        j, atoms = i + 2, 0
        while atoms < int(text) and j < len(lines) and len(lines[j].split()) >= 4:
            j, atoms = j + 1, atoms + 1
        if atoms < int(text) or (j < len(lines) and _atom_line(lines[j])):
            while j < len(lines) and not _lone_int(lines[j].strip()):
                j += 1
        i = j
    return n


# ------------------------------------------------------------------------------------------------ checks


def check_message(error: str | None) -> None:
    assert error and error.strip(), "an error row without a message"
    assert not GENERIC.match(error.strip()), f"generic message {error!r}"
    assert not any(x in error for x in NOT_FOR_CHEMISTS), f"internals in the message {error!r}"


def _write(fmt: str, data: bytes) -> str:
    fd, path = tempfile.mkstemp(suffix=SUFFIX[fmt])
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def check_readers(fmt: str, data: bytes) -> None:
    path = _write(fmt, data)
    try:
        records = list(read_records([path]))
    finally:
        os.unlink(path)
    assert len(records) == expected_records(fmt, data)
    assert [r.index for r in records] == list(range(len(records)))
    for r in records:
        assert r.id and (r.molecule is None) == (r.error is not None)
        if r.molecule is None:
            check_message(r.error)
        else:
            assert all(math.isfinite(float(x)) for x in r.molecule.pos.ravel())


_PREDICTORS: dict[str, object] = {}


def _predictor(checkpoint: Path):
    from se3mol.prediction import Predictor

    key = str(checkpoint)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = Predictor.from_specs([key], batch_size=3, prefetch=2)
    return _PREDICTORS[key]


def check_predict(fmt: str, data: bytes, checkpoint: Path) -> None:
    path = _write(fmt, data)
    try:
        rows = list(_predictor(checkpoint).predict_files([path]))
    finally:
        os.unlink(path)
    assert len(rows) == expected_records(fmt, data)
    assert [r["index"] for r in rows] == list(range(len(rows)))
    for row in rows:
        assert row["status"] in ("ok", "error")
        if row["status"] == "error":
            check_message(row["error"])
            assert row["gap_meV"] is None
        else:
            assert row["error"] is None and math.isfinite(row["gap_meV"])


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("fmt", ["sdf", "xyz", "smi"])
def test_unmutated_seeds_are_read_and_counted(fmt):
    data = b"".join(b"".join(r) for r in SEEDS[fmt])
    records = list(read_records(["-"], fmt, stdin=io.StringIO(data.decode())))
    assert len(records) == expected_records(fmt, data) == len(SEEDS[fmt])
    assert all(r.ok for r in records)


@FAST
@given(data=st.data())
@pytest.mark.parametrize("fmt", ["sdf", "xyz", "smi"])
def test_fuzz_readers(fmt, data):
    check_readers(fmt, data.draw(fuzzed_file(fmt)))


@FAST
@given(data=st.data())
@pytest.mark.parametrize("fmt", ["sdf", "xyz", "smi"])
def test_fuzz_predict(fmt, data, tiny_checkpoint):
    check_predict(fmt, data.draw(fuzzed_file(fmt)), tiny_checkpoint)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["sdf", "xyz", "smi"]), data=st.data())
def test_fuzz_cli(fmt, data, tiny_checkpoint):
    import csv

    from typer.testing import CliRunner

    from se3mol.cli.app import app

    blob = data.draw(fuzzed_file(fmt))
    path = _write(fmt, blob)
    try:
        r = CliRunner().invoke(app, ["predict", path, "--model", str(tiny_checkpoint), "--batch-size", "2"])
    finally:
        os.unlink(path)
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert r.exit_code in (0, 3), r.stderr
    assert len(rows) == expected_records(fmt, blob)
    assert (r.exit_code == 3) == any(x["status"] == "error" for x in rows)
    for row in rows:
        if row["status"] == "error":
            check_message(row["error"])
        else:
            assert row["status"] == "ok" and math.isfinite(float(row["gap_meV"]))


@pytest.mark.slow
@HEAVY
@given(data=st.data())
@pytest.mark.parametrize("fmt", ["sdf", "xyz", "smi"])
def test_fuzz_predict_heavy(fmt, data, tiny_checkpoint):
    blob = data.draw(fuzzed_file(fmt))
    check_readers(fmt, blob)
    check_predict(fmt, blob, tiny_checkpoint)
