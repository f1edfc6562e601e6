"""The equivariance checker: every registered model passes (or, for controls, fails) it, and it catches
deliberately broken models under exactly the transformations they break."""

import json

import pytest
import torch
from torch import nn

from se3mol.equivariance import TRANSFORMS, check, default_molecules
from se3mol.graph import GraphConfig, collate
from se3mol.nn import SCALAR, VECTOR, build_model, get_entry, model_names
from se3mol.nn.layers import scatter_sum
from se3mol.targets import get_target
from tests.helpers import tiny_config

TARGETS = [get_target("gap"), get_target("mu")]


def _model(name, graph=None):
    torch.manual_seed(0)
    return build_model(name, TARGETS, tiny_config(name), graph=graph)


def _rows(report):
    return {(r.output, r.transform): r for r in report.rows}


def test_default_molecules_differ_in_size_and_are_deterministic():
    a, b = default_molecules(), default_molecules()
    sizes = [m.n_atoms for m in a]
    assert len(set(sizes)) == len(sizes) >= 4
    assert {int(z) for m in a for z in m.z} <= {1, 6, 7, 8, 9}
    for m, n in zip(a, b, strict=True):
        m.validate()
        assert (m.pos == n.pos).all() and m.bonds is not None


@pytest.mark.parametrize("name", model_names(include_controls=True))
def test_every_registered_model(name, mols):
    model = _model(name)
    report = check(model, collate(mols, model.graph), trials=2)
    kinds = model.output_kinds()
    assert {(o, t) for o in kinds for t in TRANSFORMS} == set(_rows(report))
    assert report.dtype == "float64" and report.n_atoms == [m.n_atoms for m in mols]
    if get_entry(name).control:
        # A control must fail: this is the evidence that the checker can fail at all.
        assert not report.passed
        assert not _rows(report)[("gap", "rotation")].passed
        return
    reflections = getattr(model.representation, "reflection_equivariant", True)
    for r in report.rows:
        assert r.expected == (reflections or r.transform != "reflection")
        if r.expected:
            assert r.passed and r.max_rel_error < 1e-9, r
    assert report.passed
    assert {SCALAR, VECTOR} <= set(kinds.values())


@pytest.mark.parametrize("graph", [GraphConfig("radius", cutoff=2.5), GraphConfig("bond")],
                         ids=["radius", "bond"])
def test_every_graph_kind(graph, mols):
    # radius edges are rebuilt after each transformation; bond edges are relabelled under permutation
    model = _model("egnn", graph)
    assert check(model, collate(mols, graph), trials=1).passed


@pytest.mark.parametrize("name", ["egnn", "clofnet", "se3_transformer", "tfn"])
def test_the_total_charge_input_keeps_every_symmetry(name, mols):
    # The charge is an invariant per molecule: a model that takes it stays equivariant, molecule by molecule
    # (each molecule of the batch carries another charge).
    torch.manual_seed(0)
    model = build_model(name, TARGETS, tiny_config(name), charge_input=True)
    batch = collate(mols, model.graph).replace(charge=torch.arange(len(mols), dtype=torch.float64) - 1)
    report = check(model, batch, trials=1)
    assert all(r.passed for r in report.rows if r.expected), report.rows


def test_a_2d_fingerprint_input_keeps_every_symmetry(mols):
    torch.manual_seed(0)
    model = build_model("egnn", TARGETS, tiny_config("egnn"), fingerprint={"kind": "morgan", "radius": 2, "bits": 64})
    counts = torch.randint(0, 4, (len(mols), 64), generator=torch.Generator().manual_seed(0))
    report = check(model, collate(mols, model.graph).replace(mol_attr=counts), trials=1)
    assert report.passed, report.rows


def test_caller_model_untouched(mols):
    model = _model("egnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    check(model, collate(mols, model.graph), trials=1)
    assert model.training
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in model.state_dict().items())


class _Wrapped(nn.Module):
    """A real EGNN whose outputs are replaced by ``edit(batch, outputs)``."""

    def __init__(self, edit, kinds=None):
        super().__init__()
        self.inner = _model("egnn")
        self.graph = self.inner.graph
        self.edit = edit
        self.kinds = kinds or self.inner.output_kinds()

    def output_kinds(self):
        return self.kinds

    def forward(self, batch):
        return self.edit(batch, self.inner(batch))


