"""Stereochemistry asked for by a SMILES, as geometric signs a conformer must have.

A tetrahedral centre (``[C@H]``, ``[C@@]``) is a sign of the volume ``v0 . (v1 x v2)`` of the vectors from
the centre to its first three neighbours (in RDKit's bond order): RDKit's ``CCW`` tag is a positive volume,
``CW`` a negative one. This is how RDKit perceives the tag from 3D (``AssignStereochemistryFrom3D``), so it
is the reading that defines the tag, and the one :func:`stereo_mismatches` checks. It disagrees with the
handedness of the tetrahedron the four neighbours span only when the centre lies outside that tetrahedron:
in strained cages with an inverted bridgehead (two of QM9's first 200 test molecules, in their DFT
geometry), or in a sampled centre pushed out through a face. The second kind matters: it reads right from the
centre but relaxes (MMFF) to the other hand. So :func:`stereo_penalty` asks for both readings, which agree
at every ordinary centre. A three-coordinate centre (a sulfoxide) has only the first. A double
bond (``C/C=C/C``) is the sign of the cosine of the dihedral between its two stereo atoms: ``Z``/``cis``
positive, ``E``/``trans`` negative (RDKit's stereo atoms of an ``E``/``Z`` bond are the CIP-highest
neighbours). Both conventions are checked against RDKit's own ETKDG embeddings in the tests.

Only stereo the SMILES *specifies* is a target; unspecified centres and bonds are left free.

The score model is SE(3)- but not reflection-equivariant, and it is not told the stereo tags, so left
alone it samples either hand. :func:`stereo_penalty` is a smooth penalty on the wrong sign (zero at the
right one, with a margin) whose gradient the sampler adds to the score, like the chiral-volume terms of
distance geometry; :func:`stereo_mismatches` checks the finished conformers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rdkit import Chem
from torch import Tensor

_TETRAHEDRAL = {Chem.ChiralType.CHI_TETRAHEDRAL_CCW: 1.0, Chem.ChiralType.CHI_TETRAHEDRAL_CW: -1.0}
_DOUBLE = {Chem.BondStereo.STEREOZ: 1.0, Chem.BondStereo.STEREOCIS: 1.0,
           Chem.BondStereo.STEREOE: -1.0, Chem.BondStereo.STEREOTRANS: -1.0}
# Penalty margins: a centre's normalised volumes should reach +-0.3 (an ideal tetrahedron has 0.77 read
# from the centre, 0.71 from the neighbours),
# a double bond's dihedral cosine +-0.5 (60 degrees from the wrong side).
VOLUME_MARGIN, DIHEDRAL_MARGIN = 0.3, 0.5


@dataclass(frozen=True)
class StereoTargets:
    """The specified stereo elements of one molecule.

    Attributes:
        centers: atom index of each tetrahedral centre ``[C]``.
        neighbors: its first three neighbours in RDKit's bond order ``[C,3]``.
        fourth: its fourth neighbour ``[C]`` (-1 for a three-coordinate centre).
        center_sign: the sign its volume must have ``[C]`` (+1 for CCW, -1 for CW).
        bonds: ``(a, b, c, d)`` for each stereo double bond ``b=c`` with stereo atoms ``a`` and ``d`` ``[D,4]``.
        bond_sign: +1 if ``a`` and ``d`` must be cis, -1 if trans ``[D]``.
        labels: a readable name of every element, centres first (``"C3 (CW)"``, ``"C1=C2 (E)"``).
    """

    centers: np.ndarray
    neighbors: np.ndarray
    fourth: np.ndarray
    center_sign: np.ndarray
    bonds: np.ndarray
    bond_sign: np.ndarray
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.centers) + len(self.bonds)


def stereo_targets(mol: Chem.Mol) -> StereoTargets:
    """The tetrahedral centres and double bonds whose configuration ``mol`` specifies (see the module docstring)."""
    centers, neighbors, fourth, csign, labels = [], [], [], [], []
    for atom in mol.GetAtoms():
        sign = _TETRAHEDRAL.get(atom.GetChiralTag())
        nbrs = [b.GetOtherAtomIdx(atom.GetIdx()) for b in atom.GetBonds()]
        if sign is None or len(nbrs) < 3:
            continue
        centers.append(atom.GetIdx())
        neighbors.append(nbrs[:3])
        fourth.append(nbrs[3] if len(nbrs) > 3 else -1)
        csign.append(sign)
        labels.append(f"{atom.GetSymbol()}{atom.GetIdx() + 1} ({'CCW' if sign > 0 else 'CW'})")
    bonds, bsign, blabels = [], [], []
    for bond in mol.GetBonds():
        sign = _DOUBLE.get(bond.GetStereo())
        stereo_atoms = list(bond.GetStereoAtoms())
        if sign is None or len(stereo_atoms) != 2:
            continue
        a, d = stereo_atoms
        b, c = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if mol.GetBondBetweenAtoms(a, b) is None:
            b, c = c, b
        bonds.append([a, b, c, d])
        bsign.append(sign)
        sym = mol.GetAtomWithIdx
        blabels.append(f"{sym(b).GetSymbol()}{b + 1}={sym(c).GetSymbol()}{c + 1} ({'Z' if sign > 0 else 'E'})")
    return StereoTargets(
        centers=np.asarray(centers, dtype=np.int64), neighbors=np.asarray(neighbors, dtype=np.int64).reshape(-1, 3),
        fourth=np.asarray(fourth, dtype=np.int64),
        center_sign=np.asarray(csign), bonds=np.asarray(bonds, dtype=np.int64).reshape(-1, 4),
        bond_sign=np.asarray(bsign), labels=tuple(labels + blabels))


def stereo_signs(pos: Tensor, targets: StereoTargets) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised centre volumes read from the centre ``[..., C]`` and from the neighbours' tetrahedron
    ``[..., C]`` (the same as the first for a three-coordinate centre), and double-bond dihedral cosines
    ``[..., D]``, of ``pos [..., N, 3]``."""
    centers = torch.as_tensor(targets.centers, device=pos.device)
    nbrs = torch.as_tensor(targets.neighbors, device=pos.device)
    fourth = torch.as_tensor(targets.fourth, device=pos.device)
    first = pos[..., nbrs, :]  # [...,C,3,3]
    center_volume = _unit_volume(first - pos[..., centers, None, :])
    apex = torch.where((fourth >= 0)[:, None], pos[..., fourth.clamp(min=0), :], pos[..., centers, :])  # [...,C,3]
    neighbor_volume = _unit_volume(first - apex[..., None, :])
    q = torch.as_tensor(targets.bonds, device=pos.device)
    a, b, c, d = (pos[..., q[:, k], :] for k in range(4))  # [...,D,3] each
    axis = c - b
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    u = (a - b) - ((a - b) * axis).sum(-1, keepdim=True) * axis
    w = (d - c) - ((d - c) * axis).sum(-1, keepdim=True) * axis
    cosine = (u * w).sum(-1) / (u.norm(dim=-1) * w.norm(dim=-1)).clamp(min=1e-6)  # [...,D]
    return center_volume, neighbor_volume, cosine


