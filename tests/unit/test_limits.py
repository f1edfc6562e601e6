"""Hard limits on one record and the fragment policy (se3mol.limits, se3mol.chem.select_fragments): a record over
a limit is an error row, found before the costly work, in bounded memory; salts become their parent molecule."""

import os
import subprocess
import sys

import numpy as np
import pytest
from rdkit import Chem

from se3mol import limits
from se3mol.chem import embed_smiles, select_fragments
from se3mol.io import read_records
from se3mol.molecule import Molecule, closest_pair


def test_defaults_and_bad_values():
    assert limits.current() == limits.Limits() and limits.current().max_smiles_length == 4000
    with pytest.raises(ValueError, match="fragment policy"):
        limits.Limits(fragments="biggest")
    with pytest.raises(ValueError, match="at least 1"):
        limits.Limits(max_atoms=0)
    with limits.use(limits.Limits(max_atoms=7)):
        assert limits.current().max_atoms == 7
    assert limits.current().max_atoms == 400  # restored


def test_long_smiles_is_refused_before_rdkit():
    with pytest.raises(ValueError, match="SMILES of 20000 characters, more than the limit of 4000"):
        embed_smiles("C" * 20000)
    with pytest.raises(ValueError, match="SMILES has 602 atoms, more than the limit of 400"):
        embed_smiles("C" * 200)  # hydrogens count: C200H402
    with limits.use(limits.Limits(max_atoms=1000)):
        with pytest.raises(ValueError, match="more than the limit of 1000"):
            embed_smiles("C" * 400)


def test_closest_pair_matches_all_pairs_and_scales():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 20, (700, 3))
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.diag(np.full(700, np.inf))
    i, j = np.unravel_index(np.argmin(d), d.shape)
    assert closest_pair(pos, max_bytes=100_000) == (min(i, j), max(i, j), pytest.approx(d[i, j]))
    big = rng.uniform(0, 200, (50_000, 3))
    assert closest_pair(big)[2] > 0  # k-d tree: fast and small (an all-pairs array would be 60 GB)


def test_oversized_molecule_fails_validation_first():
    mol = Molecule(z=np.full(600, 6), pos=np.zeros((600, 3)))  # coincident too, but the size is said first
    with pytest.raises(ValueError, match="600 atoms, more than the limit of 400"):
        mol.validate()


@pytest.mark.parametrize(("policy", "smiles", "expect"), [
    ("largest", "CCNCC.Cl", "CCNCC"),
    ("largest", "CC(=O)Oc1ccccc1C(=O)[O-].[Na+]", "CC(=O)Oc1ccccc1C(=O)O"),  # neutralised: the parent compound
    ("largest", "C[N+](C)(C)C.[Cl-]", "C[N+](C)(C)C"),  # a quaternary ammonium keeps its charge
    ("largest", "O.O.OC(=O)c1ccccc1", "O=C(O)c1ccccc1"),  # hydrate
    ("all", "CCN.Cl", "CCN.Cl"),
])
def test_fragment_policy(policy, smiles, expect):
    mol, notes = select_fragments(Chem.MolFromSmiles(smiles), policy)
    assert Chem.MolToSmiles(mol) == Chem.MolToSmiles(Chem.MolFromSmiles(expect))
    assert len(notes) == 1 and "fragments" in notes[0]
    if policy == "largest":
        assert "removed" in notes[0]


def test_fragment_policy_error_names_the_fragments():
    with pytest.raises(ValueError, match=r"2 fragments \(CCN \. Cl\): a salt, hydrate or mixture"):
        select_fragments(Chem.MolFromSmiles("CCN.Cl"), "error")


def test_salt_embeds_without_clashes_under_every_policy():
    mol = embed_smiles("CCCC[NH3+].[Cl-]")
    assert mol.formula == "C4H11N" and mol.charge == 0  # the amine, neutralised
    with limits.use(limits.Limits(fragments="all")):
        mol = embed_smiles("CCCC[NH3+].[Cl-]")
    assert mol.formula == "C4H12ClN" and mol.charge == 0
    mol.validate()
    assert closest_pair(mol.pos)[2] > 0.9  # fragments apart, not stacked (ETKDG alone puts them on top)
    assert any("embedded each on its own" in n for n in mol.notes)


def test_smiles_file_rows_are_kept_one_per_record(tmp_path):
    path = tmp_path / "in.smi"
    path.write_text(f"CCO ethanol\n{'C' * 20000} polymer\nCCN.Cl salt\n")
    records = list(read_records([str(path)]))
    assert [r.id for r in records] == ["ethanol", "polymer", "salt"]
    assert records[0].molecule is not None and records[2].molecule is not None
    assert records[1].molecule is None and "more than the limit" in records[1].error


