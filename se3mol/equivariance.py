"""The equivariance checker: does a model's output transform as its declared kind says it must?

One function, :func:`check`, used by ``se3mol check-equivariance`` and by the test that runs over every
registered model. For each trial it draws, from a seeded generator,

- a proper **rotation** and an improper **reflection** (a rotation times the inversion ``-I``),
- a **translation** of several Angstrom,
- a **permutation** of the atoms within each molecule,

applies it to the input and compares ``f(g x)`` with ``g f(x)`` for every output the model declares:

==============  =========================  ==========================  ===============  ===========
kind            rotation ``R``             reflection ``P = -R'``      translation      permutation
==============  =========================  ==========================  ===============  ===========
scalar [B]      unchanged                  unchanged                   unchanged        unchanged
atom_scalar     unchanged                  unchanged                   unchanged        permuted
vector [B,3]    ``R v``                    ``P v`` (polar vector)      unchanged        unchanged
tensor2         ``R T R^T``                ``P T P^T``                 unchanged        unchanged
atom_vector     ``R v_i``                  ``P v_i``                   unchanged        permuted
==============  =========================  ==========================  ===============  ===========

Vector inputs of a batch (``node_vec``, e.g. velocities) are rotated and reflected with the positions,
and permuted with the atoms, but not translated; invariant inputs (``node_attr``) are permuted.

Each molecule of the batch gets its *own* rotation, reflection and translation. A model that couples
molecules of one batch (a batch-wide centroid or normalisation) is then caught too: batched molecules
are independent inputs, so they must be transformable independently.

Error measure. For each (output, transform) row, ``max_abs_error`` is the largest absolute
difference between ``f(g x)`` and ``g f(x)`` over all elements and trials, in the output's units;
``max_rel_error`` divides it by the largest absolute value of the expected output ``g f(x)``
(one scale per output, not per element, so components that happen to be near zero do not inflate
it). Outputs have different units (meV, Debye), so the pass test is relative: a row passes when
``max_rel_error < tolerance``. An output that is zero by symmetry (the dipole of CO2)
has no scale to be relative to; there float64 round-off of unit-sized intermediates (~1e-16) is
the only error an equivariant model makes, so a row also passes when
``max_abs_error < tolerance * ABS_FLOOR`` (1e-12 at the default tolerance of 1e-9). Any NaN or
infinity fails. The default tolerance suits float64, where exact equivariance shows as ~1e-15
and a non-equivariant model is off by 1e-3 or more.

Graphs. Edges of ``full`` and ``radius`` graphs are rebuilt from ``model.graph`` for the reference
and for every transformed input (a radius graph depends on the geometry), exactly as ``collate``
would build them for transformed molecules. Bond graphs are not geometric: the batch's edges are
kept and, under permutation, relabelled.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from se3mol.graph import Batch, GraphConfig, full_edges, radius_edges
from se3mol.molecule import Molecule
from se3mol.nn.heads import ATOM_SCALAR, ATOM_VECTOR, SCALAR, TENSOR2, VECTOR
from se3mol.nn.model import Model, build_model

TRANSFORMS: tuple[str, ...] = ("rotation", "reflection", "translation", "permutation")
# A row whose absolute error is below tolerance * ABS_FLOOR passes even when its relative error
# is meaningless (expected output ~0); see the module docstring.
ABS_FLOOR: float = 1e-3
# Length scale of the random translations, Angstrom: each component ~ N(0, 3^2), |t| ~ 5 A.
TRANSLATION_SCALE: float = 3.0
# Targets of a freshly initialised network: an invariant scalar, a dipole (norm + vector), a rank-2 tensor.
FRESH_TARGETS: tuple[str, ...] = ("gap", "mu", "alpha_tensor")
# Molecules of default_molecules(): H/C/N/O/F only, 3 to 14 atoms, each size different, and where
# their centroids are put (Angstrom).
DEFAULT_SMILES: tuple[str, ...] = ("O", "CC#N", "OCC(=O)O", "c1ccncc1", "FC(F)(F)C(N)CO")
_DEFAULT_CENTROIDS: tuple[tuple[float, float, float], ...] = (
    (1.3, -0.4, 2.1), (-2.6, 1.7, 0.3), (0.8, 3.1, -1.9), (-1.1, -2.8, -0.6), (3.4, 0.9, 1.2))


@dataclass
class CheckRow:
    """One (output, transformation) comparison.

    Attributes:
        output: name of the model output (``gap``, ``mu_vector``).
        kind: its declared kind (``scalar``, ``atom_scalar``, ``vector``, ``tensor2``, ``atom_vector``).
        transform: ``rotation``, ``reflection``, ``translation`` or ``permutation``.
        max_abs_error: largest ``|f(g x) - g f(x)|`` over elements and trials (output units; NaN if any
            output was NaN).
        max_rel_error: ``max_abs_error`` over the largest ``|g f(x)|``.
        passed: within tolerance and finite.
        expected: False where the model does not claim this symmetry (reflections for models that
            are SE(3)- but not E(3)-equivariant); such a row never fails the report.
    """

    output: str
    kind: str
    transform: str
    max_abs_error: float
    max_rel_error: float
    passed: bool
    expected: bool = True

    @property
    def status(self) -> str:
        """``"pass"``, ``"FAIL"`` or ``"not expected"``."""
        if not self.expected:
            return "not expected"
        return "pass" if self.passed else "FAIL"


@dataclass
class EquivarianceReport:
    """All rows of one :func:`check`, with what was checked.

    Attributes:
        rows: one per (output, transformation).
        dtype: floating type the model ran in (``"float64"``).
        n_molecules: molecules in the batch.
        n_atoms: atoms of each molecule.
        trials: random transformations drawn per kind.
        tolerance: relative tolerance of the pass test.
    """

    rows: list[CheckRow]
    dtype: str
    n_molecules: int
    n_atoms: list[int]
    trials: int
    tolerance: float

    @property
    def passed(self) -> bool:
        """True when every row the model claims (``expected``) passed."""
        return all(r.passed for r in self.rows if r.expected)

    @property
    def failures(self) -> list[CheckRow]:
        return [r for r in self.rows if r.expected and not r.passed]

    def to_dict(self) -> dict:
        """Plain, strict-JSON data: non-finite errors (NaN, inf) become ``None``."""
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["status"] = r.status
            for key in ("max_abs_error", "max_rel_error"):
                d[key] = d[key] if math.isfinite(d[key]) else None
            rows.append(d)
        return {
            "passed": self.passed,
            "dtype": self.dtype,
            "n_molecules": self.n_molecules,
            "n_atoms": list(self.n_atoms),
            "trials": self.trials,
            "tolerance": self.tolerance,
            "rows": rows,
        }


def check(model: Model, batch: Batch, *, trials: int = 3, seed: int = 0, tolerance: float = 1e-9,
          dtype: torch.dtype = torch.float64) -> EquivarianceReport:
    """Check that every output of ``model`` transforms as its declared kind requires.

    ``model`` is a :class:`~se3mol.nn.model.MoleculeModel`, or anything with its contract
    (``forward(batch)``, ``output_kinds()``, ``graph``). It is deep-copied, cast to ``dtype`` and run
    in eval mode without gradients, so the caller's model is untouched. Reflection rows are reported
    as not expected when ``model.representation.reflection_equivariant`` is False.

    ``batch`` should be collated with ``model.graph`` (bond graphs need the molecules' bonds).

    >>> from se3mol.graph import collate
    >>> from se3mol.targets import get_target
    >>> model = build_model("egnn", [get_target("gap")], config={"hidden": 8, "layers": 1})
    >>> check(model, collate(default_molecules()[:2], model.graph), trials=1).passed
    True
    """
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    kinds = model.output_kinds()
    unknown = {k for k in kinds.values() if k not in (SCALAR, ATOM_SCALAR, VECTOR, TENSOR2, ATOM_VECTOR)}
    if unknown:
        raise ValueError(f"the checker does not know output kind(s) {sorted(unknown)}")
    graph: GraphConfig = model.graph
    model = copy.deepcopy(model).to(dtype).eval()
    device = next((p.device for p in model.parameters()), batch.pos.device)
    base = _regraph(batch.to(device=device, dtype=dtype), graph)
    reflections = bool(getattr(getattr(model, "representation", None), "reflection_equivariant", True))

    gen = torch.Generator().manual_seed(seed)
    worst: dict[tuple[str, str], _Worst] = {(o, t): _Worst() for o in kinds for t in TRANSFORMS}
    with torch.no_grad():
        ref = _run(model, base, kinds)
        for _ in range(trials):
            for transform in TRANSFORMS:
                moved, expect = _draw(transform, base, graph, gen)
                out = _run(model, moved, kinds)
                for name, kind in kinds.items():
                    worst[(name, transform)].update(out[name], expect(ref[name], kind))

    rows = []
    for (name, transform), w in worst.items():
        rel = w.error / w.scale if w.scale > 0 else (0.0 if w.error == 0 else math.inf)
        if not w.finite:
            rel = math.nan
        passed = w.finite and (rel < tolerance or w.error < tolerance * ABS_FLOOR)
        rows.append(CheckRow(name, kinds[name], transform, w.error, rel, passed,
                             expected=reflections or transform != "reflection"))
    return EquivarianceReport(rows=rows, dtype=str(dtype).removeprefix("torch."),
                              n_molecules=batch.num_graphs, n_atoms=batch.counts.tolist(), trials=trials,
                              tolerance=tolerance)


def default_molecules() -> list[Molecule]:
    """Five small molecules of different sizes (3 to 14 atoms; H, C, N, O, F), with bonds.

    Embedded from :data:`DEFAULT_SMILES` by :func:`se3mol.io.embed_smiles` (RDKit ETKDG with a fixed
    seed, then a force field), so every call gives the same geometries: linear, planar and chiral
    ones, in no special orientation. Like molecules read from files, they are not centred on the
    origin: on centred molecules a rotation about the origin cannot reveal a model that mistakes the
    origin for the molecule's centre.

    >>> [m.n_atoms for m in default_molecules()]
    [3, 6, 9, 11, 14]
    """
    from se3mol.chem import embed_smiles

    mols = []
    for smiles, centroid in zip(DEFAULT_SMILES, _DEFAULT_CENTROIDS, strict=True):
        m = embed_smiles(smiles, seed=0, name=smiles)
        m.pos = m.pos - m.pos.mean(0) + np.asarray(centroid)  # [n,3]
        m.notes.append(f"translated to centroid {centroid} A")
        mols.append(m)
    return mols


def model_to_check(spec: str | os.PathLike, seed: int = 0) -> Model:
    """The model named by ``spec``, ready for :func:`check`.

    A registry name (``egnn``, ``control-mlp``) gives a freshly initialised network of that family with
    its default config and the targets :data:`FRESH_TARGETS`, so scalar and vector outputs are both
    checked; ``seed`` fixes its weights. Anything else is a shipped model name or a checkpoint path of
    any kind (property or conformer score model: :func:`se3mol.checkpoint.load_any`); an
    existing file wins over a registry name. A shipped ensemble's name gives its first member: the members
    share one architecture, and a mean of equivariant models is equivariant.

    Raises ``FileNotFoundError`` or ``ValueError`` (``CheckpointError``) if the model cannot be loaded.
    """
    from se3mol.nn.registry import model_names
    from se3mol.pretrained import load_pretrained
    from se3mol.targets import get_target

    name = str(spec)
    if name in model_names(include_controls=True) and not Path(name).is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_model(name, [get_target(t) for t in FRESH_TARGETS])
    from se3mol.pretrained import load_any, resolve_checkpoint

    if Path(name).is_dir() or Path(name).suffix == ".pt":
        return load_pretrained(spec)[0]  # run directories and files: as predict reads them
    return load_any(resolve_checkpoint(spec))[0]


# ---------------------------------------------------------------------------------------------------
# Transformations. Each returns the transformed batch and ``expect(reference_output, kind)``, the
# output an equivariant model must give on it.

Expect = Callable[[Tensor, str], Tensor]


def _draw(transform: str, batch: Batch, graph: GraphConfig, gen: torch.Generator) -> tuple[Batch, Expect]:
    b = batch.num_graphs
    if transform in ("rotation", "reflection"):
        rot = _random_rotations(b, gen).to(batch.pos)  # [B,3,3]
        if transform == "reflection":
            rot = -rot  # improper: det -1
        pos = torch.einsum("nij,nj->ni", rot[batch.batch], batch.pos)  # [N,3]
        moved = batch.replace(pos=pos)
        if batch.node_vec is not None:  # vector inputs (velocities) rotate with the positions
            moved = moved.replace(node_vec=torch.einsum("nij,ncj->nci", rot[batch.batch], batch.node_vec))
        return _regraph(moved, graph), lambda ref, kind: _rotate_output(ref, kind, rot, batch.batch)
    if transform == "translation":
        shift = (torch.randn(b, 3, generator=gen) * TRANSLATION_SCALE).to(batch.pos)  # [B,3]
        moved = _regraph(batch.replace(pos=batch.pos + shift[batch.batch]), graph)
        return moved, lambda ref, kind: ref
    if transform == "permutation":
        perm = _random_permutation(batch.counts, gen).to(batch.pos.device)  # [N] new -> old
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(len(perm), device=perm.device)  # old -> new
        moved = batch.replace(z=batch.z[perm], pos=batch.pos[perm], edge_index=inverse[batch.edge_index])
        for name in ("node_attr", "node_vec"):
            if getattr(batch, name) is not None:
                moved = moved.replace(**{name: getattr(batch, name)[perm]})
        return _regraph(moved, graph), lambda ref, kind: ref[perm] if kind in (ATOM_SCALAR, ATOM_VECTOR) else ref
    raise ValueError(f"unknown transformation {transform!r}")


def _rotate_output(ref: Tensor, kind: str, rot: Tensor, atom_batch: Tensor) -> Tensor:
    if kind == VECTOR:
        return torch.einsum("bij,bj->bi", rot, ref)  # [B,3]
    if kind == ATOM_VECTOR:
        return torch.einsum("nij,nj->ni", rot[atom_batch], ref)  # [N,3]
    if kind == TENSOR2:
        return rot @ ref @ rot.transpose(1, 2)  # [B,3,3]
    return ref  # scalar, atom_scalar: invariant


def _random_rotations(n: int, gen: torch.Generator) -> Tensor:
    """``n`` proper rotations ``[n,3,3]``, uniform (Haar) on SO(3): QR of Gaussian matrices."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]  # unique Q: Haar on O(3)
    q[:, :, 0] *= torch.sign(torch.linalg.det(q))[:, None]  # flip one column where det = -1
    return q


def _random_permutation(counts: Tensor, gen: torch.Generator) -> Tensor:
    """Permutation ``[N]`` (new index -> old index) that shuffles atoms within each molecule only,
    moving at least one atom of every molecule that has two or more."""
    parts, offset = [], 0
    for n in counts.tolist():
        p = torch.arange(n)
        while n > 1 and bool((p == torch.arange(n)).all()):
            p = torch.randperm(n, generator=gen)
        parts.append(p + offset)
        offset += n
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def _regraph(batch: Batch, graph: GraphConfig) -> Batch:
    """Rebuild geometric graphs (full, radius) as ``collate`` would; keep bond graphs' edges."""
    if graph.kind == "full":
        return batch.replace(edge_index=full_edges(batch.counts).to(batch.pos.device), edge_attr=None)
    if graph.kind == "radius":
        return batch.replace(edge_index=radius_edges(batch.pos, batch.counts, graph.cutoff), edge_attr=None)
    return batch


def _run(model: nn.Module, batch: Batch, kinds: dict[str, str]) -> dict[str, Tensor]:
    out = model(batch)
    missing = set(kinds) - set(out)
    if missing:
        raise ValueError(f"model declares output(s) {sorted(missing)} but did not return them")
    return out


@dataclass
class _Worst:
    """Running maxima over trials of one row: error ``max |got - want|`` and scale ``max |want|``."""

    error: float = 0.0
    scale: float = 0.0
    finite: bool = True

    def update(self, got: Tensor, want: Tensor) -> None:
        if got.shape != want.shape:
            raise ValueError(f"output shape changed under transformation: {tuple(want.shape)} -> "
                             f"{tuple(got.shape)}")
        if not (torch.isfinite(got).all() and torch.isfinite(want).all()):
            self.finite, self.error = False, math.nan
        if not self.finite or got.numel() == 0:
            return
        self.error = max(self.error, float((got - want).abs().max()))
        self.scale = max(self.scale, float(want.abs().max()))
