import numpy as np
import pytest
import torch

from se3mol.graph import Batch, GraphConfig, collate, full_edges
from se3mol.molecule import Molecule


def test_full_edges_every_ordered_pair_within_each_molecule():
    counts = torch.tensor([3, 1, 4])
    ei = full_edges(counts)
    assert ei.shape == (2, 3 * 2 + 0 + 4 * 3)
    pairs = {tuple(p) for p in ei.T.tolist()}
    expected = {(i, j) for lo, n in [(0, 3), (3, 1), (4, 4)] for i in range(lo, lo + n)
                for j in range(lo, lo + n) if i != j}
    assert pairs == expected


def test_radius_graph_keeps_only_close_pairs(molecules):
    b = collate(molecules, GraphConfig("radius", cutoff=1.2))
    d = (b.pos[b.edge_index[0]] - b.pos[b.edge_index[1]]).norm(dim=-1)
    assert (d < 1.2).all()
    full = collate(molecules, GraphConfig("full"))
    dfull = (full.pos[full.edge_index[0]] - full.pos[full.edge_index[1]]).norm(dim=-1)
    assert b.edge_index.shape[1] == int((dfull < 1.2).sum()) > 0


def test_bond_graph_is_symmetric_with_one_hot_types(molecules):
    methanol = molecules[2]
    b = collate([methanol, methanol], GraphConfig("bond"))
    assert b.edge_index.shape == (2, 4 * len(methanol.bonds))
    pairs = {tuple(p) for p in b.edge_index.T.tolist()}
    assert all((j, i) in pairs for i, j in pairs)
    assert b.edge_attr.shape == (b.edge_index.shape[1], 4)
    assert torch.all(b.edge_attr.sum(1) == 1) and torch.all(b.edge_attr[:, 0] == 1)  # all single bonds
    assert b.edge_index.min() == 0 and b.edge_index.max() == 2 * methanol.n_atoms - 1


def test_bond_graph_without_bonds_is_a_clear_error(molecules):
    with pytest.raises(ValueError, match="no bonds"):
        collate(molecules[:1], GraphConfig("bond"))


def test_collate_batch_index_and_dtype(molecules):
    b = collate(molecules, GraphConfig())
    assert b.num_graphs == 3
    assert b.counts.tolist() == [3, 4, 6]
    assert b.batch.tolist() == [0] * 3 + [1] * 4 + [2] * 6
    assert np.allclose(b.pos[7:].numpy(), molecules[2].pos)
    b64 = b.to(dtype=torch.float64)
    assert b64.pos.dtype == torch.float64 and b64.z.dtype == torch.long and isinstance(b64, Batch)


def test_graph_config_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown graph kind"):
        GraphConfig("knn")


def test_collate_empty_is_error():
    with pytest.raises(ValueError, match="empty"):
        collate([], GraphConfig())


def test_molecule_validate_messages():
    with pytest.raises(ValueError, match="coincident"):
        Molecule(z=[6, 6], pos=[[0, 0, 0], [0, 0, 0.01]]).validate()
    with pytest.raises(ValueError, match="NaN"):
        Molecule(z=[6, 1], pos=[[0, 0, 0], [np.nan, 0, 1]]).validate()
    with pytest.raises(ValueError, match="no atoms"):
        Molecule(z=[], pos=np.zeros((0, 3))).validate()
    with pytest.raises(ValueError, match="unknown element"):
        Molecule(z=[6, 200], pos=[[0, 0, 0], [1, 0, 0]]).validate()
    Molecule(z=[8, 1, 1], pos=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]).validate()


def test_molecule_formula_and_flatness(molecules):
    assert molecules[2].formula == "CH4O"
    assert molecules[0].formula == "H2O"
    flat = Molecule(z=[6, 6, 6], pos=[[0, 0, 0], [1.4, 0, 0], [0.7, 1.2, 0]])
    assert flat.is_flat() and not molecules[1].is_flat()


def test_hop_graph_types_pairs_by_bond_distance():
    from se3mol.graph import NUM_BOND_TYPES, hop_edges

    # propanol-like chain 0-1-2-3 (single bonds; 2-3 double) plus a lone atom 4, and a second molecule 0=1
    counts = torch.tensor([5, 2])
    pairs = torch.tensor([[0, 1], [1, 2], [2, 3], [5, 6]])
    types = torch.tensor([0, 0, 1, 2])
    ei, attr = hop_edges(counts, pairs, types)
    assert ei.shape == (2, 5 * 4 + 2 * 1) and attr.shape == (22, NUM_BOND_TYPES + 3)
    assert (attr.sum(1) == 1).all()
    col = {(int(i), int(j)): int(c) for i, j, c in zip(ei[0], ei[1], attr.argmax(1), strict=True)}
    assert col[(0, 1)] == col[(1, 0)] == 0 and col[(2, 3)] == 1 and col[(6, 5)] == 2  # bond types
    assert col[(0, 2)] == col[(3, 1)] == NUM_BOND_TYPES  # 2 bonds apart
    assert col[(0, 3)] == NUM_BOND_TYPES + 1  # 3 bonds apart
    assert col[(0, 4)] == col[(4, 3)] == NUM_BOND_TYPES + 2  # not connected
    assert (ei[0] < 5).eq(ei[1] < 5).all()  # never across molecules


def test_hop_graph_from_molecules_matches_qm9_path():
    from se3mol.equivariance import default_molecules

    mols = default_molecules()
    b = collate(mols, GraphConfig("hops"))
    n = sum(m.n_atoms * (m.n_atoms - 1) for m in mols)
    assert b.edge_index.shape == (2, n) and b.edge_attr.shape == (n, GraphConfig("hops").edge_attr_dim)
    bonded = b.edge_attr[:, :4].sum() / 2
    assert bonded == sum(len(m.bonds) for m in mols)
