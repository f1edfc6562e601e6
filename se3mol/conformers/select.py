"""Oversampling: which ``n`` of ``K`` sampled conformers to keep, the least strained and then the most diverse."""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

from se3mol.chem import rdkit_messages, with_conformers
from se3mol.conformers.checks import ConformerChecks
from se3mol.conformers.metrics import heavy_atom_rmsd_matrix, split_conformers

__all__ = ["select_conformers"]


def select_conformers(mol: Chem.Mol, pos: np.ndarray, n: int) -> tuple[np.ndarray, list[str]]:
    """Which ``n`` of the conformers ``pos [K,N,3]`` (atoms of ``mol``, explicit hydrogens) to keep: the least
    strained, then the most diverse. Returns them in their original order, and notes.

    1. Rank by MMFF94 energy as sampled (no minimisation), which for a sampled conformer is dominated by strain:
       distorted rings, eclipsed or crowded groups, bonds and angles off. Conformers the output would flag rank
       last: a stereo element the SMILES specifies the wrong way round, a stretched bond or overlapping atoms
       (:class:`~se3mol.conformers.checks.ConformerChecks`).
    2. Drop the most strained half of the surplus, rounded down (of 12 for 10, the most strained 1; of 15, 2),
       and every flawed conformer while enough whole ones remain.
    3. From the rest, farthest-point selection on heavy-atom best RMSD (the coverage metric's distance): first
       the least strained, then each time the one farthest from those kept. Near-duplicates waste places.

    On 300 QM9 validation molecules with stereo-free SMILES, sampling 12 for 10 this way is expected to cover
    84.2% of the DFT geometries against 82.3% for 10 plain samples (+1.9 +- 0.2 points, paired) and 83.6% for the
    10 of lowest energy; of 15, 86.0% (+3.7); ranking by minimised energy instead loses coverage
    (``benchmarks/conformers/results/conformer_selection_diverse.md``). Raises nothing: without MMFF94 parameters the
    conformers are not ranked by strain (step 2 keeps them all), with a note.
    """
    k = len(pos)
    if k <= n:
        return pos, []
    notes: list[str] = []
    work = Chem.Mol(mol)  # MMFF typing rewrites aromaticity flags; keep them off the molecule written out
    with rdkit_messages():
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(work)
    if props is None:
        energy = np.zeros(k)
        notes.append(f"kept {n} of {k} samples without ranking them by strain: MMFF94 has no parameters for this "
                     "molecule")
    else:
        work.RemoveAllConformers()
        work.AddConformer(Chem.Conformer(mol.GetNumAtoms()), assignId=True)
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(work, props)
        energy = np.array([ff.CalcEnergy(x.ravel().tolist()) for x in pos])
        energy[~np.isfinite(energy)] = np.inf
    checks = ConformerChecks.of(mol)
    flawed = checks.flawed(pos)  # [K]
    order = np.lexsort((energy, flawed))  # whole conformers first, each group least strained first
    whole = int((~flawed).sum())
    if props is not None:
        order = order[:n + (k - n + 1) // 2]
    if whole < n:  # every whole conformer is kept; the least strained flawed ones fill the places left
        return pos[np.sort(order[:n])], notes
    order = order[:whole]  # flawed ones sort last: drop those left in the ranking
    if len(order) > n and (checks.z > 1).sum() >= 2:
        single = split_conformers(with_conformers(mol, pos[order]))
        dist, _ = heavy_atom_rmsd_matrix(single, single)
        chosen = [0]
        nearest = np.asarray(dist[0], dtype=np.float64).copy()
        nearest[0] = -1.0
        while len(chosen) < n:
            pick = int(np.argmax(nearest))
            chosen.append(pick)
            nearest = np.minimum(nearest, dist[pick])
            nearest[chosen] = -1.0
        order = order[chosen]
    return pos[np.sort(order[:n])], notes
