"""The e3nn families (TFN, SE(3)-Transformer) and their shared layers (se3mol/nn/e3.py).

The registry-wide tests (test_model_contract.py, test_equivariance.py) already check the heads' outputs;
these check what only these families have: Cartesian vector and rank-2 features, attention weights,
cutoffs, bond features, exact constants and config validation.
"""

import math

import pytest
import torch
from e3nn import o3

from se3mol.equivariance import check
from se3mol.graph import GraphConfig, collate
from se3mol.nn import build_model
from se3mol.nn.e3 import (
    EdgeFeatures,
    EquivariantKernel,
    FusedKernels,
    SphericalBasis,
    _cartesian_bases,
    _default_dtype,
    pair_reverse_edges,
    polar_filter_degrees,
    polar_irreps,
)
from se3mol.nn.layers import scatter_sum
from se3mol.nn.se3_transformer import NeighbourhoodSoftmax
from se3mol.targets import get_target
from tests.helpers import random_rotation, small_molecules

TARGETS = [get_target("gap"), get_target("mu")]
# (family, config) pairs: every self-interaction, and degrees other than the default 2.
VARIANTS = {
    "tfn": ("tfn", {"hidden": 8, "layers": 2}),
    "tfn-l1": ("tfn", {"hidden": 4, "layers": 2, "max_degree": 1}),
    "tfn-l3": ("tfn", {"hidden": 4, "layers": 2, "max_degree": 3}),
    "se3t-linear": ("se3_transformer", {"hidden": 8, "layers": 2, "heads": 2}),
    "se3t-attentive": ("se3_transformer", {"hidden": 8, "layers": 2, "heads": 2, "self_interaction": "attentive"}),
}


def _model(variant, graph=None, **overrides):
    name, config = VARIANTS[variant]
    torch.manual_seed(0)
    return build_model(name, TARGETS, {**config, **overrides}, graph=graph)


def _rel_error(got, want):
    return float((got - want).abs().max().detach() / want.abs().max().detach())


# --- Cartesian frame of the shared readout ------------------------------------------------------------


