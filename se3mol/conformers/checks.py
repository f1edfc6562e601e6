"""Flaws of conformers, checked in one place: a bond torn apart, atoms on top of each other, and stereo the
SMILES specifies the wrong way round.

The same checks serve three steps: the sampler samples a flawed conformer again
(:meth:`~se3mol.conformers.sampler.ScoreSampler.sample`), oversampling ranks flawed conformers last
(:func:`~se3mol.conformers.select.select_conformers`), and ``se3mol conformers`` names the flaws of every
conformer it writes (SD properties ``stereo_mismatch``, ``stretched_bonds``, ``clashes``). The geometric
tests themselves are :mod:`se3mol.conformers.geometry` and :mod:`se3mol.conformers.stereo`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem

from se3mol.conformers.geometry import clashes, nonbonded_pairs, stretched_bonds
from se3mol.conformers.stereo import StereoTargets, stereo_mismatches, stereo_targets, stereo_wrong

__all__ = ["FINDINGS", "ConformerChecks"]

#: Each check's name, as a field of :class:`~se3mol.conformers.ConformerResult`, and what a summary note says
#: of the conformers it flags ("N of K conformers ..."), in the order the notes list them.
FINDINGS: dict[str, str] = {
    "stereo": "do not have the stereo the SMILES specifies (SD property stereo_mismatch)",
    "stretched": "have a bond stretched beyond any conformer's (SD property stretched_bonds)",
    "clashes": "have atoms closer than half their van der Waals distance (SD property clashes)",
}
# How many flagged atom pairs a conformer's description names before it counts the rest.
_MOST_NAMED = 3


@dataclass(frozen=True)
class ConformerChecks:
    """The flaw checks of one molecule, set up once for any number of its conformers ``pos [K,N,3]``.

    Attributes:
        z: atomic numbers ``[N]``.
        bonds: the molecule's bonds ``[B,2]``.
        pairs: atom pairs 3 or more bonds apart ``[P,2]``, the ones that may clash.
        stereo: the stereo elements the SMILES specifies (``None``: stereo is not checked).
        symbols: atom labels as a chemist numbers them, ``"C1"``, ``"H7"``, ...

    >>> from se3mol.chem import conformer_positions, rdkit_from_smiles
    >>> from rdkit.Chem import AllChem
    >>> mol = rdkit_from_smiles("C[C@H](O)CC", add_hs=True); _ = AllChem.EmbedMolecule(mol, randomSeed=1)
    >>> ConformerChecks.of(mol).flawed(conformer_positions(mol)).tolist()
    [False]
    """

    z: np.ndarray
    bonds: np.ndarray
    pairs: np.ndarray
    stereo: StereoTargets | None
    symbols: tuple[str, ...]

    @classmethod
    def of(cls, mol: Chem.Mol, stereo: bool = True) -> ConformerChecks:
        """The checks of ``mol`` (explicit hydrogens); ``stereo=False`` leaves stereo unchecked."""
        atoms = list(mol.GetAtoms())
        bonds = np.array([[b.GetBeginAtomIdx(), b.GetEndAtomIdx()] for b in mol.GetBonds()], dtype=np.int64)
        return cls(z=np.array([a.GetAtomicNum() for a in atoms], dtype=np.int64), bonds=bonds.reshape(-1, 2),
                   pairs=nonbonded_pairs(mol), stereo=stereo_targets(mol) if stereo else None,
                   symbols=tuple(f"{a.GetSymbol()}{a.GetIdx() + 1}" for a in atoms))

    def stretched(self, pos: np.ndarray) -> np.ndarray:
        """Which bonds of each conformer are torn ``[K,B]`` (:func:`~se3mol.conformers.geometry.stretched_bonds`)."""
        return stretched_bonds(pos, self.z, self.bonds)

    def clashes(self, pos: np.ndarray) -> np.ndarray:
        """Which atom pairs of each conformer overlap ``[K,P]`` (:func:`~se3mol.conformers.geometry.clashes`)."""
        return clashes(pos, self.z, self.pairs)

    def flawed(self, pos: np.ndarray) -> np.ndarray:
        """Which conformers of ``pos [K,N,3]`` have any flaw ``[K]`` (bool)."""
        bad = np.asarray(self.stretched(pos).any(-1) | self.clashes(pos).any(-1))  # [K]
        if self.stereo:
            bad |= stereo_wrong(pos, self.stereo).any(-1)
        return bad

    def describe(self, pos: np.ndarray) -> dict[str, list[list[str]]]:
        """Per check of :data:`FINDINGS`, per conformer of ``pos [K,N,3]``, its flaws named for a chemist.

        ``stereo``: the specified elements it has the wrong way round (``"C3 (CW)"``), a list for every conformer
        whenever the SMILES specifies any. ``stretched``: its torn bonds, furthest first (``"C1-C2 (2.41 A)"``);
        ``clashes``: its overlapping pairs, closest first (``"C1...C7 (0.62 A)"``); both ``[]`` when no
        conformer has one.
        """
        stereo = stereo_mismatches(pos, self.stereo) if self.stereo and len(pos) else []
        return {"stereo": stereo,
                "stretched": self._name_pairs(pos, self.bonds, self.stretched(pos), "-", closest_first=False),
                "clashes": self._name_pairs(pos, self.pairs, self.clashes(pos), "...", closest_first=True)}

    def _name_pairs(self, pos: np.ndarray, pairs: np.ndarray, bad: np.ndarray, sep: str,
                    closest_first: bool) -> list[list[str]]:
        """Per conformer, the flagged atom ``pairs [P,2]`` (``bad [K,P]``) named with their distance, the
        closest (or furthest) first, then how many more; ``[]`` if no conformer has one."""
        if not len(pairs) or not bad.any():
            return []
        named = []
        for x, row in zip(pos, bad, strict=True):
            flagged = pairs[row]
            d = np.linalg.norm(x[flagged[:, 0]] - x[flagged[:, 1]], axis=-1)
            order = np.argsort(d if closest_first else -d)
            names = [f"{self.symbols[flagged[k, 0]]}{sep}{self.symbols[flagged[k, 1]]} ({d[k]:.2f} A)"
                     for k in order[:_MOST_NAMED]]
            named.append(names + ([f"{len(order) - _MOST_NAMED} more"] if len(order) > _MOST_NAMED else []))
        return named