def _first_atom(batch):
    return torch.cumsum(batch.counts, 0) - batch.counts  # [B]


def test_broken_scalar_fails_rotation_but_not_permutation(mols):
    def add_pos_sum(batch, out):
        out["gap"] = out["gap"] + scatter_sum(batch.pos.sum(-1), batch.batch, batch.num_graphs)
        return out

    rows = _rows(check(_Wrapped(add_pos_sum), collate(mols, GraphConfig()), trials=1))
    for t in ("rotation", "reflection", "translation"):
        assert not rows[("gap", t)].passed and rows[("gap", t)].max_rel_error > 1e-3
    assert rows[("gap", "permutation")].passed
    assert rows[("mu_vector", "rotation")].passed  # other outputs are judged on their own


def test_atom_permutation_is_applied(mols):
    def first_atom_position(batch, out):
        return {"first": batch.pos[_first_atom(batch)]}  # [B,3]: rotates, but depends on atom order

    wrapped = _Wrapped(first_atom_position, {"first": VECTOR})
    rows = _rows(check(wrapped, collate(mols, GraphConfig()), trials=1))
    assert rows[("first", "rotation")].passed and rows[("first", "reflection")].passed
    assert not rows[("first", "translation")].passed
    assert not rows[("first", "permutation")].passed


def test_atom_scalars_are_compared_in_permuted_order(mols):
    def radial(batch, out):  # per-atom distance to the molecule's centroid: invariant, follows the atoms
        counts = batch.counts.to(batch.pos.dtype)
        centroid = scatter_sum(batch.pos, batch.batch, batch.num_graphs) / counts[:, None]
        return {"r": (batch.pos - centroid[batch.batch]).norm(dim=-1)}

    report = check(_Wrapped(radial, {"r": "atom_scalar"}), collate(mols, GraphConfig()), trials=2)
    assert report.passed, report.rows


def test_molecules_are_transformed_independently(mols):
    # Centring on the centroid of the whole batch is invariant to one global motion, not to moving
    # each molecule on its own; batched molecules are independent, so this must fail.
    def batch_centred(batch, out):
        r2 = ((batch.pos - batch.pos.mean(0)) ** 2).sum(-1)
        return {"gap": out["gap"] + scatter_sum(r2, batch.batch, batch.num_graphs)}

    rows = _rows(check(_Wrapped(batch_centred, {"gap": SCALAR}), collate(mols, GraphConfig()), trials=1))
    assert not rows[("gap", "rotation")].passed and not rows[("gap", "translation")].passed
    assert rows[("gap", "permutation")].passed


def test_nan_fails_and_report_is_strict_json(mols):
    def nan(batch, out):
        out["gap"] = out["gap"] * float("nan")
        return out

    report = check(_Wrapped(nan), collate(mols, GraphConfig()), trials=1)
    assert not report.passed
    assert all(not r.passed for r in report.rows if r.output == "gap")
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["passed"] is False and d["rows"][0]["max_abs_error"] is None


def test_reflection_not_expected_for_se3_only_models(mols):
    # A chiral output (triple product of three equivariant vectors) is SE(3)- but not E(3)-invariant,
    # like the outputs of ClofNet's frames.
    def chiral(batch, out):
        counts = batch.counts.to(batch.pos.dtype)
        r = batch.pos - (scatter_sum(batch.pos, batch.batch, batch.num_graphs) / counts[:, None])[batch.batch]
        w = batch.z.to(r.dtype)[:, None]
        weights = (w, w**2, (r * r).sum(-1, keepdim=True))  # [N,1] each
        v = [scatter_sum(f * r, batch.batch, batch.num_graphs) for f in weights]  # 3 x [B,3]
        return {"gap": out["gap"] + torch.linalg.det(torch.stack(v, dim=1))}

    wrapped = _Wrapped(chiral, {"gap": SCALAR})
    batch = collate(mols, GraphConfig())
    assert not _rows(check(wrapped, batch, trials=1))[("gap", "reflection")].passed
    wrapped.representation = type("SE3Only", (), {"reflection_equivariant": False})()
    report = check(wrapped, batch, trials=1)
    rows = _rows(report)
    assert rows[("gap", "reflection")].status == "not expected" and not rows[("gap", "reflection")].passed
    assert report.passed
