"""Conformer collections for score-model training: QM9's DFT geometries, or the user's own SDF.

Both come back as :class:`~se3mol.data.qm9.PackedMolecules` with bonds, plus a train/val/test split
of molecule positions and a short description that goes into every checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from se3mol.data.qm9 import QM9, SPLIT_SEED, PackedMolecules, attach_bonds, load_qm9, standard_split
from se3mol.io import read_records

USER_SPLIT_SEED = 0
USER_SPLIT = (0.8, 0.1, 0.1)


def conformer_dataset(spec: str, data: QM9 | None = None,
                      limit: int | None = None) -> tuple[PackedMolecules, dict[str, Tensor], dict[str, Any]]:
    """``(molecules, split, info)`` for ``spec``: ``"qm9"`` or the path of an SDF file of conformers.

    QM9 uses the standard split (training conformers only ever come from its training split). An SDF
    is split 80/10/10 *by molecule* (canonical SMILES, stereo included): all conformers of one molecule
    land in the same split. ``limit`` keeps the first N molecules of each split.
    """
    packed: PackedMolecules
    if spec == "qm9":
        packed = attach_bonds(data if data is not None else load_qm9())
        split = standard_split(len(packed), SPLIT_SEED)
        info = {"dataset": "qm9", "split_seed": SPLIT_SEED}
    else:
        packed, split, info = _sdf_dataset(Path(spec))
    if limit:
        split = {k: v[:limit] for k, v in split.items()}
    info.update({f"n_{k}": int(len(v)) for k, v in split.items()})
    return packed, split, info


def _sdf_dataset(path: Path) -> tuple[PackedMolecules, dict[str, Tensor], dict[str, Any]]:
    if not path.is_file():
        raise ValueError(f"--dataset {path}: no such file (give 'qm9' or an SDF file of conformers)")
    if path.suffix.lower() not in (".sdf", ".sd", ".mol"):
        raise ValueError(f"--dataset {path}: conformer training reads SDF files (with bonds); got {path.suffix!r}")
    mols, keys, skipped = [], [], []
    for rec in read_records([str(path)], "sdf"):
        m = rec.molecule
        if m is None or m.bonds is None or len(m.bonds) == 0 and m.n_atoms > 1:
            skipped.append(f"record {rec.index + 1} ({rec.id}): {rec.error or 'no bonds'}")
            continue
        if 1 not in set(int(z) for z in m.z) and m.n_atoms > 1:
            skipped.append(f"record {rec.index + 1} ({rec.id}): no explicit hydrogens (the score model needs them)")
            continue
        mols.append(m)
        keys.append(rec.smiles or m.name or str(rec.index))
    if skipped:
        import sys

        print(f"{path}: skipped {len(skipped)} unusable record(s):", *skipped[:20], sep="\n  ", file=sys.stderr)
    if len(mols) < 3:
        raise ValueError(f"{path}: {len(mols)} usable conformers; need at least 3 (train, validation, test)")
    packed = _pack(mols, keys)
    unique = sorted(set(keys))
    rng = np.random.default_rng(USER_SPLIT_SEED)
    order = [unique[k] for k in rng.permutation(len(unique))]
    n_train = max(1, round(USER_SPLIT[0] * len(order)))
    n_val = max(1, round(USER_SPLIT[1] * len(order))) if len(order) > 2 else 0
    part = {key: ("train" if k < n_train else "val" if k < n_train + n_val else "test") for k, key in enumerate(order)}
    split = {s: torch.tensor([k for k, key in enumerate(keys) if part[key] == s], dtype=torch.long)
             for s in ("train", "val", "test")}
    if len(split["val"]) == 0:  # too few molecules for a held-out one: validate on training conformers
        split["val"] = split["train"]
    info = {"dataset": str(path), "molecules": len(unique), "conformers": len(mols), "skipped": len(skipped),
            "split": "by molecule 80/10/10", "split_seed": USER_SPLIT_SEED}
    return packed, split, info


def _pack(mols, keys) -> PackedMolecules:
    counts = torch.tensor([m.n_atoms for m in mols], dtype=torch.long)
    return PackedMolecules(
        z=torch.from_numpy(np.concatenate([m.z for m in mols]).astype(np.int8)),
        pos=torch.from_numpy(np.concatenate([m.pos for m in mols]).astype(np.float32)),
        counts=counts, offsets=torch.cumsum(counts, 0) - counts, smiles=list(keys),
        bonds=torch.from_numpy(np.concatenate([m.bonds for m in mols]).astype(np.int16)).reshape(-1, 2),
        bond_orders=torch.from_numpy(np.concatenate([m.bond_orders for m in mols]).astype(np.float32)),
        bond_counts=torch.tensor([len(m.bonds) for m in mols], dtype=torch.long))
