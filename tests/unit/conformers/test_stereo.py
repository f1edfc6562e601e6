"""Stereo targets from SMILES tags, checked against RDKit's own embeddings, and the sampler honouring them."""


import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers

from se3mol.conformers.stereo import stereo_mismatches, stereo_penalty, stereo_signs, stereo_targets
from tests.helpers import FIXTURES

# Centres with four and three neighbours (sulfoxide), ring centres, and double bonds (C=C, C=N, in chains).
SMILES = ["CC(O)CN", "OC1C(N)C1C", "CC1(C#N)OC1C", "CC=CC", "OC=CC(C)O", "CC(O)=C(N)C", "CN=CO", "C=CC=CC",
          "CS(=O)CC", "CC1CCC(O)CC1", "OCC1OC(F)C(O)C1"]


def _embedded_isomers():
    for smiles in SMILES:
        for iso in EnumerateStereoisomers(Chem.MolFromSmiles(smiles)):
            mol = Chem.AddHs(iso)
            if AllChem.EmbedMolecule(mol, randomSeed=11) == 0:
                yield Chem.MolToSmiles(iso), mol


def test_signs_agree_with_rdkit_embeddings_and_a_mirror_image_flips_every_centre():
    seen_centres = seen_bonds = 0
    for label, mol in _embedded_isomers():
        targets = stereo_targets(mol)
        pos = mol.GetConformer().GetPositions()[None]  # [1,N,3]
        assert stereo_mismatches(pos, targets) == [[]], label
        mirrored = stereo_mismatches(pos * np.array([-1.0, 1.0, 1.0]), targets)[0]
        assert len(mirrored) == len(targets.centers), label  # every centre, and no double bond, is wrong
        seen_centres += len(targets.centers)
        seen_bonds += len(targets.bonds)
    assert seen_centres > 30 and seen_bonds > 10


def test_inverted_bridgeheads_read_as_rdkit_perceives_them():
    # Two QM9 cages in their DFT geometry, stereo perceived by RDKit from 3D. One centre of each lies outside the
    # tetrahedron of its neighbours, so the neighbours' handedness disagrees with the tag; the check must not.
    supplier = Chem.SDMolSupplier(str(FIXTURES / "inverted_bridgeheads.sdf"), removeHs=False)
    for mol in supplier:
        assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == mol.GetProp("smiles")
        targets = stereo_targets(mol)
        pos = mol.GetConformer().GetPositions()
        assert stereo_mismatches(pos[None], targets) == [[]], mol.GetProp("_Name")
        center, neighbors, _ = stereo_signs(torch.as_tensor(pos), targets)
        sign = torch.as_tensor(targets.center_sign)
        assert (center * sign > 0).all() and int((neighbors * sign < 0).sum()) == 1


def _pushed_through_faces(smiles: str, seed: int) -> Chem.Mol:
    """An embedding of ``smiles`` mirrored, with every centre reflected through its first three neighbours: it
    reads right (from the centres), but free MMFF minimisation relaxes every centre to the other hand."""
    from rdkit.Geometry import Point3D

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    targets = stereo_targets(mol)
    pos = mol.GetConformer().GetPositions() * np.array([-1.0, 1.0, 1.0])
    for c, (n0, n1, n2) in zip(targets.centers, targets.neighbors, strict=True):
        normal = np.cross(pos[n1] - pos[n0], pos[n2] - pos[n0])
        normal /= np.linalg.norm(normal)
        pos[c] -= 2 * np.dot(pos[c] - pos[n0], normal) * normal
    for i, p in enumerate(pos.tolist()):
        mol.GetConformer().SetAtomPosition(i, Point3D(*p))
    assert stereo_mismatches(pos[None], targets) == [[]]
    return mol


def test_a_centre_pushed_through_a_face_reads_right_but_is_penalised():
    # RDKit (and the check) read the tag right, but the neighbours are arranged the other way round.
    mol = _pushed_through_faces("C[C@H](O)CN", 5)
    targets = stereo_targets(mol)
    pos = mol.GetConformer().GetPositions()
    perceived = Chem.Mol(mol)
    Chem.AssignStereochemistryFrom3D(perceived)
    c = int(targets.centers[0])
    assert perceived.GetAtomWithIdx(c).GetChiralTag() == mol.GetAtomWithIdx(c).GetChiralTag()
    assert float(stereo_penalty(torch.as_tensor(pos), targets)) > 0.1


def test_unspecified_stereo_is_no_target():
    assert len(stereo_targets(Chem.AddHs(Chem.MolFromSmiles("CC(O)C=CC")))) == 0
    t = stereo_targets(Chem.AddHs(Chem.MolFromSmiles("C[C@H](O)/C=C/C")))
    assert len(t.centers) == 1 and len(t.bonds) == 1 and t.labels == ("C2 (CCW)", "C4=C5 (E)")


def test_following_the_penalty_gradient_turns_a_mirror_image_around():
    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](O)[C@@H](N)/C=C\\C"))
    assert AllChem.EmbedMolecule(mol, randomSeed=3) == 0
    targets = stereo_targets(mol)
    pos = mol.GetConformer().GetPositions()
    assert float(stereo_penalty(torch.as_tensor(pos), targets)) == 0.0
    x = torch.as_tensor(pos * np.array([-1.0, 1.0, 1.0])).requires_grad_(True)
    assert stereo_mismatches(x.detach()[None], targets)[0]
    for _ in range(300):
        (g,) = torch.autograd.grad(stereo_penalty(x, targets), x)
        x = (x - 0.05 * g).detach().requires_grad_(True)
    assert stereo_mismatches(x.detach()[None], targets) == [[]]


