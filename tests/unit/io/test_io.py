"""Tests of se3mol.io: reading SDF, XYZ / extxyz, SMILES and ASE files into Records."""

from __future__ import annotations

import gzip
import inspect
import io
import itertools
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdkit import Chem

from se3mol.io import (
    FORMATS,
    Record,
    csv_columns,
    detect_format,
    embed_smiles,
    molecule_from_rdkit,
    perceive_bonds,
    read_molecules,
    read_records,
)
from tests.helpers import EXAMPLES, FIXTURES


def read(path: Path | str, fmt: str | None = None, **kwargs) -> list[Record]:
    return list(read_records([str(path)], fmt, **kwargs))


def symbols(rec: Record) -> list[str]:
    assert rec.molecule is not None, rec.error
    return [Chem.GetPeriodicTable().GetElementSymbol(int(z)) for z in rec.molecule.z]


def z_spread(rec: Record) -> float:
    """Extent of the molecule along z [A]: zero for a 2D depiction."""
    assert rec.molecule is not None, rec.error
    return float(np.ptp(rec.molecule.pos[:, 2]))


def first_atom_xyz_in_sdf(path: Path) -> list[float]:
    """Coordinates of atom 1 of the first record, read straight from the V2000 atom line."""
    return [float(v) for v in path.read_text().splitlines()[4].split()[:3]]


# ------------------------------------------------------------------------------------------------ SDF


def test_good_sdf_reads_every_molecule_with_hydrogens_and_bonds():
    recs = read(FIXTURES / "good.sdf")
    assert [r.id for r in recs] == ["ethanol", "water", "benzene", "acetic acid"]
    assert [r.index for r in recs] == [0, 1, 2, 3]
    assert all(r.error is None for r in recs)
    assert [r.molecule.n_atoms for r in recs] == [9, 3, 12, 8]
    assert [r.molecule.formula for r in recs] == ["C2H6O", "H2O", "C6H6", "C2H4O2"]
    assert symbols(recs[1]) == ["O", "H", "H"]
    assert [len(r.molecule.bonds) for r in recs] == [8, 2, 12, 7]
    assert [r.smiles for r in recs] == ["CCO", "O", "c1ccccc1", "CC(=O)O"]
    assert not any(r.molecule.is_flat() for r in recs)
    assert all(r.notes == [] for r in recs)  # real 3D input: nothing re-embedded
    np.testing.assert_allclose(recs[0].molecule.pos[0], first_atom_xyz_in_sdf(FIXTURES / "good.sdf"))


def test_sdf_bond_orders_aromatic_as_one_and_a_half():
    benzene = read(FIXTURES / "good.sdf")[2].molecule
    assert sorted(benzene.bond_orders.tolist()) == [1.0] * 6 + [1.5] * 6
    acetic = read(FIXTURES / "good.sdf")[3].molecule
    assert sorted(acetic.bond_orders.tolist()) == [1.0] * 6 + [2.0]


def test_broken_sdf_gives_one_error_per_bad_record_and_keeps_reading():
    recs = read(FIXTURES / "broken.sdf")
    assert [r.id for r in recs] == [
        "ethanol",
        "truncated methanol",
        "unparsable",
        "unknown element",
        "2D isopropanol",
        "nan coordinates",
        "neutral ammonium",
        "water",
    ]
    assert [r.index for r in recs] == list(range(8))
    assert [r.ok for r in recs] == [True, False, False, False, True, False, False, True]
    errors = {r.id: r.error for r in recs if not r.ok}
    assert all(e.startswith("RDKit: ") for e in errors.values())
    assert "EOF hit while reading atoms" in errors["truncated methanol"]
    assert "record starting on line 24 of the file" in errors["truncated methanol"]
    located = "Cannot convert '  x' to unsigned int on line 4 of the record (line 35 of the file)"
    assert located in errors["unparsable"]
    assert "unknown element symbol 'Xx' on atom 3" in errors["unknown element"]
    assert "atom 2 has a NaN or infinite coordinate" in errors["nan coordinates"]
    assert "Explicit valence for atom # 0 N, 4" in errors["neutral ammonium"]
    assert "atom 1 (N)" in errors["neutral ammonium"]
    assert all(r.molecule is None and r.smiles == "" for r in recs if not r.ok)
    assert recs[-1].molecule.formula == "H2O" and recs[-1].smiles == "O"


def test_2d_sdf_record_is_reembedded_in_3d_with_a_note():
    rec = read(FIXTURES / "broken.sdf")[4]
    mol = rec.molecule
    assert symbols(rec) == ["C", "C", "O", "C"] + ["H"] * 8  # atoms kept in file order, H not re-added
    assert len(mol.bonds) == 11
    assert not mol.is_flat()
    assert z_spread(rec) > 1.0
    assert rec.notes[0] == "2D coordinates in input: re-embedded in 3D (RDKit ETKDG+MMFF, seed 0)"
    assert rec.notes == mol.notes
    assert rec.smiles == "CC(C)O"
    # The C-O bond of the embedded geometry is a real one (~1.43 A), not the 1.5 A of the depiction.
    assert 1.35 < np.linalg.norm(mol.pos[1] - mol.pos[2]) < 1.48


def test_2d_reembedding_follows_the_seed():
    def pos(seed: int) -> np.ndarray:
        return read(FIXTURES / "broken.sdf", embed_seed=seed)[4].molecule.pos

    np.testing.assert_array_equal(pos(0), pos(0))
    assert not np.allclose(pos(0), pos(7))
    assert read(FIXTURES / "broken.sdf", embed_seed=7)[4].notes[0].endswith("seed 7)")


