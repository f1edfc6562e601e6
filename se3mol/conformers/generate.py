"""Conformer generation from SMILES, one molecule at a time, so that one bad molecule never stops the others.

What ``se3mol conformers`` runs, composed of one module per step:

    SMILES argument / file / stdin -> :class:`~se3mol.conformers.inputs.SmilesInput` (``inputs``)
    -> RDKit molecule with explicit hydrogens -> coordinates ``[K,N,3]`` from a
    :class:`~se3mol.conformers.methods.ConformerMethod` (``methods``) -> the ``n`` least strained, most diverse
    of them (``select``) -> (MMFF relaxation, ``relax``) -> flaw checks (``checks``)
    -> :class:`ConformerResult` -> SD records (:meth:`ConformerResult.records`).

Bonds, formal charges and stereo come from the SMILES; the method only places the atoms. Each molecule
is seeded with :func:`~se3mol.conformers.inputs.derive_seed` from the base seed and its canonical SMILES, so its
conformers do not depend on which other molecules were given, or in what order.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rdkit import Chem

from se3mol.chem import conformer_positions, rdkit_from_smiles, select_fragments, with_conformers
from se3mol.conformers.checks import FINDINGS, ConformerChecks
from se3mol.conformers.inputs import SmilesInput, derive_seed
from se3mol.conformers.methods import ConformerMethod
from se3mol.conformers.relax import MMFF_MAX_ITERS, RelaxOutcome
from se3mol.conformers.relax import relax as relax_conformers
from se3mol.conformers.select import select_conformers
from se3mol.conformers.xtb import XTB_MAX_STEPS

__all__ = ["ConformerResult", "generate_conformers", "generate_one"]


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
        relax: one outcome per conformer with ``--relax`` (MMFF94 energies in kcal/mol, GFN2-xTB's in Eh), else
            ``None``.
        seconds: wall time for this molecule (embedding, sampling, relaxation).
        notes: remarks, e.g. conformers dropped.
        stereo: per conformer, the stereo elements the SMILES specifies that it has the wrong way round
            (``se3mol.conformers.stereo``); empty lists when all are right or none is specified.
        stretched: per conformer, its bonds longer than any conformer can have them
            (:class:`~se3mol.conformers.checks.ConformerChecks`), e.g. ``"C1-C2 (2.41 A)"``; empty when none is.
        clashes: per conformer, its atom pairs 3 or more bonds apart that overlap
            (:class:`~se3mol.conformers.checks.ConformerChecks`), e.g. ``"C1...C7 (0.62 A)"``; empty when none does.
        extrapolation: how the molecule lies outside what the method was fitted to
            (:meth:`~se3mol.conformers.methods.ClofnetMethod.extrapolation`); empty when it does not.
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
                "method": self.method + (f"+{self.relax[0].method}" if self.relax else ""),
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
                if r.method == "xtb":
                    props.update({"xtb_converged": int(r.converged),
                                  "xtb_energy_before_eh": round(r.energy_before, 8),
                                  "xtb_energy_after_eh": round(r.energy_after, 8)})
                else:
                    props.update({"mmff_converged": int(r.converged),
                                  "mmff_energy_before_kcal_mol": round(r.energy_before, 4),
                                  "mmff_energy_after_kcal_mol": round(r.energy_after, 4)})
                if r.stereo_restrained:
                    props["mmff_stereo_restrained"] = 1
            yield self.mol, conf.GetId(), f"{self.input.label} conf {k}", props


def generate_conformers(items: Iterable[SmilesInput], method: ConformerMethod, n: int, seed: int = 0,
                        relax: bool | str | None = None) -> Iterator[ConformerResult]:
    """Generate ``n`` conformers per molecule with ``method``, one :class:`ConformerResult` per input, in order.

    ``relax``: ``"mmff"`` (or ``True``), ``"xtb"`` (:data:`~se3mol.conformers.relax.RELAX_METHODS`) or ``None``.

    Never raises for a bad molecule: invalid SMILES, elements the method does not know, failed embeddings
    and MMFF failures become results with ``status == "error"`` and go on to the next molecule.
    """
    if n < 1:
        raise ValueError("the number of conformers must be at least 1")
    if relax == "xtb":
        from se3mol.conformers.xtb import require_tblite

        require_tblite()  # once, before the first molecule, rather than as every molecule's error
    if not getattr(method, "oversample", 1.0) >= 1:
        raise ValueError(f"oversample must be at least 1, got {method.oversample}")
    for item in items:
        yield generate_one(item, method, n, seed, relax)


def generate_one(item: SmilesInput, method: ConformerMethod, n: int, seed: int = 0,
                 relax: bool | str | None = None) -> ConformerResult:
    """:func:`generate_conformers` for one input."""
    relax = "mmff" if relax is True else (relax or None)
    t0 = time.perf_counter()
    result = ConformerResult(input=item, status="error", method=method.name, settings=method.settings(),
                             base_seed=seed)
    if item.error is not None:
        result.error = item.error
        return result
    try:
        mol, fragment_notes = select_fragments(rdkit_from_smiles(item.smiles))  # --fragments
        if len(Chem.GetMolFrags(mol)) > 1:
            raise ValueError("conformers of several fragments at once are not generated (--fragments all); use "
                             "--fragments largest, or give each fragment as its own SMILES")
        result.notes.extend(fragment_notes)
        mol = Chem.AddHs(mol)
        result.canonical_smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
        result.seed = derive_seed(seed, result.canonical_smiles)
        choose = getattr(method, "choose", None)  # --method auto: the method that fits this molecule
        if choose is not None:
            method, why = choose(mol)
            result.method, result.settings = method.name, method.settings()
            result.notes.append(why)
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
        mol = with_conformers(mol, pos)
        if relax:
            result.relax = relax_conformers(mol, relax)
            unconverged = sum(not r.converged for r in result.relax)
            if unconverged:
                limit = f"{MMFF_MAX_ITERS} steps" if relax == "mmff" else f"{XTB_MAX_STEPS} L-BFGS steps"
                result.notes.append(f"{'MMFF' if relax == 'mmff' else 'GFN2-xTB'} did not converge in {limit} for "
                                    f"{unconverged} conformer(s)")
            restrained = sum(r.stereo_restrained for r in result.relax)
            if restrained:
                result.notes.append(f"MMFF inverted specified stereo in {restrained} conformer(s), which were "
                                    "minimised again with it restrained (SD property mmff_stereo_restrained)")
        flawed = bool(result.extrapolation)
        for check, per_conformer in ConformerChecks.of(mol).describe(conformer_positions(mol)).items():
            setattr(result, check, per_conformer)
            count = sum(bool(found) for found in per_conformer)
            if count:
                result.notes.append(f"{count} of {mol.GetNumConformers()} conformers {FINDINGS[check]}")
                flawed = True
        result.mol = mol
        result.status = "ok" if mol.GetNumConformers() == n and not flawed else "warning"
    except ValueError as exc:
        result.error = str(exc)
        result.mol = None
    result.seconds = time.perf_counter() - t0
    return result
