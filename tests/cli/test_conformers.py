"""se3mol conformers / evaluate-conformers through Typer's CliRunner: inputs, SD records and properties,
per-molecule errors and exit codes, seeds, atomic output, and the clofnet path with a fake sampler."""

import io
import json
import sys
import types
from dataclasses import asdict, dataclass

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from typer.testing import CliRunner

from se3mol.cli.app import app
from se3mol.cli.common import EXIT_BAD_MODEL, EXIT_OUTPUT, EXIT_SOME_RECORDS_FAILED
from se3mol.conformers.methods import HYBRID_OVERSAMPLE, HYBRID_START_SIGMA

runner = CliRunner()


def _records(sdf_text: str) -> list[Chem.Mol]:
    mols = list(Chem.ForwardSDMolSupplier(io.BytesIO(sdf_text.encode()), removeHs=False))
    assert all(m is not None for m in mols)
    return mols


def _positions(mols: list[Chem.Mol]) -> np.ndarray:
    return np.stack([m.GetConformer().GetPositions() for m in mols])


def test_smiles_file_and_stdin_inputs_give_named_records_with_properties(tmp_path):
    smi = tmp_path / "mols.smi"
    smi.write_text("smiles name\n# a comment\n\nCCO ethanol\nC1CCC1\tcyclobutane\n")
    r = runner.invoke(app, ["conformers", "CN", str(smi), "-", "-n", "2", "--method", "etkdg", "--seed", "5"],
                      input="O=C=O carbon dioxide\n")
    assert r.exit_code == 0, r.stderr
    mols = _records(r.stdout)
    titles = [m.GetProp("_Name") for m in mols]
    assert titles == ["CN conf 1", "CN conf 2", "ethanol conf 1", "ethanol conf 2", "cyclobutane conf 1",
                      "cyclobutane conf 2", "carbon dioxide conf 1", "carbon dioxide conf 2"]
    first = mols[0]
    assert first.GetNumAtoms() == 7  # explicit hydrogens
    assert first.GetProp("smiles") == "CN" and first.GetProp("method") == "etkdg"
    assert first.GetProp("conformer") == "1" and int(first.GetProp("base_seed")) == 5
    assert json.loads(first.GetProp("settings"))["algorithm"] == "ETKDGv3"
    assert mols[2].GetProp("name") == "ethanol"
    # bonds come from the SMILES, not from perception: CO2 keeps its two double bonds
    co2 = mols[-1]
    assert sorted(b.GetBondTypeAsDouble() for b in co2.GetBonds()) == [2.0, 2.0]
    assert "[4/4]" in r.stderr  # plain progress lines when stderr is not a terminal


def test_stereo_is_checked_per_conformer_only_where_the_smiles_specifies_it():
    r = runner.invoke(app, ["conformers", "C[C@H](O)/C=C/C", "CC(O)C=CC", "-n", "2", "--method", "etkdg"])
    assert r.exit_code == 0, r.stderr
    mols = _records(r.stdout)
    assert [m.GetProp("stereo_mismatch") for m in mols[:2]] == ["none", "none"]
    assert not any(m.HasProp("stereo_mismatch") for m in mols[2:])


def test_bad_molecules_are_reported_and_the_rest_still_written():
    r = runner.invoke(app, ["conformers", "CCO", "C1CC", "not_a_file.smi", "c1ccccc1", "-n", "1",
                            "--method", "etkdg"])
    assert r.exit_code == EXIT_SOME_RECORDS_FAILED
    assert [m.GetProp("smiles") for m in _records(r.stdout)] == ["CCO", "c1ccccc1"]
    assert "unclosed ring" in r.stderr and "no such file: not_a_file.smi" in r.stderr
    assert "2 of 4 molecule(s) done" in r.stderr and "2 failed" in r.stderr


