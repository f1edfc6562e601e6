"""ClofNet: frames stay finite on linear molecules and coincident atoms; SE(3)- but not
reflection-equivariant, and the checker reports that separately instead of failing the model."""

import numpy as np
import pytest
import torch

from se3mol.equivariance import check, default_molecules
from se3mol.graph import GraphConfig, collate
from se3mol.molecule import Molecule
from se3mol.nn import build_model
from se3mol.nn.clofnet import edge_frames
from se3mol.targets import get_target

TARGETS = [get_target("gap"), get_target("mu")]

LINEAR = {
    # CO2, acetylene and HCN along an arbitrary axis, off the origin: every edge's x_i and x_j are parallel
    # after centring, so every cross-product axis b_ij degenerates.
    "CO2": ([6, 8, 8], [0.0, 1.16, -1.16]),
    "acetylene": ([6, 6, 1, 1], [-0.60, 0.60, -1.66, 1.66]),
    "HCN": ([1, 6, 7], [-1.06, 0.0, 1.15]),
}


def _linear(name: str) -> Molecule:
    z, t = LINEAR[name]
    axis = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    return Molecule(z=z, pos=np.asarray(t)[:, None] * axis + np.array([3.0, -1.0, 2.0]), name=name)


def _model(graph=None):
    torch.manual_seed(0)
    return build_model("clofnet", TARGETS, {"hidden": 16, "layers": 2}, graph=graph).double()


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_linear_molecules_give_finite_outputs_and_gradients(name):
    model = _model()
    batch = collate([_linear(name), default_molecules()[1]], model.graph).to(dtype=torch.float64)
    batch.pos.requires_grad_(True)
    out = model(batch)
    assert all(torch.isfinite(v).all() for v in out.values())
    out["gap"].sum().backward()
    assert torch.isfinite(batch.pos.grad).all()
    # and the frames really are degenerate: b vanishes (softly) instead of blowing up
    xc = batch.pos.detach()[:3] - batch.pos.detach()[:3].mean(0)
    a, b, c = edge_frames(xc, torch.tensor([[0, 1], [1, 2]]).T)
    assert torch.isfinite(b).all() and b.norm(dim=-1).max() < 1e-3
    assert torch.allclose(a.norm(dim=-1), torch.ones(2, dtype=a.dtype), atol=1e-4)


def test_coincident_atoms_give_finite_outputs_and_gradients():
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.2, 0.1], [-0.3, 1.0, 0.4]])
    mol = Molecule(z=[6, 1, 8, 1], pos=pos)
    model = _model()
    batch = collate([mol], model.graph).to(dtype=torch.float64)
    batch.pos.requires_grad_(True)
    out = model(batch)
    assert all(torch.isfinite(v).all() for v in out.values())
    out["mu"].sum().backward()
    assert torch.isfinite(batch.pos.grad).all()


def test_se3_but_not_reflection_equivariant_and_reported_so():
    model = _model()
    report = check(model, collate(default_molecules(), model.graph), trials=2)
    rows = {(r.output, r.transform): r for r in report.rows}
    assert report.passed  # reflections are not expected, so they do not fail the check
    for t in ("rotation", "translation", "permutation"):
        assert rows[("mu_vector", t)].passed and rows[("mu_vector", t)].expected
    refl = rows[("mu_vector", "reflection")]
    assert not refl.expected
    # the cross-product axis really does break mirror symmetry of vector outputs
    assert refl.max_rel_error > 1e-3


@pytest.mark.parametrize("kind", ["bond", "radius"])
def test_bond_and_radius_graphs(kind):
    model = _model(GraphConfig(kind, 4.0))
    report = check(model, collate(default_molecules(), model.graph), trials=1)
    assert report.passed