def test_sdf_tagged_3d_but_all_z_zero_is_treated_as_2d(tmp_path):
    block = (FIXTURES / "broken.sdf").read_text().split("$$$$\n")[4]
    assert block.splitlines()[1][20:22] == "2D"
    lines = block.splitlines()
    lines[1] = lines[1][:20] + "3D"
    path = tmp_path / "mislabelled.sdf"
    path.write_text("\n".join(lines) + "\n$$$$\n")
    (rec,) = read(path)
    assert rec.ok and not rec.molecule.is_flat()
    assert rec.notes[0].startswith("all z coordinates are zero (a 2D depiction): re-embedded in 3D")


def test_sdf_last_record_without_terminator_is_read_and_trailing_blanks_are_not(tmp_path):
    text = (FIXTURES / "good.sdf").read_text()
    assert text.endswith("$$$$\n")
    no_terminator = tmp_path / "no_terminator.sdf"
    no_terminator.write_text(text[: -len("$$$$\n")])
    assert [r.id for r in read(no_terminator)] == ["ethanol", "water", "benzene", "acetic acid"]
    blank_tail = tmp_path / "blank_tail.sdf"
    blank_tail.write_text(text + "\n   \n\n")
    assert len(read(blank_tail)) == 4


def test_sdf_empty_record_between_terminators_is_an_error(tmp_path):
    records = (FIXTURES / "good.sdf").read_text().split("$$$$\n")
    path = tmp_path / "gap.sdf"
    path.write_text(records[0] + "$$$$\n\n$$$$\n" + records[1] + "$$$$\n")
    recs = read(path)
    assert [r.ok for r in recs] == [True, False, True]
    assert recs[1].error.startswith("line ") and "empty record" in recs[1].error
    assert recs[1].id == "gap.sdf:2"


def bond_lengths_to_h(mol) -> list[tuple[int, float]]:
    """(atomic number of the partner, length [A]) of every bond to a hydrogen."""
    out = []
    for i, j in mol.bonds.tolist():
        if 1 in (mol.z[i], mol.z[j]):
            other = int(mol.z[j] if mol.z[i] == 1 else mol.z[i])
            out.append((other, float(np.linalg.norm(mol.pos[i] - mol.pos[j]))))
    return out


def min_distance(mol) -> float:
    d = np.linalg.norm(mol.pos[:, None] - mol.pos[None], axis=-1)  # [N,N]
    return float(d[np.triu_indices(len(d), 1)].min())


def test_sdf_without_hydrogens_gets_them_added_in_3d(tmp_path):
    with_h = read(FIXTURES / "good.sdf")[2]  # benzene
    rd = Chem.MolFromMolBlock((FIXTURES / "good.sdf").read_text().split("$$$$\n")[2], removeHs=False)
    path = tmp_path / "heavy.sdf"
    path.write_text(Chem.MolToMolBlock(Chem.RemoveHs(rd)) + "$$$$\n")
    (rec,) = read(path)
    assert rec.molecule.z.tolist() == [6] * 6 + [1] * 6  # the file's atoms first, in file order
    assert rec.molecule.formula == "C6H6" and rec.smiles == "c1ccccc1"
    assert rec.notes == ["6 hydrogen(s) missing from the input were added with 3D coordinates (RDKit AddHs addCoords)"]
    np.testing.assert_allclose(rec.molecule.pos[:6], with_h.molecule.pos[:6], atol=1e-4)  # heavy atoms kept
    # Each added H sits on its carbon, in the ring plane, about where the file with H has it.
    lengths = bond_lengths_to_h(rec.molecule)
    assert len(lengths) == 6 and all(z == 6 and 1.0 < d < 1.15 for z, d in lengths)
    added, given = rec.molecule.pos[6:], with_h.molecule.pos[6:]  # [6,3] each
    nearest = np.linalg.norm(added[:, None] - given[None], axis=-1).min(axis=1)  # [6]
    assert nearest.max() < 0.1


def test_heavy_atom_only_3d_ethanol_gets_nine_atoms_at_sensible_distances():
    rec = read(FIXTURES / "heavy_atoms.sdf")[0]
    assert rec.id == "ethanol heavy atoms" and rec.ok
    mol = rec.molecule
    assert mol.n_atoms == 9 and mol.formula == "C2H6O" and rec.smiles == "CCO"
    assert symbols(rec) == ["C", "C", "O"] + ["H"] * 6
    assert len(mol.bonds) == 8
    lengths = bond_lengths_to_h(mol)
    assert sorted(z for z, _ in lengths) == [6] * 5 + [8]
    assert all(0.9 < d < 1.2 for _, d in lengths)
    assert min_distance(mol) > 0.9  # no H on top of another atom
    assert rec.notes == ["6 hydrogen(s) missing from the input were added with 3D coordinates (RDKit AddHs addCoords)"]
    # The given heavy atoms are not moved (a 3D record is not re-embedded).
    atom_lines = (FIXTURES / "heavy_atoms.sdf").read_text().splitlines()[4:7]
    np.testing.assert_allclose(mol.pos[:3], [[float(v) for v in x.split()[:3]] for x in atom_lines], atol=1e-4)


def test_some_hydrogens_given_the_rest_are_added():
    rec = read(FIXTURES / "heavy_atoms.sdf")[1]  # ethanol with only its O-H hydrogen in the file
    assert rec.ok and rec.molecule.n_atoms == 9 and rec.molecule.formula == "C2H6O"
    assert rec.notes == ["5 hydrogen(s) missing from the input were added with 3D coordinates (RDKit AddHs addCoords)"]
    lengths = bond_lengths_to_h(rec.molecule)
    assert sorted(z for z, _ in lengths) == [6] * 5 + [8] and all(0.9 < d < 1.2 for _, d in lengths)


