"""Equivariant networks: the registry, shared layers and heads, and one module per family."""

from se3mol.nn.entry import ModelEntry
from se3mol.nn.heads import ATOM_SCALAR, OUTPUT_KINDS, SCALAR, TENSOR2, VECTOR, AtomFeatures, PropertyHeads
from se3mol.nn.model import QM9_ELEMENTS, MoleculeModel, build_model
from se3mol.nn.registry import get_entry, model_names, register

__all__ = [
    "ATOM_SCALAR", "AtomFeatures", "OUTPUT_KINDS", "QM9_ELEMENTS", "SCALAR", "TENSOR2", "VECTOR",
    "ModelEntry", "MoleculeModel", "PropertyHeads", "build_model", "get_entry", "model_names", "register",
]
