"""The SMILES of MOSES (Polykovskiy et al. 2020): ~1.9M ZINC molecules of elements C N O S F Cl Br H, split into
train and test files, shipped in the PyPI package ``molsets`` (``pip install --no-deps molsets``: its own
dependencies are only for its generative models). The drug-like conformer builder (:mod:`se3mol.conformers.drugs`)
and the GFN2-xTB pretraining-data builder (:mod:`se3mol.data.xtb_labels`) read them from here.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

__all__ = ["moses_path", "moses_smiles"]


def moses_path(split: str) -> Path:
    """The SMILES file of a MOSES split (``train`` or ``test``) in the installed ``molsets`` package.

    Raises:
        FileNotFoundError: ``molsets`` is not installed.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the MOSES SMILES come from the package molsets: pip install --no-deps molsets "
                                "(its own dependencies are only for its generative models), or pass --source FILE")
    return Path(next(iter(spec.submodule_search_locations))) / "dataset" / "data" / f"{split}.csv.gz"


def moses_smiles(path: str | Path) -> list[str]:
    """The SMILES of a MOSES-style file: one per line (gzip or plain), first comma-separated field, header
    ``SMILES`` skipped. Row ``i`` of the result is the molecule called ``i`` everywhere in a build."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        rows = [line.split(",")[0].strip() for line in f]
    return [s for s in rows if s and s.upper() != "SMILES"]