def test_2d_heavy_atom_only_record_is_embedded_in_3d_with_its_hydrogens():
    rec = read(FIXTURES / "heavy_atoms.sdf")[2]
    mol = rec.molecule
    assert rec.id == "2D isopropanol heavy atoms" and rec.smiles == "CC(C)O"
    assert mol.n_atoms == 12 and mol.formula == "C3H8O"
    assert not mol.is_flat() and z_spread(rec) > 1.0
    assert rec.notes == [
        "8 hydrogen(s) missing from the input were added (RDKit AddHs), then embedded in 3D with the other atoms",
        "2D coordinates in input: re-embedded in 3D (RDKit ETKDG+MMFF, seed 0)",
    ]
    lengths = bond_lengths_to_h(mol)
    assert len(lengths) == 8 and all(0.95 < d < 1.15 for _, d in lengths)  # MMFF: C-H 1.09-1.10, O-H 0.97
    assert min_distance(mol) > 0.9


def test_sdf_data_fields_become_properties(tmp_path):
    block = (FIXTURES / "good.sdf").read_text().split("$$$$\n")[1]  # water
    path = tmp_path / "props.sdf"
    path.write_text(block + ">  <energy>\n-76.4\n\n>  <source>  (1)\nDFT B3LYP\n\n$$$$\n")
    (rec,) = read(path)
    assert rec.properties == {"energy": -76.4, "source": "DFT B3LYP"}


def test_sdf_only_a_line_that_is_exactly_dollars_ends_a_record(tmp_path):
    # Issue 31 #8: a data line starting with '$$$$' ended the record early and added a spurious error row.
    block = (EXAMPLES / "molecules.sdf").read_text().split("$$$$\n")[0].lstrip("\n")
    data = "> <note>\n$$$$ is not the end\n\n> <code>\n$$$$x\n\n"
    path = tmp_path / "dollars.sdf"
    path.write_text(block + data + "$$$$ \t\n" + block + "$$$$\n")
    recs = read(path)
    assert [r.ok for r in recs] == [True, True]
    assert recs[0].properties == {"note": "$$$$ is not the end", "code": "$$$$x"}


# ------------------------------------------------------------------------------------------------ XYZ

_WATER_XYZ = "3\n{}\nO 0.0 0.0 0.119\nH 0.0 0.763 -0.477\nH 0.0 -0.763 -0.477\n"


def test_good_xyz_reads_every_frame():
    recs = read(FIXTURES / "good.xyz")
    assert [r.id for r in recs] == ["water", "ethanol", "methane"]
    assert symbols(recs[0]) == ["O", "H", "H"]
    assert symbols(recs[1]) == ["C", "C", "O"] + ["H"] * 6
    assert [r.molecule.bonds for r in recs] == [None, None, None]  # XYZ has no bonds
    assert [r.smiles for r in recs] == ["O", "CCO", "C"]  # perceived, best effort
    first = [float(v) for v in (FIXTURES / "good.xyz").read_text().splitlines()[2].split()[1:]]
    np.testing.assert_allclose(recs[0].molecule.pos[0], first)
    assert not any(r.molecule.is_flat() for r in recs)


def test_broken_xyz_gives_one_error_per_bad_frame_and_resynchronises():
    recs = read(FIXTURES / "broken.xyz")
    assert [r.ok for r in recs] == [True, False, False, False, False, True]
    assert [r.index for r in recs] == list(range(6))
    assert recs[1].error == "line 6: atom count 'x3' is not an integer"
    assert recs[1].id == "broken.xyz:2"
    assert recs[2].error == "line 17: 6 atoms announced, 3 atom lines (line 22 ('4') is not an atom line)"
    assert recs[3].error == "unknown element symbol 'Xx' on atom 3 (line 26)"
    assert recs[3].id == "unknown element"
    assert recs[4].error == "non-finite (NaN or inf) coordinates for atom(s) [2]"
    assert recs[0].molecule.formula == "H2O"
    assert recs[5].id == "methane" and recs[5].molecule.formula == "CH4"


def test_xyz_every_frame_after_broken_ones_is_one_record(tmp_path):
    # Issue 31 #7: after a bad count line the reader jumped to the next lone positive integer, here the broken
    # frame's comment "2", which started a bogus frame; the frames counted -1 and 0 vanished: 5 frames, 3 rows.
    path = tmp_path / "five.xyz"
    path.write_text(_WATER_XYZ.format("frame 1") + "x3\n2\nO 0 0 0\nH 0.96 0 0\nH 0 0.96 0\n"
                    + "-1\nframe 3\nO 0 0 0\n" + "0\nframe 4\n" + _WATER_XYZ.format("frame 5"))
    recs = read(path)
    assert [r.index for r in recs] == [0, 1, 2, 3, 4]
    assert [r.ok for r in recs] == [True, False, False, False, True]
    assert [r.id for r in recs] == ["frame 1", "five.xyz:2", "five.xyz:3", "five.xyz:4", "frame 5"]
    assert [r.error for r in recs[1:4]] == ["line 6: atom count 'x3' is not an integer",
                                            "line 11: atom count '-1' must be a positive integer",
                                            "line 14: atom count '0' must be a positive integer"]


def test_xyz_a_line_of_garbage_between_frames_is_one_record_and_the_next_frame_is_kept(tmp_path):
    path = tmp_path / "t.xyz"
    path.write_text(_WATER_XYZ.format("one") + "garbage\n" + _WATER_XYZ.format("two"))
    recs = read(path)
    assert [(r.ok, r.id) for r in recs] == [(True, "one"), (False, "t.xyz:2"), (True, "two")]
    assert recs[1].error == "line 6: atom count 'garbage' is not an integer"