# Runs se3mol predict and, at its exit, writes its own peak RSS (VmHWM of /proc/self/status: this process's memory
# alone; ru_maxrss of a child started by fork or vfork also counts its parent's memory at the exec).
_PEAK_CHILD = """
import atexit, sys
out = sys.argv[1]
def peak():
    with open(out, "w") as f:
        f.write(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
atexit.register(peak)
sys.argv = ["se3mol", "predict", *sys.argv[2:]]
from se3mol.cli.app import main
main()
"""


def _predict_child(args, tmp_path):
    """Run ``se3mol predict`` in a child process: its output, exit code and its own peak memory (MB)."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("peak memory is read from /proc (Linux)")
    peak = tmp_path / "peak_kb.txt"
    proc = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(peak), *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    return proc, int(peak.read_text()) / 1024


def test_predict_survives_a_polymer_and_a_huge_frame_in_bounded_memory(tmp_path):
    smi = tmp_path / "table.smi"
    smi.write_text(f"CCO ethanol\n{'C' * 20000} polymer\nCCO again\n")  # RDKit's canonical ranking segfaulted
    proc, _ = _predict_child([str(smi), "--model", "qm9-egnn-gap"], tmp_path)
    assert proc.returncode == 3, proc.stderr  # some records failed, rows written
    rows = proc.stdout.strip().splitlines()[1:]
    assert len(rows) == 3 and ",error," in rows[1] and "more than the limit" in rows[1]
    xyz = tmp_path / "big.xyz"
    rng = np.random.default_rng(0)
    frame = "\n".join(f"C {x:.4f} {y:.4f} {z:.4f}" for x, y, z in rng.uniform(0, 400, (50_000, 3)))
    xyz.write_text(f"3\nwater\nO 0 0 0.12\nH 0 0.76 -0.47\nH 0 -0.76 -0.47\n50000\nhuge\n{frame}\n")
    proc, peak_mb = _predict_child([str(xyz), "--model", "qm9-egnn-gap"], tmp_path)
    assert proc.returncode == 3, proc.stderr
    rows = proc.stdout.strip().splitlines()[1:]
    assert len(rows) == 2 and "50000 atoms, more than the limit of 400" in rows[1]
    assert peak_mb < 1024, f"peak memory {peak_mb:.0f} MB"


def test_2d_sdf_salt_keeps_its_largest_fragment_and_embeds_cleanly(tmp_path):
    """2D SDF records with several fragments were embedded stacked and refused as 'coincident atoms'."""
    from rdkit.Chem import AllChem

    salt = Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)[O-].[Na+]")
    AllChem.Compute2DCoords(salt)
    salt.SetProp("_Name", "aspirin sodium")
    path = tmp_path / "salt2d.sdf"
    path.write_text(Chem.MolToMolBlock(salt) + "$$$$\n")
    (rec,) = read_records([str(path)])
    assert rec.molecule is not None, rec.error
    assert rec.molecule.formula == "C9H8O4" and rec.molecule.charge == 0
    assert any("removed [Na+]" in n for n in rec.notes) and any("re-embedded in 3D" in n for n in rec.notes)
    with limits.use(limits.Limits(fragments="all")):
        (rec,) = read_records([str(path)])
    assert rec.molecule is not None, rec.error
    rec.molecule.validate()


def test_a_record_at_the_atom_limit_is_scored_in_under_1_gb(tmp_path):
    """The documented limit is where predict's peak memory for one record, default model, stays under 1 GB."""
    n = limits.Limits().max_atoms
    rng = np.random.default_rng(0)
    grid = np.array([(i, j, k) for i in range(8) for j in range(8) for k in range(8)])[:n] * 1.5
    pos = grid + rng.normal(0, 0.05, grid.shape)  # a dense lump of C and H, nothing closer than ~1.3 A
    xyz = tmp_path / "at_limit.xyz"
    xyz.write_text(f"{n}\nat the limit\n" + "".join(f"{'H' if k % 3 == 0 else 'C'} {x:.4f} {y:.4f} {z:.4f}\n"
                                                   for k, (x, y, z) in enumerate(pos)))
    proc, peak_mb = _predict_child([str(xyz)], tmp_path)  # the default model: a 3-member ensemble, full graph
    assert proc.returncode == 0, proc.stderr
    assert peak_mb < 1024, f"peak memory {peak_mb:.0f} MB"


def test_a_bridged_polycycle_embeds_when_chirality_is_checked_instead_of_enforced():
    # A morphinan from a ChEMBL set: ETKDG with enforced chirality fails from both starts within the timeout (30 s
    # each by default); with chirality checked after the fact it embeds in under a second, stereocentres intact.
    smiles = "COc1ccc2c3c1O[C@H]1[C@]4(OC)CC[C@@]5(C[C@@H]4CNC(=O)/C=C/c4ccccc4)[C@@H](C2)N(C)CC[C@]315"
    with limits.use(limits.Limits(embed_timeout=2)):
        mol = embed_smiles(smiles)
    mol.validate()
    assert mol.n_heavy == Chem.MolFromSmiles(smiles).GetNumHeavyAtoms()
    assert "embedded without enforcing chirality: its stereocentres match the SMILES" in mol.notes
