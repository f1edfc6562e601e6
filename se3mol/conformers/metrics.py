"""Conformer-ensemble metrics: COV and MAT, recall and precision, as ConfGF and ClofNet report them.

For one molecule with generated conformers ``g_1..g_G`` and reference conformers ``r_1..r_R``, take the
heavy-atom, symmetry-aware best RMSD matrix ``D [G,R]`` (RDKit ``rdMolAlign.GetBestRMS`` on
hydrogen-stripped copies: optimal superposition over every atom mapping the molecular graph allows), then
(Shi et al. 2021, ConfGF; Xu et al. 2021; Du et al. 2022, ClofNet)::

    COV-R = fraction of references r with min_g D[g, r] <= threshold     (is every reference found?)
    MAT-R = mean over references r of min_g D[g, r]                      (how close is the closest?)
    COV-P, MAT-P: the same with generated and reference swapped          (is every generated one real?)

These are computed per molecule, then summarised by mean and median over molecules. ConfGF's code uses
``<=`` for coverage; so does this module.

Graph symmetry: the atom mappings come from an RDKit substructure search of one heavy-atom graph in the
other (bond orders respected, stereo ignored), found once per pair of molecule graphs and passed to
``GetBestRMS`` for every conformer pair. The search stops at ``max_matches`` mappings
(:data:`DEFAULT_MAX_MATCHES`): a graph with more symmetry-equivalent mappings (e.g. several tert-butyl
groups) is aligned over the first ``max_matches`` only, which can overestimate its RMSD. Each molecule's
row records how many mappings were used and whether the cap was reached.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdMolAlign

from se3mol.chem import rdkit_messages

__all__ = [
    "DEFAULT_MAX_MATCHES",
    "DEFAULT_THRESHOLD",
    "ConformerEvaluation",
    "MoleculeMetrics",
    "coverage_matching",
    "evaluate_conformer_files",
    "evaluate_conformer_sets",
    "group_key",
    "heavy_atom_rmsd_matrix",
    "read_conformer_groups",
    "split_conformers",
]

#: Angstrom; the COV threshold ConfGF and ClofNet use on QM9 (1.25 A on the larger GEOM-Drugs molecules).
DEFAULT_THRESHOLD = 0.5
#: Cap on the atom mappings tried per pair of molecule graphs (RDKit's own default is 1,000,000, which
#: makes GetBestRMS crawl on highly symmetric molecules).
DEFAULT_MAX_MATCHES = 10_000


# --------------------------------------------------------------------------------------------------------
# RMSD and per-molecule scores
# --------------------------------------------------------------------------------------------------------


def _heavy(mol: Chem.Mol) -> Chem.Mol:
    """A hydrogen-free copy (the caller's molecule is never aligned in place)."""
    return Chem.RemoveAllHs(mol, sanitize=False) if any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()) \
        else Chem.Mol(mol)


def _atom_maps(prb: Chem.Mol, ref: Chem.Mol, max_matches: int) -> list[list[tuple[int, int]]]:
    """Every mapping (up to ``max_matches``) of the heavy atoms of ``prb`` onto those of ``ref``."""
    if prb.GetNumAtoms() != ref.GetNumAtoms():
        raise ValueError(f"the molecules have different numbers of heavy atoms ({prb.GetNumAtoms()} generated, "
                         f"{ref.GetNumAtoms()} reference)")
    matches = ref.GetSubstructMatches(prb, uniquify=False, useChirality=False, maxMatches=max_matches)
    if not matches:
        raise ValueError("the generated and reference molecules have different heavy-atom graphs "
                         "(no substructure match)")
    return [list(enumerate(m)) for m in matches]


def heavy_atom_rmsd_matrix(generated: Sequence[Chem.Mol], reference: Sequence[Chem.Mol],
                           max_matches: int = DEFAULT_MAX_MATCHES) -> tuple[np.ndarray, int]:
    """Best heavy-atom RMSD (Angstrom) between every generated and every reference conformer.

    Args:
        generated, reference: RDKit molecules of the same compound, one conformer each (the first is used);
            hydrogens may be present and are ignored; atom orders may differ.
        max_matches: cap on the graph-symmetric atom mappings tried (see the module docstring).

    Returns:
        ``D [G,R]`` and the number of atom mappings used (the largest over pairs of graphs).

    Raises:
        ValueError: if the heavy-atom graphs do not match.

    >>> from rdkit.Chem import AllChem
    >>> m = Chem.AddHs(Chem.MolFromSmiles("CCO")); _ = AllChem.EmbedMolecule(m, randomSeed=1)
    >>> d, _ = heavy_atom_rmsd_matrix([m], [m]); round(float(d[0, 0]), 6)
    0.0
    """
    prbs = [_heavy(m) for m in generated]
    refs = [_heavy(m) for m in reference]
    d = np.empty((len(prbs), len(refs)))  # [G,R]
    maps_cache: dict[tuple[str, str], list[list[tuple[int, int]]]] = {}
    n_maps = 0
    for j, ref in enumerate(refs):
        for i, prb in enumerate(prbs):
            key = (_graph_signature(prb), _graph_signature(ref))
            if key not in maps_cache:
                maps_cache[key] = _atom_maps(prb, ref, max_matches)
            maps = maps_cache[key]
            n_maps = max(n_maps, len(maps))
            d[i, j] = rdMolAlign.GetBestRMS(prb, ref, map=maps)
    return d, n_maps