@pytest.mark.parametrize("broken, error", [
    ("3\nb\nO 0 0 0.119\nH 0 0.763\nH 0 -0.763 -0.477\n",
     "line 1: 3 atoms announced, 1 atom lines (line 4 ('H 0 0.763') is not an atom line)"),
    ("2\nb\nO 0 0 0.119\nH 0 0.763 -0.477\nH 0 -0.763 -0.477\n",
     "line 1: 2 atoms announced, but line 5 after them is another atom line ('H 0 -0.763 -0.477')"),
    ("3\nb\nO 0 0 0.119\n\nH 0 0.763 -0.477\nH 0 -0.763 -0.477\n",
     "line 1: 3 atoms announced, 1 atom lines (line 4 ('') is not an atom line)"),
], ids=["atom line without z", "one atom more than announced", "blank line among the atoms"])
def test_xyz_a_broken_frame_is_one_record_and_the_next_keeps_its_number(tmp_path, broken, error):
    # Issue 31 #7: the rest of such a frame became a second error row, so every later index was off by one.
    path = tmp_path / "t.xyz"
    path.write_text(broken + _WATER_XYZ.format("next"))
    bad, good = read(path)
    assert bad.error == error
    assert (good.index, good.id, good.ok) == (1, "next", True)


def test_xyz_frame_cut_short_by_end_of_file(tmp_path):
    path = tmp_path / "cut.xyz"
    path.write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\n")
    (rec,) = read(path)
    assert rec.error == "line 1: 3 atoms announced, 2 atom lines (the file ends)"


def test_xyz_free_text_comment_is_the_name_and_atomic_numbers_are_accepted(tmp_path):
    path = tmp_path / "plain.xyz"
    path.write_text("3\nwater, E = -76.4 Ha\n8\t0.0\t0.0\t0.1\n1 0.96 0.0 0.0\n1 -0.24 0.93 0.0\n")
    (rec,) = read(path)
    assert rec.id == "water, E = -76.4 Ha"
    assert rec.molecule.z.tolist() == [8, 1, 1]
    assert rec.properties == {}


def test_extxyz_uses_name_key_and_keeps_the_energy():
    recs = read(FIXTURES / "mols.extxyz")
    assert [r.id for r in recs] == ["methane", "ammonia"]
    assert [r.molecule.formula for r in recs] == ["CH4", "H3N"]
    assert [r.properties["energy"] for r in recs] == pytest.approx([-40.5184, -56.5638])
    assert [r.smiles for r in recs] == ["C", "N"]


def test_perceive_bonds_on_ethanol_from_xyz():
    ethanol = read(FIXTURES / "good.xyz")[1].molecule
    bonded = perceive_bonds(ethanol)
    assert ethanol.bonds is None  # a copy is returned
    assert len(bonded.bonds) == 8
    assert bonded.bond_orders.tolist() == [1.0] * 8
    pairs = {tuple(sorted(b)) for b in bonded.bonds.tolist()}
    assert (0, 1) in pairs and (1, 2) in pairs  # C-C and C-O, in file atom order
    assert bonded.smiles == "CCO"
    assert bonded.notes[-1] == "bonds perceived from coordinates (RDKit DetermineBonds)"


def test_perceive_bonds_falls_back_to_connectivity_for_a_radical():
    methane = read(FIXTURES / "good.xyz")[2].molecule
    methyl = type(methane)(z=methane.z[:4], pos=methane.pos[:4])
    bonded = perceive_bonds(methyl)
    assert len(bonded.bonds) == 3 and bonded.bond_orders.tolist() == [1.0, 1.0, 1.0]
    assert "connectivity only" in bonded.notes[-1]


# ------------------------------------------------------------------------------------------------ SMILES


def test_smiles_file_one_record_per_line_with_per_line_errors():
    recs = read(FIXTURES / "mols.smi")
    assert [r.id for r in recs] == [
        "ethanol",
        "benzene",
        "broken ring",
        "acetic acid",
        "pentavalent nitrogen",
        "acetonitrile",
    ]
    assert [r.ok for r in recs] == [True, True, False, True, False, True]
    assert recs[2].error.startswith("line 6: invalid SMILES 'C1CC' (RDKit: unclosed ring")
    assert recs[4].error.startswith("line 8: invalid SMILES 'CN(C)(C)(C)C'")
    assert "Explicit valence for atom # 1 N, 5" in recs[4].error
    good = [r for r in recs if r.ok]
    assert [r.smiles for r in good] == ["CCO", "c1ccccc1", "CC(=O)O", "CC#N"]
    assert [r.molecule.n_atoms for r in good] == [9, 12, 8, 6]  # hydrogens added
    assert [len(r.molecule.bonds) for r in good] == [8, 12, 7, 5]
    assert all(r.notes == ["3D coordinates embedded from SMILES (RDKit ETKDG+MMFF, seed 0)"] for r in good)
    assert not any(r.molecule.is_flat() for r in good)


def test_smiles_file_id_is_everything_after_the_smiles_commas_included(tmp_path):
    # Issue 31 #9: "CCO ethyl alcohol, absolute" was split at the comma and named "absolute".
    path = tmp_path / "ids.smi"
    path.write_text("CCO ethyl alcohol, absolute\nC,methane, natural gas\nN\tammonia, anhydrous\nO water\n")
    recs = read(path)
    assert [r.id for r in recs] == ["ethyl alcohol, absolute", "methane, natural gas", "ammonia, anhydrous", "water"]
    assert [r.smiles for r in recs] == ["CCO", "C", "N", "O"]


