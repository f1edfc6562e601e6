"""Stereo targets from SMILES tags, checked against RDKit's own embeddings, and the sampler honouring them."""

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers

from se3mol.conformers.stereo import stereo_mismatches, stereo_penalty, stereo_targets

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