def split_conformers(mol: Chem.Mol) -> list[Chem.Mol]:
    """One single-conformer copy of ``mol`` per conformer, in conformer order (for the RMSD matrix)."""
    return [Chem.Mol(mol, False, conf.GetId()) for conf in mol.GetConformers()]


def _graph_signature(mol: Chem.Mol) -> str:
    """Identifies a heavy-atom graph *with its atom order*: molecules with equal signatures share mappings."""
    atoms = ",".join(str(a.GetAtomicNum()) for a in mol.GetAtoms())
    bonds = ",".join(f"{b.GetBeginAtomIdx()}-{b.GetEndAtomIdx()}:{b.GetBondTypeAsDouble()}" for b in mol.GetBonds())
    return f"{atoms}|{bonds}"


def coverage_matching(d: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """COV-R, MAT-R, COV-P, MAT-P of one molecule from its RMSD matrix ``d [G,R]`` (generated x reference).

    >>> {k: round(v, 6) for k, v in coverage_matching(np.array([[0.1, 0.9], [0.7, 0.8]]), 0.5).items()}
    {'cov_r': 0.5, 'mat_r': 0.45, 'cov_p': 0.5, 'mat_p': 0.4}
    """
    if d.ndim != 2 or 0 in d.shape:
        raise ValueError(f"need at least one generated and one reference conformer, got a matrix of shape {d.shape}")
    best_per_ref = d.min(axis=0)  # [R]
    best_per_gen = d.min(axis=1)  # [G]
    return {
        "cov_r": float((best_per_ref <= threshold).mean()),
        "mat_r": float(best_per_ref.mean()),
        "cov_p": float((best_per_gen <= threshold).mean()),
        "mat_p": float(best_per_gen.mean()),
    }


# --------------------------------------------------------------------------------------------------------
# Whole sets
# --------------------------------------------------------------------------------------------------------

METRICS = ("cov_r", "mat_r", "cov_p", "mat_p")


@dataclass
class MoleculeMetrics:
    """The scores of one molecule, or why it has none.

    ``status`` is ``"ok"``, ``"no generated conformers"``, ``"no reference conformers"`` or ``"error"``.
    """

    key: str
    smiles: str
    n_generated: int
    n_reference: int
    status: str = "ok"
    error: str | None = None
    cov_r: float | None = None
    mat_r: float | None = None
    cov_p: float | None = None
    mat_p: float | None = None
    atom_maps: int = 0
    max_matches_reached: bool = False


@dataclass
class ConformerEvaluation:
    """COV/MAT over a set of molecules: one :class:`MoleculeMetrics` each and mean/median summaries.

    The summaries are over the molecules with both generated and reference conformers (``n_evaluated``);
    molecules missing on either side are counted, listed in ``molecules`` and never silently dropped.
    ``read_errors`` lists SD records that could not be read.
    """

    threshold: float
    molecules: list[MoleculeMetrics]
    summary: dict[str, dict[str, float | None]] = field(default_factory=dict)
    read_errors: list[str] = field(default_factory=list)
    max_matches: int = DEFAULT_MAX_MATCHES

    @property
    def n_evaluated(self) -> int:
        return sum(m.status == "ok" for m in self.molecules)

    @property
    def n_missing_generated(self) -> int:
        return sum(m.status == "no generated conformers" for m in self.molecules)

    @property
    def n_missing_reference(self) -> int:
        return sum(m.status == "no reference conformers" for m in self.molecules)

    @property
    def n_errors(self) -> int:
        return sum(m.status == "error" for m in self.molecules)

    @property
    def complete(self) -> bool:
        """True when every molecule was evaluated and every record read."""
        return self.n_evaluated == len(self.molecules) and not self.read_errors

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON-ready data."""
        return {
            "threshold_angstrom": self.threshold,
            "rmsd": "heavy-atom best RMSD (RDKit GetBestRMS, graph symmetry, stereo-blind mappings)",
            "max_matches": self.max_matches,
            "n_molecules": len(self.molecules),
            "n_evaluated": self.n_evaluated,
            "n_missing_generated": self.n_missing_generated,
            "n_missing_reference": self.n_missing_reference,
            "n_errors": self.n_errors,
            "summary": self.summary,
            "molecules": [asdict(m) for m in self.molecules],
            "read_errors": self.read_errors,
        }


def _summarise(rows: Iterable[MoleculeMetrics]) -> dict[str, dict[str, float | None]]:
    ok = [r for r in rows if r.status == "ok"]
    out: dict[str, dict[str, float | None]] = {}
    for name in METRICS:
        values = [getattr(r, name) for r in ok]
        out[name] = {"mean": statistics.fmean(values) if values else None,
                     "median": statistics.median(values) if values else None}
    return out


def evaluate_conformer_sets(generated: dict[str, list[Chem.Mol]], reference: dict[str, list[Chem.Mol]],
                            threshold: float = DEFAULT_THRESHOLD, max_matches: int = DEFAULT_MAX_MATCHES,
                            labels: dict[str, str] | None = None) -> ConformerEvaluation:
    """COV/MAT for conformers grouped by molecule (same keys in both dicts mean the same molecule).

    Every key of either dict gets a row, in the order of ``reference`` then keys only in ``generated``.
    ``labels`` maps keys to a SMILES to show (default: the key).
    """
    if not (threshold > 0 and math.isfinite(threshold)):
        raise ValueError(f"threshold must be a positive number of Angstrom, got {threshold}")
    labels = labels or {}
    keys = list(reference) + [k for k in generated if k not in reference]
    rows = []
    for key in keys:
        gen, ref = generated.get(key, []), reference.get(key, [])
        row = MoleculeMetrics(key=key, smiles=labels.get(key, key), n_generated=len(gen), n_reference=len(ref))
        if not gen:
            row.status = "no generated conformers"
        elif not ref:
            row.status = "no reference conformers"
        else:
            try:
                d, row.atom_maps = heavy_atom_rmsd_matrix(gen, ref, max_matches)
                row.max_matches_reached = row.atom_maps >= max_matches
                for name, value in coverage_matching(d, threshold).items():
                    setattr(row, name, value)
            except (ValueError, RuntimeError) as exc:
                row.status, row.error = "error", str(exc)
        rows.append(row)
    return ConformerEvaluation(threshold=threshold, molecules=rows, summary=_summarise(rows), max_matches=max_matches)


def group_key(mol: Chem.Mol, match_by: str = "smiles") -> str:
    """The key that says which molecule an SD record is a conformer of.

    ``"smiles"``: canonical SMILES of the heavy-atom graph without stereo (so conformers whose 3D geometry
    implies a different stereoisomer still group together, and are scored as far apart as they are);
    ``"title"``: the record's title line; any other value: that SD data field.

    Raises:
        ValueError: if the record has no such data field.
    """
    if match_by == "smiles":
        return Chem.MolToSmiles(Chem.RemoveAllHs(mol), isomericSmiles=False)
    if match_by == "title":
        return mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
    if not mol.HasProp(match_by):
        raise ValueError(f"record has no data field <{match_by}> to match molecules by")
    return mol.GetProp(match_by).strip()


def read_conformer_groups(path: str | Path, match_by: str = "smiles"
                          ) -> tuple[dict[str, list[Chem.Mol]], dict[str, str], list[str]]:
    """Read an SD file's conformers grouped by :func:`group_key`.

    Returns ``(groups, labels, errors)``: conformers per key in file order, a SMILES label per key, and one
    message per record that could not be read (reading goes on after it).

    Raises:
        OSError: if the file cannot be opened.
    """
    groups: dict[str, list[Chem.Mol]] = {}
    labels: dict[str, str] = {}
    errors: list[str] = []
    path = Path(path)
    with open(path, "rb") as fh, rdkit_messages() as messages:
        for n, mol in enumerate(Chem.ForwardSDMolSupplier(fh, removeHs=False, sanitize=True), start=1):
            if mol is None:
                detail = "; ".join(m.strip() for m in messages[-3:]) if messages else "unreadable molblock"
                errors.append(f"{path.name}: record {n} could not be read ({detail})")
                messages.clear()
                continue
            if mol.GetNumConformers() == 0:
                errors.append(f"{path.name}: record {n} has no coordinates")
                continue
            try:
                key = group_key(mol, match_by)
            except ValueError as exc:
                errors.append(f"{path.name}: record {n}: {exc}")
                continue
            groups.setdefault(key, []).append(mol)
            labels.setdefault(key, Chem.MolToSmiles(Chem.RemoveAllHs(mol), isomericSmiles=False))
    return groups, labels, errors


def evaluate_conformer_files(generated: str | Path, reference: str | Path, threshold: float = DEFAULT_THRESHOLD,
                             match_by: str = "smiles", max_matches: int = DEFAULT_MAX_MATCHES) -> ConformerEvaluation:
    """COV/MAT of the conformers in SD file ``generated`` against those in SD file ``reference``.

    Records are grouped into molecules by ``match_by`` (see :func:`group_key`).

    Raises:
        OSError: if a file cannot be opened.
    """
    gen, gen_labels, gen_errors = read_conformer_groups(generated, match_by)
    ref, ref_labels, ref_errors = read_conformer_groups(reference, match_by)
    result = evaluate_conformer_sets(gen, ref, threshold, max_matches, labels={**gen_labels, **ref_labels})
    result.read_errors = [*ref_errors, *gen_errors]
    return result