def test_seed_depends_on_the_molecule_not_on_its_neighbours():
    alone = runner.invoke(app, ["conformers", "CCCO", "-n", "3", "--method", "etkdg", "--seed", "1"])
    listed = runner.invoke(app, ["conformers", "c1ccncc1", "CCCO", "-n", "3", "--method", "etkdg", "--seed", "1"])
    other_seed = runner.invoke(app, ["conformers", "CCCO", "-n", "3", "--method", "etkdg", "--seed", "2"])
    a = _positions(_records(alone.stdout))
    b = _positions(_records(listed.stdout)[3:])
    c = _positions(_records(other_seed.stdout))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_relax_reports_mmff_outcome_and_lowers_the_energy(tmp_path):
    out = tmp_path / "out.sdf"
    r = runner.invoke(app, ["conformers", "CCCCO", "-n", "2", "--method", "etkdg", "--relax", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["out.sdf"]  # no temporary file left
    for m in _records(out.read_text()):
        assert m.GetProp("method") == "etkdg+mmff" and m.GetProp("mmff_converged") == "1"
        assert float(m.GetProp("mmff_energy_after_kcal_mol")) <= float(m.GetProp("mmff_energy_before_kcal_mol"))


@pytest.mark.parametrize("args", [["CCCO", "--relax"], ["--relax", "CCCO"], ["CCCO", "--relax", "-n", "1"],
                                  ["CCCO", "--relax", "mmff"]])
def test_plain_relax_still_means_mmff_wherever_it_stands(args):
    r = runner.invoke(app, ["conformers", *args, "--method", "etkdg"])
    assert r.exit_code == 0, r.stderr
    mols = _records(r.stdout)
    assert mols and all(m.GetProp("method") == "etkdg+mmff" for m in mols)
    assert all(m.GetProp("smiles") == "CCCO" for m in mols)


def test_relax_xtb_writes_gfn2_energies_that_went_down(tmp_path):
    pytest.importorskip("tblite")
    out = tmp_path / "out.sdf"
    r = runner.invoke(app, ["conformers", "CC(=O)NC", "-n", "2", "--method", "etkdg", "--relax", "xtb", "-o",
                            str(out)])
    assert r.exit_code == 0, r.stderr
    for m in _records(out.read_text()):
        assert m.GetProp("method") == "etkdg+xtb" and m.GetProp("xtb_converged") == "1"
        before, after = float(m.GetProp("xtb_energy_before_eh")), float(m.GetProp("xtb_energy_after_eh"))
        assert -20 < after < before  # N-methylacetamide: about -17.9 Eh in GFN2-xTB
        assert m.GetProp("clashes") == "none" and m.GetProp("stretched_bonds") == "none"


def test_relax_xtb_without_tblite_says_how_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tblite" else real(name, *a))
    out = tmp_path / "out.sdf"
    r = runner.invoke(app, ["conformers", "CCO", "--method", "etkdg", "--relax", "xtb", "-o", str(out)])
    assert r.exit_code == EXIT_BAD_MODEL and "pip install 'se3mol[xtb]'" in r.stderr
    assert not out.exists()


def test_unwritable_output_and_missing_model(tmp_path, monkeypatch):
    r = runner.invoke(app, ["conformers", "CCO", "--method", "etkdg", "-o", "/nonexistent/dir/out.sdf"])
    assert r.exit_code == EXIT_OUTPUT and "does not exist" in r.stderr
    monkeypatch.setenv("SE3MOL_MODELS", str(tmp_path))  # an installation without the shipped score model
    r = runner.invoke(app, ["generate-conformers", "CCO"])  # the alias, and the default method (auto)
    assert r.exit_code == EXIT_BAD_MODEL
    assert "conformers-clofnet-qm9" in r.stderr and "--method etkdg" in r.stderr
    r = runner.invoke(app, ["conformers", "CCO", "--method", "etkdg", "--steps", "3"])
    assert r.exit_code == 2


def test_shipped_score_model_generates_conformers(tmp_path):
    out = tmp_path / "ethanol.sdf"
    r = runner.invoke(app, ["conformers", "CCO", "-n", "3", "--preset", "fast", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    mols = _records(out.read_text())
    assert len(mols) == 3 and all(m.GetProp("method") == "clofnet" for m in mols)
    assert all(m.GetNumAtoms() == 9 for m in mols)
    pos = _positions(mols)
    assert np.isfinite(pos).all()
    # bonded atoms end up at bond-like distances (C-C, C-O, C-H, O-H: 0.9 to 1.7 A)
    mol = mols[0]
    for b in mol.GetBonds():
        d = np.linalg.norm(pos[0][b.GetBeginAtomIdx()] - pos[0][b.GetEndAtomIdx()])
        assert 0.8 < d < 1.8, (b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol(), d)


# ---- the clofnet path, with a fake sampler implementing the ScoreSampler interface ----------------------


@dataclass
class FakeSettings:
    sigma_max: float = 10.0
    sigma_min: float = 0.01
    levels: int = 5
    steps: int = 2
    precision: str = "float32"
    start_sigma: float | None = None
    stereo_weight: float = 1.0

    @classmethod
    def preset(cls, name):
        if name not in ("default", "fast", "paper"):
            raise ValueError(name)
        return cls(levels=50, steps=100) if name == "paper" else cls()

    def to_dict(self):
        return asdict(self)


class FakeSampler:
    """Knows H, C, N, O, F; 'samples' by seeded ETKDG so geometries are sensible; records its calls."""

    elements = (1, 6, 7, 8, 9)
    calls: list = []

    @classmethod
    def load(cls, spec, device="cpu"):
        cls.loaded = spec
        return cls()

    def sample(self, mol, n, seed, settings, start=None):
        FakeSampler.calls.append((Chem.MolToSmiles(Chem.RemoveHs(mol)), n, seed, settings.steps))
        if start is not None:  # refine: hand back the starting conformers, moved by a known amount
            FakeSampler.starts.append((np.array(start), settings.start_sigma))
            return np.array(start) + 0.01
        m = Chem.Mol(mol)
        ids = AllChem.EmbedMultipleConfs(m, n, randomSeed=seed)
        return np.stack([m.GetConformer(i).GetPositions() for i in ids])


def _fake_resolve_precision(precision, device):
    """As on hardware that multiplies bfloat16 natively."""
    return {"auto": "bfloat16"}.get(precision, precision)


@pytest.fixture
def fake_clofnet(monkeypatch, tmp_path):
    module = types.ModuleType("se3mol.conformers.sampler")
    module.SamplerSettings, module.ScoreSampler = FakeSettings, FakeSampler
    module.resolve_precision = _fake_resolve_precision
    monkeypatch.setitem(sys.modules, "se3mol.conformers.sampler", module)
    FakeSampler.calls, FakeSampler.starts = [], []
    model = tmp_path / "score.pt"
    model.write_bytes(b"fake")
    return model


def test_clofnet_path_with_fake_sampler(fake_clofnet):
    r = runner.invoke(app, ["conformers", "CCO", "CCCl", "N#N", "-n", "2", "--model", str(fake_clofnet),
                            "--preset", "paper", "--steps", "7", "--relax"])
    assert r.exit_code == EXIT_SOME_RECORDS_FAILED
    mols = _records(r.stdout)
    assert [m.GetProp("smiles") for m in mols] == ["CCO", "CCO", "N#N", "N#N"]
    settings = json.loads(mols[0].GetProp("settings"))
    assert settings == {"model": str(fake_clofnet), "sigma_max": 10.0, "sigma_min": 0.01, "levels": 50, "steps": 7,
                        "precision": "bfloat16",  # --precision auto, for the device
                        "start_sigma": None, "stereo_weight": 1.0, "oversample": 3.0}
    assert mols[0].GetProp("method") == "clofnet+mmff" and mols[0].HasProp("mmff_converged")
    assert "Cl not in the score model's training set" in r.stderr
    # the sampler got the molecule with hydrogens, 3 times the number asked for (the least strained, most diverse 2 are
    # kept), the derived seed and the settings
    assert [(c[0], c[1], c[3]) for c in FakeSampler.calls] == [("CCO", 6, 7), ("N#N", 6, 7)]
    assert FakeSampler.calls[0][2] == int(mols[0].GetProp("seed"))

    FakeSampler.calls = []
    r = runner.invoke(app, ["conformers", "CCO", "-n", "3", "--model", str(fake_clofnet), "--oversample", "1"])
    assert r.exit_code == 0 and FakeSampler.calls[0][1] == 3 and len(_records(r.stdout)) == 3
    assert json.loads(_records(r.stdout)[0].GetProp("settings"))["oversample"] == 1
    r = runner.invoke(app, ["conformers", "CCO", "--oversample", "0.5"])
    assert r.exit_code == 2 and "--oversample" in r.stderr


def test_hybrid_refines_etkdg_conformers_with_the_score_model(fake_clofnet):
    r = runner.invoke(app, ["conformers", "CCO", "CCCl", "-n", "3", "--method", "hybrid", "--model", str(fake_clofnet),
                            "--seed", "4", "--oversample", "1"])
    assert r.exit_code == EXIT_SOME_RECORDS_FAILED  # Cl: outside the score model's elements, named per molecule
    assert "Cl not in the score model's training set" in r.stderr
    mols = _records(r.stdout)
    assert len(mols) == 3 and all(m.GetProp("method") == "hybrid" for m in mols)
    settings = json.loads(mols[0].GetProp("settings"))
    assert settings["start"]["algorithm"] == "ETKDGv3" and settings["start_sigma"] == pytest.approx(HYBRID_START_SIGMA)
    assert settings["oversample"] == 1 and settings["model"] == str(fake_clofnet)
    # the sampler refined exactly the ETKDG conformers of this molecule and seed, one call, all of them
    (start, sigma), = FakeSampler.starts
    etkdg = runner.invoke(app, ["conformers", "CCO", "-n", "3", "--method", "etkdg", "--seed", "4"])
    plain = [m.GetConformer().GetPositions() for m in _records(etkdg.stdout)]
    assert sigma == pytest.approx(HYBRID_START_SIGMA) and start.shape == (3, 9, 3)
    assert np.allclose(start, np.stack(plain), atol=1e-4)
    assert np.allclose(np.stack([m.GetConformer().GetPositions() for m in mols]), start + 0.01, atol=1e-4)


def test_hybrid_refines_three_times_the_conformers_asked_for_by_default(fake_clofnet):
    r = runner.invoke(app, ["conformers", "CCO", "-n", "2", "--method", "hybrid", "--model", str(fake_clofnet)])
    assert r.exit_code == 0, r.stderr
    mols = _records(r.stdout)
    assert len(mols) == 2 and json.loads(mols[0].GetProp("settings"))["oversample"] == HYBRID_OVERSAMPLE == 3
    (start, _), = FakeSampler.starts
    assert start.shape == (6, 9, 3)  # 6 ETKDG conformers refined, the least strained and most diverse 2 kept


def test_precision_is_chosen_recorded_and_checked(fake_clofnet, monkeypatch):
    import se3mol.runtime

    kept = []
    monkeypatch.setattr(se3mol.runtime, "keep_freed_memory", lambda: kept.append(True) or True)
    r = runner.invoke(app, ["conformers", "CCO", "-n", "1", "--model", str(fake_clofnet), "--precision", "float32"])
    assert r.exit_code == 0 and json.loads(_records(r.stdout)[0].GetProp("settings"))["precision"] == "float32"
    assert kept == [True]  # the sampler's allocator settings (se3mol.runtime) are applied before sampling
    r = runner.invoke(app, ["conformers", "CCO", "--precision", "half"])
    assert r.exit_code == 2 and "--precision" in r.stderr
    r = runner.invoke(app, ["conformers", "CCO", "--method", "etkdg", "--precision", "float32"])
    assert r.exit_code == 2 and "only apply to --method auto or" in " ".join(r.stderr.replace("│", " ").split())


# ---- evaluate-conformers ------------------------------------------------------------------------------


def test_evaluate_conformers_json_and_missing_molecules(tmp_path):
    ref = tmp_path / "ref.sdf"
    gen = tmp_path / "gen.sdf"
    r = runner.invoke(app, ["conformers", "CCCO", "CC(C)C", "-n", "1", "--method", "etkdg", "--seed", "3",
                            "-o", str(ref)])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["conformers", "CCCO", "-n", "4", "--method", "etkdg", "-o", str(gen)])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["evaluate-conformers", "--generated", str(gen), "--reference", str(ref), "--json"])
    assert r.exit_code == EXIT_SOME_RECORDS_FAILED  # CC(C)C has no generated conformers
    report = json.loads(r.stdout)
    rows = {m["smiles"]: m for m in report["molecules"]}
    assert rows["CC(C)C"]["status"] == "no generated conformers"
    assert rows["CCCO"]["n_generated"] == 4 and rows["CCCO"]["status"] == "ok"
    assert 0 <= rows["CCCO"]["mat_r"] < 1.5 and report["summary"]["mat_r"]["mean"] == rows["CCCO"]["mat_r"]
    assert report["n_evaluated"] == 1 and report["threshold_angstrom"] == 0.5
    r = runner.invoke(app, ["evaluate-conformers", "-g", str(gen), "-r", str(gen)])
    assert r.exit_code == 0 and "COV-R" in r.stdout and "100.0%" in r.stdout


class DistortsTheSecond:
    """A sampler of H, C and O whose conformers are all one seeded ETKDG embedding, the second of them changed
    in place by ``distort(xyz [N,3])``."""

    elements = (1, 6, 8)

    def __init__(self, distort):
        self.distort = distort

    def sample(self, mol, n, seed, settings):
        m = Chem.Mol(mol)
        AllChem.EmbedMolecule(m, randomSeed=seed % 1000)
        xyz = np.stack([m.GetConformer().GetPositions()] * n)
        self.distort(xyz[1])
        return xyz


class CollapsesTheSecondRefinement:
    """A refining sampler of H, C and O that hands back its starting conformers moved 0.01 A, except the second,
    whose hydroxyl O it puts onto the methyl C, in every round the sampler retries it."""

    elements = (1, 6, 8)

    def sample(self, mol, n, seed, settings, start):
        xyz = np.array(start) + 0.01
        xyz[1, 4] = xyz[1, 0] + np.array([0.2, 0.0, 0.0])
        return xyz


def test_hybrid_keeps_the_etkdg_conformer_whose_refinement_stays_flawed():
    from dataclasses import replace

    from se3mol.conformers import ClofnetMethod, EtkdgMethod, SmilesInput, generate_one
    from se3mol.conformers.checks import ConformerChecks
    from se3mol.conformers.methods import HybridMethod

    refine = ClofnetMethod(CollapsesTheSecondRefinement(), replace(FakeSettings(), start_sigma=0.1), oversample=1.0)
    method = HybridMethod(start=EtkdgMethod(), refine=refine, oversample=1.0)
    mol = Chem.AddHs(Chem.MolFromSmiles("CCCCO"))
    start, _ = EtkdgMethod().coordinates(mol, 3, 0)
    pos, notes = method.coordinates(mol, 3, 0)
    np.testing.assert_allclose(pos[1], start[1])  # the second as ETKDG drew it
    np.testing.assert_allclose(pos[[0, 2]], start[[0, 2]] + 0.01)  # the others refined
    assert notes == ["1 of 3 conformers are ETKDG's as drawn, unrefined: the score model's refinements of them kept "
                     "a clash, a torn bond or a wrong stereo element"]
    result = generate_one(SmilesInput(0, "argument", "CCCCO", "butanol"), method, 3, seed=0)
    written = np.stack([c.GetPositions() for c in result.mol.GetConformers()])
    assert result.status == "ok" and not ConformerChecks.of(result.mol).flawed(written).any()
    assert any("1 of 3 conformers are ETKDG's as drawn" in note for note in result.notes)


def test_a_torn_conformer_is_flagged_per_record_and_in_the_summary():
    from se3mol.conformers import ClofnetMethod, SmilesInput, generate_one
    from se3mol.conformers.sampler import SamplerSettings

    def tear(xyz):  # methanol's C-O bond 3 A long
        c, o = 0, 1
        xyz[o] = xyz[c] + 3.0 * (xyz[o] - xyz[c]) / np.linalg.norm(xyz[o] - xyz[c])

    method = ClofnetMethod(DistortsTheSecond(tear), SamplerSettings(), oversample=1.0)
    result = generate_one(SmilesInput(0, "argument", "CO", "methanol"), method, 3, seed=0)
    assert result.status == "warning" and any("stretched_bonds" in note for note in result.notes)
    props = [p["stretched_bonds"] for _, _, _, p in result.records()]
    assert props[0] == props[2] == "none" and props[1].startswith("C1-O2 (3.00 A)")


def test_overlapping_atoms_are_flagged_per_record_and_in_the_summary():
    from se3mol.conformers import ClofnetMethod, SmilesInput, generate_one
    from se3mol.conformers.sampler import SamplerSettings

    def collapse(xyz):  # butanol's hydroxyl O onto the methyl C, 4 bonds apart
        xyz[4] = xyz[0] + np.array([0.2, 0.0, 0.0])

    method = ClofnetMethod(DistortsTheSecond(collapse), SamplerSettings(), oversample=1.0)
    result = generate_one(SmilesInput(0, "argument", "CCCCO", "butanol"), method, 3, seed=0)
    assert result.status == "warning" and any("SD property clashes" in note for note in result.notes)
    props = [p["clashes"] for _, _, _, p in result.records()]
    assert props[0] == props[2] == "none" and props[1].startswith("C1...O5 (0.20 A)")


def test_molecules_outside_the_score_models_training_domain_are_flagged():
    from se3mol.conformers import ClofnetMethod, EtkdgMethod, SmilesInput, generate_one
    from se3mol.conformers.sampler import SamplerSettings

    class SmallDomain(FakeSampler):
        checkpoint = {"domain": {"elements": [1, 6, 7, 8, 9], "max_atoms": 12, "charge": 0}}

    method = ClofnetMethod(SmallDomain(), SamplerSettings())
    inside = generate_one(SmilesInput(0, "argument", "CCO"), method, 2)  # 9 atoms
    larger = generate_one(SmilesInput(1, "argument", "CCCCO"), method, 2)  # 15 atoms
    charged = generate_one(SmilesInput(2, "argument", "C[NH3+]"), method, 2)
    assert inside.status == "ok" and inside.extrapolation == []
    assert {p["extrapolation"] for _, _, _, p in inside.records()} == {"none"}
    assert larger.status == "warning" and larger.n_conformers == 2
    assert larger.extrapolation == ["15 atoms with hydrogens; the score model's training molecules had at most 12 "
                                    "(extrapolation)"]
    assert larger.extrapolation[0] in larger.notes
    assert {p["extrapolation"] for _, _, _, p in larger.records()} == {larger.extrapolation[0]}
    assert charged.status == "warning" and "total charge +1" in charged.extrapolation[0]
    # ETKDG is fitted to no training set: nothing to extrapolate from
    assert generate_one(SmilesInput(1, "argument", "CCCCO"), EtkdgMethod(), 2).extrapolation == []


def test_oversampling_keeps_whole_conformers_in_their_order():
    from se3mol.conformers import ClofnetMethod, EtkdgMethod, SmilesInput, generate_one
    from se3mol.conformers.sampler import SamplerSettings

    def collapse(xyz):  # butanol's hydroxyl O onto the methyl C: a huge MMFF94 energy
        xyz[4] = xyz[0] + np.array([0.2, 0.0, 0.0])

    sampler = DistortsTheSecond(collapse)
    asked = []
    sample = sampler.sample
    sampler.sample = lambda mol, n, seed, settings: asked.append(n) or sample(mol, n, seed, settings)
    method = ClofnetMethod(sampler, SamplerSettings(), oversample=1.5)
    result = generate_one(SmilesInput(0, "argument", "CCCCO"), method, 3)
    assert asked == [5] and result.status == "ok" and result.n_conformers == 3
    assert {p["clashes"] for _, _, _, p in result.records()} == {"none"}  # the collapsed one was not kept
    # ETKDG keeps every sample unless asked to oversample too
    assert EtkdgMethod().oversample == 1.0
    assert generate_one(SmilesInput(0, "argument", "CCCCO"), EtkdgMethod(oversample=2.0), 3).n_conformers == 3


def _embedded(smiles: str, k: int, seed: int = 3):
    from se3mol.conformers import molecule_from_smiles

    mol = molecule_from_smiles(smiles)
    m = Chem.Mol(mol)
    ids = list(AllChem.EmbedMultipleConfs(m, k, randomSeed=seed))
    return mol, np.stack([m.GetConformer(i).GetPositions() for i in ids])


def test_select_conformers_drops_the_most_strained_and_flawed_ones():
    from se3mol.conformers import molecule_from_smiles, select_conformers

    def kept_indices(kept):
        return sorted(int(np.argmin([np.abs(x - p).max() for p in pos])) for x in kept)

    mol, pos = _embedded("C[C@H](O)CC", 5)
    methyl = [0] + [a.GetIdx() for a in mol.GetAtomWithIdx(0).GetNeighbors() if a.GetAtomicNum() == 1]
    pos[0, methyl] -= 0.3 * (pos[0, 0] - pos[0, 1]) / np.linalg.norm(pos[0, 0] - pos[0, 1])  # C-C squeezed 0.3 A
    kept, notes = select_conformers(mol, pos, 3)  # of a surplus of 2, the most strained 1 goes
    assert notes == [] and len(kept) == 3 and 0 not in kept_indices(kept)
    # A flawed conformer (here the mirror image: the stereo centre the wrong way round, the same energy) ranks after
    # every whole one, however strained: with a surplus of 1 (none dropped for strain) the squeezed one stays.
    pos[2] *= np.array([-1.0, 1.0, 1.0])
    assert kept_indices(select_conformers(mol, pos, 4)[0]) == [0, 1, 3, 4]
    assert 2 not in kept_indices(select_conformers(mol, pos, 3)[0])
    assert np.array_equal(select_conformers(mol, pos, 5)[0], pos)  # nothing to choose from
    boron = molecule_from_smiles("B(F)(F)F")  # no MMFF94 parameters: not ranked by strain, with a note
    kept, notes = select_conformers(boron, np.zeros((3, 4, 3)), 2)
    assert kept.shape == (2, 4, 3) and "MMFF94 has no parameters" in notes[0]


def test_select_conformers_keeps_one_of_near_duplicates():
    from se3mol.conformers import molecule_from_smiles, select_conformers
    from se3mol.conformers.metrics import heavy_atom_rmsd_matrix, split_conformers

    mol = molecule_from_smiles("CCCCO")
    m = Chem.Mol(mol)
    AllChem.EmbedMultipleConfs(m, 30, randomSeed=1)
    pos = np.stack([c.GetPositions() for c in m.GetConformers()])
    props = AllChem.MMFFGetMoleculeProperties(m)
    energy = [AllChem.MMFFGetMoleculeForceField(m, props, confId=i).CalcEnergy() for i in range(len(pos))]
    d, _ = heavy_atom_rmsd_matrix(split_conformers(m), split_conformers(m))
    low = int(np.argmin(energy))
    other = next(int(i) for i in np.argsort(energy) if d[low, i] > 0.5)  # a different conformer, the next lowest
    rng = np.random.default_rng(0)
    near = [pos[other] + rng.normal(scale=0.002, size=pos[other].shape) for _ in range(2)]  # its near-duplicates
    stack = np.stack([pos[other], *near, pos[low]])
    kept, notes = select_conformers(mol, stack, 2)  # the most strained of the 4 goes, then the most diverse 2
    assert notes == []
    assert any(np.array_equal(k, pos[low]) for k in kept)  # the least strained, and one of the three alike
    assert sum(np.abs(k - pos[other]).max() < 0.01 for k in kept) == 1


def test_notes_of_an_oversampled_method_say_how_many_were_sampled_for_how_many_kept():
    from se3mol.conformers import SmilesInput, generate_one

    class EmbedsTwo:  # like ETKDG when only some conformers embed
        name, oversample = "fake", 1.5

        def settings(self):
            return {"oversample": self.oversample}

        def check(self, mol):
            return None

        def extrapolation(self, mol):
            return []

        def coordinates(self, mol, n, seed):
            m = Chem.Mol(mol)
            ids = list(AllChem.EmbedMultipleConfs(m, 2, randomSeed=seed))
            return np.stack([m.GetConformer(i).GetPositions() for i in ids]), [f"only 2 of {n} conformers could be "
                                                                                 "embedded"]

    result = generate_one(SmilesInput(0, "argument", "CCO"), EmbedsTwo(), 4)
    assert result.n_conformers == 2 and result.status == "warning"
    assert "only 2 of 6 conformers could be embedded (6 sampled to keep 4: --oversample 1.5)" in result.notes


def test_hybrid_takes_its_starting_noise_and_only_hybrid_does(fake_clofnet):
    FakeSampler.starts.clear()
    r = runner.invoke(app, ["conformers", "CCO", "-n", "2", "--method", "hybrid", "--model", str(fake_clofnet),
                            "--start-sigma", "0.7"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(_records(r.stdout)[0].GetProp("settings"))["start_sigma"] == pytest.approx(0.7)
    (_, sigma), = FakeSampler.starts
    assert sigma == pytest.approx(0.7)
    r = runner.invoke(app, ["conformers", "CCO", "--method", "clofnet", "--start-sigma", "0.7"])
    assert r.exit_code == 2 and "--start-sigma only apply to --method hybrid" in r.stderr


def test_default_method_is_chosen_per_molecule_and_named_in_each_record(tmp_path):
    r = runner.invoke(app, ["conformers", "CCO", "Clc1ccccc1", "OP(=O)(O)O", "-n", "1", "--preset", "fast"])
    assert r.exit_code == 0, r.stderr
    assert [m.GetProp("method") for m in _records(r.stdout)] == ["clofnet", "hybrid", "etkdg"]
    r = runner.invoke(app, ["conformers", "CCN.Cl", "-n", "1", "--method", "etkdg", "--fragments", "error"])
    assert r.exit_code == 3 and "salt, hydrate or mixture" in r.stderr


def test_crafted_score_model_is_exit_4(tmp_path):
    from tests.helpers import CodeRunningPickle

    bad = tmp_path / "bad.pt"
    import torch

    torch.save({"x": CodeRunningPickle()}, bad)
    r = runner.invoke(app, ["conformers", "CCO", "--model", str(bad)])
    assert r.exit_code == 4, r.output
    assert "Re-running" not in r.stderr and "weights_only set to False" not in r.stderr


def test_smiles_files_are_read_as_predict_reads_them(tmp_path):
    """gzip told by its bytes (whatever the name), a byte-order mark dropped: the io layer's one text reader."""
    import gzip

    from se3mol.conformers.inputs import read_smiles_inputs

    packed = tmp_path / "in.smi"
    packed.write_bytes(gzip.compress("\ufeffCCO ethanol\nCCN ethylamine, free base\n".encode()))
    items = read_smiles_inputs([str(packed)])
    assert [(i.smiles, i.name, i.error) for i in items] == [("CCO", "ethanol", None),
                                                            ("CCN", "ethylamine, free base", None)]