def _unit_volume(v: Tensor) -> Tensor:
    """``v0 . (v1 x v2)`` of the three vectors ``v [..., 3, 3]`` scaled to unit length."""
    v = v / v.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    return (v[..., 0, :] * torch.linalg.cross(v[..., 1, :], v[..., 2, :])).sum(-1)


def stereo_penalty(pos: Tensor, targets: StereoTargets) -> Tensor:
    """Penalty ``[...]`` on the wrong-handed elements of ``pos [..., N, 3]``: zero when every sign is right
    with its margin, and growing quadratically with the distance to it."""
    center_volume, neighbor_volume, cosine = stereo_signs(pos, targets)
    cs = torch.as_tensor(targets.center_sign, dtype=pos.dtype, device=pos.device)
    bs = torch.as_tensor(targets.bond_sign, dtype=pos.dtype, device=pos.device)
    return (torch.relu(VOLUME_MARGIN - cs * center_volume).pow(2).sum(-1)
            + torch.relu(VOLUME_MARGIN - cs * neighbor_volume).pow(2).sum(-1)
            + torch.relu(DIHEDRAL_MARGIN - bs * cosine).pow(2).sum(-1))


def stereo_wrong(pos: np.ndarray | Tensor, targets: StereoTargets) -> np.ndarray:
    """Which stereo elements each conformer of ``pos [K,N,3]`` has the wrong way round ``[K, C+D]`` (bool,
    numbered as ``targets.labels``). Centres are read from the centre, as RDKit perceives tags from 3D."""
    pos = torch.as_tensor(np.asarray(pos), dtype=torch.float64)
    volume, _, cosine = stereo_signs(pos, targets)
    return torch.cat([volume * torch.as_tensor(targets.center_sign) <= 0,
                      cosine * torch.as_tensor(targets.bond_sign) <= 0], dim=-1).numpy()


def stereo_mismatches(pos: np.ndarray | Tensor, targets: StereoTargets) -> list[list[str]]:
    """For each conformer of ``pos [K,N,3]``, the labels of the stereo elements it has the wrong way round."""
    return [[targets.labels[j] for j in np.flatnonzero(row)] for row in stereo_wrong(pos, targets)]