def test_csv_quoted_id_with_a_comma_stays_one_field(tmp_path):
    # SMILES files take the rest of the line as the id; CSV tables keep their quoting rules.
    path = tmp_path / "t.csv"
    path.write_text('smiles,name,logS\nCCO,"ethyl alcohol, absolute",-0.77\nC,methane,-0.6\n')
    recs = read(path, id_column="name")
    assert [r.id for r in recs] == ["ethyl alcohol, absolute", "methane"]
    assert [r.properties for r in recs] == [{"logS": -0.77}, {"logS": -0.6}]


def test_embed_smiles_is_reproducible_and_keeps_bond_orders():
    a = embed_smiles("CC(=O)O", seed=3, name="acetic acid")
    b = embed_smiles("CC(=O)O", seed=3)
    np.testing.assert_array_equal(a.pos, b.pos)
    assert a.name == "acetic acid" and a.smiles == "CC(=O)O"
    assert sorted(a.bond_orders.tolist()) == [1.0] * 6 + [2.0]
    # An MMFF geometry: C=O ~1.21 A
    co = [i for i, (p, q) in enumerate(a.bonds) if {int(a.z[p]), int(a.z[q])} == {6, 8}]
    lengths = sorted(float(np.linalg.norm(a.pos[a.bonds[i][0]] - a.pos[a.bonds[i][1]])) for i in co)
    assert lengths[0] == pytest.approx(1.21, abs=0.03)


