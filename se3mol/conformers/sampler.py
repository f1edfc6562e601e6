"""Annealed Langevin dynamics with a conformer score model (Song & Ermon 2019; ConfGF; ClofNet).

Start from Gaussian noise of scale ``sigma_max``; for each noise level from largest to smallest run
``steps`` updates

    x <- x + s * score(x, sigma) + sqrt(2 s) * z,      s = eps * (sigma / sigma_min)^2,  z ~ N(0, I)

with the score's per-atom norm clipped (in units of ``1/sigma``), and finally one denoising step
``x <- x + sigma_min^2 * score(x, sigma_min)`` (Tweedie's formula), which removes the last level's
noise. Noise and starting points have their per-molecule mean removed, so molecules do not drift.
The ``n`` conformers of one molecule are sampled together as one batch; a seed fixes them all.

Stereo the SMILES specifies (tetrahedral centres, double bonds) is enforced by adding the gradient of a
wrong-hand penalty (:mod:`se3mol.conformers.stereo`) to the score, scaled like the score by ``1/sigma^2``
and clipped per atom like it (at ``stereo_clip``). The network sees no stereo tags, so without it a chiral
centre comes out either way round. A conformer that still ends with a stereo element wrong, or with a bond
stretched beyond any conformer's (a fused ring system formed the wrong way round can only be pulled right by
stretching a ring bond), or with two atoms on top of each other (:mod:`se3mol.conformers.geometry`), is
sampled again, up to ``resample`` times.

Optionally (``repulsion``, off by default) the conformers of a molecule repel each other while they are sampled
(particle guidance, :func:`repulsion_score`). On QM9 validation molecules it lowers coverage
(``benchmarks/conformers/results/conformer_sampler_repulsion.md``).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from se3mol.chem import bonds_from_rdkit
from se3mol.conformers.checks import ConformerChecks
from se3mol.conformers.score import LEVELS, SIGMA_MAX, SIGMA_MIN, ScoreModel, kabsch_align, noise_levels
from se3mol.conformers.stereo import StereoTargets, stereo_penalty
from se3mol.graph import collate
from se3mol.molecule import Molecule, check_elements
from se3mol.nn.layers import center_positions, exp_neg
from se3mol.pretrained import load_score_model, resolve_checkpoint

# ConfGF's step size for 100 steps per level; fewer steps take proportionally larger ones.
PAPER_EPS, PAPER_STEPS = 2.4e-6, 100
PRECISIONS = ("float32", "bfloat16")


def native_bfloat16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX instructions (elsewhere bfloat16 products are emulated and slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:  # private helpers of torch.cpu; a torch without them is treated as lacking the instructions
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``"auto"``: ``"bfloat16"`` where :func:`native_bfloat16`, else ``"float32"``; other values as given."""
    if precision == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose auto, {', '.join(PRECISIONS)}")
    return precision