@pytest.mark.parametrize("smiles", ["C[C@H](O)[C@@H](N)/C=C/C", "C[C@@H](O)[C@@H](N)/C=C\\C"])
def test_shipped_score_model_samples_the_stereoisomer_asked_for(smiles):
    from se3mol.conformers.sampler import SamplerSettings, ScoreSampler

    sampler = ScoreSampler.load("conformers-clofnet-qm9")
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    xyz = sampler.sample(mol, 6, seed=0, settings=SamplerSettings.preset("default"))
    assert stereo_mismatches(xyz, stereo_targets(mol)) == [[]] * 6


def _torn(mol, xyz) -> int:
    from se3mol.conformers.geometry import stretched_bonds

    ends = np.array([[b.GetBeginAtomIdx(), b.GetEndAtomIdx()] for b in mol.GetBonds()])
    return int(stretched_bonds(xyz, np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), ends).any(-1).sum())


def test_the_stereo_pull_cannot_tear_a_molecule_apart():
    # a double bond's dihedral has an unbounded gradient where a neighbour lies on the bond's axis; before the
    # pull was clipped like the score, 2 of these 10 conformers came out with bonds 22 and 38 A long
    from se3mol.conformers.sampler import SamplerSettings, ScoreSampler

    sampler = ScoreSampler.load("conformers-clofnet-qm9")
    mol = Chem.AddHs(Chem.MolFromSmiles("O/N=C1/CC=C/C1=N\\O"))
    xyz = sampler.sample(mol, 10, seed=0, settings=SamplerSettings(resample=0))  # the clip alone
    assert _torn(mol, xyz) == 0 and stereo_mismatches(xyz, stereo_targets(mol)) == [[]] * 10
    # a fused tricycle: conformers that formed its rings the wrong way round can only be pulled right by
    # stretching a ring bond (3 of 30 without resampling), and some come out with atoms on top of each other;
    # they are sampled again (seed 0 needs the third round)
    from se3mol.conformers.geometry import clashes, nonbonded_pairs

    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@]12[C@@H]3C=C[C@H]1CC[C@@H]32"))
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    for seed in range(3):
        xyz = sampler.sample(mol, 10, seed=seed)
        assert _torn(mol, xyz) == 0 and stereo_mismatches(xyz, stereo_targets(mol)) == [[]] * 10
        assert not clashes(xyz, z, nonbonded_pairs(mol)).any()


def test_flawed_conformers_are_sampled_again_and_only_they(monkeypatch):
    from se3mol.conformers.geometry import stretched_bonds
    from se3mol.conformers.sampler import SamplerSettings, ScoreSampler

    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](O)CN"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    good = mol.GetConformer().GetPositions()
    torn = good.copy()
    torn[0] += 5.0  # the methyl carbon 5 A away: C1-C2 stretched
    mirrored = good * np.array([-1.0, 1.0, 1.0])  # every element right but the centre
    assert stretched_bonds(torn[None], [a.GetAtomicNum() for a in mol.GetAtoms()],
                           [[b.GetBeginAtomIdx(), b.GetEndAtomIdx()] for b in mol.GetBonds()]).tolist()[0][0]
    calls = []

    def fake_langevin(self, template, n, gen, settings, targets, start=None):
        calls.append(n)
        if len(calls) == 1:
            return np.stack([good, torn, mirrored, good])
        return np.stack([good] * n)

    monkeypatch.setattr(ScoreSampler, "_langevin", fake_langevin)
    from se3mol.conformers.score import ScoreModel, ScoreModelConfig

    tiny = ScoreModel(ScoreModelConfig(hidden=8, layers=1, num_rbf=4, frame_features=4, sigma_features=4), (1, 6, 7, 8))
    sampler = ScoreSampler(tiny)
    xyz = sampler.sample(mol, 4, seed=0)
    assert calls == [4, 2] and np.allclose(xyz, good)
    calls.clear()
    xyz = sampler.sample(mol, 4, seed=0, settings=SamplerSettings(resample=0))
    assert calls == [4] and np.allclose(xyz[1], torn) and np.allclose(xyz[2], mirrored)


def test_mmff_relaxation_never_inverts_the_stereo_a_conformer_has_right():
    from rdkit.Chem import rdForceFieldHelpers

    from se3mol.conformers import relax_mmff

    for smiles, seed in [("C[C@H](O)CN", 5), ("C[C@@H]1CC[C@H](O)CC1", 3)]:
        mol = _pushed_through_faces(smiles, seed)
        free = Chem.Mol(mol)
        rdForceFieldHelpers.MMFFOptimizeMolecule(free, maxIters=2000)
        targets = stereo_targets(mol)
        assert all(stereo_mismatches(free.GetConformer().GetPositions()[None], targets)[0])  # the defect
        (outcome,) = relax_mmff(mol)
        assert outcome.stereo_restrained and outcome.energy_after < outcome.energy_before
        assert stereo_mismatches(mol.GetConformer().GetPositions()[None], targets) == [[]]


def test_mmff_relaxation_of_an_ordinary_conformer_is_not_restrained():
    from se3mol.conformers import relax_mmff

    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](O)[C@@H](N)/C=C\\C"))
    assert len(AllChem.EmbedMultipleConfs(mol, 3, randomSeed=7)) == 3
    outcomes = relax_mmff(mol)
    assert not any(o.stereo_restrained for o in outcomes)
    targets = stereo_targets(mol)
    assert stereo_mismatches(np.stack([c.GetPositions() for c in mol.GetConformers()]), targets) == [[]] * 3
