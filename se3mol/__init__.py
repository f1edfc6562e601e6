"""se3mol: SE(3)-equivariant neural networks for molecules.

>>> import se3mol
>>> "egnn" in se3mol.model_names()
True
"""

from se3mol._version import __version__
from se3mol.data.files import LabelledDataset
from se3mol.equivariance import EquivarianceReport
from se3mol.equivariance import check as check_equivariance
from se3mol.graph import Batch, GraphConfig, collate
from se3mol.io import Record, embed_smiles, read_molecules, read_records
from se3mol.molecule import Molecule
from se3mol.nn import MoleculeModel, build_model, model_names
from se3mol.predict import Predictor, predict
from se3mol.pretrained import list_model_cards, load_pretrained
from se3mol.targets import QM9_TARGETS, Target, get_target

__all__ = [
    "Batch", "EquivarianceReport", "GraphConfig", "LabelledDataset", "Molecule", "MoleculeModel", "Predictor",
    "QM9_TARGETS",
    "Record", "Target", "__version__", "build_model", "check_equivariance", "collate", "embed_smiles",
    "get_target", "list_model_cards", "load_pretrained", "model_names", "predict", "read_molecules",
    "read_records",
]