@dataclass
class SamplerSettings:
    """Annealed Langevin settings.

    Attributes:
        sigma_max, sigma_min, levels: the geometric noise schedule (Angstrom); the score model was
            trained on 10 -> 0.01 in 50 levels.
        steps: Langevin steps per level.
        coarse_sigma, coarse_steps: levels with ``sigma`` above ``coarse_sigma`` (Angstrom) take ``coarse_steps``
            steps instead (``None``: every level takes ``steps``). Sampling is cheaper where the molecule is
            still a cloud and its shape is not yet decided.
        eps: step size at ``sigma_min`` (s = eps * (sigma / sigma_min)^2) for ``steps`` steps per level;
            ``None`` takes ``2.4e-6 * 100 / steps``, so that fewer steps cover the same diffusion time. A level
            with ``coarse_steps`` steps takes ``steps / coarse_steps`` times larger ones, for the same reason.
        clip: largest per-atom norm of ``sigma * score`` (the network's unit-scale output).
        denoise: finish with one noise-free Tweedie step at ``sigma_min``.
        stereo_weight: strength of the pull towards the stereo the SMILES specifies (0 turns it off);
            per step it moves atoms by about ``stereo_weight * eps / sigma_min^2`` times the penalty gradient.
        resample: rounds in which conformers with a stretched bond, overlapping atoms or a wrong stereo element
            are sampled again.
        stereo_clip: largest per-atom norm of ``sigma`` times the stereo term, as ``clip`` is for the score: a step
            moves an atom by at most ``stereo_clip / clip`` times as far for stereo as the score can.
        repulsion: weight of the particle-guidance term (:func:`repulsion_score`) that pushes the conformers of
            one molecule apart while they are sampled (0 samples them independently). Clipped like the score.
        repulsion_sigma: apply the repulsion only at levels with ``sigma`` at most this (Angstrom; ``None``: all).
        start_sigma: refinement (Angstrom; ``None``: sample from noise). Given starting conformers
            (:meth:`ScoreSampler.sample`'s ``start``), each is perturbed with noise of this size and taken down the
            levels of the schedule at or below it: the learned score corrects a conformer made by another method
            (ETKDG) without redrawing its shape at large noise.
        temperature: scale of the variance of all noise the sampler adds (the Langevin term ``sqrt(2 s T) z``
            and a refinement's perturbation of its start, ``sqrt(T) start_sigma z``): 1 samples the learned
            distribution; 0 follows the score alone, a descent of the learned energy from the start, smoothed at
            each level and sharpened level by level, to its nearest minimum, as a force field's minimiser would.
        precision: ``"float32"``, or ``"bfloat16"``: the score network's matrix products in bfloat16 (autocast),
            positions, noise and updates still in float32. Where the hardware multiplies bfloat16 natively
            (:func:`native_bfloat16`), 30 samples of a QM9 molecule took 1.13 s against 1.36 s on two threads
            (``benchmarks/speed/results/allocator.md``), for a relative change of the score of about 0.4%.
    """

    sigma_max: float = SIGMA_MAX
    sigma_min: float = SIGMA_MIN
    levels: int = LEVELS
    steps: int = 2
    coarse_sigma: float | None = None
    coarse_steps: int = 1
    eps: float | None = None
    clip: float = 5.0
    denoise: bool = True
    stereo_weight: float = 1.0
    stereo_clip: float = 10.0
    resample: int = 3
    repulsion: float = 0.0
    repulsion_sigma: float | None = None
    start_sigma: float | None = None
    temperature: float = 1.0
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose {', '.join(PRECISIONS)}")
        if self.levels < 1 or self.steps < 1 or self.coarse_steps < 1:
            raise ValueError(f"levels and steps must be at least 1 (got {self.levels}, {self.steps}, "
                             f"{self.coarse_steps})")
        if self.temperature < 0:
            raise ValueError(f"temperature must be at least 0 (got {self.temperature})")
        if self.repulsion < 0:
            raise ValueError(f"repulsion must be at least 0 (got {self.repulsion})")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max (got {self.sigma_min}, {self.sigma_max})")
        if self.start_sigma is not None and not self.sigma_min <= self.start_sigma <= self.sigma_max:
            raise ValueError(f"start_sigma must lie between sigma_min and sigma_max (got {self.start_sigma})")

    @property
    def step_size(self) -> float:
        return self.eps if self.eps is not None else PAPER_EPS * PAPER_STEPS / self.steps

    @classmethod
    def preset(cls, name: str) -> SamplerSettings:
        """``fast`` (50 levels x 1 step), ``default`` (50 x 2) or ``paper`` (50 x 100, ConfGF's step size).

        Fewer evaluations cost accuracy: on 100 QM9 validation molecules (reference stereo, the all-pairs score
        model shipped before the 3-hop one, ``benchmarks/conformers/results/conformer_sampler_schedule.md``) MAT-R is
        0.143 A with 50 x 2, 0.165 A with one step above 0.3 A (``coarse_sigma=0.3``, 76 evaluations) and
        0.245 A with 50 x 1.
        """
        presets = {"fast": cls(steps=1), "default": cls(), "paper": cls(steps=PAPER_STEPS, eps=PAPER_EPS)}
        if name not in presets:
            raise ValueError(f"unknown sampler preset {name!r}; choose {', '.join(presets)}")
        return presets[name]

    def schedule(self) -> list[tuple[float, int, float]]:
        """``(sigma, steps, step size s)`` of every level, largest sigma first (with ``start_sigma``: of the
        levels at or below it)."""
        out = []
        for sigma in noise_levels(self.sigma_max, self.sigma_min, self.levels).tolist():
            if self.start_sigma is not None and sigma > self.start_sigma * (1 + 1e-9):
                continue
            steps = self.coarse_steps if self.coarse_sigma is not None and sigma > self.coarse_sigma else self.steps
            eps = self.step_size if steps == self.steps else self.step_size * self.steps / steps
            out.append((sigma, steps, eps * (sigma / self.sigma_min) ** 2))
        return out

    @property
    def evaluations(self) -> int:
        """Score-model evaluations per sample (every step, and the denoising step)."""
        return sum(steps for _, steps, _ in self.schedule()) + int(self.denoise)

    def with_steps(self, steps: int | None) -> SamplerSettings:
        return self if steps is None else replace(self, steps=steps)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "eps": self.step_size}


