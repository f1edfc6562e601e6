"""se3mol: SE(3)-equivariant neural networks for molecules.

The names below are imported on first use (PEP 562), so ``import se3mol`` is cheap and a part of the
package (training, say) imports without the dependencies of another (RDKit and ASE for file reading).

>>> import se3mol
>>> "egnn" in se3mol.model_names()
True
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from se3mol._version import __version__

#: Public name -> the module that defines it.
_EXPORTS = {
    "LabelledDataset": "se3mol.data.files",
    "EquivarianceReport": "se3mol.equivariance",
    "check_equivariance": "se3mol.equivariance",
    "Batch": "se3mol.graph",
    "GraphConfig": "se3mol.graph",
    "collate": "se3mol.graph",
    "Record": "se3mol.io",
    "embed_smiles": "se3mol.io",
    "read_molecules": "se3mol.io",
    "read_records": "se3mol.io",
    "Molecule": "se3mol.molecule",
    "MoleculeModel": "se3mol.nn",
    "build_model": "se3mol.nn",
    "model_names": "se3mol.nn",
    "Predictor": "se3mol.prediction",
    "predict": "se3mol.prediction",
    "list_model_cards": "se3mol.pretrained",
    "load_pretrained": "se3mol.pretrained",
    "QM9_TARGETS": "se3mol.targets",
    "Target": "se3mol.targets",
    "get_target": "se3mol.targets",
}
#: Names whose attribute in their module differs from the public one.
_ALIASES = {"check_equivariance": "check"}

__all__ = [
    "Batch", "EquivarianceReport", "GraphConfig", "LabelledDataset", "Molecule", "MoleculeModel", "Predictor",
    "QM9_TARGETS", "Record", "Target", "__version__", "build_model", "check_equivariance", "collate",
    "embed_smiles", "get_target", "list_model_cards", "load_pretrained", "model_names", "predict",
    "read_molecules", "read_records",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'se3mol' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), _ALIASES.get(name, name))
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # what type checkers and IDEs see
    from se3mol.data.files import LabelledDataset
    from se3mol.equivariance import EquivarianceReport
    from se3mol.equivariance import check as check_equivariance
    from se3mol.graph import Batch, GraphConfig, collate
    from se3mol.io import Record, embed_smiles, read_molecules, read_records
    from se3mol.molecule import Molecule
    from se3mol.nn import MoleculeModel, build_model, model_names
    from se3mol.prediction import Predictor, predict
    from se3mol.pretrained import list_model_cards, load_pretrained
    from se3mol.targets import QM9_TARGETS, Target, get_target