@pytest.mark.parametrize(
    ("smiles", "message"),
    [("C1CC", "invalid SMILES 'C1CC'"), ("", "empty SMILES"), ("C(", "invalid SMILES 'C('")],
)
def test_embed_smiles_rejects_bad_input_clearly(smiles, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        embed_smiles(smiles)


def test_molecule_from_rdkit_needs_a_conformer():
    with pytest.raises(ValueError, match="no coordinates"):
        molecule_from_rdkit(Chem.MolFromSmiles("CCO"))


# ------------------------------------------------------------------------------------------------ CSV

TABLE = FIXTURES / "table.csv"  # name,smiles,gap_meV,solvent,count: empty/NA cells, a bad SMILES, a ragged row
TABLE_IDS = ["ethanol", "benzene", "broken ring", "acetic acid", "acetonitrile"]


def test_csv_one_record_per_row_other_columns_become_properties():
    recs = read(TABLE)
    assert [r.id for r in recs] == [f"table.csv:{n}" for n in range(1, 6)]  # no id column: basename:n
    assert [r.index for r in recs] == list(range(5))
    assert [r.ok for r in recs] == [True, True, False, False, True]
    assert [r.smiles for r in recs] == ["CCO", "c1ccccc1", "", "", "CC#N"]
    assert [r.molecule.n_atoms for r in recs if r.ok] == [9, 12, 6]  # embedded with hydrogens
    assert all(r.notes == ["3D coordinates embedded from SMILES (RDKit ETKDG+MMFF, seed 0)"] for r in recs if r.ok)
    assert not any(r.molecule.is_flat() for r in recs if r.ok)
    assert recs[0].properties == {"name": "ethanol", "gap_meV": 8123.5, "solvent": "water", "count": 3}
    # empty cell and NA are None; a quoted separator stays inside its field
    assert recs[1].properties == {"name": "benzene", "gap_meV": None, "solvent": "toluene, dry", "count": None}
    # n/a and None are missing too; a number with leading zeros is kept as text (a code, not a count)
    assert recs[4].properties == {"name": "acetonitrile", "gap_meV": None, "solvent": None, "count": "0012"}


def test_csv_bad_smiles_row_is_an_error_with_its_other_columns_and_a_ragged_row_names_its_line():
    bad_smiles, ragged = read(TABLE)[2:4]
    assert bad_smiles.molecule is None
    assert bad_smiles.error.startswith("line 5: invalid SMILES 'C1CC' (RDKit: unclosed ring")  # blank line 4 skipped
    assert bad_smiles.properties == {"name": "broken ring", "gap_meV": 7000, "solvent": "water", "count": 1}
    assert ragged.molecule is None and ragged.properties == {}
    assert ragged.error == "line 6: 6 field(s) where the header (line 1) has 5 column(s)"


def test_csv_id_column_and_a_named_smiles_column(tmp_path):
    recs = read(TABLE, id_column="name")
    assert [r.id for r in recs] == ["ethanol", "benzene", "broken ring", "table.csv:4", "acetonitrile"]
    assert recs[0].molecule.name == "ethanol"
    assert recs[0].properties == {"gap_meV": 8123.5, "solvent": "water", "count": 3}  # neither SMILES nor id
    path = tmp_path / "named.csv"
    path.write_text("code,structure,Mol,label\nA1,CCO,junk,1.5\n,C,junk,\n")
    recs = read(path, smiles_column="Structure", id_column="code")  # exact, else the one match in any case
    assert [r.id for r in recs] == ["A1", "named.csv:2"]  # an empty id cell: the default id
    assert [r.smiles for r in recs] == ["CCO", "C"]
    assert [r.properties for r in recs] == [{"Mol": "junk", "label": 1.5}, {"Mol": "junk", "label": None}]


def test_csv_smiles_column_found_by_name_in_order_of_preference(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("Molecule,SMI,extra\nnot a smiles,CCO,x\n")
    (rec,) = read(path)
    assert rec.ok and rec.smiles == "CCO"  # smi is preferred to molecule, wherever it stands
    assert rec.properties == {"Molecule": "not a smiles", "extra": "x"}


@pytest.mark.parametrize("cell", ["", "  ", "NA", "na", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "none"])
def test_csv_missing_values_are_none(tmp_path, cell):
    path = tmp_path / "t.csv"
    path.write_text(f"smiles,label,other\nC,{cell},1e-3\n")
    (rec,) = read(path)
    assert rec.properties == {"label": None, "other": 0.001}


def test_csv_missing_columns_give_one_error_record_naming_the_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("name,structure,logS\nethanol,CCO,-0.3\nwater,O,1\n")
    (rec,) = read(path)
    assert rec.molecule is None and rec.id == "t.csv:1"
    assert rec.error.startswith(
        "line 1: no SMILES column: none is named smiles, smi, canonical_smiles, mol or molecule (any case)")
    assert "the columns are 'name', 'structure', 'logS'" in rec.error
    (rec,) = read(path, smiles_column="smiles")
    assert rec.error == ("line 1: no column 'smiles' (the SMILES column asked for); the columns are 'name', "
                         "'structure', 'logS'")
    (rec,) = read(path, smiles_column="structure", id_column="id")
    assert "no column 'id' (the id column asked for)" in rec.error
    with pytest.raises(ValueError, match=r"t\.csv: line 1: no SMILES column.*'name', 'structure', 'logS'"):
        csv_columns(str(path))
    with pytest.raises(ValueError, match="no column 'id'"):
        csv_columns(str(path), smiles_column="structure", id_column="id")


def test_csv_columns_are_the_header_less_smiles_and_id_in_file_order(tmp_path):
    assert csv_columns(str(TABLE)) == ["name", "gap_meV", "solvent", "count"]
    assert csv_columns(str(TABLE), id_column="name") == ["gap_meV", "solvent", "count"]
    path = tmp_path / "odd.tsv"
    path.write_text("\ufeffSMILES\t\tx\tx\n")  # a BOM, an unnamed and a repeated column
    assert csv_columns(str(path)) == ["column_2", "x", "x.1"]
    with pytest.raises(ValueError, match="cannot read the file: No such file"):
        csv_columns(str(tmp_path / "missing.csv"))
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(ValueError, match="empty file: no header line"):
        csv_columns(str(tmp_path / "empty.csv"))
    assert [r.error for r in read(tmp_path / "empty.csv")] == [
        "empty file: no header line naming the columns (CSV input needs one, with a SMILES column)"]
    (tmp_path / "header_only.csv").write_text("smiles,name\n")
    assert read(tmp_path / "header_only.csv") == []


def test_tsv_and_gzipped_tables(tmp_path):
    text = "smiles\tname\tlabel\nCCO\tethanol\t1\nO\twater\t2.5\n"
    (tmp_path / "t.tsv").write_text(text)
    with gzip.open(tmp_path / "t.tsv.gz", "wt") as f:
        f.write(text)
    with gzip.open(tmp_path / "t.csv.gz", "wt") as f:
        f.write(text.replace("\t", ","))
    for name in ("t.tsv", "t.tsv.gz", "t.csv.gz"):
        recs = read(tmp_path / name, id_column="name")
        assert [(r.id, r.smiles, r.properties) for r in recs] == [
            ("ethanol", "CCO", {"label": 1}), ("water", "O", {"label": 2.5})], name
    # .csv means commas: a tab-separated file named .csv is one column per line, with no SMILES column
    (tmp_path / "tabs.csv").write_text(text)
    (rec,) = read(tmp_path / "tabs.csv")
    assert "no SMILES column" in rec.error


@pytest.mark.parametrize("sep", [",", "\t"])
def test_csv_from_stdin_sniffs_the_separator(sep):
    text = sep.join(["name", "smiles", "label"]) + "\n" + sep.join(["ethanol", "CCO", "1"]) + "\n"
    recs = list(read_records(["-"], "csv", stdin=io.StringIO(text), id_column="name"))
    assert [(r.source, r.id, r.smiles, r.properties) for r in recs] == [("-", "ethanol", "CCO", {"label": 1})]
    recs = list(read_records(["-"], "tsv", stdin=io.StringIO(text)))  # an alias
    assert recs[0].id == "-:1" and recs[0].properties == {"name": "ethanol", "label": 1}


def test_csv_quoted_newline_and_line_numbers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('smiles,comment\nCCO,"two\nlines"\nC1CC,x\n\nO,y,z\n')
    recs = read(path)
    assert recs[0].properties == {"comment": "two\nlines"}
    assert recs[1].error.startswith("line 4: invalid SMILES 'C1CC'")
    assert recs[2].error == "line 6: 3 field(s) where the header (line 1) has 2 column(s)"


def test_csv_shard_embeds_only_its_rows(monkeypatch):
    import se3mol.io.tables as tables

    embedded = []
    real = tables.embed_smiles
    monkeypatch.setattr(tables, "embed_smiles", lambda smiles, **kw: embedded.append(smiles) or real(smiles, **kw))
    recs = list(read_records([str(TABLE)], shard="1/2", id_column="name"))
    assert [(r.index, r.id) for r in recs] == [(1, "benzene"), (3, "table.csv:4")]
    assert embedded == ["c1ccccc1"]  # the ragged row 3 is never embedded; rows 0, 2, 4 are other shards'
    parts = [(r.index, r.id, r.error) for k in range(3) for r in read_records([str(TABLE)], shard=(k, 3))]
    assert sorted(parts) == [(r.index, r.id, r.error) for r in read(TABLE)]


def test_csv_streams_rows(tmp_path):
    stream = CountingStream("smiles,n\n" + "".join(f"C,{k}\n" for k in range(20_000)))
    records = read_records(["-"], "csv", stdin=stream)
    assert stream.lines_read == 0
    first = next(records)
    assert first.ok and first.properties == {"n": 0}
    assert stream.lines_read <= 3  # the header and a row or so, not 20000


def test_csv_and_other_formats_in_one_read():
    recs = list(read_records([str(TABLE), str(FIXTURES / "good.xyz")], start_index=2))
    assert [r.index for r in recs] == list(range(2, 10))
    assert [r.id for r in recs[5:]] == ["water", "ethanol", "methane"]
    assert recs[5].properties == {}


# ------------------------------------------------------------------------------------------------ sources


def test_stdin_needs_a_format_and_reads_with_one(tmp_path):
    with pytest.raises(ValueError, match="input_format"):
        read_records(["-"])  # raised at the call, before anything is read
    text = (FIXTURES / "good.xyz").read_text()
    recs = list(read_records(["-"], "xyz", stdin=io.StringIO(text)))
    assert [(r.source, r.id) for r in recs] == [("-", "water"), ("-", "ethanol"), ("-", "methane")]
    unnamed = list(read_records(["-"], "smi", stdin=io.StringIO("CCO\n")))
    assert unnamed[0].id == "-:1"


def test_unreadable_files_give_one_error_record_and_reading_continues(tmp_path):
    missing = tmp_path / "missing.sdf"
    recs = list(read_records([str(missing), str(tmp_path), str(FIXTURES / "good.xyz")], start_index=10))
    assert [r.index for r in recs] == [10, 11, 12, 13, 14]
    assert recs[0].error == f"cannot open file: No such file or directory: '{missing}'"
    assert recs[0].id == "missing.sdf:1" and recs[0].source == str(missing)
    assert recs[1].error.startswith("cannot open file: Is a directory")
    assert [r.id for r in recs[2:]] == ["water", "ethanol", "methane"]


def test_index_runs_across_files_and_ids_count_within_each():
    recs = list(read_records([str(FIXTURES / "broken.xyz"), str(FIXTURES / "mols.smi")], start_index=5))
    assert [r.index for r in recs] == list(range(5, 17))
    assert recs[2].id == "broken.xyz:3"
    assert [r.source for r in recs] == [str(FIXTURES / "broken.xyz")] * 6 + [str(FIXTURES / "mols.smi")] * 6


def test_gzipped_input(tmp_path):
    path = tmp_path / "good.xyz.gz"
    with gzip.open(path, "wt") as f:
        f.write((FIXTURES / "good.xyz").read_text())
    assert [r.id for r in read(path)] == ["water", "ethanol", "methane"]


def test_ase_format_is_passed_through(tmp_path):
    path = tmp_path / "water.pdb"
    ase.io.write(path, Atoms("OH2", positions=[[0, 0, 0.1], [0.96, 0, 0], [-0.24, 0.93, 0]]))
    assert detect_format(str(path)) == "proteindatabank"
    (rec,) = read(path)
    assert rec.ok and rec.molecule.z.tolist() == [8, 1, 1]
    np.testing.assert_allclose(rec.molecule.pos[1], [0.96, 0, 0], atol=1e-3)


def test_ase_formats_carry_the_total_charge_in_info(tmp_path):
    path = tmp_path / "ions.traj"
    nh4 = Atoms("NH4", positions=[[0, 0, 0], [.6, .6, .6], [-.6, -.6, .6], [.6, -.6, -.6], [-.6, .6, -.6]])
    nh4.info["charge"] = 1
    odd = nh4.copy()
    odd.info["charge"] = 0.5
    ase.io.write(path, [nh4, odd])
    first, second = read(path)
    assert first.molecule.charge == 1
    assert second.molecule is None and "total charge 0.5 is not a whole number" in second.error


def test_ase_failure_is_one_error_record_not_an_exception(tmp_path):
    path = tmp_path / "bad.pdb"
    path.write_text("ATOM      1  O   HOH     1       x.xxx   0.000   0.000  1.00  0.00           O\n")
    recs = list(read_records([str(path), str(FIXTURES / "mols.extxyz")]))
    assert [r.ok for r in recs] == [False, True, True]
    assert recs[0].error.startswith("ASE (proteindatabank) could not read the file at the first record")


def test_unknown_input_format_is_rejected_at_the_call():
    with pytest.raises(ValueError, match="unknown input format 'mol2x'"):
        read_records([str(FIXTURES / "good.sdf")], "mol2x")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.sdf", "sdf"), ("a.SD", "sdf"), ("a.mol", "sdf"), ("a.sdf.gz", "sdf"),
        ("a.xyz", "xyz"), ("a.extxyz", "xyz"),
        ("a.smi", "smi"), ("a.smiles", "smi"), ("a.txt", "smi"),
        ("a.csv", "csv"), ("a.TSV", "csv"), ("a.csv.gz", "csv"), ("a.tsv.gz", "csv"),
    ],
)  # fmt: skip
def test_detect_format_by_extension(name, fmt):
    assert detect_format(name) == fmt
    assert fmt in FORMATS


