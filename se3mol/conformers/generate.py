"""Conformer generation from SMILES: inputs, per-molecule seeds, ClofNet or ETKDG, optional MMFF relaxation.

What ``se3mol conformers`` runs, one molecule at a time, so that one bad molecule never stops the others:

    SMILES argument / file / stdin -> :class:`SmilesInput` -> RDKit molecule with explicit hydrogens
    -> coordinates from a :class:`ConformerMethod` ``[K,N,3]`` -> (MMFF relaxation) -> :class:`ConformerResult`
    -> SD records (:meth:`ConformerResult.records`).

Bonds, formal charges and stereo come from the SMILES; the method only places the atoms. Each molecule
is seeded with :func:`derive_seed` from the base seed and its canonical SMILES, so its conformers do not
depend on which other molecules were given, or in what order.

The score-based sampler (``se3mol.conformers.sampler``) is imported only when ``--method clofnet`` is used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem
from rdkit.Geometry import Point3D

__all__ = [
    "DEFAULT_SCORE_MODEL",
    "ClofnetMethod",
    "ConformerMethod",
    "ConformerResult",
    "EtkdgMethod",
    "ModelUnavailableError",
    "RelaxOutcome",
    "SmilesInput",
    "derive_seed",
    "generate_conformers",
    "load_clofnet_method",
    "molecule_from_smiles",
    "read_smiles_inputs",
    "relax_mmff",
    "select_conformers",
]

#: The shipped score model ``--method clofnet`` uses unless ``--model`` says otherwise.
DEFAULT_SCORE_MODEL = "conformers-clofnet-qm9"
#: MMFF minimisation steps per conformer for ``--relax`` (RDKit's default is 200, often too few to converge).
MMFF_MAX_ITERS = 2000
#: ``--relax`` restraints once free minimisation inverted a stereo element: flat-bottomed dihedral restraints
#: (kcal/mol/degree^2) that keep the signs RDKit reads the elements by, at least this many degrees from 0 and 180.
RESTRAINT_FORCE, RESTRAINT_MARGIN = 1.0, 15.0
#: ``--method clofnet`` samples this many times the conformers asked for and keeps the least strained and most
#: diverse (:func:`select_conformers`). On 300 QM9 validation molecules with stereo-free SMILES (pools of 40
#: samples each, benchmarks/conformers/results/conformer_selection_m40.md), 10 kept are expected to cover 83.6% of
#: the DFT geometries as plain samples, 85.2% of 12, 88.0% of 20, 89.9% of 30 and 91.7% of 40; 30 took 1.29 s per
#: molecule on two threads (bfloat16), 40 took 1.58 s, against the 2 s of the benchmark's goal, which 3 meets with a
#: margin.
CLOFNET_OVERSAMPLE = 3.0
# Extensions of molecule files that conformers does not take (it reads SMILES, not 3D structures).
_STRUCTURE_EXTENSIONS = (".sdf", ".sd", ".mol", ".mol2", ".xyz", ".extxyz", ".pdb", ".gz")
_HEADER_TOKENS = ("smiles", "smi", "canonical_smiles")


# --------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------


@dataclass
class SmilesInput:
    """One molecule asked for: a SMILES and its name, or the reason it could not be read.

    Attributes:
        index: 0-based position across all inputs, in input order.
        source: ``"argument"``, ``"-"`` (stdin) or the file path.
        line: 1-based line in ``source`` (``None`` for an argument).
        smiles: the SMILES as given (stripped).
        name: the name after the SMILES on its line, else ``""``.
        error: why this input is not a molecule (``None`` if it may be one).
    """

    index: int
    source: str
    smiles: str
    name: str = ""
    line: int | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        """Name if given, else the SMILES: what records and summaries call the molecule."""
        return self.name or self.smiles

    @property
    def where(self) -> str:
        """Where the input came from, for error messages: ``smiles.txt:3`` or ``argument 2``."""
        if self.line is None:
            return f"argument {self.index + 1}" if self.source == "argument" else self.source
        return f"{self.source}:{self.line}"


def read_smiles_inputs(inputs: Sequence[str], stdin: TextIO | None = None) -> list[SmilesInput]:
    """Turn command-line inputs into molecules to generate, in order.

    Each input is ``"-"`` (SMILES lines from ``stdin``), an existing file (SMILES lines), or else a SMILES
    string. An existing path always wins, so a file named ``CCO`` in the working directory is read as a
    file. SMILES lines hold ``SMILES [name]`` separated by whitespace (tab or comma also work, as in .smi
    and CSV exports); blank lines, ``#`` comments and a ``smiles`` column header are skipped.

    An input that is neither an existing file nor a valid SMILES, and a bad SMILES line, become a
    :class:`SmilesInput` with ``error`` set; they never raise.

    Raises:
        OSError: if an existing file cannot be read (permissions, a directory).
    """
    out: list[SmilesInput] = []
    for arg in inputs:
        if arg == "-":
            out.extend(_smiles_lines(stdin if stdin is not None else sys.stdin, "-", len(out)))
        elif os.path.exists(arg):
            if os.path.isdir(arg):
                raise IsADirectoryError(f"{arg} is a directory, not a SMILES file")
            if arg.lower().endswith(_STRUCTURE_EXTENSIONS):
                out.append(SmilesInput(len(out), arg, arg, error=(
                    f"{arg} looks like a structure file; conformers reads SMILES (a string, a text file with one "
                    "SMILES per line, or '-' for stdin)")))
                continue
            with open(arg, encoding="utf-8", errors="replace") as fh:
                out.extend(_smiles_lines(fh, arg, len(out)))
        else:
            item = SmilesInput(len(out), "argument", arg.strip())
            try:
                molecule_from_smiles(arg)
            except ValueError as exc:
                looks_like_path = os.sep in arg or os.path.splitext(arg)[1].lower() in (
                    ".smi", ".smiles", ".txt", ".csv", *_STRUCTURE_EXTENSIONS)
                reason = str(exc).replace(f"invalid SMILES {arg.strip()!r}", "").strip()
                item.error = (f"no such file: {arg}" if looks_like_path
                              else f"{arg!r} is neither an existing file nor a valid SMILES {reason}".rstrip())
            out.append(item)
    return out


def _smiles_lines(stream: TextIO, source: str, start: int) -> Iterator[SmilesInput]:
    first = True
    for lineno, raw in enumerate(stream, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        sep = "\t" if "\t" in text else ("," if "," in text else None)
        fields = text.split(sep, 1)
        smiles = fields[0].strip()
        name = fields[1].strip() if len(fields) > 1 else ""
        if first and smiles.lower() in _HEADER_TOKENS:
            first = False
            continue
        first = False
        yield SmilesInput(start, source, smiles, name, line=lineno)
        start += 1


def molecule_from_smiles(smiles: str) -> Chem.Mol:
    """The molecule of ``smiles`` with explicit hydrogens (``Chem.AddHs``), sanitised, no coordinates.

    Raises:
        ValueError: for an empty or invalid SMILES (with RDKit's reason), or one without atoms.
    """
    from se3mol.chem import rdkit_messages, smiles_error_detail

    text = smiles.strip()
    if not text:
        raise ValueError("empty SMILES")
    with rdkit_messages() as messages:
        mol = Chem.MolFromSmiles(text)
    if mol is None:
        detail = smiles_error_detail(messages, text)
        raise ValueError(f"invalid SMILES {text!r}" + (f" (RDKit: {detail})" if detail else ""))
    if mol.GetNumAtoms() == 0:
        raise ValueError(f"SMILES {text!r} has no atoms")
    return Chem.AddHs(mol)


def derive_seed(seed: int, canonical_smiles: str) -> int:
    """The seed of one molecule: a hash of the base ``seed`` and its canonical SMILES, in ``[0, 2^31 - 1)``.

    Depends on nothing else, so a molecule gets the same conformers alone or in a list, first or last.

    >>> derive_seed(0, "CCO") == derive_seed(0, "CCO") != derive_seed(1, "CCO")
    True
    """
    digest = hashlib.sha256(f"se3mol-conformers:{seed}:{canonical_smiles}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1)


# --------------------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------------------


class ConformerMethod(Protocol):
    """Places the atoms of a molecule: ``coordinates(mol, n, seed) -> [n,N,3]`` in Angstrom.

    ``mol`` has explicit hydrogens and its atom order defines the rows. ``check`` raises ValueError for a
    molecule the method cannot handle (before any time is spent); ``extrapolation`` names the ways a molecule
    it can handle lies outside what it was fitted to (a learned model's training molecules), each a warning;
    ``coordinates`` may return fewer than ``n`` conformers (with a note saying why) but raises ValueError
    when it has none. ``oversample`` (at least 1): :func:`generate_one` asks for ``ceil(oversample * n)``
    conformers and keeps ``n``, the least strained and most diverse (:func:`select_conformers`).
    """

    name: str
    oversample: float

    def settings(self) -> dict[str, Any]: ...

    def check(self, mol: Chem.Mol) -> None: ...

    def extrapolation(self, mol: Chem.Mol) -> list[str]: ...

    def coordinates(self, mol: Chem.Mol, n: int, seed: int) -> tuple[np.ndarray, list[str]]: ...


@dataclass
class EtkdgMethod:
    """RDKit ETKDGv3 distance geometry (Riniker and Landrum 2015), the classical baseline.

    Conformers that fail to embed from ETKDG's distance-bounds start are retried from random starting
    coordinates (RDKit's documented fallback for strained molecules); a note says how many.
    """

    name: str = "etkdg"
    max_attempts: int = 0  # RDKit's default (0: 10 x number of atoms)
    oversample: float = 1.0

    def settings(self) -> dict[str, Any]:
        return {"algorithm": "ETKDGv3", "max_iterations": self.max_attempts, "prune_rms_threshold": None,
                "random_coords_fallback": True, "oversample": self.oversample}

    def check(self, mol: Chem.Mol) -> None:
        return None

    def extrapolation(self, mol: Chem.Mol) -> list[str]:
        return []  # distance geometry is not fitted to a set of molecules

    def coordinates(self, mol: Chem.Mol, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
        from se3mol.chem import clean_rdkit_messages, rdkit_messages

        work = Chem.Mol(mol)
        params = AllChem.ETKDGv3()
        params.randomSeed = seed
        params.numThreads = 1
        params.maxIterations = self.max_attempts
        notes: list[str] = []
        with rdkit_messages() as messages:
            ids = list(AllChem.EmbedMultipleConfs(work, numConfs=n, params=params))
            if len(ids) < n:
                params.useRandomCoords = True
                params.clearConfs = False
                params.randomSeed = (seed + 1) % (2**31 - 1)
                extra = list(AllChem.EmbedMultipleConfs(work, numConfs=n - len(ids), params=params))
                if extra:
                    notes.append(f"{len(extra)} of {n} conformers embedded from random starting coordinates")
                ids += extra
        if not ids:
            detail = clean_rdkit_messages(messages)
            raise ValueError("RDKit ETKDG could not embed this molecule, also from random starting coordinates"
                             + (f" (RDKit: {detail})" if detail else ""))
        if len(ids) < n:
            notes.append(f"only {len(ids)} of {n} conformers could be embedded")
        pos = np.stack([work.GetConformer(i).GetPositions() for i in ids])  # [K,N,3]
        return pos, notes


class ModelUnavailableError(FileNotFoundError):
    """The score model for ``--method clofnet`` is not installed or cannot be loaded."""


@dataclass
class ClofnetMethod:
    """The ClofNet score model sampled with annealed Langevin dynamics (``se3mol.conformers.sampler``).

    Attributes:
        sampler: a loaded ``ScoreSampler`` (anything with ``elements`` and ``sample(mol, n, seed, settings)``).
        sampler_settings: its ``SamplerSettings`` (levels, steps per level, step size, clipping).
        model: the model name or path, written into every record.
        oversample: sample this many times the conformers asked for and keep the least strained, most diverse
            (:data:`CLOFNET_OVERSAMPLE`; 1 keeps every sample).
    """

    sampler: Any
    sampler_settings: Any
    model: str = DEFAULT_SCORE_MODEL
    name: str = "clofnet"
    oversample: float = CLOFNET_OVERSAMPLE

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, **self.sampler_settings.to_dict(), "oversample": self.oversample}

    def check(self, mol: Chem.Mol) -> None:
        known = set(int(z) for z in self.sampler.elements)
        unknown = sorted({a.GetAtomicNum() for a in mol.GetAtoms()} - known)
        if unknown:
            names = ", ".join(Chem.GetPeriodicTable().GetElementSymbol(z) for z in unknown)
            allowed = ", ".join(Chem.GetPeriodicTable().GetElementSymbol(z) for z in sorted(known))
            raise ValueError(f"element(s) {names} not in the score model's training set ({allowed}); "
                             "use --method etkdg for this molecule")

    def extrapolation(self, mol: Chem.Mol) -> list[str]:
        """Warnings for a molecule larger, or with another total charge, than the score model's training
        molecules (the ``domain`` its checkpoint records; QM9: at most 29 atoms with hydrogens, neutral). The
        model has never placed atoms more than 3 bonds apart in a bigger molecule, and its conformers of
        one degrade with size (e.g. atoms of distant groups overlap), so they are worth checking
        (``--relax``, or ``--method etkdg`` for comparison)."""
        domain = (getattr(self.sampler, "checkpoint", None) or {}).get("domain") or {}
        notes = []
        max_atoms = domain.get("max_atoms")
        if max_atoms is not None and mol.GetNumAtoms() > max_atoms:
            notes.append(f"{mol.GetNumAtoms()} atoms with hydrogens; the score model's training molecules had at "
                         f"most {max_atoms} (extrapolation)")
        charge = Chem.GetFormalCharge(mol)
        if domain.get("charge") is not None and charge != domain["charge"]:
            notes.append(f"total charge {charge:+d}; the score model was trained on molecules of charge "
                         f"{domain['charge']} only (extrapolation)")
        return notes

    def coordinates(self, mol: Chem.Mol, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
        pos = np.asarray(self.sampler.sample(mol, n, seed, self.sampler_settings), dtype=np.float64)  # [n,N,3]
        if pos.shape != (n, mol.GetNumAtoms(), 3):
            raise ValueError(f"the sampler returned coordinates of shape {pos.shape}, "
                             f"expected ({n}, {mol.GetNumAtoms()}, 3)")
        finite = np.isfinite(pos).all(axis=(1, 2))  # [n]
        if not finite.any():
            raise ValueError("the sampler diverged: every conformer has non-finite coordinates")
        dropped = int((~finite).sum())
        notes = [f"{dropped} of {n} samples diverged (non-finite coordinates) and were dropped"] if dropped else []
        return pos[finite], notes


def load_clofnet_method(model: str | None = None, device: str = "cpu", preset: str | None = None,
                        steps: int | None = None, precision: str = "auto") -> ClofnetMethod:
    """Load the score model ``model`` (shipped name or ``.pt`` path) and its sampler settings.

    ``precision``: ``float32``, ``bfloat16`` or ``auto`` (bfloat16 where ``device`` multiplies it natively; see
    :func:`se3mol.conformers.sampler.resolve_precision`).

    Raises:
        ModelUnavailableError: if the model is not installed (naming it, with what to do instead) or the
            ClofNet sampler is not part of this installation.
        ValueError: for an unknown preset or precision, or a non-positive ``steps``.
    """
    from dataclasses import replace

    spec = model or DEFAULT_SCORE_MODEL
    hint = "use --method etkdg, or --model PATH to a score model trained with `se3mol train --task conformers`"
    path, shipped = _score_model_path(spec)
    if not path.is_file():
        what = (f"the score model {spec!r} is not installed (no {path})" if shipped
                else f"score model file {path} does not exist")
        raise ModelUnavailableError(f"{what}; {hint}")
    try:
        from se3mol.conformers.sampler import SamplerSettings, ScoreSampler, resolve_precision
    except ImportError as exc:
        raise ModelUnavailableError(f"the ClofNet sampler is not available in this installation ({exc}); {hint}") \
            from None
    settings = SamplerSettings.preset(preset or "default")
    if steps is not None:
        if steps < 1:
            raise ValueError("--steps must be at least 1")
        settings = replace(settings, steps=steps)
    settings = replace(settings, precision=resolve_precision(precision, device))
    try:
        sampler = ScoreSampler.load(str(path), device=device)
    except FileNotFoundError as exc:
        raise ModelUnavailableError(f"{exc}; {hint}") from None
    return ClofnetMethod(sampler=sampler, sampler_settings=settings, model=spec)


def select_conformers(mol: Chem.Mol, pos: np.ndarray, n: int) -> tuple[np.ndarray, list[str]]:
    """Which ``n`` of the conformers ``pos [K,N,3]`` (atoms of ``mol``, explicit hydrogens) to keep: the least
    strained, then the most diverse. Returns them in their original order, and notes.

    1. Rank by MMFF94 energy as sampled (no minimisation), which for a sampled conformer is dominated by strain:
       distorted rings, eclipsed or crowded groups, bonds and angles off. Conformers the output would flag rank
       last: a stereo element the SMILES specifies the wrong way round, a stretched bond or overlapping atoms
       (:mod:`se3mol.conformers.geometry`).
    2. Drop the most strained half of the surplus, rounded down (of 12 for 10, the most strained 1; of 15, 2),
       and every flawed conformer while enough whole ones remain.
    3. From the rest, farthest-point selection on heavy-atom best RMSD (the coverage metric's distance): first
       the least strained, then each time the one farthest from those kept. Near-duplicates waste places.

    On 300 QM9 validation molecules with stereo-free SMILES, sampling 12 for 10 this way is expected to cover
    84.2% of the DFT geometries against 82.3% for 10 plain samples (+1.9 +- 0.2 points, paired) and 83.6% for the
    10 of lowest energy; of 15, 86.0% (+3.7); ranking by minimised energy instead loses coverage
    (``benchmarks/conformers/results/conformer_selection_diverse.md``). Raises nothing: without MMFF94 parameters the
    conformers are not ranked by strain (step 2 keeps them all), with a note.
    """
    from se3mol.chem import rdkit_messages
    from se3mol.conformers.geometry import clashes, nonbonded_pairs, stretched_bonds
    from se3mol.conformers.metrics import heavy_atom_rmsd_matrix, split_conformers
    from se3mol.conformers.stereo import stereo_targets, stereo_wrong

    k = len(pos)
    if k <= n:
        return pos, []
    notes: list[str] = []
    work = Chem.Mol(mol)  # MMFF typing rewrites aromaticity flags; keep them off the molecule written out
    with rdkit_messages():
        props = AllChem.MMFFGetMoleculeProperties(work)
    if props is None:
        energy = np.zeros(k)
        notes.append(f"kept {n} of {k} samples without ranking them by strain: MMFF94 has no parameters for this "
                     "molecule")
    else:
        work.RemoveAllConformers()
        work.AddConformer(Chem.Conformer(mol.GetNumAtoms()), assignId=True)
        ff = AllChem.MMFFGetMoleculeForceField(work, props)
        energy = np.array([ff.CalcEnergy(x.ravel().tolist()) for x in pos])
        energy[~np.isfinite(energy)] = np.inf
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    bonds = np.array([[b.GetBeginAtomIdx(), b.GetEndAtomIdx()] for b in mol.GetBonds()]).reshape(-1, 2)
    flawed = stretched_bonds(pos, z, bonds).any(-1) | clashes(pos, z, nonbonded_pairs(mol)).any(-1)
    targets = stereo_targets(mol)
    if len(targets):
        flawed |= stereo_wrong(pos, targets).any(-1)
    order = np.lexsort((energy, flawed))  # whole conformers first, each group least strained first
    whole = int((~flawed).sum())
    if props is not None:
        order = order[:n + (k - n + 1) // 2]
    if whole < n:  # every whole conformer is kept; the least strained flawed ones fill the places left
        return pos[np.sort(order[:n])], notes
    order = order[:whole]  # flawed ones sort last: drop those left in the ranking
    if len(order) > n and (z > 1).sum() >= 2:
        single = split_conformers(_with_conformers(mol, pos[order]))
        dist, _ = heavy_atom_rmsd_matrix(single, single)
        chosen = [0]
        nearest = np.asarray(dist[0], dtype=np.float64).copy()
        nearest[0] = -1.0
        while len(chosen) < n:
            pick = int(np.argmax(nearest))
            chosen.append(pick)
            nearest = np.minimum(nearest, dist[pick])
            nearest[chosen] = -1.0
        order = order[chosen]
    return pos[np.sort(order[:n])], notes


def _with_conformers(mol: Chem.Mol, pos: np.ndarray) -> Chem.Mol:
    """A copy of ``mol`` whose conformers are ``pos [K,N,3]`` (Angstrom), in order, flagged 3D."""
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    for xyz in pos:
        conf = Chem.Conformer(mol.GetNumAtoms())
        for i, (x, y, z) in enumerate(xyz.tolist()):
            conf.SetAtomPosition(i, Point3D(x, y, z))
        conf.Set3D(True)
        out.AddConformer(conf, assignId=True)
    return out


def _score_model_path(spec: str) -> tuple[Path, bool]:
    """The checkpoint file named by ``spec`` and whether it names a shipped model (not a path)."""
    from se3mol.pretrained import models_dir

    p = Path(spec)
    if p.suffix == ".pt" or os.sep in spec or p.exists():
        return p, False
    return models_dir() / f"{spec}.pt", True


# --------------------------------------------------------------------------------------------------------
# Relaxation
# --------------------------------------------------------------------------------------------------------


@dataclass
class RelaxOutcome:
    """What MMFF94 minimisation did to one conformer (energies in kcal/mol).

    ``stereo_restrained`` is true when a free minimisation inverted a stereo element the SMILES specifies and the
    conformer had right, so it was minimised again from its start with the elements it had right restrained.
    """

    converged: bool
    energy_before: float
    energy_after: float
    stereo_restrained: bool = False


def relax_mmff(mol: Chem.Mol, max_iters: int = MMFF_MAX_ITERS) -> list[RelaxOutcome]:
    """Minimise every conformer of ``mol`` with MMFF94 (RDKit), one outcome per conformer.

    Only the coordinates of ``mol`` change: MMFF typing runs on a copy, because RDKit's MMFF set-up
    rewrites aromaticity flags to the MMFF model, which would change the molecule written out (and stop it
    matching the same molecule read elsewhere).

    Stereo the SMILES specifies is kept: a distorted centre can fall to the other hand in minimisation. When a
    stereo element that was right before minimisation is wrong after it, the conformer starts again from its
    input coordinates and is minimised with dihedral restraints that hold the sign of every element it had
    right (:func:`_stereo_restraint`; holding only the inverted ones can let another one go), then minimised
    freely from there; if that inverts one again, the restrained minimum is kept. Either way
    ``stereo_restrained`` says so, and the energies are those of plain MMFF94.

    Raises:
        ValueError: if MMFF94 has no parameters for the molecule.
    """
    from se3mol.chem import rdkit_messages
    from se3mol.conformers.stereo import stereo_targets, stereo_wrong

    work = Chem.Mol(mol)
    with rdkit_messages():
        props = AllChem.MMFFGetMoleculeProperties(work)
    if props is None:
        raise ValueError("MMFF94 has no parameters for this molecule; run without --relax")
    targets = stereo_targets(mol)

    def minimise(cid: int, restrain: Sequence[tuple[tuple[int, int, int, int], float, float]] = ()) -> bool:
        ff = AllChem.MMFFGetMoleculeForceField(work, props, confId=cid)
        for (a, b, c, d), lo, hi in restrain:
            ff.MMFFAddTorsionConstraint(a, b, c, d, False, lo, hi, RESTRAINT_FORCE)
        return ff.Minimize(maxIts=max_iters) == 0

    def set_positions(conf: Chem.Conformer, xyz: np.ndarray) -> None:
        for i, p in enumerate(xyz.tolist()):
            conf.SetAtomPosition(i, Point3D(*p))

    outcomes = []
    for conf, work_conf in zip(mol.GetConformers(), work.GetConformers(), strict=True):
        cid = work_conf.GetId()
        start = work_conf.GetPositions()
        ff = AllChem.MMFFGetMoleculeForceField(work, props, confId=cid)  # plain MMFF94: minimises, and scores
        before = ff.CalcEnergy()
        converged = ff.Minimize(maxIts=max_iters) == 0
        restrained = False
        if len(targets):
            wrong_before, wrong_after = stereo_wrong(np.stack([start, work_conf.GetPositions()]), targets)
            right = np.flatnonzero(~wrong_before)
            if wrong_after[right].any():
                restrained = True
                set_positions(work_conf, start)
                converged = minimise(cid, [_stereo_restraint(work_conf, targets, int(k)) for k in right])
                held = work_conf.GetPositions()
                free_converged = minimise(cid)
                if stereo_wrong(work_conf.GetPositions()[None], targets)[0][right].any():
                    set_positions(work_conf, held)
                else:
                    converged = free_converged
        after = ff.CalcEnergy(work_conf.GetPositions().ravel().tolist())
        outcomes.append(RelaxOutcome(converged=converged, energy_before=float(before), energy_after=float(after),
                                     stereo_restrained=restrained))
        set_positions(conf, work_conf.GetPositions())
    return outcomes


def _stereo_restraint(conf: Chem.Conformer, targets, k: int) -> tuple[tuple[int, int, int, int], float, float]:
    """Dihedral restraint ``(atoms, lo, hi)`` (degrees) that keeps stereo element ``k`` as conformer ``conf`` has it.

    A centre's dihedral ``n0-centre-n1-n2`` has the sign of its volume read from the centre (RDKit's reading),
    so holding the sign the conformer has, away from 0 and 180 degrees, holds the hand. A double bond's
    dihedral is held on its side (cis or trans).
    """
    from rdkit.Chem import rdMolTransforms

    m = RESTRAINT_MARGIN
    if k < len(targets.centers):
        n0, n1, n2 = (int(a) for a in targets.neighbors[k])
        atoms = (n0, int(targets.centers[k]), n1, n2)
        phi = rdMolTransforms.GetDihedralDeg(conf, *atoms)
        return (atoms, m, 180.0 - m) if phi > 0 else (atoms, m - 180.0, -m)
    a, b, c, d = (int(x) for x in targets.bonds[k - len(targets.centers)])
    phi = rdMolTransforms.GetDihedralDeg(conf, a, b, c, d)
    return ((a, b, c, d), -90.0 + m, 90.0 - m) if abs(phi) < 90 else ((a, b, c, d), 90.0 + m, 270.0 - m)


# --------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------


@dataclass
class ConformerResult:
    """The conformers of one input molecule, or why there are none.

    Attributes:
        input: what was asked for.
        status: ``"ok"``, ``"warning"`` (fewer conformers than asked for, a conformer with wrong stereo, a
            stretched bond or overlapping atoms, or a molecule outside the model's training domain; see
            ``notes``) or ``"error"``.
        error: why no conformer was generated (``status == "error"``).
        mol: the molecule with explicit hydrogens and one RDKit conformer per generated conformer.
        canonical_smiles: canonical (isomeric) SMILES of the input, ``""`` if it did not parse.
        seed: the derived per-molecule seed.
        method, settings: the method's name and settings (written into every record).
        relax: one MMFF outcome per conformer with ``--relax``, else ``None``.
        seconds: wall time for this molecule (embedding, sampling, relaxation).
        notes: remarks, e.g. conformers dropped.
        stereo: per conformer, the stereo elements the SMILES specifies that it has the wrong way round
            (``se3mol.conformers.stereo``); empty lists when all are right or none is specified.
        stretched: per conformer, its bonds longer than any conformer can have them
            (:func:`~se3mol.conformers.geometry.stretched_bonds`), e.g. ``"C1-C2 (2.41 A)"``; empty when none is.
        clashes: per conformer, its atom pairs 3 or more bonds apart that overlap
            (:func:`~se3mol.conformers.geometry.clashes`), e.g. ``"C1...C7 (0.62 A)"``; empty when none does.
        extrapolation: how the molecule lies outside what the method was fitted to
            (:meth:`ClofnetMethod.extrapolation`); empty when it does not.
    """

    input: SmilesInput
    status: str
    error: str | None = None
    mol: Chem.Mol | None = None
    canonical_smiles: str = ""
    seed: int | None = None
    method: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    base_seed: int | None = None
    relax: list[RelaxOutcome] | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    stereo: list[list[str]] = field(default_factory=list)
    stretched: list[list[str]] = field(default_factory=list)
    clashes: list[list[str]] = field(default_factory=list)
    extrapolation: list[str] = field(default_factory=list)

    @property
    def n_conformers(self) -> int:
        return 0 if self.mol is None else self.mol.GetNumConformers()

    def records(self) -> Iterator[tuple[Chem.Mol, int, str, dict[str, Any]]]:
        """``(mol, conf_id, title, properties)`` for each conformer: what an SD writer needs."""
        if self.mol is None:
            return
        settings = json.dumps(self.settings, sort_keys=True)
        for k, conf in enumerate(self.mol.GetConformers(), start=1):
            props: dict[str, Any] = {
                "smiles": self.input.smiles,
                "canonical_smiles": self.canonical_smiles,
                **({"name": self.input.name} if self.input.name else {}),
                "conformer": k,
                "n_conformers": self.n_conformers,
                "method": self.method + ("+mmff" if self.relax is not None else ""),
                "seed": self.seed,
                "base_seed": self.base_seed,
                "settings": settings,
            }
            if self.stereo:
                props["stereo_mismatch"] = ", ".join(self.stereo[k - 1]) or "none"
            props["stretched_bonds"] = (", ".join(self.stretched[k - 1]) if self.stretched else "") or "none"
            props["clashes"] = (", ".join(self.clashes[k - 1]) if self.clashes else "") or "none"
            props["extrapolation"] = "; ".join(self.extrapolation) or "none"
            if self.relax is not None:
                r = self.relax[k - 1]
                props.update({"mmff_converged": int(r.converged),
                              "mmff_energy_before_kcal_mol": round(r.energy_before, 4),
                              "mmff_energy_after_kcal_mol": round(r.energy_after, 4)})
                if r.stereo_restrained:
                    props["mmff_stereo_restrained"] = 1
            yield self.mol, conf.GetId(), f"{self.input.label} conf {k}", props


def _check_stereo(mol: Chem.Mol) -> list[list[str]]:
    """Per conformer of ``mol``, the specified stereo elements it has wrong; ``[]`` if none is specified."""
    from se3mol.conformers.stereo import stereo_mismatches, stereo_targets

    targets = stereo_targets(mol)
    if not len(targets) or not mol.GetNumConformers():
        return []
    return stereo_mismatches(np.stack([c.GetPositions() for c in mol.GetConformers()]), targets)


def _check_bonds(mol: Chem.Mol) -> list[list[str]]:
    """Per conformer of ``mol``, its stretched bonds as ``"C1-C2 (2.41 A)"``; ``[]`` if no conformer has one."""
    from se3mol.conformers.geometry import stretched_bonds

    ends = np.array([[b.GetBeginAtomIdx(), b.GetEndAtomIdx()] for b in mol.GetBonds()]).reshape(-1, 2)
    return _name_pairs(mol, ends, stretched_bonds, "-", closest_first=False)


def _check_clashes(mol: Chem.Mol) -> list[list[str]]:
    """Per conformer of ``mol``, its overlapping atom pairs as ``"C1...C7 (0.62 A)"``, closest first;
    ``[]`` if no conformer has one."""
    from se3mol.conformers.geometry import clashes, nonbonded_pairs

    return _name_pairs(mol, nonbonded_pairs(mol), clashes, "...", closest_first=True)


def _name_pairs(mol: Chem.Mol, pairs: np.ndarray, test, sep: str, closest_first: bool,
                most: int = 3) -> list[list[str]]:
    """Per conformer of ``mol``, the atom ``pairs [P,2]`` that ``test(pos, z, pairs) -> [K,P]`` flags, named with
    their distance, the ``most`` closest (or furthest) first, then how many more; ``[]`` if no conformer has one."""
    if not mol.GetNumConformers() or not len(pairs):
        return []
    pos = np.stack([c.GetPositions() for c in mol.GetConformers()])
    bad = test(pos, np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), pairs)  # [K,P]
    if not bad.any():
        return []
    sym = [f"{a.GetSymbol()}{a.GetIdx() + 1}" for a in mol.GetAtoms()]
    named = []
    for x, row in zip(pos, bad, strict=True):
        flagged = pairs[row]
        d = np.linalg.norm(x[flagged[:, 0]] - x[flagged[:, 1]], axis=-1)
        order = np.argsort(d if closest_first else -d)
        names = [f"{sym[flagged[k, 0]]}{sep}{sym[flagged[k, 1]]} ({d[k]:.2f} A)" for k in order[:most]]
        named.append(names + ([f"{len(order) - most} more"] if len(order) > most else []))
    return named


@dataclass(frozen=True)
class _ConformerCheck:
    """A check of every finished conformer: ``run(mol)`` gives, per conformer, what it found (empty when
    nothing), stored in ``ConformerResult.<field>``; ``finding`` completes the summary note "N of K conformers"."""

    field: str
    run: Any
    finding: str


_CONFORMER_CHECKS = (
    _ConformerCheck("stereo", _check_stereo,
                    "do not have the stereo the SMILES specifies (SD property stereo_mismatch)"),
    _ConformerCheck("stretched", _check_bonds,
                    "have a bond stretched beyond any conformer's (SD property stretched_bonds)"),
    _ConformerCheck("clashes", _check_clashes,
                    "have atoms closer than half their van der Waals distance (SD property clashes)"),
)


def generate_conformers(items: Iterable[SmilesInput], method: ConformerMethod, n: int, seed: int = 0,
                        relax: bool = False) -> Iterator[ConformerResult]:
    """Generate ``n`` conformers per molecule with ``method``, one :class:`ConformerResult` per input, in order.

    Never raises for a bad molecule: invalid SMILES, elements the method does not know, failed embeddings
    and MMFF failures become results with ``status == "error"`` and go on to the next molecule.
    """
    if n < 1:
        raise ValueError("the number of conformers must be at least 1")
    if not getattr(method, "oversample", 1.0) >= 1:
        raise ValueError(f"oversample must be at least 1, got {method.oversample}")
    for item in items:
        yield generate_one(item, method, n, seed, relax)


def generate_one(item: SmilesInput, method: ConformerMethod, n: int, seed: int = 0,
                 relax: bool = False) -> ConformerResult:
    """:func:`generate_conformers` for one input."""
    t0 = time.perf_counter()
    result = ConformerResult(input=item, status="error", method=method.name, settings=method.settings(),
                             base_seed=seed)
    if item.error is not None:
        result.error = item.error
        return result
    try:
        mol = molecule_from_smiles(item.smiles)
        result.canonical_smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
        result.seed = derive_seed(seed, result.canonical_smiles)
        method.check(mol)
        result.extrapolation = method.extrapolation(mol)
        result.notes.extend(result.extrapolation)
        asked = math.ceil(getattr(method, "oversample", 1.0) * n - 1e-9)
        pos, notes = method.coordinates(mol, asked, result.seed)  # [K,N,3]
        if asked > n:  # the method's notes count what it was asked for: say why that is more than -n
            notes = [f"{note} ({asked} sampled to keep {n}: --oversample {method.oversample:g})" for note in notes]
            pos, selection_notes = select_conformers(mol, pos, n)
            notes += selection_notes
        result.notes.extend(notes)
        mol = _with_conformers(mol, pos)
        if relax:
            result.relax = relax_mmff(mol)
            unconverged = sum(not r.converged for r in result.relax)
            if unconverged:
                result.notes.append(f"MMFF did not converge in {MMFF_MAX_ITERS} steps for {unconverged} conformer(s)")
            restrained = sum(r.stereo_restrained for r in result.relax)
            if restrained:
                result.notes.append(f"MMFF inverted specified stereo in {restrained} conformer(s), which were "
                                    "minimised again with it restrained (SD property mmff_stereo_restrained)")
        flawed = bool(result.extrapolation)
        for check in _CONFORMER_CHECKS:
            per_conformer = check.run(mol)
            setattr(result, check.field, per_conformer)
            count = sum(bool(found) for found in per_conformer)
            if count:
                result.notes.append(f"{count} of {mol.GetNumConformers()} conformers {check.finding}")
                flawed = True
        result.mol = mol
        result.status = "ok" if mol.GetNumConformers() == n and not flawed else "warning"
    except ValueError as exc:
        result.error = str(exc)
        result.mol = None
    result.seconds = time.perf_counter() - t0
    return result
