"""GFN2-xTB through tblite: energies, the L-BFGS minimiser, and relax_xtb on RDKit conformers."""

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from se3mol.chem import conformer_positions
from se3mol.conformers.relax import relax
from se3mol.conformers.xtb import EH_TO_KCAL, GCONV, xtb_energy, xtb_optimise

pytest.importorskip("tblite")


def _water(r: float = 1.2, angle: float = 120.0):
    a = np.deg2rad(angle)
    return np.array([8, 1, 1]), np.array([[0, 0, 0], [r, 0, 0], [r * np.cos(a), r * np.sin(a), 0]])


def test_water_minimum_has_gfn2_geometry_and_a_vanishing_gradient():
    z, pos = _water()
    out = xtb_optimise(z, pos)
    assert out.converged and out.energy_after < out.energy_before
    oh = np.linalg.norm(out.positions[1:] - out.positions[0], axis=1)
    angle = np.degrees(np.arccos(np.dot(out.positions[1] - out.positions[0], out.positions[2] - out.positions[0])
                                 / oh.prod()))
    assert np.allclose(oh, 0.96, atol=0.02) and 103 < angle < 110  # GFN2-xTB: O-H 0.959 A, 104-107 degrees
    assert xtb_energy(z, out.positions) == pytest.approx(out.energy_after, abs=1e-9)
    # a rigid motion changes nothing
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    assert xtb_energy(z, out.positions @ rot.T + 3.0) == pytest.approx(out.energy_after, abs=1e-7)


def test_ions_and_radicals_take_charge_and_spin():
    z = np.array([8, 1])
    pos = np.array([[0.0, 0, 0], [0.97, 0, 0]])
    hydroxide = xtb_energy(z, pos, charge=-1)
    radical = xtb_energy(z, pos, charge=0)  # odd electron count: one unpaired electron
    assert np.isfinite([hydroxide, radical]).all() and hydroxide != radical
    assert GCONV > 0 and EH_TO_KCAL == pytest.approx(627.5, abs=0.01)


def test_relax_xtb_lowers_every_conformer_and_keeps_the_molecule():
    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](O)C(=O)N"))
    AllChem.EmbedMultipleConfs(mol, 2, randomSeed=3)
    before = conformer_positions(mol).copy()
    outcomes = relax(mol, "xtb")
    assert [o.method for o in outcomes] == ["xtb", "xtb"]
    assert all(o.converged and o.energy_after < o.energy_before for o in outcomes)
    assert not np.allclose(conformer_positions(mol), before)
    Chem.AssignStereochemistryFrom3D(mol)
    assert Chem.FindMolChiralCenters(mol) == [(1, "S")]  # the specified centre kept its hand
    with pytest.raises(ValueError, match="choose mmff or xtb"):
        relax(mol, "uff")