def repulsion_score(x: Tensor, weight: float) -> Tensor:
    """Particle guidance (Corso et al., ICLR 2024) for the conformers ``x [n,M,3]`` of one molecule: the gradient
    ``[n,M,3]`` (1/Angstrom) of ``log Phi = -(weight * M / 2) * sum_{i != j} exp(-d_ij^2 / h)``.

    ``d_ij`` is the RMSD of conformers i and j after the best proper rotation (mirror images count as different,
    as they do for the coverage metric), and ``h`` is the median of ``d_ij^2`` over the pairs divided by
    ``log n`` (the median heuristic of Stein variational gradient descent), held fixed. Added to the score, it
    pushes each conformer away from the others, most from the closest; the ``M`` makes its per-atom pull
    independent of the number of atoms. The gradient of a superimposed RMSD is the residual at the optimal
    rotation (the rotation's own derivative drops out), so no derivative of the SVD is needed. Invariant under
    rotating or translating any one conformer, whose own term rotates with it; each term sums to zero over
    the atoms, so no conformer drifts.
    """
    n, m = x.shape[:2]
    if n < 2 or m < 3 or weight == 0:
        return torch.zeros_like(x)
    i, j = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(n, device=x.device), indexing="ij")
    target, moved = x[i.reshape(-1)].reshape(-1, 3), x[j.reshape(-1)].reshape(-1, 3)  # pair (i, j): x_j onto x_i
    pair = torch.arange(n * n, device=x.device).repeat_interleave(m)
    r = (target - kabsch_align(moved, target, pair, n * n)).reshape(n, n, m, 3)  # r_ij = x_i - R_ij x_j
    d2 = r.pow(2).sum(-1).mean(-1)  # [n,n]
    off = ~torch.eye(n, dtype=torch.bool, device=x.device)
    h = (d2[off].median() / math.log(n)).clamp(min=1e-6)  # identical conformers: no direction to push in
    k = exp_neg(d2 / h) * off  # no subnormal weights (far-apart pairs): see exp_neg
    # d(d_ij^2)/dx_i = 2 r_ij / M, and k_ji = k_ij contributes the same again, which the 1/2 cancels.
    return 2 * weight / h * torch.einsum("ij,ijma->ima", k, r)


