"""Conformer generation and evaluation.

- :mod:`se3mol.conformers.generate`: SMILES inputs, per-molecule seeds, ClofNet or ETKDG, MMFF relaxation.
- :mod:`se3mol.conformers.metrics`: COV / MAT (recall and precision) with heavy-atom best RMSD.
- :mod:`se3mol.conformers.geometry` and ``stereo``: checks of finished conformers (torn bonds, overlapping
  atoms, stereo the SMILES specifies) and the sampler's stereo term.
- ``se3mol.conformers.score`` / ``sampler`` / ``training``: the ClofNet score model, its annealed Langevin
  sampler and denoising score-matching training (imported on use; they need torch models).
"""

from se3mol.conformers.generate import (
    DEFAULT_SCORE_MODEL,
    ClofnetMethod,
    ConformerResult,
    EtkdgMethod,
    ModelUnavailableError,
    RelaxOutcome,
    SmilesInput,
    derive_seed,
    generate_conformers,
    load_clofnet_method,
    molecule_from_smiles,
    read_smiles_inputs,
    relax_mmff,
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

__all__ = [
    "DEFAULT_MAX_MATCHES",
    "DEFAULT_SCORE_MODEL",
    "DEFAULT_THRESHOLD",
    "ClofnetMethod",
    "ConformerEvaluation",
    "ConformerResult",
    "EtkdgMethod",
    "ModelUnavailableError",
    "MoleculeMetrics",
    "RelaxOutcome",
    "SmilesInput",
    "coverage_matching",
    "derive_seed",
    "evaluate_conformer_files",
    "evaluate_conformer_sets",
    "generate_conformers",
    "heavy_atom_rmsd_matrix",
    "load_clofnet_method",
    "molecule_from_smiles",
    "read_smiles_inputs",
    "relax_mmff",
]