def test_detect_format_unknown_names_the_file(tmp_path):
    path = tmp_path / "notes.foo"  # (ASE claims any .dat for GAMESS-US, whatever it holds)
    path.write_text("these are not molecules\n")
    with pytest.raises(ValueError, match=r"cannot tell the format of '.*notes\.foo'.*sdf, xyz, smi"):
        detect_format(str(path))
    (rec,) = read(path)  # inside read_records the same problem is one error record
    assert "cannot tell the format" in rec.error


def test_read_molecules_raises_on_the_first_bad_record():
    assert [m.name for m in read_molecules(str(FIXTURES / "good.sdf"))] == [
        "ethanol", "water", "benzene", "acetic acid",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"record 2 \('truncated methanol'\) could not be read: RDKit: EOF"):
        read_molecules(str(FIXTURES / "broken.sdf"))


def test_rdkit_messages_go_into_records_not_to_stderr(capfd):
    recs = read(FIXTURES / "broken.sdf")
    assert sum(not r.ok for r in recs) == 5
    captured = capfd.readouterr()
    assert "EOF hit" not in captured.err and "Explicit valence" not in captured.err


# ------------------------------------------------------------------------------------------------ streaming


class CountingStream(io.StringIO):
    """A text stream that counts the lines handed out, to see how much of a file a reader consumed."""

    lines_read = 0

    def __next__(self) -> str:
        self.lines_read += 1
        return super().__next__()


