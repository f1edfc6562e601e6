"""Conformer generation and evaluation.

- :mod:`se3mol.conformers.generate`: what ``se3mol conformers`` runs, composed of
  :mod:`~se3mol.conformers.inputs` (SMILES arguments, files, stdin; per-molecule seeds),
  :mod:`~se3mol.conformers.methods` (ETKDG, ClofNet, and :data:`METHODS`, the list of method names),
  :mod:`~se3mol.conformers.select` (oversampling: least strained, then most diverse),
  :mod:`~se3mol.conformers.relax` (MMFF94 relaxation holding specified stereo) and
  :mod:`~se3mol.conformers.checks` (torn bonds, overlapping atoms, wrong stereo, checked once for every step).
- :mod:`se3mol.conformers.metrics`: COV / MAT (recall and precision) with heavy-atom best RMSD.
- :mod:`se3mol.conformers.geometry` and ``stereo``: the geometric tests behind the checks, and the sampler's
  stereo term.
- ``se3mol.conformers.score`` / ``sampler`` / ``training``: the ClofNet score model, its annealed Langevin
  sampler and denoising score-matching training (imported on use; they need torch models).
"""

from se3mol.conformers.checks import ConformerChecks
from se3mol.conformers.generate import ConformerResult, generate_conformers, generate_one
from se3mol.conformers.inputs import SmilesInput, derive_seed, molecule_from_smiles, read_smiles_inputs
from se3mol.conformers.methods import (
    DEFAULT_HYBRID_MODEL,
    DEFAULT_SCORE_MODEL,
    METHODS,
    ClofnetMethod,
    ConformerMethod,
    EtkdgMethod,
    MethodEntry,
    ModelUnavailableError,
    load_clofnet_method,
    make_method,
)
from se3mol.conformers.metrics import (
    DEFAULT_MAX_MATCHES,
    DEFAULT_THRESHOLD,
    ConformerEvaluation,
    MoleculeMetrics,
    coverage_matching,
    evaluate_conformer_files,
    evaluate_conformer_sets,
    heavy_atom_rmsd_matrix,
)
from se3mol.conformers.relax import RelaxOutcome, relax_mmff
from se3mol.conformers.select import select_conformers

__all__ = [
    "DEFAULT_MAX_MATCHES",
    "DEFAULT_HYBRID_MODEL",
    "DEFAULT_SCORE_MODEL",
    "DEFAULT_THRESHOLD",
    "METHODS",
    "ClofnetMethod",
    "ConformerChecks",
    "ConformerEvaluation",
    "ConformerMethod",
    "ConformerResult",
    "EtkdgMethod",
    "MethodEntry",
    "ModelUnavailableError",
    "MoleculeMetrics",
    "RelaxOutcome",
    "SmilesInput",
    "coverage_matching",
    "derive_seed",
    "evaluate_conformer_files",
    "evaluate_conformer_sets",
    "generate_conformers",
    "generate_one",
    "heavy_atom_rmsd_matrix",
    "load_clofnet_method",
    "make_method",
    "molecule_from_smiles",
    "read_smiles_inputs",
    "relax_mmff",
    "select_conformers",
]
