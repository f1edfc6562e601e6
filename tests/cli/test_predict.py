"""se3mol predict through Typer's CliRunner: rows, order, formats, stdin, errors and exit codes."""

import csv
import gzip
import io
import json
import math

import pytest
from typer.testing import CliRunner

from se3mol.cli.app import app
from se3mol.cli.common import EXIT_BAD_MODEL, EXIT_OUTPUT, EXIT_SOME_RECORDS_FAILED
from tests.helpers import FIXTURES, ROOT
from tests.helpers.hostile import write_corpus

runner = CliRunner()


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_one_row_per_record_in_order(tiny_checkpoint):
    r = runner.invoke(app, ["predict", str(FIXTURES / "good.sdf"), str(FIXTURES / "good.xyz"),
                            "--model", str(tiny_checkpoint)])
    assert r.exit_code == 0, r.stderr
    rows = _rows(r.stdout)
    header = r.stdout.splitlines()[0].split(",")
    assert header[:7] == ["index", "id", "source", "smiles", "n_atoms", "status", "error"]
    assert "gap_meV" in header and "mu_D" in header
    assert [int(x["index"]) for x in rows] == list(range(len(rows)))
    assert all(x["status"] == "ok" and float(x["gap_meV"]) for x in rows)
    assert rows[0]["source"].endswith("good.sdf") and rows[-1]["source"].endswith("good.xyz")


def test_bad_records_get_error_rows_and_exit_code_3(tiny_checkpoint):
    r = runner.invoke(app, ["predict", str(FIXTURES / "broken.sdf"), "--model", str(tiny_checkpoint)])
    assert r.exit_code == EXIT_SOME_RECORDS_FAILED
    rows = _rows(r.stdout)
    bad = [x for x in rows if x["status"] == "error"]
    good = [x for x in rows if x["status"] == "ok"]
    assert bad and good
    assert all(x["error"] and x["gap_meV"] == "" for x in bad)
    assert all(x["gap_meV"] != "" and not x["error"] for x in good)
    assert "error(s)" in r.stderr


