"""QM9 from qm9pack: counts, units, atom references and the fixed split (reads the real data)."""

import pytest
import torch

pytest.importorskip("pandas")
from se3mol.data.qm9 import ATOM_REFERENCE, TARGET_NAMES, load_qm9, standard_split  # noqa: E402
from se3mol.graph import GraphConfig  # noqa: E402
from se3mol.units import HARTREE_TO_MEV  # noqa: E402


def test_sizes_and_first_molecule(qm9):
    assert len(qm9) == 130_831
    assert int(qm9.counts.sum()) == qm9.z.shape[0] == qm9.pos.shape[0]
    assert qm9.ids[0] == 1 and qm9.smiles[0] == "C"
    assert qm9.z[:5].tolist() == [6, 1, 1, 1, 1]


def test_units_of_methane(qm9):
    y = dict(zip(TARGET_NAMES, qm9.y[0].tolist(), strict=True))
    assert y["gap"] == pytest.approx(0.5048 * HARTREE_TO_MEV, rel=1e-9)  # 13736 meV
    assert y["homo"] == pytest.approx(-0.3877 * HARTREE_TO_MEV, rel=1e-9)
    assert y["alpha"] == pytest.approx(13.21)
    assert y["Cv"] == pytest.approx(6.469)
    ref = ATOM_REFERENCE[6][0] + 4 * ATOM_REFERENCE[1][0]
    assert y["U0"] == pytest.approx((-40.47893 - ref) * HARTREE_TO_MEV, rel=1e-9)
    assert -18_000 < y["U0"] < -17_000  # methane atomization energy is about -17.2 eV


def test_water_dipole_and_polarizability_tensor(qm9):
    y = dict(zip(TARGET_NAMES, qm9.y[2].tolist(), strict=True))
    assert y["mu"] == pytest.approx(1.8511)
    p = qm9.polarizability[2]
    assert torch.allclose(p, p.T)
    assert float(torch.diagonal(p).mean()) == pytest.approx(y["alpha"], rel=0.01)


def test_tensor_target_values_are_the_polarizability_tensor(qm9):
    idx = torch.tensor([2, 7])
    v = qm9.target_values(idx, ["gap", "alpha_tensor", "mu"])
    assert v.shape == (2, 11)
    assert torch.allclose(v[:, 1:10], qm9.polarizability[idx].reshape(2, 9).double())
    assert v[0, 10] == pytest.approx(1.8511)
    with pytest.raises(ValueError, match="unknown QM9 target 'nope'"):
        qm9.target_values(idx, ["nope"])


def test_standard_split_is_fixed_disjoint_and_complete():
    a, b = standard_split(), standard_split()
    assert {k: len(v) for k, v in a.items()} == {"train": 110_000, "val": 10_000, "test": 10_831}
    assert all(torch.equal(a[k], b[k]) for k in a)
    allidx = torch.cat(list(a.values()))
    assert len(torch.unique(allidx)) == 130_831
    assert a["test"][:3].tolist() == b["test"][:3].tolist()


def test_batch_from_packed_arrays_matches_molecules(qm9):
    idx = torch.tensor([2, 0, 100])
    b = qm9.batch(idx, GraphConfig(), ["gap"])
    assert b.counts.tolist() == [3, 5, int(qm9.counts[100])]
    m = qm9.molecule(100)
    assert torch.allclose(b.pos[8:].double(), torch.from_numpy(m.pos), atol=1e-6)
    assert b.y[:, 0].tolist() == pytest.approx(qm9.y[idx, TARGET_NAMES.index("gap")].tolist())


def test_parsed_once_then_read_from_cache(tmp_path, monkeypatch):
    import se3mol.data.qm9 as mod

    calls = []
    real = mod._parse
    monkeypatch.setattr(mod, "_parse", lambda files: calls.append(1) or real(files))
    first = load_qm9(cache=tmp_path, verbose=False)
    second = load_qm9(cache=tmp_path, verbose=False)
    assert calls == [1]  # the second load never parsed the CSV files
    assert len(list(tmp_path.glob("qm9-v*.pt"))) == 1
    assert torch.equal(first.y, second.y) and torch.equal(first.pos, second.pos)


def test_missing_qm9pack_names_the_install_command(monkeypatch):
    import importlib.util

    import se3mol.data.qm9 as mod

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "qm9pack" else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install "se3mol\[qm9\]"'):
        mod.load_qm9(verbose=False)


def test_bond_graph_from_perceived_bonds(qm9, tmp_path):
    from se3mol.data import attach_bonds
    from se3mol.graph import collate
    from se3mol.io import perceive_bonds

    small = attach_bonds(qm9.head(40), cache=tmp_path, workers=1, verbose=False)
    assert small.bond_counts[0] == 4  # methane
    idx = torch.tensor([5, 0, 17])
    b = small.batch(idx, GraphConfig("bond"), ["gap"])
    mols = [perceive_bonds(small.molecule(int(k))) for k in idx]
    ref = collate(mols, GraphConfig("bond"))
    assert {tuple(e) for e in b.edge_index.T.tolist()} == {tuple(e) for e in ref.edge_index.T.tolist()}
    assert torch.equal(b.edge_attr.sum(0), ref.edge_attr.sum(0))  # same bond-type counts
    # cached: a second attach reads the file instead of perceiving again
    again = attach_bonds(qm9.head(40), cache=tmp_path, workers=1, verbose=False)
    assert torch.equal(again.bonds, small.bonds) and len(list(tmp_path.glob("qm9-bonds-*.pt"))) == 1
