"""No family, the score model or the conformer sampler makes subnormal floats on real molecules.

Subnormal operands slow many CPUs ~100x (the distance expansion once made ~5% of its features subnormal and
tripled the cost of a training step): see :func:`se3mol.nn.layers.exp_neg` and
``benchmarks/speed/subnormals.py``.
"""

import pytest
import torch

from se3mol.chem import embed_smiles
from se3mol.graph import GraphConfig, collate
from se3mol.nn import build_model, model_names
from se3mol.nn.layers import GaussianRBF, exp_neg, negligible, sigmoid_gate
from se3mol.runtime import SubnormalCounter
from se3mol.targets import get_target

TARGETS = [get_target(t) for t in ("gap", "mu", "U0", "r2", "alpha_tensor")]
#: Drug-like molecules with S, Cl, Br, F beside H C N O: sizes up to 50 atoms, distances up to ~15 A.
DRUGS = ["CC(=O)Nc1ccc(O)cc1", "Clc1ccc(cc1)C(c1ccccc1)N1CCNCC1", "O=C(O)c1ccccc1SSc1ccccc1C(=O)O",
         "Brc1cccc(c1)C(=O)NC1CCCCC1", "FC(F)(F)c1ccc(OC2CCNCC2)cc1"]
DRUG_ELEMENTS = (1, 6, 7, 8, 9, 16, 17, 35)
#: Products of normal numbers may round below the normal range now and then (a weight gradient of 1e-39 is a
#: true value; so is the trained score model's SiLU of a pre-activation below -80, ~1e-35, times an edge gate:
#: 4 in a million values while sampling). Zeroing those would need a guard on every SiLU, one more pass over every
#: edge feature of every layer, for no measurable gain. What must never come back is a stream of them from one
#: source (the distance expansion's were 5% of its features).
RARE = 1e-5


def test_exp_neg_and_the_gate_floor_what_would_be_subnormal():
    floor = negligible(torch.float32)
    x = torch.tensor([0.0, 1.0, 30.0, 33.0, 100.0, 1e4])
    out = exp_neg(x)
    assert torch.equal(out[:3], torch.exp(-x[:3]))  # exact above the floor
    assert torch.allclose(out[3:], torch.tensor(floor), rtol=1e-6)  # the floor, 1.4e-14, beyond it
    assert exp_neg(torch.tensor([50.0], dtype=torch.float64)).item() == pytest.approx(torch.exp(
        torch.tensor(-50.0, dtype=torch.float64)).item(), rel=1e-12)  # float64 keeps more
    x = torch.tensor([1.0, 200.0], requires_grad=True)
    exp_neg(x).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-torch.exp(torch.tensor(-1.0)).item(), 0.0]))
    logit = torch.linspace(-100.0, 10.0, 1101)
    gate = sigmoid_gate(logit)
    assert gate.min() >= floor * (1 - 1e-6) and torch.allclose(gate, torch.sigmoid(logit), rtol=0, atol=1e-13)
    assert torch.equal(gate[logit > -30], torch.sigmoid(logit[logit > -30]))


def test_gaussian_rbf_of_long_distances_has_no_subnormals():
    feats = GaussianRBF(32, 8.0)(torch.linspace(0.0, 20.0, 401))
    assert not ((feats > 0) & (feats < torch.finfo(torch.float32).tiny)).any()
    assert feats.max() == pytest.approx(1.0)


def _drug_batch(graph: GraphConfig):  # full graphs: distances up to ~15 A
    return collate([embed_smiles(s, seed=0) for s in DRUGS], graph)


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("data", ["qm9", "drugs"])
def test_training_step_makes_no_subnormals(name, data, qm9):
    torch.manual_seed(0)
    elements = DRUG_ELEMENTS if data == "drugs" else (1, 6, 7, 8, 9)
    model = build_model(name, TARGETS, elements=elements)
    batch = qm9.batch(torch.arange(1000, 1016), model.graph) if data == "qm9" else _drug_batch(model.graph)
    with SubnormalCounter() as forward:
        out = model(batch)
    loss = sum(v.abs().mean() for v in out.values())
    with SubnormalCounter() as backward:
        loss.backward()
    assert forward.total and backward.total
    assert not forward.worst(), f"{name} forward on {data}: {forward.worst()}"
    assert backward.fraction() < RARE, f"{name} backward on {data}: {backward.worst()}"


def test_conformer_sampler_makes_almost_no_subnormals():
    from rdkit import Chem

    from se3mol.conformers.sampler import SamplerSettings, ScoreSampler

    sampler = ScoreSampler.load("conformers-clofnet-drugs")
    mol = Chem.AddHs(Chem.MolFromSmiles(DRUGS[1]))
    settings = SamplerSettings(levels=6, steps=1, repulsion=1.0)
    with SubnormalCounter() as counter:
        xyz = sampler.sample(mol, 3, seed=0, settings=settings)
    assert xyz.shape == (3, mol.GetNumAtoms(), 3)
    assert counter.total
    assert counter.fraction() < RARE, counter.worst()
