"""How conformers are placed: the :class:`ConformerMethod` contract, its methods (RDKit ETKDG, the ClofNet score
model, and the hybrid of the two: ETKDG conformers refined by the score model), and :data:`METHODS`, the one list
of method names that ``se3mol conformers --method`` offers.

The score-based sampler (``se3mol.conformers.sampler``, torch) is imported only when a ClofNet method is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDistGeom

from se3mol.chem import clean_rdkit_messages, rdkit_messages
from se3mol.conformers.checks import ConformerChecks
from se3mol.molecule import check_elements
from se3mol.pretrained import models_dir, names_a_path

__all__ = [
    "AutoMethod",
    "CLOFNET_OVERSAMPLE",
    "DEFAULT_HYBRID_MODEL",
    "DEFAULT_SCORE_MODEL",
    "METHODS",
    "HYBRID_OVERSAMPLE",
    "HYBRID_START_SIGMA",
    "ClofnetMethod",
    "ConformerMethod",
    "EtkdgMethod",
    "HybridMethod",
    "MethodEntry",
    "ModelUnavailableError",
    "load_auto_method",
    "load_clofnet_method",
    "load_hybrid_method",
    "make_method",
    "with_sampler_settings",
]

#: The shipped score model ``--method clofnet`` uses unless ``--model`` says otherwise.
DEFAULT_SCORE_MODEL = "conformers-clofnet-qm9"
#: The score model ``--method hybrid`` refines with: trained on drug-like GFN2-xTB ensembles (H C N O F S Cl Br).
DEFAULT_HYBRID_MODEL = "conformers-clofnet-drugs"
#: ``--method clofnet`` samples this many times the conformers asked for and keeps the least strained and most
#: diverse (:func:`~se3mol.conformers.select.select_conformers`). On 300 QM9 validation molecules with stereo-free
#: SMILES (pools of 40 samples each, benchmarks/conformers/results/conformer_selection_m40.md), 10 kept are
#: expected to cover 83.6% of the DFT geometries as plain samples, 85.2% of 12, 88.0% of 20, 89.9% of 30 and
#: 91.7% of 40; 30 took 1.29 s per molecule on two threads (bfloat16), 40 took 1.58 s, against the 2 s of the
#: benchmark's goal, which 3 meets with a margin.
CLOFNET_OVERSAMPLE = 3.0


class ConformerMethod(Protocol):
    """Places the atoms of a molecule: ``coordinates(mol, n, seed) -> [n,N,3]`` in Angstrom.

    ``mol`` has explicit hydrogens and its atom order defines the rows. ``check`` raises ValueError for a
    molecule the method cannot handle (before any time is spent); ``extrapolation`` names the ways a molecule
    it can handle lies outside what it was fitted to (a learned model's training molecules), each a warning;
    ``coordinates`` may return fewer than ``n`` conformers (with a note saying why) but raises ValueError
    when it has none. ``oversample`` (at least 1): :func:`~se3mol.conformers.generate.generate_one` asks for
    ``ceil(oversample * n)`` conformers and keeps ``n``, the least strained and most diverse
    (:func:`~se3mol.conformers.select.select_conformers`).
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
        work = Chem.Mol(mol)
        params: Any = rdDistGeom.ETKDGv3()  # Any: RDKit's stubs type its settings (randomSeed, ...) wrongly
        params.randomSeed = seed
        params.numThreads = 1
        params.maxIterations = self.max_attempts
        notes: list[str] = []
        with rdkit_messages() as messages:
            ids = list(rdDistGeom.EmbedMultipleConfs(work, numConfs=n, params=params))
            if len(ids) < n:
                params.useRandomCoords = True
                params.clearConfs = False
                params.randomSeed = (seed + 1) % (2**31 - 1)
                extra = list(rdDistGeom.EmbedMultipleConfs(work, numConfs=n - len(ids), params=params))
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
        domain_hint: what the error for a molecule with elements the score model does not know suggests.
    """

    sampler: Any
    sampler_settings: Any
    model: str = DEFAULT_SCORE_MODEL
    name: str = "clofnet"
    oversample: float = CLOFNET_OVERSAMPLE
    domain_hint: str = ("use --method hybrid (its score model knows H, C, N, O, F, S, Cl, Br) or --method etkdg "
                        "for this molecule")

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, **self.sampler_settings.to_dict(), "oversample": self.oversample}

    def check(self, mol: Chem.Mol) -> None:
        check_elements((a.GetAtomicNum() for a in mol.GetAtoms()), self.sampler.elements, "the score model's",
                       hint=self.domain_hint)

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

    def samples(self, mol: Chem.Mol, n: int, seed: int, start: np.ndarray | None = None) -> np.ndarray:
        """``n`` samples ``[n,N,3]`` as the sampler returns them, non-finite ones included (``start [n,N,3]``:
        those conformers refined, as :meth:`ScoreSampler.sample` does)."""
        if start is None:
            pos = self.sampler.sample(mol, n, seed, self.sampler_settings)
        else:
            pos = self.sampler.sample(mol, n, seed, self.sampler_settings, start=start)
        pos = np.asarray(pos, dtype=np.float64)  # [n,N,3]
        if pos.shape != (n, mol.GetNumAtoms(), 3):
            raise ValueError(f"the sampler returned coordinates of shape {pos.shape}, "
                             f"expected ({n}, {mol.GetNumAtoms()}, 3)")
        return pos

    def coordinates(self, mol: Chem.Mol, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
        """``n`` samples; non-finite ones (a diverged sampler) are dropped, with a note."""
        return _drop_diverged(self.samples(mol, n, seed))


def _drop_diverged(pos: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The finite conformers of ``pos [K,N,3]`` and a note on those dropped; ValueError if none is finite."""
    finite = np.isfinite(pos).all(axis=(1, 2))  # [K]
    if not finite.any():
        raise ValueError("the sampler diverged: every conformer has non-finite coordinates")
    dropped = int((~finite).sum())
    notes = [f"{dropped} of {len(pos)} samples diverged (non-finite coordinates) and were dropped"] if dropped else []
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
    spec = model or DEFAULT_SCORE_MODEL
    hint = "use --method etkdg, or --model PATH to a score model trained with `se3mol train --task conformers`"
    path, shipped = _score_model_path(spec)
    if not path.is_file():
        what = (f"the score model {spec!r} is not installed (no {path})" if shipped
                else f"score model file {path} does not exist")
        raise ModelUnavailableError(f"{what}; {hint}")
    try:  # on use: the sampler is torch code that ETKDG users never load, and may be missing from an install
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


#: Noise (Angstrom) at which ``--method hybrid`` takes up ETKDG's conformers: the score model's levels from here down
#: correct bond lengths, angles and contacts, while the torsions ETKDG drew stay. Chosen on 72 held-out MOSES
#: molecules with the drug score model (0.04, 0.08, 0.15, 0.3, 0.6 A: smaller is better down to 0.08; 0.6 loses
#: coverage), benchmarks/conformers/results/tuning/drugs_val_r1_s*.md.
HYBRID_START_SIGMA = 0.08
#: ``--method hybrid`` refines this many times the conformers asked for and keeps the least strained, most diverse
#: (:func:`~se3mol.conformers.select.select_conformers`). On the same 72 molecules (twice the reference count
#: kept), 1, 2 and 3 gave COV-R 91.6, 94.1, 94.5% and MAT-R 0.768, 0.700, 0.665 A, against ETKDG's 91.5% / 0.780 A
#: and 92.4% / 0.726 A for ETKDG oversampled 2 the same way; 3 took 3.3 s per 10 conformers on one busy core
#: (benchmarks/conformers/results/tuning/drugs_val_r1_oversample.md).
HYBRID_OVERSAMPLE = 3.0


@dataclass
class HybridMethod:
    """ETKDG conformers refined by the score model: each perturbed at ``start_sigma`` and annealed down the rest
    of the noise schedule (``SamplerSettings.start_sigma``). Distance geometry draws the shape (torsions, ring
    puckers) the way it does for any size of molecule; the learned score corrects the local geometry towards
    the minima it was trained on, as a force-field relaxation would.

    Attributes:
        start: the ETKDG method that makes the starting conformers.
        refine: the ClofNet method (its ``sampler_settings.start_sigma`` set) that refines them.
        oversample: refine this many times the conformers asked for and keep the least strained, most diverse
            (:data:`HYBRID_OVERSAMPLE`; 1 keeps every refinement).
    """

    start: EtkdgMethod
    refine: ClofnetMethod
    name: str = "hybrid"
    oversample: float = HYBRID_OVERSAMPLE

    def settings(self) -> dict[str, Any]:
        return {"start": self.start.settings(), **self.refine.settings(), "oversample": self.oversample}

    def check(self, mol: Chem.Mol) -> None:
        self.refine.check(mol)

    def extrapolation(self, mol: Chem.Mol) -> list[str]:
        return self.refine.extrapolation(mol)

    def coordinates(self, mol: Chem.Mol, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
        """ETKDG's conformers refined. The sampler samples a refinement with a flaw again (from the same start,
        ``resample`` times); one still flawed, or non-finite, after that is replaced by its starting conformer
        as ETKDG drew it when that is whole (with a note), so the hybrid never writes a flaw ETKDG avoided.
        In the 100-molecule benchmark one refined conformer of 1,768 kept a clash (C...H 1.30 A across a
        cycloheptane ring); its start had none."""
        start, notes = self.start.coordinates(mol, n, seed)
        pos = self.refine.samples(mol, len(start), seed, start=start)  # [k,N,3]
        checks = ConformerChecks.of(mol, stereo=self.refine.sampler_settings.stereo_weight > 0)
        finite = np.isfinite(pos).all(axis=(1, 2))  # [k]
        bad = ~finite
        bad[finite] = checks.flawed(pos[finite])
        back = bad & ~checks.flawed(start)  # [k] refinements to undo
        pos[back] = start[back]
        if back.any():
            notes.append(f"{int(back.sum())} of {len(pos)} conformers are ETKDG's as drawn, unrefined: the score "
                         "model's refinements of them kept a clash, a torn bond or a wrong stereo element")
        pos, more = _drop_diverged(pos)
        return pos, notes + more


def load_hybrid_method(model: str | None = None, device: str = "cpu", preset: str | None = None,
                       steps: int | None = None, precision: str = "auto",
                       start_sigma: float = HYBRID_START_SIGMA) -> HybridMethod:
    """ETKDG refined by score model ``model`` from noise ``start_sigma`` (:class:`HybridMethod`); the other
    arguments and the errors are those of :func:`load_clofnet_method`."""
    refine = load_clofnet_method(model or DEFAULT_HYBRID_MODEL, device, preset, steps, precision)
    refine = replace(refine, sampler_settings=replace(refine.sampler_settings, start_sigma=start_sigma),
                     oversample=1.0, domain_hint="use --method etkdg for this molecule")
    return HybridMethod(start=EtkdgMethod(), refine=refine)


@dataclass
class AutoMethod:
    """The method that fits each molecule, the default of ``se3mol conformers``: the QM9 score model inside its
    training domain (its elements, at most as many atoms as its largest training molecule, its total charge),
    the hybrid (ETKDG refined by the drug-like score model) outside it where that model knows the elements, and
    ETKDG for the rest (P, I, B, Si, metals), with a note saying why. Each record's ``method`` names the method
    that made it.

    On 30 approved drugs the QM9 score model alone failed 13 molecules (S, Cl, P) and 24 of its 85 conformers
    clashed, at 37 s per molecule; the hybrid made clean conformers at ~2 s per molecule.

    Attributes:
        load_qm9, load_drugs: make the two score-model methods, on first use (each loads a checkpoint).
    """

    load_qm9: Callable[[], ClofnetMethod]
    load_drugs: Callable[[], HybridMethod]
    etkdg: EtkdgMethod = field(default_factory=EtkdgMethod)
    name: str = "auto"
    oversample: float = 1.0
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    def settings(self) -> dict[str, Any]:
        return {"choice": "per molecule: clofnet (QM9 score model) in its domain, hybrid where the drug score "
                          "model knows the elements, etkdg otherwise"}

    def check(self, mol: Chem.Mol) -> None:
        return None  # ETKDG takes every molecule

    def extrapolation(self, mol: Chem.Mol) -> list[str]:
        return []

    def coordinates(self, mol: Chem.Mol, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
        method, why = self.choose(mol)
        pos, notes = method.coordinates(mol, n, seed)
        return pos, [why, *notes]

    def _method(self, key: str) -> Any:
        if key not in self._loaded:
            self._loaded[key] = self.load_qm9() if key == "qm9" else self.load_drugs()
        return self._loaded[key]

    def choose(self, mol: Chem.Mol) -> tuple[ConformerMethod, str]:
        """The method for ``mol`` and a note that says which and why."""
        qm9 = self._method("qm9")
        try:
            qm9.check(mol)
            outside = qm9.extrapolation(mol)
        except ValueError as exc:
            outside = [str(exc).split(";")[0]]
        if not outside:
            return qm9, "method clofnet (--method auto): inside the QM9 score model's training domain"
        drugs = self._method("drugs")
        try:
            drugs.check(mol)
        except ValueError as exc:
            return self.etkdg, (f"method etkdg (--method auto): {str(exc).split(';')[0]}, and outside the QM9 "
                                "score model's domain")
        return drugs, f"method hybrid (--method auto): outside the QM9 score model's domain ({'; '.join(outside)})"


def load_auto_method(device: str = "cpu", preset: str | None = None, steps: int | None = None,
                     precision: str = "auto") -> AutoMethod:
    """:class:`AutoMethod` with the shipped score models, loaded when a molecule first needs one (both are checked
    to be installed now); the arguments and errors are those of :func:`load_clofnet_method`."""
    for spec in (DEFAULT_SCORE_MODEL, DEFAULT_HYBRID_MODEL):
        path, _ = _score_model_path(spec)
        if not path.is_file():
            raise ModelUnavailableError(f"the score model {spec!r} is not installed (no {path}); use --method etkdg")
    return AutoMethod(load_qm9=lambda: load_clofnet_method(None, device, preset, steps, precision),
                      load_drugs=lambda: load_hybrid_method(None, device, preset, steps, precision))


def with_sampler_settings(method: ConformerMethod, changes: dict[str, Any]) -> ConformerMethod:
    """``method`` with its score model's sampler settings changed (:class:`SamplerSettings` fields), for
    clofnet and hybrid; a method without a score model is returned as is."""
    if isinstance(method, HybridMethod):
        refine = method.refine
        return replace(method, refine=replace(refine, sampler_settings=replace(refine.sampler_settings, **changes)))
    if isinstance(method, ClofnetMethod):
        return replace(method, sampler_settings=replace(method.sampler_settings, **changes))
    return method


def _score_model_path(spec: str) -> tuple[Path, bool]:
    """The checkpoint file named by ``spec`` and whether it names a shipped model (not a path)."""
    if names_a_path(spec):
        return Path(spec), False
    return models_dir() / f"{spec}.pt", True


@dataclass(frozen=True)
class MethodEntry:
    """One conformer method as the command line offers it.

    Attributes:
        name: what ``--method`` takes.
        summary: a few words for ``--help``.
        build: makes the method from the keyword ``options`` it takes.
        options: the load options it takes, of ``model``, ``device``, ``preset``, ``steps``, ``precision``,
            ``start_sigma`` (the command line refuses the others for this method).
    """

    name: str
    summary: str
    build: Callable[..., ConformerMethod]
    options: tuple[str, ...] = ()


#: The conformer methods, by name, the default first: the choices and help of ``se3mol conformers --method``.
METHODS: dict[str, MethodEntry] = {
    entry.name: entry for entry in (
        MethodEntry("auto", "per molecule: clofnet in the QM9 score model's domain, else hybrid, else etkdg",
                    load_auto_method, ("device", "preset", "steps", "precision")),
        MethodEntry("clofnet", "score model + annealed Langevin dynamics", load_clofnet_method,
                    ("model", "device", "preset", "steps", "precision")),
        MethodEntry("etkdg", "RDKit ETKDGv3", lambda: EtkdgMethod()),
        MethodEntry("hybrid", "ETKDGv3 conformers refined by the score model", load_hybrid_method,
                    ("model", "device", "preset", "steps", "precision", "start_sigma")),
    )
}


def make_method(name: str, **options: Any) -> ConformerMethod:
    """The method ``name`` of :data:`METHODS`, built with those of ``options`` that it takes (others must be None).

    Raises:
        ValueError: for an unknown name, or an option (not None) the method does not take.
        ModelUnavailableError: if the method's model cannot be loaded.
    """
    if name not in METHODS:
        raise ValueError(f"unknown conformer method {name!r}; choose {', '.join(METHODS)}")
    entry = METHODS[name]
    extra = [k for k, v in options.items() if v is not None and k not in entry.options]
    if extra:
        raise ValueError(f"{', '.join(extra)} do(es) not apply to the {name} method")
    return entry.build(**{k: v for k, v in options.items() if k in entry.options and v is not None})