class ScoreSampler:
    """Generates conformers of RDKit molecules with a trained :class:`ScoreModel`.

    >>> # sampler = ScoreSampler.load("conformers-clofnet-qm9"); xyz = sampler.sample(mol, 10, seed=0)
    """

    def __init__(self, model: ScoreModel, checkpoint: dict[str, Any] | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.checkpoint = checkpoint or {}
        self.elements: tuple[int, ...] = model.elements

    @classmethod
    def load(cls, spec: str | os.PathLike, device: str | torch.device = "cpu") -> ScoreSampler:
        """A shipped score model by name (e.g. ``conformers-clofnet-qm9``) or a checkpoint path."""
        model, ckpt = load_score_model(resolve_checkpoint(spec), device)
        return cls(model, ckpt, device)

    def molecule(self, mol) -> Molecule:
        """The graph of RDKit molecule ``mol`` (explicit hydrogens) as a :class:`Molecule` at the origin."""
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)  # [N]
        check_elements(z, self.elements, "the score model's")
        if len(z) > 1 and not any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()) and mol.GetNumBonds() and \
                any(a.GetTotalNumHs() for a in mol.GetAtoms()):
            raise ValueError("the molecule has implicit hydrogens; add them first (Chem.AddHs)")
        bonds, orders = bonds_from_rdkit(mol)  # [M,2], [M]
        return Molecule(z=z, pos=np.zeros((len(z), 3)), bonds=bonds, bond_orders=orders)

    @torch.no_grad()
    def sample(self, mol, n: int, seed: int = 0, settings: SamplerSettings | None = None,
               start: np.ndarray | None = None) -> np.ndarray:
        """``n`` conformers of ``mol`` (RDKit, explicit H) as coordinates ``[n,N,3]`` (Angstrom).

        ``start [n,N,3]``: conformers to refine (``settings.start_sigma`` must be set): conformer ``k`` of the
        result is ``start[k]`` perturbed and denoised, a resampled one again from ``start[k]``.

        Conformers that come out with a stretched bond, with overlapping atoms or, despite the stereo term, with a
        specified stereo element the wrong way round (:class:`~se3mol.conformers.checks.ConformerChecks`) are
        sampled again, up to ``settings.resample`` times, with the same generator (so the result depends only
        on ``mol``, ``n`` and ``seed``)."""
        if n < 1:
            raise ValueError(f"number of conformers must be at least 1, got {n}")
        settings = settings or SamplerSettings()
        if (start is None) != (settings.start_sigma is None):
            raise ValueError("refining needs both starting conformers and settings.start_sigma")
        if start is not None:
            start = np.asarray(start, dtype=np.float64)
            if start.shape != (n, mol.GetNumAtoms(), 3):
                raise ValueError(f"start has shape {start.shape}, expected ({n}, {mol.GetNumAtoms()}, 3)")
        template = self.molecule(mol)
        gen = torch.Generator().manual_seed(int(seed))
        checks = ConformerChecks.of(mol, stereo=settings.stereo_weight > 0)
        targets = checks.stereo
        flawed = checks.flawed

        xyz = self._langevin(template, n, gen, settings, targets, start)
        redo = flawed(xyz)
        for _ in range(settings.resample):
            if not redo.any():
                break
            idx = np.flatnonzero(redo)
            xyz[idx] = self._langevin(template, len(idx), gen, settings, targets,
                                      None if start is None else start[idx])
            redo[idx] = flawed(xyz[idx])
        return xyz

    def _langevin(self, template: Molecule, n: int, gen: torch.Generator, settings: SamplerSettings,
                  targets: StereoTargets | None, start: np.ndarray | None = None) -> np.ndarray:
        """One run of annealed Langevin dynamics: ``n`` conformers ``[n,N,3]`` of ``template`` (from noise, or
        from ``start [n,N,3]`` perturbed at ``settings.start_sigma``)."""
        batch = collate([template] * n, self.model.graph).to(self.device)
        dtype = batch.pos.dtype

        def noise() -> Tensor:
            z = torch.randn(batch.pos.shape, generator=gen, dtype=dtype).to(self.device)
            return center_positions(z, batch.batch, n)

        def stereo_pull(x: Tensor) -> Tensor:  # [N,3] minus the gradient of the wrong-hand penalty
            assert targets is not None  # only called when there are stereo targets
            with torch.enable_grad():
                xr = x.detach().reshape(n, template.n_atoms, 3).requires_grad_(True)
                (grad,) = torch.autograd.grad(stereo_penalty(xr, targets).sum(), xr)
            return -grad.reshape(-1, 3)

        def clipped(s: Tensor, sigma: float, clip: float) -> Tensor:  # per-atom norm of sigma * s at most clip
            norm = (s * sigma).norm(dim=-1, keepdim=True)
            return s * torch.clamp(clip / norm.clamp(min=1e-12), max=1.0)

        low = settings.precision == "bfloat16"

        def score(x: Tensor, sigma: float) -> Tensor:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=low):
                out = self.model.score(batch.replace(pos=x), torch.full((n,), sigma, dtype=dtype, device=self.device))
            return clipped(out.to(dtype), sigma, settings.clip)

        def stereo(x: Tensor, sigma: float) -> Tensor | float:
            """The stereo pull as a score term ``[N,3]``, clipped like the score but at ``stereo_clip``: uncapped,
            the penalty's gradient is unbounded where a double bond's neighbour lies on the bond's axis, and
            at small sigma it outweighs the score so far that it stretched bonds to tens of Angstrom."""
            if not targets:
                return 0.0
            return clipped(settings.stereo_weight / sigma ** 2 * stereo_pull(x), sigma, settings.stereo_clip)

        heavy = torch.as_tensor(template.z > 1, device=self.device)

        def repel(x: Tensor, sigma: float) -> Tensor | float:
            """Particle guidance on the heavy atoms (the atoms the coverage metric compares), clipped like the
            score; hydrogens follow through the score."""
            if settings.repulsion == 0 or n < 2 or (settings.repulsion_sigma is not None
                                                    and sigma > settings.repulsion_sigma):
                return 0.0
            g = torch.zeros(n, template.n_atoms, 3, dtype=dtype, device=self.device)
            g[:, heavy] = repulsion_score(x.reshape(n, template.n_atoms, 3)[:, heavy], settings.repulsion)
            return clipped(g.reshape(-1, 3), sigma, settings.clip)

        if start is None:
            x = noise() * settings.sigma_max
        else:
            assert settings.start_sigma is not None  # checked in sample()
            x0 = torch.as_tensor(start.reshape(-1, 3), dtype=dtype, device=self.device)
            x = center_positions(x0, batch.batch, n) + noise() * (settings.start_sigma * settings.temperature ** 0.5)
        for sigma, steps, s in settings.schedule():
            for _ in range(steps):
                x = x + s * (score(x, sigma) + stereo(x, sigma) + repel(x, sigma))
                if settings.temperature > 0:
                    x = x + math.sqrt(2 * s * settings.temperature) * noise()
        if settings.denoise:
            x = x + settings.sigma_min ** 2 * (score(x, settings.sigma_min) + stereo(x, settings.sigma_min))
        return x.reshape(n, template.n_atoms, 3).double().cpu().numpy()
