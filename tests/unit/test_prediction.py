"""Predictor streaming: shards, the background featurising thread (order, bounded look-ahead, errors
raised where they happened, stopping early), the time split, and bounded memory for error messages."""

import threading
import time

import pytest

from se3mol.io import Record, parse_shard, read_records
from se3mol.prediction import MAX_ERRORS_KEPT, Predictor, predict
from tests.helpers import FIXTURES, small_molecules


@pytest.fixture(scope="module")
def predictor_factory(tiny_checkpoint):
    def make(**kw):
        return Predictor.from_specs([str(tiny_checkpoint)], **kw)

    return make


def _records(n, start=0):
    mols = small_molecules()
    for k in range(start, start + n):
        yield Record(index=k, source="<test>", id=f"m{k}", molecule=mols[k % 3])


INPUTS = [str(FIXTURES / "good.sdf"), str(FIXTURES / "broken.sdf"), str(FIXTURES / "good.xyz")]


@pytest.mark.parametrize("spec", ["0/3", "1/3", "2/3", (1, 2), "0/1"])
def test_shard_keeps_every_nth_record_with_global_index_and_id(spec, predictor_factory):
    i, n = parse_shard(spec)
    whole = list(predictor_factory().predict_files(INPUTS))
    part = list(predictor_factory().predict_files(INPUTS, shard=spec))
    expected = [r for r in whole if r["index"] % n == i]
    assert [r["index"] for r in part] == [r["index"] for r in expected]
    for a, b in zip(part, expected, strict=True):
        assert (a["id"], a["source"], a["status"], a["error"]) == (b["id"], b["source"], b["status"], b["error"])
        if a["status"] == "ok":
            assert a["gap_meV"] == pytest.approx(b["gap_meV"], rel=1e-4)


def test_shards_together_are_the_whole_input_once():
    whole = [(r.index, r.id, r.error) for r in read_records(INPUTS)]
    parts = [(r.index, r.id, r.error) for k in range(4) for r in read_records(INPUTS, shard=(k, 4))]
    assert sorted(parts) == whole


def test_other_shards_records_are_not_parsed(monkeypatch):
    import se3mol.io.sdf as sdf

    parsed = []
    real = sdf.molecule_from_molblock
    monkeypatch.setattr(sdf, "molecule_from_molblock", lambda lines, *a: parsed.append(lines[0]) or real(lines, *a))
    recs = list(read_records([str(FIXTURES / "good.sdf")], shard="1/2"))
    assert len(parsed) == len(recs) and all(r.index % 2 == 1 for r in recs)


@pytest.mark.parametrize(("spec", "message"), [
    ("3/3", "between 0 and N-1"), ("-1/2", "not of the form"), ("1/0", "at least 1"), ("a/b", "not of the form"),
    ("2", "not of the form"), ((5, 2), "between 0 and N-1")])
