"""N-body dynamics models: displacement outputs rotate with positions and velocities, ignore
translations and follow permutations (the equivariance check's atom_vector kind);
descriptions round-trip. Training is in tests/unit/tasks/test_dynamics.py."""

import json

import pytest
import torch

from se3mol.data.nbody import load_nbody
from se3mol.equivariance import check
from se3mol.nn.dynamics import DynamicsModel, dynamics_model
from se3mol.nn.heads import ATOM_VECTOR

FAMILIES = ["egnn", "clofnet", "tfn", "se3_transformer"]


@pytest.fixture(scope="module")
def systems():
    return load_nbody("val", n=6, verbose=False).batch(torch.arange(6)).graph


@pytest.mark.parametrize("name", FAMILIES)
def test_displacement_is_equivariant(name, systems):
    torch.manual_seed(0)
    config = {"hidden": 8, "layers": 2, "max_degree": 1} if name in ("tfn", "se3_transformer") else \
        {"hidden": 16, "layers": 2}
    if name == "se3_transformer":
        config["heads"] = 2
    model = dynamics_model(name, config)
    assert model.output_kinds() == {"displacement": ATOM_VECTOR}
    report = check(model, systems, trials=2)
    rows = {r.transform: r for r in report.rows}
    for t in ("rotation", "translation", "permutation"):
        assert rows[t].passed and rows[t].max_rel_error < 1e-9, rows[t]
    assert rows["reflection"].expected == (name != "clofnet")


def test_the_check_catches_velocities_that_do_not_rotate(systems):
    class Broken(torch.nn.Module):  # ignores the velocities' rotation by using the input frame's axes
        graph = dynamics_model("egnn", {"hidden": 8, "layers": 1}).graph

        def output_kinds(self):
            return {"displacement": ATOM_VECTOR}

        def forward(self, batch):
            return {"displacement": batch.node_vec[:, 0, :].abs()}

    report = check(Broken(), systems, trials=1)
    assert not report.passed


def test_unsupported_family_and_round_trip():
    with pytest.raises(ValueError, match="takes no"):
        dynamics_model("control-mlp", {})
    m = dynamics_model("clofnet", {"hidden": 8, "layers": 1})
    again = DynamicsModel.from_description(json.loads(json.dumps(m.describe())))
    again.load_state_dict(m.state_dict())
