"""``--relax``: minimisation of finished conformers, holding the stereo the SMILES specifies.

``--relax mmff`` (or plain ``--relax``): MMFF94 (RDKit). ``--relax xtb``: MMFF94 first (cheap, and it brings a
sampled conformer near a minimum), then GFN2-xTB (:mod:`se3mol.conformers.xtb`, needs the optional ``tblite``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers, rdMolTransforms
from rdkit.Geometry import Point3D

from se3mol.chem import rdkit_messages
from se3mol.conformers.stereo import StereoTargets, stereo_targets, stereo_wrong

__all__ = ["MMFF_MAX_ITERS", "RELAX_METHODS", "RESTRAINT_FORCE", "RESTRAINT_MARGIN", "RelaxOutcome", "relax",
           "relax_mmff", "relax_xtb"]

#: ``--relax`` methods: name -> what it does (the CLI's help and its choices).
RELAX_METHODS = {"mmff": "MMFF94 (RDKit)", "xtb": "MMFF94, then GFN2-xTB (needs tblite: pip install 'se3mol[xtb]')"}

#: MMFF minimisation steps per conformer for ``--relax`` (RDKit's default is 200, often too few to converge).
MMFF_MAX_ITERS = 2000
#: ``--relax`` restraints once free minimisation inverted a stereo element: flat-bottomed dihedral restraints
#: (kcal/mol/degree^2) that keep the signs RDKit reads the elements by, at least this many degrees from 0 and 180.
RESTRAINT_FORCE, RESTRAINT_MARGIN = 1.0, 15.0


@dataclass
class RelaxOutcome:
    """What MMFF94 minimisation did to one conformer (energies in kcal/mol).

    ``stereo_restrained`` is true when a free minimisation inverted a stereo element the SMILES specifies and the
    conformer had right, so it was minimised again from its start with the elements it had right restrained.
    """

    converged: bool
    energy_before: float
    energy_after: float
    stereo_restrained: bool = False
    method: str = "mmff"


def relax(mol: Chem.Mol, method: str = "mmff") -> list[RelaxOutcome]:
    """Minimise every conformer of ``mol`` in place with a :data:`RELAX_METHODS` method, one outcome each.

    Raises:
        ValueError: an unknown method, or one that cannot treat the molecule (e.g. no MMFF94 parameters).
        se3mol.conformers.xtb.XtbUnavailableError: ``xtb`` without ``tblite`` installed.
    """
    if method == "mmff":
        return relax_mmff(mol)
    if method == "xtb":
        return relax_xtb(mol)
    raise ValueError(f"unknown relaxation {method!r}: choose {' or '.join(RELAX_METHODS)}")


def relax_xtb(mol: Chem.Mol) -> list[RelaxOutcome]:
    """MMFF94 minimisation (:func:`relax_mmff`, holding specified stereo) where MMFF94 has parameters, then
    GFN2-xTB minimisation of every conformer of ``mol`` (in place). Energies are GFN2-xTB's, in Eh: before is the
    conformer as given, after the GFN2-xTB minimum; ``stereo_restrained`` reports the MMFF94 stage.

    Raises:
        se3mol.conformers.xtb.XtbUnavailableError: ``tblite`` is not installed (checked before any work).
        ValueError: GFN2-xTB failed on a conformer (e.g. atoms on top of each other).
    """
    from se3mol.conformers.xtb import require_tblite, xtb_energy, xtb_optimise

    require_tblite()
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    charge = Chem.GetFormalCharge(mol)
    before = [xtb_energy(z, conf.GetPositions(), charge) for conf in mol.GetConformers()]
    try:
        restrained = [r.stereo_restrained for r in relax_mmff(mol)]
    except ValueError:  # no MMFF94 parameters: GFN2-xTB from the conformers as given
        restrained = [False] * mol.GetNumConformers()
    outcomes = []
    for conf, e0, held in zip(mol.GetConformers(), before, restrained, strict=True):
        out = xtb_optimise(z, conf.GetPositions(), charge)
        _set_positions(conf, out.positions)
        outcomes.append(RelaxOutcome(converged=out.converged, energy_before=e0, energy_after=out.energy_after,
                                     stereo_restrained=held, method="xtb"))
    return outcomes


def relax_mmff(mol: Chem.Mol, max_iters: int = MMFF_MAX_ITERS) -> list[RelaxOutcome]:
    """Minimise every conformer of ``mol`` with MMFF94 (RDKit), one outcome per conformer.

    Only the coordinates of ``mol`` change: MMFF typing runs on a copy, because RDKit's MMFF set-up
    rewrites aromaticity flags to the MMFF model, which would change the molecule written out (and stop it
    matching the same molecule read elsewhere).

    Stereo the SMILES specifies is kept: a distorted centre can fall to the other hand in minimisation. When a
    stereo element that was right before minimisation is wrong after it, the conformer starts again from its
    input coordinates and is minimised with dihedral restraints that hold the sign of every element it had
    right (:func:`_stereo_restraint`; holding only the inverted ones can let another one go), then minimised
    freely from there; if that inverts one again, the restrained minimum is kept. Either way
    ``stereo_restrained`` says so, and the energies are those of plain MMFF94.

    Raises:
        ValueError: if MMFF94 has no parameters for the molecule.
    """
    work = Chem.Mol(mol)
    with rdkit_messages():
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(work)
    if props is None:
        raise ValueError("MMFF94 has no parameters for this molecule; run without --relax")
    targets = stereo_targets(mol)

    def minimise(cid: int, restrain: Sequence[tuple[tuple[int, int, int, int], float, float]] = ()) -> bool:
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(work, props, confId=cid)
        for (a, b, c, d), lo, hi in restrain:
            ff.MMFFAddTorsionConstraint(a, b, c, d, False, lo, hi, RESTRAINT_FORCE)
        return ff.Minimize(maxIts=max_iters) == 0

    outcomes = []
    for conf, work_conf in zip(mol.GetConformers(), work.GetConformers(), strict=True):
        cid = work_conf.GetId()
        start = work_conf.GetPositions()
        # plain MMFF94: minimises, and scores
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(work, props, confId=cid)
        before = ff.CalcEnergy()
        converged = ff.Minimize(maxIts=max_iters) == 0
        restrained = False
        if len(targets):
            wrong_before, wrong_after = stereo_wrong(np.stack([start, work_conf.GetPositions()]), targets)
            right = np.flatnonzero(~wrong_before)
            if wrong_after[right].any():
                restrained = True
                _set_positions(work_conf, start)
                converged = minimise(cid, [_stereo_restraint(work_conf, targets, int(k)) for k in right])
                held = work_conf.GetPositions()
                free_converged = minimise(cid)
                if stereo_wrong(work_conf.GetPositions()[None], targets)[0][right].any():
                    _set_positions(work_conf, held)
                else:
                    converged = free_converged
        after = ff.CalcEnergy(work_conf.GetPositions().ravel().tolist())
        outcomes.append(RelaxOutcome(converged=converged, energy_before=float(before), energy_after=float(after),
                                     stereo_restrained=restrained))
        _set_positions(conf, work_conf.GetPositions())
    return outcomes


def _set_positions(conf: Chem.Conformer, xyz: np.ndarray) -> None:
    for i, p in enumerate(xyz.tolist()):
        conf.SetAtomPosition(i, Point3D(*p))


def _stereo_restraint(conf: Chem.Conformer, targets: StereoTargets,
                      k: int) -> tuple[tuple[int, int, int, int], float, float]:
    """Dihedral restraint ``(atoms, lo, hi)`` (degrees) that keeps stereo element ``k`` as conformer ``conf`` has it.

    A centre's dihedral ``n0-centre-n1-n2`` has the sign of its volume read from the centre (RDKit's reading),
    so holding the sign the conformer has, away from 0 and 180 degrees, holds the hand. A double bond's
    dihedral is held on its side (cis or trans).
    """
    m = RESTRAINT_MARGIN
    if k < len(targets.centers):
        n0, n1, n2 = (int(a) for a in targets.neighbors[k])
        atoms = (n0, int(targets.centers[k]), n1, n2)
        phi = rdMolTransforms.GetDihedralDeg(conf, *atoms)
        return (atoms, m, 180.0 - m) if phi > 0 else (atoms, m - 180.0, -m)
    a, b, c, d = (int(x) for x in targets.bonds[k - len(targets.centers)])
    phi = rdMolTransforms.GetDihedralDeg(conf, a, b, c, d)
    return ((a, b, c, d), -90.0 + m, 90.0 - m) if abs(phi) < 90 else ((a, b, c, d), 90.0 + m, 270.0 - m)
