"""The contract every registered model honours: declared outputs, batching, save/load, training step."""

import pytest
import torch

from se3mol.checkpoint import atomic_save, load_model, model_checkpoint
from se3mol.graph import GraphConfig, collate
from se3mol.nn import OUTPUT_KINDS, build_model, model_names
from se3mol.targets import get_target
from tests.helpers import small_molecules, tiny_config

MODELS = model_names(include_controls=True)
TARGETS = [get_target("gap"), get_target("mu"), get_target("U0"), get_target("alpha_tensor")]
SHAPES = {"scalar": lambda b: (b.num_graphs,), "atom_scalar": lambda b: (b.num_atoms,),
          "vector": lambda b: (b.num_graphs, 3), "tensor2": lambda b: (b.num_graphs, 3, 3)}


def _fit(model, batch, y, steps):
    """Adam on the L1 loss of the stacked predictions ``[B,D]`` against ``y [B,D]``; the loss of every step."""
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(steps):
        loss = (model.heads.stack(model(batch)) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _model(name, graph=None):
    torch.manual_seed(0)
    return build_model(name, TARGETS, tiny_config(name), graph=graph).double().eval()


@pytest.mark.parametrize("name", MODELS)
def test_outputs_match_declared_kinds(name):
    model = _model(name)
    batch = collate(small_molecules(), model.graph).to(dtype=torch.float64)
    out = model(batch)
    kinds = model.output_kinds()
    assert set(out) == set(kinds) == {"gap", "mu", "mu_vector", "U0", "alpha_tensor"}
    assert kinds["alpha_tensor"] == "tensor2"
    assert torch.allclose(out["alpha_tensor"], out["alpha_tensor"].transpose(1, 2), atol=1e-12)  # symmetric
    for key, kind in kinds.items():
        assert kind in OUTPUT_KINDS
        assert out[key].shape == SHAPES[kind](batch)
        assert torch.isfinite(out[key]).all()
    # mu is reported as the norm of the predicted dipole vector
    assert torch.allclose(out["mu"], out["mu_vector"].norm(dim=-1), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_batched_equals_one_by_one(name):
    model = _model(name)
    mols = small_molecules()
    together = model(collate(mols, model.graph).to(dtype=torch.float64))
    for k, m in enumerate(mols):
        alone = model(collate([m], model.graph).to(dtype=torch.float64))
        for key in together:
            assert torch.allclose(together[key][k], alone[key][0], atol=1e-10), (name, key)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name, tmp_path):
    model = _model(name)
    model.heads.mean[0], model.heads.std[0] = 6800.0, 1300.0  # normalisation must survive the trip
    path = tmp_path / "m.pt"
    atomic_save(model_checkpoint(model.float()), path)
    loaded, ckpt = load_model(path)
    assert ckpt["target_names"] == ["gap", "mu", "U0", "alpha_tensor"]
    assert ckpt["units"]["gap"] == "meV"
    batch = collate(small_molecules(), model.graph)
    a, b = model.eval()(batch), loaded(batch)
    for key in a:
        assert torch.equal(a[key], b[key])


@pytest.mark.parametrize("name", model_names())
def test_bond_graph_with_bond_types(name):
    model = _model(name, GraphConfig("bond"))
    mols = [m for m in small_molecules() if m.bonds is not None]
    out = model(collate(mols, model.graph).to(dtype=torch.float64))
    assert torch.isfinite(out["gap"]).all()


@pytest.mark.parametrize("name", model_names())
def test_a_few_steps_fit_a_tiny_batch(name):
    torch.manual_seed(0)
    model = build_model(name, [get_target("gap")], tiny_config(name))
    batch = collate(small_molecules(), model.graph)
    y = torch.tensor([7000.0, 8000.0, 9000.0])
    model.heads.fit_normalization(y[:, None], batch.counts)
    losses = _fit(model, batch, y[:, None], steps=40)
    assert losses[-1] < 0.3 * losses[0]


def test_unknown_element_is_refused_with_a_message():
    from se3mol.molecule import Molecule

    model = _model("egnn")
    sulfur = Molecule(z=[16, 1, 1], pos=[[0, 0, 0], [1.3, 0, 0], [0, 1.3, 0]])
    with pytest.raises(ValueError, match="element\\(s\\) S not in this model.s training set"):
        model(collate([sulfur], model.graph))


@pytest.mark.parametrize("name", model_names())
def test_tensor_head_fits_anisotropic_tensors(name):
    """The rank-2 head can represent anisotropy: a few steps fit three different polarizability tensors."""
    torch.manual_seed(0)
    model = build_model(name, [get_target("alpha_tensor")], tiny_config(name))
    batch = collate(small_molecules(), model.graph)
    y = torch.tensor([[9.0, 0.5, 0.0, 0.5, 8.0, 0.2, 0.0, 0.2, 7.0], [14.0, 0, 0, 0, 14.0, 0, 0, 0, 9.0],
                      [22.0, 1.0, 0, 1.0, 19.0, 0, 0, 0, 18.0]])
    model.heads.fit_normalization(y, batch.counts)
    losses = _fit(model, batch, y, steps=200)
    assert losses[-1] < 0.3 * losses[0]


def test_model_cutoff_beyond_radius_graph_is_refused():
    with pytest.raises(ValueError, match="exceeds the radius graph"):
        build_model("egnn", TARGETS, {"hidden": 8, "layers": 1, "cutoff": 6.0}, graph=GraphConfig("radius", 4.0))