def test_vector_basis_maps_e3nn_components_to_xyz():
    to_xyz, _ = _cartesian_bases()
    r = torch.tensor([[0.3, -1.2, 0.7], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    y1 = o3.spherical_harmonics(1, r, normalize=False, normalization="component") / math.sqrt(3.0)  # e3nn order
    assert torch.allclose(y1 @ to_xyz, r, atol=1e-15)


def test_rank2_basis_is_the_cartesian_quadrupole_of_e3nn_degree_2():
    # Y2(r) (e3nn's degree-2 harmonics of a direction) must map to a multiple of r r^T - I/3 in the xyz frame.
    _, basis = _cartesian_bases()  # [5,3,3]
    assert torch.allclose(basis, basis.transpose(1, 2), atol=1e-15)
    assert torch.allclose(torch.einsum("maa->m", basis), torch.zeros(5, dtype=torch.float64), atol=1e-15)
    r = torch.nn.functional.normalize(torch.tensor([[0.3, -1.2, 0.7], [0.0, 0.0, 1.0]], dtype=torch.float64), dim=-1)
    t = torch.einsum("nm,mab->nab", o3.spherical_harmonics(2, r, normalize=True, normalization="component"), basis)
    quad = r[:, :, None] * r[:, None, :] - torch.eye(3, dtype=torch.float64) / 3
    ratio = (t * quad).sum((1, 2)) / (quad * quad).sum((1, 2))  # [2]
    assert torch.allclose(t, ratio[:, None, None] * quad, atol=1e-14)
    assert torch.allclose(ratio, ratio[:1].expand(2), atol=1e-14) and ratio.abs().min() > 0.1


# --- Features handed to the heads ------------------------------------------------------------------------


def _features(model, mols, rot=None, shift=None):
    batch = collate(mols, model.graph).to(dtype=torch.float64)
    pos = batch.pos if rot is None else batch.pos @ rot.T  # [N,3], rotated in the Cartesian frame
    pos = pos if shift is None else pos + shift
    return model.representation(batch.replace(pos=pos))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("improper", [False, True], ids=["rotation", "reflection"])
def test_vectors_and_rank2_transform_with_cartesian_rotation(variant, improper, mols):
    model = _model(variant).double().eval()
    rot = random_rotation(3) * (-1.0 if improper else 1.0)  # [3,3] float64; det -1 when improper
    shift = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)
    with torch.no_grad():
        ref, moved = _features(model, mols), _features(model, mols, rot, shift)
    assert _rel_error(moved.scalars, ref.scalars) < 1e-9
    # polar vectors: v -> R v, with the components in (x, y, z) order
    assert ref.vectors.shape[1] == model.representation.vector_channels > 0
    assert _rel_error(moved.vectors, ref.vectors @ rot.T) < 1e-9
    if VARIANTS[variant][1].get("max_degree", 2) < 2:
        assert ref.rank2 is None
        return
    # rank-2: T -> R T R^T (even parity: reflections act as the rotation part)
    assert _rel_error(moved.rank2, rot @ ref.rank2 @ rot.T) < 1e-9
    # a frame mix-up (e.g. e3nn's component order taken for xyz) would not pass for a generic rotation
    assert _rel_error(moved.vectors, ref.vectors @ rot) > 1e-3


@pytest.mark.parametrize("variant", ["tfn", "se3t-linear"])
def test_rank2_is_symmetric_and_traceless(variant, mols):
    model = _model(variant).double().eval()
    with torch.no_grad():
        t = _features(model, mols).rank2  # [N,C,3,3]
    assert t.shape == (sum(m.n_atoms for m in mols), 8, 3, 3)
    assert t.abs().max() > 1e-3
    assert torch.allclose(t, t.transpose(-1, -2), atol=1e-14)
    assert torch.diagonal(t, dim1=-2, dim2=-1).sum(-1).abs().max() < 1e-14


def test_constants_stay_exact_through_casts_and_loading(mols):
    # e3nn's Clebsch-Gordan buffers are made in the default dtype; a float32 round trip or a float32
    # state dict must not leave float32-rounded coefficients in a float64 model.
    model = _model("se3t-linear")
    state = {k: v.clone() for k, v in model.state_dict().items()}  # float32
    model.double().float().double()
    model.load_state_dict(state)
    model.eval()
    rot = random_rotation(5)
    with torch.no_grad():
        ref, moved = _features(model, mols), _features(model, mols, rot)
    assert _rel_error(moved.rank2, rot @ ref.rank2 @ rot.T) < 1e-12


# --- Fused kernels: the same maps as e3nn's tensor products -------------------------------------------------


def _e3nn_rows(fused, k, reference):
    """Row of the e3nn kernel's last radial layer that holds each row of ``fused.outs[k]`` (a permutation)."""
    tp, where, offset = reference.tp, {}, 0
    for ins in tp.instructions:
        path = (tp.irreps_in1[ins.i_in1].ir.l, tp.irreps_in2[ins.i_in2].ir.l, tp.irreps_out[ins.i_out].ir.l)
        where[path] = (offset, ins.path_shape[2])
        offset += ins.path_shape[0] * ins.path_shape[2]
    rows = []
    for l_out, mul_out, sources in fused.groups[k]:
        for o in range(mul_out):
            for l_in, _, _, mul_in in sources:
                for l_f in polar_filter_degrees(l_in, l_out, 3):
                    for c in range(mul_in):
                        start, c_out = where[(l_in, l_f, l_out)]
                        rows.append(start + c * c_out + o)
    return torch.tensor(rows)


@pytest.mark.parametrize("irreps_in,irreps_outs", [
    (polar_irreps(4, 3), [polar_irreps(4, 3), polar_irreps(6, 3)]),  # a deep layer: keys and values
    (o3.Irreps("5x0e"), [o3.Irreps("4x0e"), polar_irreps(3, 3)]),  # the first layer: scalars in
    (polar_irreps(3, 2), [o3.Irreps("2x0e+2x1o"), polar_irreps(2, 2)]),  # degrees below the basis's
], ids=["deep", "first", "low-degree"])
def test_fused_kernels_equal_e3nn_tensor_products(irreps_in, irreps_outs):
    # Same radial networks (last layer permuted to e3nn's weight order) must give e3nn's
    # FullyConnectedTensorProduct to rounding, with tiny chunks and with paired and unpaired edges.
    torch.manual_seed(0)
    dtype, n_atoms = torch.float64, 9
    full = [(a, b) for a in range(n_atoms) for b in range(n_atoms) if a != b and (a + b) % 3]
    edge_index = torch.tensor(full + [(0, 3), (3, 6), (2, 4)]).T  # the last three have no reverse
    edge_index = edge_index[:, torch.randperm(edge_index.shape[1])]
    pairing = pair_reverse_edges(edge_index, n_atoms)
    assert pairing[1] == len(full) // 2
    with _default_dtype(dtype):  # constants made in float64, as a model's exact_constants() makes them
        basis = SphericalBasis(3)
        fused = FusedKernels(irreps_in, basis, irreps_outs, radial_dim=6, radial_hidden=5, chunk_floats=2000)
    pos = torch.randn(n_atoms, 3, dtype=dtype)
    rel = pos[edge_index[1]] - pos[edge_index[0]]
    sh = o3.spherical_harmonics(basis.irreps_sh, rel, normalize=True, normalization="component")
    radial = torch.cat([torch.sin(k * rel.norm(dim=1, keepdim=True)) for k in range(1, 7)], dim=1)  # [E,6]
    edges = EdgeFeatures(sh=sh, radial=radial, envelope=torch.rand(rel.shape[0], dtype=dtype), basis=basis(sh))
    f = torch.randn(n_atoms, o3.Irreps(irreps_in).dim, dtype=dtype, requires_grad=True)
    for pair in (pairing, None):
        got = fused(f, EdgeFeatures(**{**edges.__dict__, "pairing": pair}), edge_index)
        for k, irreps_out in enumerate(irreps_outs):
            with _default_dtype(dtype):
                reference = EquivariantKernel(irreps_in, basis.irreps_sh, irreps_out, 6, 5, mixing="full")
            ref_layers = [m for m in reference.radial.net if isinstance(m, torch.nn.Linear)]
            fused_layers = [m for m in fused.nets[k] if isinstance(m, torch.nn.Linear)] + [fused.outs[k]]
            rows = _e3nn_rows(fused, k, reference)
            with torch.no_grad():
                for a, b in zip(ref_layers[:2], fused_layers[:2], strict=True):
                    a.weight.copy_(b.weight)
                    a.bias.copy_(b.bias)
                ref_layers[2].weight[rows] = fused_layers[2].weight
                ref_layers[2].bias[rows] = fused_layers[2].bias
            want = reference(f[edge_index[1]], edges)
            assert got[k].shape == want.shape
            assert _rel_error(got[k], want) < 1e-13
            grad_got, = torch.autograd.grad(got[k].pow(2).sum(), f, retain_graph=True)
            grad_want, = torch.autograd.grad(want.pow(2).sum(), f)
            assert _rel_error(grad_got, grad_want) < 1e-12


def test_pair_reverse_edges_pairs_every_edge_with_its_reverse():
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 0, 3], [1, 0, 2, 1, 0, 3, 2]])  # 2->0 and 0->3, 3->2 unpaired
    order, n = pair_reverse_edges(edge_index, 4)
    assert sorted(order.tolist()) == list(range(7)) and n == 2
    first, second = edge_index[:, order[:n]], edge_index[:, order[n:2 * n]]
    assert torch.equal(first, second.flip(0)) and (first[0] < first[1]).all()
    bond = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert pair_reverse_edges(edge_index, 4, bond)[1] == 1  # 0-1 has different bond types each way
    repeated = torch.tensor([[0, 0, 1], [1, 1, 0]])
    assert pair_reverse_edges(repeated, 2)[1] == 0


