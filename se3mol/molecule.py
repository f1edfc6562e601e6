"""The :class:`Molecule` record: what every reader yields and every graph builder takes.

A Molecule is plain numpy, independent of torch, so readers stay light and picklable.
Positions are in Angstrom.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from se3mol import limits


def symbol(z: int) -> str:
    """The chemical symbol of atomic number ``z`` (``Z<z>`` outside the periodic table). ASE is imported here,
    not at the top, so that training (which never needs a symbol) runs where ASE is not installed.

    >>> symbol(17), symbol(0)
    ('Cl', 'Z0')
    """
    from ase.data import chemical_symbols

    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z{z}"


#: Distance (Angstrom) beyond which an atom with no other atom nearer counts as isolated: covalent and hydrogen
#: bonds are below 2.5 A, fragments embedded apart (``--fragments all``) 4 A apart.
ISOLATED_ATOM = 6.0

# Bond orders as stored in ``Molecule.bond_orders``; aromatic bonds are 1.5.
BOND_TYPES: tuple[float, ...] = (1.0, 2.0, 3.0, 1.5)


@dataclass
class Molecule:
    """One molecule with 3D coordinates.

    Attributes:
        z: atomic numbers ``[N]`` (int64).
        pos: Cartesian coordinates in Angstrom ``[N,3]`` (float64).
        bonds: atom index pairs ``[M,2]`` (int64), each bond once, or ``None`` if unknown.
        bond_orders: bond orders ``[M]`` (1, 2, 3 or 1.5 for aromatic), or ``None``.
        charge: total formal charge.
        name: record title (SDF title line, XYZ comment, SMILES name column).
        smiles: canonical SMILES when known, else ``""``.
        notes: free-text remarks gathered on the way (e.g. "embedded from SMILES with ETKDG+MMFF").
        radical_electrons: unpaired electrons when the input says (SDF, SMILES); ``None`` when unknown (XYZ).
        periodic: the input gave a periodic cell (extxyz ``pbc``, CIF, POSCAR, ...); se3mol treats every record
            as an isolated molecule and ignores the cell, with a warning.

    >>> import numpy as np
    >>> m = Molecule(z=np.array([8, 1, 1]), pos=np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
    >>> m.n_atoms, m.formula
    (3, 'H2O')
    """

    z: np.ndarray
    pos: np.ndarray
    bonds: np.ndarray | None = None
    bond_orders: np.ndarray | None = None
    charge: int = 0
    name: str = ""
    smiles: str = ""
    notes: list[str] = field(default_factory=list)
    radical_electrons: int | None = None
    periodic: bool = False

    def __post_init__(self) -> None:
        self.z = np.asarray(self.z, dtype=np.int64).reshape(-1)
        self.pos = np.asarray(self.pos, dtype=np.float64).reshape(-1, 3)
        if self.bonds is not None:
            self.bonds = np.asarray(self.bonds, dtype=np.int64).reshape(-1, 2)
            if self.bond_orders is None:
                self.bond_orders = np.ones(len(self.bonds))
            self.bond_orders = np.asarray(self.bond_orders, dtype=np.float64).reshape(-1)

    @property
    def n_atoms(self) -> int:
        return int(self.z.shape[0])

    @property
    def n_heavy(self) -> int:
        return int((self.z > 1).sum())

    @property
    def formula(self) -> str:
        """Hill formula (C first, then H, then the rest alphabetically)."""
        counts: dict[str, int] = {}
        for zi in self.z:
            sym = symbol(int(zi))
            counts[sym] = counts.get(sym, 0) + 1
        first = [s for s in ("C", "H") if s in counts] if "C" in counts else []
        order = first + sorted(k for k in counts if k not in first)
        return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order)

    def validate(self, min_distance: float = 0.1) -> None:
        """Raise ``ValueError`` with a chemist-readable message if this molecule cannot be scored.

        Checks: at least one atom and no more than the limit (:mod:`se3mol.limits`, checked first), known
        elements, finite coordinates, no two atoms closer than ``min_distance`` Angstrom (memory linear in the
        atoms), and bond indices within range.
        """
        n = self.n_atoms
        if n == 0:
            raise ValueError("molecule has no atoms")
        limits.check_atoms(n)
        if self.pos.shape != (n, 3):
            raise ValueError(f"expected {n} coordinates, got array of shape {self.pos.shape}")
        bad = [int(zi) for zi in self.z if zi < 1 or zi > 118]
        if bad:
            raise ValueError(f"unknown element(s) with atomic number {sorted(set(bad))}")
        if not np.isfinite(self.pos).all():
            atoms = np.where(~np.isfinite(self.pos).all(axis=1))[0] + 1
            raise ValueError(f"non-finite (NaN or inf) coordinates for atom(s) {atoms[:5].tolist()}")
        if n > 1:
            i, j, dist = closest_pair(self.pos)
            if dist < min_distance:
                raise ValueError(
                    f"atoms {min(i, j) + 1} and {max(i, j) + 1} are {dist:.3f} A apart "
                    f"(coincident atoms; minimum is {min_distance} A)"
                )
        if self.bonds is not None and len(self.bonds) and (self.bonds.min() < 0 or self.bonds.max() >= n):
            raise ValueError("bond refers to an atom index outside the molecule")

    def physical_warnings(self, isolated: float = ISOLATED_ATOM) -> list[str]:
        """What makes this record an odd input for a model of molecules, though it can be scored: a periodic
        cell, a lone atom, or atoms further than ``isolated`` Angstrom from every other atom (not one molecule:
        a unit slip, atoms 100,000 A apart, or fragments far apart)."""
        out = ["periodic cell (pbc) in the input, ignored: scored as one isolated molecule"] if self.periodic else []
        if self.n_atoms == 1:
            return [*out, "a single atom: no bonds or geometry; models of molecules were not trained on lone atoms"]
        d, _ = nearest_distances(self.pos)
        far = np.flatnonzero(d > isolated)
        if len(far):
            which = ", ".join(str(int(k) + 1) for k in far[:5]) + (" ..." if len(far) > 5 else "")
            out.append(f"{len(far)} atom(s) ({which}) more than {isolated:g} A from every other atom (up to "
                       f"{d.max():.4g} A): not one molecule? (coordinates in Angstrom expected)")
        return out

    def is_flat(self, tol: float = 1e-3) -> bool:
        """True when all coordinates lie in a plane and z is zero: a 2D depiction, not a 3D geometry.

        A planar molecule drawn in 3D (benzene) is legitimately flat, so this only flags the
        signature of 2D depictions: every z coordinate zero, with at least 3 atoms.
        """
        return self.n_atoms >= 3 and bool(np.all(np.abs(self.pos[:, 2]) < tol))


def nearest_distances(pos: np.ndarray, max_bytes: int = 64 * 2**20) -> tuple[np.ndarray, np.ndarray]:
    """Each point's distance to its nearest other point ``[N]`` and that point's index ``[N]`` (N >= 2), in
    memory linear in N: a k-d tree for large N (SciPy comes with ASE), else blocks of rows of at most
    ~``max_bytes`` each, never ``N x N`` at once (a 50,000-atom frame would need 60 GB).

    >>> d, j = nearest_distances(np.array([[0.0, 0, 0], [5, 0, 0], [0, 0.5, 0]]))
    >>> d.tolist(), j.tolist()
    ([0.5, 5.0, 0.5], [2, 0, 0])
    """
    n = pos.shape[0]
    if n > 2000:
        try:
            from scipy.spatial import cKDTree
        except ImportError:
            pass
        else:
            dist, idx = cKDTree(pos).query(pos, k=2)  # [N,2]: each point itself, then its nearest neighbour
            return dist[:, 1], idx[:, 1]
    block = max(1, max_bytes // (32 * n))  # [block,N,3] differences and [block,N] distances, float64
    best, where = np.empty(n), np.empty(n, dtype=np.int64)
    for start in range(0, n, block):
        d = np.linalg.norm(pos[start:start + block, None, :] - pos[None, :, :], axis=-1)  # [b,N]
        rows = np.arange(d.shape[0])
        d[rows, start + rows] = np.inf
        where[start:start + block] = np.argmin(d, axis=1)
        best[start:start + block] = d[rows, where[start:start + block]]
    return best, where


def closest_pair(pos: np.ndarray, max_bytes: int = 64 * 2**20) -> tuple[int, int, float]:
    """The two closest points of ``pos [N,3]`` (N >= 2) and their distance (:func:`nearest_distances`).

    >>> closest_pair(np.array([[0.0, 0, 0], [5, 0, 0], [0, 0.5, 0]]))
    (0, 2, 0.5)
    """
    d, j = nearest_distances(pos, max_bytes)
    i = int(np.argmin(d))
    return min(i, int(j[i])), max(i, int(j[i])), float(d[i])


def check_elements(z: Iterable[int], known: Iterable[int], whose: str = "the model's", hint: str = "") -> None:
    """Refuse the elements of ``z`` that a model was not trained on: the one check of predict, the conformer
    methods, the score sampler and the element embeddings.

    Raises:
        ValueError: ``element(s) Cl not in <whose> training set (knows H, C, N, O, F)``, then ``; <hint>``.

    >>> check_elements([6, 1, 17], [1, 6, 7, 8, 9], "the score model's")
    Traceback (most recent call last):
    ...
    ValueError: element(s) Cl not in the score model's training set (knows H, C, N, O, F)
    """
    known = {int(e) for e in known}
    unknown = sorted({int(e) for e in z} - known)
    if unknown:
        names = ", ".join(symbol(e) for e in unknown)
        allowed = ", ".join(symbol(e) for e in sorted(known))
        raise ValueError(f"element(s) {names} not in {whose} training set (knows {allowed})"
                         + (f"; {hint}" if hint else ""))
