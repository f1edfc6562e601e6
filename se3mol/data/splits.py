"""Train / validation / test splits of a labelled data set: random, scaffold, or read from a column.

Every split is a dict of int64 index tensors ``{"train": [Mt], "val": [Mv], "test": [Ms]}``, disjoint,
covering each molecule at most once, and a pure function of its inputs and seed (stored in every run).

>>> s = random_split(10, (0.8, 0.1, 0.1), seed=0)
>>> [len(s[k]) for k in ("train", "val", "test")]
[8, 1, 1]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

SPLIT_NAMES = ("train", "val", "test")
# Values a split column may hold, lower-cased, and the part each names.
_COLUMN_VALUES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "dev": "val", "test": "test", "testing": "test"}


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative fractions (train, val, test) that sum to 1 (within 1e-6)."""
    f = [float(x) for x in fractions]
    if len(f) != 3 or any(x < 0 for x in f) or abs(sum(f) - 1) > 1e-6 or f[0] == 0:
        raise ValueError(f"split fractions {list(fractions)}: give three non-negative numbers for train, val and "
                         "test that sum to 1, with a positive train fraction (e.g. 0.8 0.1 0.1)")
    return f[0], f[1], f[2]


def _sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Part sizes for ``n`` molecules: val and test rounded, at least one each where asked for."""
    _, fv, ft = fractions
    n_val = max(round(n * fv), 1 if fv > 0 else 0)
    n_test = max(round(n * ft), 1 if ft > 0 else 0)
    return n - n_val - n_test, n_val, n_test


def random_split(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, Tensor]:
    """A seeded random split of molecules ``0..n-1``."""
    fractions = check_fractions(fractions)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n)).long()
    a, b, _ = _sizes(n, fractions)
    return {"train": perm[:a], "val": perm[a:a + b], "test": perm[a + b:]}


def murcko_scaffold(smiles: str) -> str:
    """The Bemis-Murcko scaffold (RDKit) of ``smiles``, ``""`` for acyclic molecules, ``smiles`` if unparsable."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return smiles
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def scaffold_split(smiles: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> dict[str, Tensor]:
    """Molecules sharing a Bemis-Murcko scaffold stay in one part (chemprop's balanced scaffold split).

    Scaffold sets larger than half the validation or test size go to training first (so the held-out
    parts are not one big scaffold); the others are shuffled with ``seed``; then sets fill training,
    validation and test in that order. Molecules without a SMILES are each their own scaffold.
    """
    fractions = check_fractions(fractions)
    n = len(smiles)
    n_train, n_val, n_test = _sizes(n, fractions)
    groups: dict[str, list[int]] = {}
    for k, s in enumerate(smiles):
        key = murcko_scaffold(s) if s else f"\0{k}"
        groups.setdefault(key, []).append(k)
    sets = list(groups.values())
    big = [g for g in sets if len(g) > n_val / 2 or len(g) > n_test / 2]
    small = [g for g in sets if not (len(g) > n_val / 2 or len(g) > n_test / 2)]
    rng = np.random.default_rng(seed)
    big.sort(key=len, reverse=True)
    small = [small[i] for i in rng.permutation(len(small))]
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for g in big + small:
        if len(parts["train"]) + len(g) <= n_train:
            parts["train"] += g
        elif len(parts["val"]) + len(g) <= n_val:
            parts["val"] += g
        else:
            parts["test"] += g
    return {k: torch.tensor(sorted(v), dtype=torch.long) for k, v in parts.items()}


def column_split(values: Sequence[object], column: str) -> dict[str, Tensor]:
    """The split a column gives: ``train``/``val``/``test`` per molecule (also ``valid``, ``validation``...).

    Raises:
        ValueError: naming the first molecules whose value is not one of those.
    """
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    bad = []
    for k, v in enumerate(values):
        part = _COLUMN_VALUES.get(str(v).strip().lower()) if v is not None else None
        if part is None:
            bad.append((k, v))
        else:
            parts[part].append(k)
    if bad:
        shown = ", ".join(f"molecule {k + 1}: {v!r}" for k, v in bad[:5])
        raise ValueError(f"split column {column!r} must say train, val or test for every molecule; "
                         f"{len(bad)} do not ({shown})")
    return {k: torch.tensor(v, dtype=torch.long) for k, v in parts.items()}


def make_split(method: str, n: int, smiles: Sequence[str], columns: Mapping[str, Sequence[object]] | None = None,
               fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, Tensor]:
    """Split by ``method``: ``random``, ``scaffold`` or ``column:NAME`` (NAME a field of every record)."""
    if method == "random":
        return random_split(n, fractions, seed)
    if method == "scaffold":
        return scaffold_split(smiles, fractions, seed)
    if method.startswith("column:"):
        name = method.split(":", 1)[1]
        if not columns or name not in columns:
            raise ValueError(f"--split {method}: no field {name!r} in the data")
        return column_split(columns[name], name)
    raise ValueError(f"unknown split {method!r}; choose random, scaffold or column:NAME")