# --- Attention -----------------------------------------------------------------------------------------------


def _attention_weights(model, batch):
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(out))
             for m in model.modules() if isinstance(m, NeighbourhoodSoftmax)]
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("graph,cutoff", [(GraphConfig("full"), None), (GraphConfig("radius", cutoff=2.5), 2.5),
                                          (GraphConfig("full"), 3.0)], ids=["full", "radius-cutoff", "full-cutoff"])
def test_attention_weights_sum_to_one_per_receiver_and_head(graph, cutoff, mols):
    model = _model("se3t-linear", graph, cutoff=cutoff).double()
    batch = collate(mols, graph).to(dtype=torch.float64)
    weights = _attention_weights(model, batch)
    assert len(weights) == 2
    receivers = batch.edge_index[0]
    has_edge = torch.bincount(receivers, minlength=batch.num_atoms) > 0
    if cutoff is not None:  # neighbours at or beyond the cutoff get weight 0 and do not count
        d = (batch.pos[batch.edge_index[1]] - batch.pos[receivers]).norm(dim=-1)
        has_edge = torch.bincount(receivers[d < cutoff], minlength=batch.num_atoms) > 0
    for alpha in weights:
        assert alpha.shape == (batch.edge_index.shape[1], 2)
        assert (alpha >= 0).all()
        total = scatter_sum(alpha, receivers, batch.num_atoms)  # [N,H]
        assert torch.allclose(total[has_edge], torch.ones_like(total[has_edge]), atol=1e-12)
        assert has_edge.any()
        if cutoff is not None:
            assert (alpha[d >= cutoff] == 0).all()