def test_jsonl_and_output_file(tiny_checkpoint, tmp_path):
    out = tmp_path / "scores.jsonl"
    r = runner.invoke(app, ["predict", str(FIXTURES / "good.sdf"), "--model", str(tiny_checkpoint),
                            "--format", "jsonl", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines and all(isinstance(x["gap_meV"], float) for x in lines)
    assert [p.name for p in tmp_path.iterdir()] == ["scores.jsonl"]  # no temporary file left


def test_stdin_needs_and_uses_input_format(tiny_checkpoint):
    text = (FIXTURES / "good.sdf").read_text()
    r = runner.invoke(app, ["predict", "-", "--model", str(tiny_checkpoint)], input=text)
    assert r.exit_code == 2
    r = runner.invoke(app, ["predict", "-", "--input-format", "sdf", "--model", str(tiny_checkpoint)], input=text)
    assert r.exit_code == 0, r.stderr
    assert all(x["source"] == "-" for x in _rows(r.stdout))


def test_smiles_are_embedded_and_say_so(tiny_checkpoint, tmp_path):
    smi = tmp_path / "x.smi"
    smi.write_text("CCO ethanol\nnot_a_smiles bad\nc1ccccc1 benzene\n")
    r = runner.invoke(app, ["predict", str(smi), "--model", str(tiny_checkpoint)])
    rows = _rows(r.stdout)
    assert [x["id"] for x in rows] == ["ethanol", "bad", "benzene"]
    assert [x["status"] for x in rows] == ["ok", "error", "ok"]
    assert "ETKDG" in rows[0]["notes"] and rows[0]["n_atoms"] == "9"
    assert r.exit_code == EXIT_SOME_RECORDS_FAILED


def test_unknown_element_and_charged_species_are_errors(tiny_checkpoint, tmp_path):
    smi = tmp_path / "x.smi"
    smi.write_text("CS sulfur\nC[NH3+] charged\nC methane\nC[CH2] ethyl-radical\n")
    rows = _rows(runner.invoke(app, ["predict", str(smi), "--model", str(tiny_checkpoint)]).stdout)
    assert "S not in the model's training set" in rows[0]["error"]
    assert "charged" in rows[1]["error"]
    assert rows[2]["status"] == "ok"
    assert "radical (1 unpaired electron(s))" in rows[3]["error"]


def test_ensemble_has_std_columns(tiny_checkpoint):
    r = runner.invoke(app, ["predict", str(FIXTURES / "good.sdf"), "-m", str(tiny_checkpoint),
                            "-m", str(tiny_checkpoint)])
    rows = _rows(r.stdout)
    assert "gap_meV_std" in rows[0] and float(rows[0]["gap_meV_std"]) == pytest.approx(0.0)


def test_bad_model_and_unwritable_output(tiny_checkpoint, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    r = runner.invoke(app, ["predict", str(FIXTURES / "good.sdf"), "--model", str(junk)])
    assert r.exit_code == EXIT_BAD_MODEL and "cannot load model" in r.stderr
    r = runner.invoke(app, ["predict", str(FIXTURES / "good.sdf"), "--model", str(tiny_checkpoint),
                            "-o", str(tmp_path / "no" / "such" / "dir" / "out.csv")])
    assert r.exit_code == EXIT_OUTPUT and "cannot write output" in r.stderr


def test_default_shipped_model_writes_all_twelve_qm9_targets_for_the_examples():
    if not (ROOT / "models" / "qm9-egnn-all12.pt").exists():
        pytest.skip("shipped model not present")
    r = runner.invoke(app, ["predict", str(ROOT / "examples" / "molecules.sdf")])
    assert r.exit_code == 0, r.stderr
    header = r.stdout.splitlines()[0].split(",")
    assert header == MODEL_COLUMNS
    rows = _rows(r.stdout)
    assert all(2000 < float(x["gap_meV"]) < 15000 for x in rows)  # HOMO-LUMO gaps of small organics: ~4-12 eV
    for x in rows:  # the physics the twelve columns must respect, whatever the model's error
        assert float(x["homo_meV"]) < 0 and float(x["U0_meV"]) < 0 and float(x["alpha_bohr3"]) > 0
        assert float(x["mu_D"]) >= 0 and float(x["Cv_cal_molK"]) > 0 and float(x["zpve_meV"]) > 0
        assert float(x["gap_meV"]) == pytest.approx(float(x["lumo_meV"]) - float(x["homo_meV"]), abs=600)
        stds = [float(x[f"{t}_std"]) for t in TARGET_COLUMNS]
        assert all(math.isfinite(s) and s > 0 for s in stds), stds  # three members never agree to the last bit


def test_models_command_lists_families():
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0
    assert "egnn" in r.stdout and "control-mlp" in r.stdout


def test_bond_graph_model_perceives_bonds_of_xyz_input(tmp_path):
    import torch

    from se3mol.checkpoint import atomic_save, model_checkpoint
    from se3mol.graph import GraphConfig
    from se3mol.nn import build_model
    from se3mol.targets import get_target

    torch.manual_seed(0)
    model = build_model("egnn", [get_target("gap")], {"hidden": 16, "layers": 2}, graph=GraphConfig("bond"))
    path = tmp_path / "bond.pt"
    atomic_save(model_checkpoint(model), path)
    r = runner.invoke(app, ["predict", str(FIXTURES / "good.xyz"), "--model", str(path)])
    assert r.exit_code == 0, r.stderr
    rows = _rows(r.stdout)
    assert rows and all(x["status"] == "ok" for x in rows)
    # XYZ records carry no bonds: the bond graph was built from perceived ones
    from se3mol.io import perceive_bonds, read_molecules

    mol = read_molecules(str(FIXTURES / "good.xyz"))[0]
    assert mol.bonds is None and len(perceive_bonds(mol).bonds) > 0


def test_tensor_target_is_written_as_six_components(tmp_path):
    import torch

    from se3mol.checkpoint import atomic_save, model_checkpoint
    from se3mol.nn import build_model
    from se3mol.targets import get_target

    torch.manual_seed(0)
    model = build_model("egnn", [get_target("gap"), get_target("alpha_tensor")], {"hidden": 16, "layers": 2})
    path = tmp_path / "tensor.pt"
    atomic_save(model_checkpoint(model), path)
    r = runner.invoke(app, ["predict", str(FIXTURES / "good.sdf"), "--model", str(path), "-m", str(path)])
    assert r.exit_code == 0, r.stderr
    header = r.stdout.splitlines()[0].split(",")
    comps = [c for c in header if c.startswith("alpha_tensor_") and not c.endswith("_std")]
    assert comps == [f"alpha_tensor_{c}_bohr3" for c in ("xx", "yy", "zz", "xy", "xz", "yz")]
    assert "alpha_tensor_xy_bohr3_std" in header
    row = _rows(r.stdout)[0]
    assert all(row[c] != "" for c in comps)


# ------------------------------------------------------------------------------------------------ CSV input

TARGET_COLUMNS = ["mu_D", "alpha_bohr3", "homo_meV", "lumo_meV", "gap_meV", "r2_bohr2", "zpve_meV", "U0_meV", "U_meV",
                  "H_meV", "G_meV", "Cv_cal_molK"]
# the default is a shipped ensemble: each target's mean, then its (calibrated) spread across the members
MODEL_COLUMNS = (["index", "id", "source", "smiles", "n_atoms", "status", "error"]
                 + [c for t in TARGET_COLUMNS for c in (t, f"{t}_std")] + ["warning", "notes", "canonical_smiles"])


def test_csv_input_passes_its_other_columns_through_in_order():
    if not (ROOT / "models" / "qm9-egnn-all12.pt").exists():
        pytest.skip("shipped model not present")
    r = runner.invoke(app, ["predict", str(FIXTURES / "table.csv"), "--smiles-column", "smiles",
                            "--id-column", "name"])
    assert r.exit_code == EXIT_SOME_RECORDS_FAILED, r.stderr  # a bad SMILES and a ragged row
    header = r.stdout.splitlines()[0].split(",")
    # the input's gap_meV clashes with the prediction: prefixed; name and smiles are the id and SMILES
    assert header == MODEL_COLUMNS + ["input_gap_meV", "solvent", "count"]
    rows = _rows(r.stdout)
    assert [x["index"] for x in rows] == ["0", "1", "2", "3", "4"]  # one row per input row, in order
    assert [x["id"] for x in rows] == ["ethanol", "benzene", "broken ring", "table.csv:4", "acetonitrile"]
    assert [x["status"] for x in rows] == ["ok", "ok", "error", "error", "ok"]
    assert [x["smiles"] for x in rows] == ["CCO", "c1ccccc1", "C1CC", "", "CC#N"]  # as given, a bad one too
    assert [x["canonical_smiles"] for x in rows] == ["CCO", "c1ccccc1", "", "", "CC#N"]
    assert [x["input_gap_meV"] for x in rows] == ["8123.5", "", "7000", "", ""]
    assert [x["solvent"] for x in rows] == ["water", "toluene, dry", "water", "", ""]
    assert [x["count"] for x in rows] == ["3", "", "1", "", "0012"]
    assert all(2000 < float(rows[k]["gap_meV"]) < 15000 for k in (0, 1, 4))
    assert rows[2]["error"].startswith("line 5: invalid SMILES 'C1CC'") and rows[2]["gap_meV"] == ""
    assert rows[3]["error"] == "line 6: 6 field(s) where the header (line 1) has 5 column(s)"
    assert "scored 3 of 5 record(s); 2 error(s)" in r.stderr


def test_csv_from_stdin_as_jsonl_and_mixed_with_other_inputs(tiny_checkpoint, tmp_path):
    text = "smiles\tlogS\tnote\nCCO\t-0.3\tfirst\nO\t\tsecond\n"
    r = runner.invoke(app, ["predict", "-", "--input-format", "csv", "--format", "jsonl",
                            "--model", str(tiny_checkpoint)], input=text)
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [list(x)[-2:] for x in lines] == [["logS", "note"]] * 2
    assert [(x["id"], x["logS"], x["note"]) for x in lines] == [("-:1", -0.3, "first"), ("-:2", None, "second")]
    more = tmp_path / "more.csv"
    more.write_text("SMILES,note,extra\nC,third,7\n")
    (tmp_path / "t.tsv").write_text(text)
    r = runner.invoke(app, ["predict", str(tmp_path / "t.tsv"), str(FIXTURES / "good.xyz"), str(more),
                            "--model", str(tiny_checkpoint)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0].split(",")[-3:] == ["logS", "note", "extra"]  # union, first-seen order
    rows = _rows(r.stdout)
    assert [(x["logS"], x["note"], x["extra"]) for x in rows] == [
        ("-0.3", "first", ""), ("", "second", ""), ("", "", ""), ("", "", ""), ("", "", ""), ("", "third", "7")]


def test_csv_without_its_smiles_column_is_an_error_row_naming_the_columns(tiny_checkpoint, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("name,structure\nethanol,CCO\n")
    r = runner.invoke(app, ["predict", str(path), str(FIXTURES / "good.xyz"), "--model", str(tiny_checkpoint)])
    assert r.exit_code == EXIT_SOME_RECORDS_FAILED
    rows = _rows(r.stdout)
    assert r.stdout.splitlines()[0].split(",") == ["index", "id", "source", "smiles", "n_atoms", "status",
                                                   "error", "gap_meV", "mu_D", "warning", "notes", "canonical_smiles"]
    assert [x["status"] for x in rows] == ["error", "ok", "ok", "ok"]
    assert "no SMILES column" in rows[0]["error"] and "'name', 'structure'" in rows[0]["error"]
    r = runner.invoke(app, ["predict", str(path), "--smiles-column", "structure", "--model", str(tiny_checkpoint)])
    assert r.exit_code == 0 and _rows(r.stdout)[0]["name"] == "ethanol"


def test_unknown_input_format_is_a_usage_error(tiny_checkpoint):
    r = runner.invoke(app, ["predict", str(FIXTURES / "good.sdf"), "--input-format", "mol2x",
                            "--model", str(tiny_checkpoint)])
    assert r.exit_code == 2 and "unknown input format 'mol2x'" in r.stderr


def test_table_format_keeps_every_prediction_column_whole_and_four_digits(tiny_checkpoint):
    csv_out = runner.invoke(app, ["predict", str(FIXTURES / "good.sdf"), "--model", str(tiny_checkpoint)])
    r = runner.invoke(app, ["predict", str(FIXTURES / "good.sdf"), "--model", str(tiny_checkpoint),
                            "--format", "table"])
    assert r.exit_code == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if "index" in line)
    for column in ("index", "id", "status", "gap_meV", "mu_D"):  # not folded onto several lines (not a terminal)
        assert column in header
    first = _rows(csv_out.stdout)[0]
    row = next(line for line in r.stdout.splitlines() if f" {first['id']} " in line)
    for column in ("gap_meV", "mu_D"):
        value = float(first[column])
        assert (f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}") in row


@pytest.mark.parametrize("fmt, text, ids", [
    ("smi", "CCO ethyl alcohol, absolute\nC methane\n", ["ethyl alcohol, absolute", "methane"]),
    ("csv", "smiles,name\nCCO,ethanol\nC,methane\n", ["-:1", "-:2"]),
])
def test_gzip_on_stdin_is_decompressed(tiny_checkpoint, fmt, text, ids):
    # Issue 31 #11: gzip piped into `predict -` was read as text.
    r = runner.invoke(app, ["predict", "-", "--input-format", fmt, "--model", str(tiny_checkpoint)],
                      input=gzip.compress(text.encode()))
    assert r.exit_code == 0, r.stderr
    assert [x["id"] for x in _rows(r.stdout)] == ids


def test_hostile_inputs_give_one_row_per_record(tiny_checkpoint, tmp_path):
    corpus = write_corpus(tmp_path)
    r = runner.invoke(app, ["predict", *[str(path) for path, _ in corpus], "--model", str(tiny_checkpoint)])
    assert r.exit_code == EXIT_SOME_RECORDS_FAILED, r.stderr
    rows = _rows(r.stdout)
    assert [int(x["index"]) for x in rows] == list(range(sum(case.records for _, case in corpus)))
    for path, case in corpus:
        mine = [x for x in rows if x["source"] == str(path)]
        assert len(mine) == case.records, case.name
        errors = [x["error"] for x in mine if x["status"] == "error"]  # the corpus is in the model's domain
        assert len(errors) == len(case.errors), case.name
        assert all(fragment in e for fragment, e in zip(case.errors, errors, strict=True)), case.name
    titles = [x for x in rows if x["source"].endswith("sdf_odd_titles.sdf")]
    assert [x["status"] for x in titles] == ["ok"] * 4
    assert titles[1]["id"] == "caf\ufffd latin-1" and "not UTF-8" in titles[1]["notes"]


def test_user_identifiers_are_kept(tiny_checkpoint, tmp_path):
    """A CSV column called id was renamed input_id while id became file:N; SD fields could not be kept."""
    table = tmp_path / "t.csv"
    table.write_text("smiles,id,assay\nOCC,CPD-1,3.2\nCCN,CPD-2,4.1\n")
    r = runner.invoke(app, ["predict", str(table), "--model", str(tiny_checkpoint)])
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [x["id"] for x in rows] == ["CPD-1", "CPD-2"] and "input_id" not in rows[0] and rows[0]["assay"] == "3.2"
    assert (rows[0]["smiles"], rows[0]["canonical_smiles"]) == ("OCC", "CCO")  # as given, and canonical
    sdf = tmp_path / "m.sdf"
    from rdkit import Chem
    from rdkit.Chem import AllChem

    with sdf.open("w") as f:
        for k, smi in enumerate(["CCO", "CCN"]):
            m = Chem.AddHs(Chem.MolFromSmiles(smi))
            AllChem.EmbedMolecule(m, randomSeed=k)
            m.SetProp("_Name", f"mol{k}")
            m.SetProp("vendor_id", f"V{k}")
            f.write(Chem.MolToMolBlock(m) + f">  <vendor_id>\nV{k}\n\n$$$$\n")
    r = runner.invoke(app, ["predict", str(sdf), "--model", str(tiny_checkpoint), "--keep-fields", "vendor_id",
                            "--keep-fields", "missing"])
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert r.exit_code == 0, r.stderr
    assert [x["vendor_id"] for x in rows] == ["V0", "V1"] and [x["missing"] for x in rows] == ["", ""]