def test_read_records_streams_instead_of_reading_everything(tmp_path):
    block = (FIXTURES / "good.sdf").read_text().split("$$$$\n")[0] + "$$$$\n"
    n_lines = block.count("\n")
    copies = 5000
    stream = CountingStream(block * copies)
    records = read_records(["-"], "sdf", stdin=stream)
    assert inspect.isgenerator(records)
    assert stream.lines_read == 0  # nothing read before the first next()
    first = next(records)
    assert first.id == "ethanol" and first.index == 0
    assert stream.lines_read <= n_lines + 1  # one record, not 5000
    assert n_lines * copies > 100_000

    path = tmp_path / "big.sdf"
    path.write_text(block * copies)
    head = list(itertools.islice(read_records([str(path)]), 3))
    assert [r.index for r in head] == [0, 1, 2]


# ------------------------------------------------------------------------------------------------ examples


@pytest.mark.parametrize(
    ("name", "count"), [("molecules.sdf", 7), ("molecules.xyz", 3), ("molecules.smi", 5)]
)
def test_examples_are_valid_qm9_like_molecules(name, count):
    recs = read(EXAMPLES / name)
    assert len(recs) == count
    assert all(r.ok for r in recs), [r.error for r in recs]
    for rec in recs:
        assert set(rec.molecule.z.tolist()) <= {1, 6, 7, 8, 9}
        assert 1 in rec.molecule.z and rec.molecule.charge == 0
        assert not rec.molecule.is_flat() and rec.id and rec.smiles


# ------------------------------------------------------------------------------------------------ robustness

line = st.text(alphabet=st.sampled_from(list("0123456789 .-+xXCHON$e\t")), max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line, max_size=25), fmt=st.sampled_from(["sdf", "xyz"]))
def test_arbitrary_text_never_raises(lines, fmt):
    recs = list(read_records(["-"], fmt, stdin=io.StringIO("\n".join(lines))))
    for rec in recs:
        assert (rec.molecule is None) == (rec.error is not None)
        assert rec.molecule is not None or rec.error.strip()


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(st.text(alphabet=st.sampled_from(list('CNO()=#1,"\t x.-')), max_size=20), max_size=15))
def test_arbitrary_csv_rows_never_raise(lines):
    recs = list(read_records(["-"], "csv", stdin=io.StringIO("smiles,label\n" + "\n".join(lines))))
    assert len(recs) <= len(lines)
    for rec in recs:
        assert (rec.molecule is None) == (rec.error is not None)
        assert rec.molecule is not None or rec.error.startswith("line ")


def test_planar_molecule_in_the_z0_plane_is_kept_as_3d(tmp_path):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    water = Chem.AddHs(Chem.MolFromSmiles("O"))
    AllChem.EmbedMolecule(water, randomSeed=0)
    conf = water.GetConformer()
    for k, (x, y) in enumerate([(0.0, 0.0), (0.96, 0.0), (-0.24, 0.93)]):
        conf.SetAtomPosition(k, (x, y, 0.0))
    path = tmp_path / "flat_water.sdf"
    w = Chem.SDWriter(str(path))
    w.write(water)
    w.close()
    (rec,) = read(path)
    assert rec.ok and not rec.notes
    assert rec.molecule.pos[1, 0] == pytest.approx(0.96)  # the given geometry, not a new one


def test_random_bytes_give_a_readable_error_and_a_usable_id(tmp_path):
    import random

    path = tmp_path / "garbage.sdf"
    path.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(3000)))
    records = read(path)
    assert records and all(not r.ok for r in records)
    assert "not text" in records[0].error
    assert records[0].id == "garbage.sdf:1"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=50) | st.text(alphabet=st.characters(max_codepoint=127), max_size=50))
def test_text_check_fast_path_agrees_with_the_definition(text):
    from se3mol.io.base import is_text

    assert is_text(text) == ("\ufffd" not in text and all(c.isprintable() or c in "\t\r\n" for c in text))


def test_non_ascii_in_the_bond_block_is_a_clear_error_not_boost_internals(tmp_path):
    # Found by the heavy fuzz profile: RDKit cut "¡" mid-character and its log message could not be
    # decoded, which came out as "<Boost.Python.function object at 0x...> returned a result with an
    # exception set".
    block = (EXAMPLES / "molecules.sdf").read_text().split("$$$$\n")[0].lstrip("\n")
    lines = block.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if line.startswith("  1  2"))
    lines[k] = "\u00a1\u00a1" + lines[k][2:]
    path = tmp_path / "x.sdf"
    path.write_text("".join(lines) + "$$$$\n" + block + "$$$$\n")
    bad, good = read(path)
    assert "non-ASCII" in bad.error and f"line {k + 1} of the file" in bad.error and "Boost" not in bad.error
    assert good.ok


def test_non_ascii_smiles_is_an_error_row_not_a_crash(tmp_path):
    # Found by the heavy fuzz profile: RDKit echoed this SMILES cut mid-character in its error message,
    # which could not be decoded and escaped as SystemError, ending the whole read.
    path = tmp_path / "x.smi"
    path.write_text("CCO ethanol\nCCCCCCCCC)" + "\U000a0000" * 9 + " odd\nCCCCCCCCCé accent\nC methane\n")
    recs = read(path)
    assert [r.id for r in recs] == ["ethanol", "odd", "accent", "methane"]
    assert [r.ok for r in recs] == [True, False, False, True]
    assert "non-ASCII character" in recs[1].error and "position 11" in recs[1].error
    assert "'é' at position 10" in recs[2].error