def test_softmax_is_stable_for_huge_logits():
    receivers = torch.tensor([0, 0, 1, 1, 1], dtype=torch.long)
    logits = torch.tensor([[1000.0], [999.0], [-1000.0], [-1001.0], [-1000.0]], dtype=torch.float64)
    alpha = NeighbourhoodSoftmax()(logits, receivers, 3)
    assert torch.isfinite(alpha).all()
    assert torch.allclose(alpha[:2, 0], torch.softmax(torch.tensor([1000.0, 999.0], dtype=torch.float64), 0))


# --- Graph kinds ----------------------------------------------------------------------------------------------


def _across_the_cutoff(model, graph, cutoff, step):
    """Outputs for a third atom just inside and just outside the cutoff of its only edge; and the edges."""
    from se3mol.molecule import Molecule

    model = model.double().eval()
    out, edges = [], []
    for y in (cutoff - step, cutoff + step):
        mol = Molecule(z=[8, 1, 1], pos=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [0.0, y, 0.0]])
        batch = collate([mol], graph).to(dtype=torch.float64)
        with torch.no_grad():
            out.append(model(batch))
        edges.append(batch.edge_index.shape[1])
    return max(_rel_error(out[0][k], out[1][k]) for k in out[0]), edges


@pytest.mark.parametrize("variant", ["tfn", "se3t-linear", "se3t-attentive"])
def test_radius_graph_with_cutoff_is_equivariant_and_smooth(variant, mols):
    graph = GraphConfig("radius", cutoff=2.0)
    model = _model(variant, graph, cutoff=2.0)
    assert check(model, collate(mols, graph), trials=1).passed
    # An atom crossing the cutoff (its only edge) moves the outputs by O(step), not by a jump ...
    jump, edges = _across_the_cutoff(model, graph, 2.0, 1e-7)
    assert edges == [4, 2] and jump < 1e-5
    # ... which the same model without the smooth cutoff does make.
    jump, _ = _across_the_cutoff(_model(variant, graph), graph, 2.0, 1e-7)
    assert jump > 1e-3


@pytest.mark.parametrize("variant", ["tfn", "se3t-linear", "se3t-attentive"])
def test_bond_graph_uses_bond_types(variant, mols):
    graph = GraphConfig("bond")
    model = _model(variant, graph)
    batch = collate(mols, graph)
    assert batch.edge_attr is not None
    assert check(model, batch, trials=1).passed
    model.eval()
    with torch.no_grad():
        a = model(batch)["gap"]
        b = model(batch.replace(edge_attr=batch.edge_attr.roll(1, dims=1)))["gap"]  # other bond types
    assert not torch.allclose(a, b)


def test_bond_model_refuses_a_batch_without_bond_types():
    model = _model("tfn", GraphConfig("bond"))
    batch = collate(small_molecules(), GraphConfig("full"))
    with pytest.raises(ValueError, match="built for 4 edge features"):
        model(batch)


# --- Configs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,config,message", [
    ("se3_transformer", {"hidden": 16, "heads": 3}, r"heads \(3\) must divide hidden \(16\)"),
    ("se3_transformer", {"self_interaction": "cubic"}, "unknown self_interaction 'cubic'"),
    ("tfn", {"max_degree": 0}, "max_degree must be at least 1"),
    ("tfn", {"hidden": 0, "cutoff": -1.0}, "hidden must be at least 1.*cutoff must be positive"),
])
def test_inconsistent_config_is_refused_with_a_message(name, config, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, TARGETS, config)


def test_feature_irreps_are_polar():
    assert str(polar_irreps(4, 3)) == "4x0e+4x1o+4x2e+4x3o"
    layer = _model("tfn").representation.layers[-1]
    assert layer.irreps_out == polar_irreps(8, 2) and layer.residual
