"""Splits of a data set: random (seeded), by Murcko scaffold (no scaffold in two parts), from a column."""

import pytest
import torch

from se3mol.data.splits import column_split, murcko_scaffold, random_split, scaffold_split


def test_splits_are_disjoint_seeded_and_scaffold_groups_stay_together():
    s = random_split(100, (0.8, 0.1, 0.1), seed=1)
    assert [len(s[k]) for k in ("train", "val", "test")] == [80, 10, 10]
    assert len(torch.unique(torch.cat(list(s.values())))) == 100
    assert torch.equal(s["test"], random_split(100, (0.8, 0.1, 0.1), seed=1)["test"])
    assert not torch.equal(s["test"], random_split(100, (0.8, 0.1, 0.1), seed=2)["test"])
    smiles = ["c1ccccc1C", "c1ccccc1O", "c1ccccc1N", "C1CCCCC1O", "C1CCCCC1N", "CCO", "CCN", "CCC", "C1CC1",
              "C1CC1C", "c1ccncc1", "c1ccncc1C"] * 3
    sc = scaffold_split(smiles, (0.6, 0.2, 0.2), seed=0)
    where = {}
    for part, idx in sc.items():
        for k in idx.tolist():
            where.setdefault(murcko_scaffold(smiles[k]), set()).add(part)
    assert all(len(parts) == 1 for parts in where.values())  # no scaffold in two parts
    assert sum(len(v) for v in sc.values()) == len(smiles)
    assert murcko_scaffold("c1ccccc1CCO") == "c1ccccc1"
    with pytest.raises(ValueError, match="molecule 2: 'holdout'"):
        column_split(["train", "holdout", "test"], "split")