def test_bad_shard_is_refused_before_reading(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_shard(spec)
    with pytest.raises(ValueError, match=message):
        read_records(INPUTS, shard=spec)


def test_python_api_shard_for_files_and_molecules(tiny_checkpoint):
    df = predict(INPUTS, model=str(tiny_checkpoint), shard="1/2")
    assert list(df["index"]) == list(range(1, 2 * len(df), 2))
    df = predict(small_molecules() * 3, model=str(tiny_checkpoint), shard=(2, 3))
    assert list(df["index"]) == [2, 5, 8] and list(df["id"]) == ["methanol"] * 3


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_rows_in_input_order_with_and_without_background_thread(prefetch, predictor_factory):
    p = predictor_factory(batch_size=4, prefetch=prefetch)
    chunks = list(p.predict_chunks(_records(23)))
    assert [len(c) for c in chunks] == [4, 4, 4, 4, 4, 3]
    assert [r["index"] for c in chunks for r in c] == list(range(23))
    ref = list(predictor_factory(batch_size=23, prefetch=0).predict_chunks(_records(23)))[0]
    assert [r["gap_meV"] for c in chunks for r in c] == pytest.approx([r["gap_meV"] for r in ref], rel=1e-5)


def test_background_thread_reads_a_bounded_number_of_batches_ahead(predictor_factory):
    pulled = []

    def source():
        for rec in _records(10_000):
            pulled.append(rec.index)
            yield rec

    p = predictor_factory(batch_size=8, prefetch=2)
    gen = p.predict_chunks(source())
    next(gen)
    time.sleep(0.5)  # plenty of time for the thread to run ahead if it could
    # one batch handed out, two in the queue, one being put: at most 4 batches (+1 record to see the end)
    assert len(pulled) <= 8 * 4 + 1
    gen.close()


def _featurise_threads():
    return [t for t in threading.enumerate() if t.name == "se3mol-featurise"]


def test_error_in_the_reader_is_raised_in_the_consumer_after_earlier_rows(predictor_factory):
    class ReaderBug(RuntimeError):
        pass

    def source():
        yield from _records(10)
        raise ReaderBug("disk on fire")

    rows = []
    with pytest.raises(ReaderBug, match="disk on fire"):
        for chunk in predictor_factory(batch_size=4, prefetch=2).predict_chunks(source()):
            rows += chunk
    assert [r["index"] for r in rows] == list(range(8))  # the two full batches before the failure
    for _ in range(50):
        if not _featurise_threads():
            break
        time.sleep(0.05)
    assert not _featurise_threads()


def test_stopping_early_stops_the_thread_and_closes_the_input(predictor_factory):
    closed = threading.Event()

    def source():
        try:
            yield from _records(100_000)
        finally:
            closed.set()

    gen = predictor_factory(batch_size=4, prefetch=2).predict_chunks(source())
    next(gen)
    gen.close()  # what happens when `| head` goes away
    assert closed.wait(5)
    for _ in range(50):
        if not _featurise_threads():
            break
        time.sleep(0.05)
    assert not _featurise_threads()


def test_time_split_is_recorded(predictor_factory):
    p = predictor_factory(batch_size=2)
    list(p.predict_files([str(FIXTURES / "good.sdf")]))
    s = p.stats
    assert s.n_records > 0 and s.read_s > 0 and s.model_s > 0 and s.wall_s >= s.model_s
    text = s.summary()
    assert "read+parse" in text and "model" in text and "waiting for featurised input" in text


def test_error_messages_kept_are_bounded_but_all_counted(predictor_factory):
    bad = (Record(index=k, source="<test>", id=f"b{k}", molecule=None, error="broken") for k in range(500))
    p = predictor_factory(batch_size=64)
    rows = [r for c in p.predict_chunks(bad) for r in c]
    assert len(rows) == 500 and all(r["error"] == "broken" for r in rows)
    assert p.stats.n_error == 500 and len(p.stats.errors) == MAX_ERRORS_KEPT


def test_bad_batch_size_and_prefetch_are_refused(tiny_checkpoint):
    with pytest.raises(ValueError, match="batch_size"):
        Predictor.from_specs([str(tiny_checkpoint)], batch_size=0)
    with pytest.raises(ValueError, match="prefetch"):
        Predictor.from_specs([str(tiny_checkpoint)], prefetch=-1)


# ------------------------------------------------------------------------------------------------ CSV input

TABLE = FIXTURES / "table.csv"  # name,smiles,gap_meV,solvent,count; row 3 a bad SMILES, row 4 ragged


def test_csv_columns_pass_through_after_the_model_columns(predictor_factory, tmp_path):
    other = tmp_path / "more.csv"
    other.write_text("name,smiles,solvent,id,notes,input_id\nmethane,C,dmso,m-1,hand drawn,x\n")
    no_id = tmp_path / "no_id.csv"
    no_id.write_text("smiles,label\nCC,1\n")
    inputs = [str(TABLE), str(FIXTURES / "good.xyz"), str(other), str(no_id)]
    p = predictor_factory(batch_size=2)
    chunks = p.predict_file_chunks(inputs, id_column="name")
    # known before the first row: the union in first-seen order; clashes with output columns prefixed
    assert p.input_columns == ["input_gap_meV", "solvent", "count", "input_id", "input_notes", "input_input_id"]
    assert p.columns == p.model_columns + p.input_columns
    rows = [r for c in chunks for r in c]
    # 5 CSV rows, 3 XYZ frames, 1 CSV row, 1 error row for the file without the id column: none dropped
    assert [r["index"] for r in rows] == list(range(10))
    assert [list(r) for r in rows] == [p.columns] * 10
    assert [r["id"] for r in rows[:5]] == ["ethanol", "benzene", "broken ring", "table.csv:4", "acetonitrile"]
    assert [r["status"] for r in rows[:5]] == ["ok", "ok", "error", "error", "ok"]
    assert [r["input_gap_meV"] for r in rows[:5]] == [8123.5, None, 7000, None, None]
    assert rows[0]["gap_meV"] != 8123.5 and isinstance(rows[0]["gap_meV"], float)  # the prediction is kept
    assert [r["solvent"] for r in rows[:5]] == ["water", "toluene, dry", "water", None, None]
    assert [r["count"] for r in rows[:5]] == [3, None, 1, None, "0012"]
    assert "invalid SMILES 'C1CC'" in rows[2]["error"] and rows[2]["gap_meV"] is None
    assert all(r[c] is None for r in rows[5:8] for c in p.input_columns)  # XYZ records: empty cells
    assert {k: rows[8][k] for k in p.input_columns} == {
        "input_gap_meV": None, "solvent": "dmso", "count": None, "input_id": "m-1", "input_notes": "hand drawn",
        "input_input_id": "x"}
    assert rows[8]["id"] == "methane" and rows[8]["notes"].startswith("3D coordinates embedded")
    assert rows[9]["status"] == "error" and "no column 'name' (the id column asked for)" in rows[9]["error"]
    assert "label" not in p.columns  # a file whose columns cannot be told adds none


def test_csv_pass_through_from_stdin_and_in_shards(predictor_factory):
    import io

    text = TABLE.read_text()
    p = predictor_factory()
    chunks = p.predict_file_chunks(["-"], "csv", stdin=io.StringIO(text), id_column="name")
    assert p.input_columns == ["input_gap_meV", "solvent", "count"]  # the header read ahead from stdin ...
    rows = [r for c in chunks for r in c]
    assert [r["id"] for r in rows] == ["ethanol", "benzene", "broken ring", "-:4", "acetonitrile"]  # ... and kept
    assert [r["solvent"] for r in rows] == ["water", "toluene, dry", "water", None, None]
    part = list(predictor_factory().predict_files([str(TABLE)], shard="1/2", id_column="name"))
    assert [(r["index"], r["id"], r["solvent"]) for r in part] == [(1, "benzene", "toluene, dry"),
                                                                    (3, "table.csv:4", None)]


def test_sdf_data_fields_are_not_passed_through(predictor_factory, tmp_path):
    sdf = tmp_path / "w.sdf"
    block = (FIXTURES / "good.sdf").read_text().split("$$$$\n")[1]  # water
    sdf.write_text(block + ">  <solvent>\nfrom the SD file\n\n$$$$\n")
    p = predictor_factory()
    rows = list(p.predict_files([str(sdf), str(TABLE)]))
    assert p.input_columns == ["name", "input_gap_meV", "solvent", "count"]
    assert rows[0]["solvent"] is None and rows[1]["solvent"] == "water"
    # other inputs alone: no extra columns, and a later call does not keep the earlier ones
    list(p.predict_files([str(sdf)]))
    assert p.input_columns == [] and p.columns == p.model_columns


def test_python_api_returns_pass_through_columns(tiny_checkpoint, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("compound,SMILES,measured\nA,CCO,1.5\nB,C1CC,2\nC,O,\n")
    df = predict([str(path)], model=str(tiny_checkpoint), smiles_column="SMILES", id_column="compound")
    assert list(df.columns)[-1:] == ["measured"] and "compound" not in df.columns
    assert list(df["id"]) == ["A", "B", "C"] and list(df["status"]) == ["ok", "error", "ok"]
    assert df["measured"].tolist()[:2] == [1.5, 2.0] and df["measured"].isna().tolist() == [False, False, True]
    df = predict([str(path)], model=str(tiny_checkpoint))  # SMILES found by name; no id column
    assert list(df.columns)[-2:] == ["compound", "measured"] and list(df["id"]) == ["t.csv:1", "t.csv:2", "t.csv:3"]


def test_physically_odd_inputs_are_scored_with_a_warning(tiny_checkpoint):
    """A lone atom and atoms 100,000 A apart were scored 'ok' with nothing said."""
    from se3mol.molecule import Molecule

    lone = Molecule(z=[6], pos=[[0.0, 0.0, 0.0]], name="lone")
    apart = Molecule(z=[8, 1, 1], pos=[[0.0, 0, 0], [1e5, 0, 0], [0, 1e5, 0]], name="apart")
    water = small_molecules()[0]
    df = predict([lone, apart, water], model=str(tiny_checkpoint))
    assert list(df["status"]) == ["ok", "ok", "ok"]
    assert "single atom" in df["warning"][0]
    assert "3 atom(s) (1, 2, 3) more than 6 A from every other atom (up to 1e+05 A)" in df["warning"][1]
    assert df["warning"][2] is None or df["warning"][2] != df["warning"][2]  # None or NaN: nothing to say


def test_periodic_frame_warns_and_fractional_charge_is_an_error(tiny_checkpoint, tmp_path):
    path = tmp_path / "frames.extxyz"
    water = "O 0 0 0.12\nH 0 0.76 -0.47\nH 0 -0.76 -0.47\n"
    path.write_text(f'3\nLattice="10 0 0 0 10 0 0 0 10" Properties=species:S:1:pos:R:3 pbc="T T T"\n{water}'
                    f"3\nProperties=species:S:1:pos:R:3 charge=0.5\n{water}"
                    f"3\nProperties=species:S:1:pos:R:3 charge=0\n{water}")
    df = predict([str(path)], model=str(tiny_checkpoint))
    assert list(df["status"]) == ["ok", "error", "ok"]
    assert "periodic cell (pbc) in the input, ignored" in df["warning"][0]
    assert "total charge 0.5 in the comment line is not a whole number" in df["error"][1]
