"""The charged-particle N-body data set of the EGNN paper, simulated here from a fixed seed.

Kipf et al. (2018, NRI) introduced the system in 2D, Fuchs et al. (2020, SE(3)-Transformer) took it to
3D, and Satorras et al. (2021, EGNN, section 5.1 and Table 2) fixed the benchmark that TFN,
SE(3)-Transformer, EGNN and ClofNet are compared on: five particles with charges +1 or -1 in 3D,
Coulomb forces, input = positions, velocities and charges at one time, target = positions 1,000
integration steps later; 3,000 training, 2,000 validation and 2,000 test trajectories.

This module re-implements that generator (vectorised over trajectories) and draws its random
numbers from the same legacy NumPy stream, in the same order, as the reference script, so the
initial states and charges of every trajectory are those of the EGNN data set. The trajectories
agree with the reference simulator up to the chaotic growth of floating-point round-off (the force
sums are written differently): of the first 200 training trajectories, 95% agree to 1e-6 at the
target frame (median deviation 4e-14) and 4% have drifted apart by more than 1e-3
(``benchmarks/nbody/nbody_vs_reference.py``; results in ``benchmarks/nbody/results/``). The data set is therefore
the same in distribution and, for most systems, to the last digits, but not bitwise.

Reference: github.com/vgsatorras/egnn at commit e9ca6c0, files
``n_body_system/dataset/synthetic_sim.py`` (class ``ChargedParticlesSim``, "sim" below),
``n_body_system/dataset/generate_dataset.py`` ("gen"), ``n_body_system/dataset_nbody.py`` ("ds"),
``main_nbody.py`` ("main") and ``README.md``. Every constant:

===========================  =========  ===================================================================
constant                     value      source
===========================  =========  ===================================================================
particles                    5          gen:28 ``--n_balls 5``
dimensions                   3          sim:165 ``self.dim = 3`` (NRI, ethanfetaya/NRI data/synthetic_sim.py, is 2D)
charges                      +1 / -1    sim:162 types (-1, 0, 1) drawn with p = (1/2, 0, 1/2), sim:222,230;
                                        EGNN paper: "positive or negative charge"
force on i                   k q_i q_j (x_i - x_j) / |x_i - x_j|^3 summed over j: like charges repel
                                        (sim:245-261, 275-290); unit masses
interaction strength k       1.0        sim:150 ``interaction_strength=1.``
initial positions            N(0, s^2)  per coordinate, s = loc_std (n/5)^(1/3) = 1.0 (sim:150, 155, 236)
initial speed                0.5        every particle, uniformly random direction (sim:237-239;
                                        gen:39 ``initial_vel_norm = 0.5``, gen:47)
box                          5.0        sim:150 ``box_size=5.``; used only to reflect the initial state
                                        (sim:240); the reflection inside the loop is commented out
                                        (sim:269), so there are no walls during the dynamics (NRI and the
                                        SE(3)-Transformer's own data do have walls)
time step dt                 0.001      sim:163 ``_delta_T``
force clip                   100.0      sim:164 ``_max_F = 0.1 / _delta_T``; each Cartesian component of
                                        each particle's net force is clipped to [-100, 100] (sim:262-263,
                                        291-292)
integrator                   kick-drift v <- v + dt F(x); x <- x + dt v (symplectic Euler; sim:265-293);
                                        a recorded frame is (x, v) right after the drift
trajectory length            5000       gen:22 ``--length 5000`` (also for the test set, gen:24)
sample_freq                  100        gen:26 ``--sample-freq 100``
frames                       49         T/sample_freq - 1 (sim:225); frame k is the state after
                                        (k+1) * 100 steps: frame 0 is first filled with the initial
                                        state and then overwritten at step 100 (sim:228, 240, 271-273)
input / target frame         30 / 40    ds:96-97 for ``nbody_small``; steps 3,100 -> 4,100, i.e.
                                        1,000 steps = 1.0 time unit apart
observation noise            0          gen:47 ``noise_var=0.0``; but its normal draws (2 x 49 x 3 x 5 per
                                        trajectory, sim:295-296) still advance the random stream
seed                         43         README and gen:9: ``generate_dataset.py --num-train 10000
                                        --seed 43 --sufix small``; one ``np.random.seed`` (gen:53) for all
                                        splits, drawn in the order train, valid, test (gen:84-96)
stream slots                 10000 / 2000 / 2000  gen:9 and gen:18-21: 10,000 training trajectories
                                        are generated, of which EGNN trains on the first 3,000
                                        (main:39 ``--max_training_samples 3000``, ds:42); all 2,000
                                        validation and 2,000 test trajectories are used
precision                    float64    the simulation; EGNN casts to float32 when loading (ds:40)
===========================  =========  ===================================================================

Published description checked against the code: the EGNN paper's 3,000 / 2,000 / 2,000
trajectories and "1,000 timesteps" between input and target match main:39 and frames 30 -> 40 at
sample_freq 100. The SE(3)-Transformer paper's own task (predict 500 steps ahead, with a box) is a
different configuration of the same generator and is not reproduced by the defaults.

Two properties of the reference that users of the data should know (both measured by the tests):

- Total momentum is conserved (pair forces are antisymmetric and there are no walls) except at the
  steps where the force clip is active, because clipping a net force breaks action = reaction.
- Rotating an initial state rotates its trajectory, again except where the clip is active: a clip of
  each Cartesian component is not rotation-equivariant. ``NBodyData.clipped`` counts, per trajectory,
  the clipped force components between the input and the target frame.

>>> data = load_nbody("test", n=4)                               # doctest: +SKIP
>>> data.loc.shape, data.charges.shape                           # doctest: +SKIP
(torch.Size([4, 5, 3]), torch.Size([4, 5]))
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from se3mol.data.qm9 import cache_dir
from se3mol.graph import Batch, full_edges

GENERATOR_VERSION = 1  # bump whenever the generated numbers change for the same NBodyConfig
Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
SPLIT_SIZES: dict[str, int] = {"train": 3000, "val": 2000, "test": 2000}  # EGNN, main:39 and section 5.1
DUMMY_Z = 1  # the element every particle gets in a Batch: models embed ``z``; charge is carried apart


@dataclass(frozen=True)
class NBodyConfig:
    """Everything that determines the generated numbers; defaults are EGNN's ``nbody_small``.

    Attributes:
        n_particles: particles per system.
        loc_std: standard deviation of initial coordinates for 5 particles (scaled by (n/5)^(1/3)).
        vel_norm: initial speed of every particle.
        interaction_strength: Coulomb constant ``k``.
        box_size: half-width of the box the initial state is reflected into (no walls afterwards).
        dt: integration time step.
        max_force: clip of each net force component; ``None`` turns clipping off.
        length: steps the reference simulates per trajectory (sets how many random numbers it draws).
        sample_freq: steps between recorded frames.
        frame_in: frame given as input (state after ``(frame_in + 1) * sample_freq`` steps).
        frame_out: frame whose positions are the target.
        seed: seed of the legacy NumPy stream (``numpy.random.RandomState``).
        stream_slots: trajectories the reference draws for train, val and test, in this order.
    """

    n_particles: int = 5
    loc_std: float = 1.0
    vel_norm: float = 0.5
    interaction_strength: float = 1.0
    box_size: float = 5.0
    dt: float = 0.001
    max_force: float | None = 100.0
    length: int = 5000
    sample_freq: int = 100
    frame_in: int = 30
    frame_out: int = 40
    seed: int = 43
    stream_slots: tuple[int, int, int] = (10_000, 2_000, 2_000)

    def __post_init__(self) -> None:
        if self.n_particles < 2:
            raise ValueError(f"an N-body system needs at least 2 particles, got {self.n_particles}")
        if not (self.dt > 0 and self.loc_std > 0 and self.vel_norm > 0 and self.box_size > 0):
            raise ValueError("dt, loc_std, vel_norm and box_size must be positive")
        if self.max_force is not None and not self.max_force > 0:
            raise ValueError(f"max_force must be positive or None, got {self.max_force}")
        if self.sample_freq < 1 or self.length % self.sample_freq:
            raise ValueError(f"length {self.length} must be a multiple of sample_freq {self.sample_freq}")
        if not 0 <= self.frame_in < self.frame_out < self.n_frames:
            raise ValueError(f"need 0 <= frame_in < frame_out < {self.n_frames} (frames of a trajectory), "
                             f"got {self.frame_in} and {self.frame_out}")
        if len(self.stream_slots) != 3 or min(self.stream_slots) < 1:
            raise ValueError(f"stream_slots must be three positive counts, got {self.stream_slots}")

    @property
    def n_frames(self) -> int:
        """Frames the reference records per trajectory (49 for the defaults)."""
        return self.length // self.sample_freq - 1

    @property
    def step_in(self) -> int:
        """Integration steps from the initial state to the input frame (3,100)."""
        return (self.frame_in + 1) * self.sample_freq

    @property
    def step_out(self) -> int:
        """Integration steps from the initial state to the target frame (4,100)."""
        return (self.frame_out + 1) * self.sample_freq

    def key(self) -> str:
        """Short hash of the config and the generator version, naming the cache file."""
        text = json.dumps({"version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(kw_only=True)
class NBodyData:
    """``M`` N-body systems of ``P`` particles: the input state and the target state (float64).

    Attributes:
        loc: positions at the input frame ``[M,P,3]``.
        vel: velocities at the input frame ``[M,P,3]``.
        charges: charges, +1 or -1 ``[M,P]``.
        target_loc: positions at the target frame ``[M,P,3]`` (what models predict).
        target_vel: velocities at the target frame ``[M,P,3]``.
        clipped: force components clipped between input and target ``[M]`` (int64); where it is
            not zero the step from input to target is not exactly rotation-equivariant.
        split: ``"train"``, ``"val"`` or ``"test"``.
        config: the generator's parameters.
    """

    loc: Tensor
    vel: Tensor
    charges: Tensor
    target_loc: Tensor
    target_vel: Tensor
    clipped: Tensor
    split: str
    config: NBodyConfig = field(default_factory=NBodyConfig)

    def __len__(self) -> int:
        return int(self.loc.shape[0])

    def head(self, n: int) -> NBodyData:
        """The first ``n`` systems."""
        if not 0 < n <= len(self):
            raise ValueError(f"cannot take {n} systems from a {self.split} set of {len(self)}")
        cut = {f.name: getattr(self, f.name)[:n] for f in fields(self) if isinstance(getattr(self, f.name), Tensor)}
        return NBodyData(**cut, split=self.split, config=self.config)

    def batch(self, idx: Tensor | Sequence[int]) -> NBodyBatch:
        """Systems ``idx [B]`` as a fully connected :class:`~se3mol.graph.Batch` plus per-particle extras."""
        return nbody_batch(self, idx)


@dataclass
class NBodyBatch:
    """A slice of an :class:`NBodyData` ready for a model (floats in the default dtype).

    Attributes:
        graph: the systems as one graph: ``z [N]`` all ``DUMMY_Z``, ``pos [N,3]`` input positions,
            full ``edge_index [2,E]``, ``batch [N]``, ``edge_attr [E,1]`` the charge products
            ``q_i q_j`` (EGNN's edge attribute, ds:52), ``node_attr [N,1]`` the charges,
            ``node_vec [N,1,3]`` the velocities, ``y`` None.
        vel: input velocities ``[N,3]`` (a type-1 input).
        charges: charges ``[N]`` (a type-0 input).
        target_pos: positions at the target frame ``[N,3]``.
        target_vel: velocities at the target frame ``[N,3]``.
    """

    graph: Batch
    vel: Tensor
    charges: Tensor
    target_pos: Tensor
    target_vel: Tensor


def nbody_batch(data: NBodyData, idx: Tensor | Sequence[int]) -> NBodyBatch:
    """Systems ``idx [B]`` of ``data`` as an :class:`NBodyBatch` (see there)."""
    idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
    if len(idx) == 0:
        raise ValueError("cannot batch an empty selection of N-body systems")
    if int(idx.min()) < -len(data) or int(idx.max()) >= len(data):
        raise IndexError(f"system index out of range for a {data.split} set of {len(data)}")
    dtype = torch.get_default_dtype()
    b, p = len(idx), data.loc.shape[1]
    counts = torch.full((b,), p, dtype=torch.long)
    edge_index = full_edges(counts)  # [2,E]
    q = data.charges[idx].reshape(-1).to(dtype)  # [N]
    graph = Batch(
        z=torch.full((b * p,), DUMMY_Z, dtype=torch.long),
        pos=data.loc[idx].reshape(-1, 3).to(dtype),
        edge_index=edge_index,
        batch=torch.repeat_interleave(torch.arange(b), counts),
        num_graphs=b,
        edge_attr=(q[edge_index[0]] * q[edge_index[1]])[:, None],
        node_attr=q[:, None],  # [N,1] charges, a type-0 input
        node_vec=data.vel[idx].reshape(-1, 1, 3).to(dtype),  # [N,1,3] velocities, a type-1 input
    )
    return NBodyBatch(
        graph=graph,
        vel=data.vel[idx].reshape(-1, 3).to(dtype),
        charges=q,
        target_pos=data.target_loc[idx].reshape(-1, 3).to(dtype),
        target_vel=data.target_vel[idx].reshape(-1, 3).to(dtype),
    )


# ----------------------------------------------------------------------------------------------
# Simulation


def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, k=1)
    return i, j


def pair_forces(loc: np.ndarray, qq: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Coulomb force on particle ``i[p]`` from ``j[p]``, ``k q_i q_j (x_i - x_j) / r^3``: ``[M,Q,3]``.

    ``loc [M,P,3]``; ``qq [M,Q]`` is ``k q_i q_j`` of each of the ``Q`` pairs. The force on ``j[p]``
    is the negative, so momentum is conserved by construction.
    """
    d = loc[:, i] - loc[:, j]  # [M,Q,3]
    r2 = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]  # [M,Q]
    return (qq / (r2 * np.sqrt(r2)))[..., None] * d


def net_forces(loc: np.ndarray, qq: np.ndarray, max_force: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Net force on every particle ``[M,P,3]`` and clipped components per system ``[M]``.

    Summed pair by pair in a fixed order (no BLAS), so a system's numbers do not depend on which
    other systems share the array.
    """
    n = loc.shape[1]
    i, j = _pairs(n)
    f = pair_forces(loc, qq, i, j)  # [M,Q,3]
    force = np.zeros_like(loc)
    for p in range(len(i)):
        force[:, i[p]] += f[:, p]
        force[:, j[p]] -= f[:, p]
    if max_force is None:
        return force, np.zeros(len(loc), dtype=np.int64)
    over = np.abs(force) > max_force  # [M,P,3]
    np.clip(force, -max_force, max_force, out=force)
    return force, over.reshape(len(loc), -1).sum(axis=1)


def simulate(
    loc: np.ndarray, vel: np.ndarray, charges: np.ndarray, record: Sequence[int], *,
    dt: float = 0.001, interaction_strength: float = 1.0, max_force: float | None = 100.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrate ``M`` systems with the reference's kick-drift scheme and record chosen steps.

    Args:
        loc: initial positions ``[M,P,3]``.
        vel: initial velocities ``[M,P,3]``.
        charges: charges ``[M,P]``.
        record: strictly increasing step counts (>= 1) after which to record the state.
        dt, interaction_strength, max_force: as in :class:`NBodyConfig`.

    Returns:
        positions ``[R,M,P,3]`` and velocities ``[R,M,P,3]`` after each step in ``record``, and
        clipped force components per system ``[R,M]``: entry ``r`` counts the clips in the forces
        applied after record ``r-1`` (after the start, for r = 0) up to record ``r``.

    Two opposite charges at rest attract each other, and their total momentum stays zero:

    >>> x = np.array([[[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0]]])
    >>> xs, vs, _ = simulate(x, np.zeros_like(x), np.array([[1.0, -1.0]]), [100, 200])
    >>> bool(-0.5 < xs[0, 0, 0, 0] < xs[1, 0, 0, 0]), float(np.abs(vs.sum(axis=2)).max())
    (True, 0.0)
    """
    x = np.array(loc, dtype=np.float64)
    v = np.array(vel, dtype=np.float64)
    q = np.asarray(charges, dtype=np.float64)
    if x.ndim != 3 or x.shape[-1] != 3 or v.shape != x.shape or q.shape != x.shape[:2]:
        raise ValueError(f"need loc and vel [M,P,3] and charges [M,P], got {x.shape}, {v.shape}, {q.shape}")
    steps = [int(s) for s in record]
    if not steps or steps[0] < 1 or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError(f"record needs strictly increasing step counts >= 1, got {steps}")
    wanted = set(steps)
    i, j = _pairs(x.shape[1])
    qq = interaction_strength * q[:, i] * q[:, j]  # [M,Q]
    out_x, out_v, out_c = [], [], []
    clipped = np.zeros(len(x), dtype=np.int64)
    with np.errstate(divide="raise", invalid="raise"):
        for s in range(1, steps[-1] + 1):
            force, c = net_forces(x, qq, max_force)
            clipped += c
            v += dt * force
            x += dt * v
            if s in wanted:
                out_x.append(x.copy())
                out_v.append(v.copy())
                out_c.append(clipped.copy())
                clipped[:] = 0
    return np.stack(out_x), np.stack(out_v), np.stack(out_c)


def _reflect(loc: np.ndarray, vel: np.ndarray, box: float) -> None:
    """Reflect coordinates outside ``[-box, box]`` back in and point their velocity inward (in place)."""
    over, under = loc > box, loc < -box
    loc[over] = 2 * box - loc[over]
    vel[over] = -np.abs(vel[over])
    loc[under] = -2 * box - loc[under]
    vel[under] = np.abs(vel[under])


def initial_states(config: NBodyConfig, split: Split, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``n`` initial states of ``split``, drawn as the reference draws them.

    Returns positions ``[n,P,3]``, velocities ``[n,P,3]`` and charges ``[n,P]`` (float64). The
    reference draws, per trajectory and from one legacy stream: the charges (``choice``), positions
    and velocities as ``[3,P]`` normals, then two ``[frames,3,P]`` arrays of observation noise that
    it multiplies by zero; the splits follow each other in the stream (train, then val, then test).
    """
    _check_split(split)
    slot = SPLITS.index(split)
    if not 0 < n <= config.stream_slots[slot]:
        raise ValueError(f"the {split} split has {config.stream_slots[slot]} trajectories in the reference "
                         f"stream; asked for {n}")
    p, frames = config.n_particles, config.n_frames
    loc_std = config.loc_std * (p / 5.0) ** (1.0 / 3.0)
    rs = np.random.RandomState(config.seed)
    skip = sum(config.stream_slots[:slot])
    loc, vel, q = np.empty((n, p, 3)), np.empty((n, p, 3)), np.empty((n, p))
    for t in range(skip + n):
        charges = rs.choice(np.array([-1.0, 0.0, 1.0]), size=p, p=[0.5, 0.0, 0.5])
        x = rs.randn(3, p) * loc_std
        u = rs.randn(3, p)
        rs.randn(2 * frames * 3 * p)  # the zero-weighted observation noise, sim:295-296
        if t < skip:
            continue
        u = u * config.vel_norm / np.sqrt((u**2).sum(axis=0, keepdims=True))
        _reflect(x, u, config.box_size)
        loc[t - skip], vel[t - skip], q[t - skip] = x.T, u.T, charges
    return loc, vel, q


def generate(split: Split, n: int | None = None, config: NBodyConfig | None = None) -> NBodyData:
    """Simulate the first ``n`` systems of ``split`` (default: the EGNN size) without any cache."""
    config = config or NBodyConfig()
    n = SPLIT_SIZES[_check_split(split)] if n is None else n
    loc0, vel0, q = initial_states(config, split, n)
    xs, vs, clips = simulate(loc0, vel0, q, [config.step_in, config.step_out], dt=config.dt,
                             interaction_strength=config.interaction_strength, max_force=config.max_force)
    t = torch.from_numpy
    return NBodyData(loc=t(xs[0]), vel=t(vs[0]), charges=t(q), target_loc=t(xs[1]), target_vel=t(vs[1]),
                     clipped=t(clips[1]), split=split, config=config)


def load_nbody(
    split: Split, n: int | None = None, config: NBodyConfig | None = None, cache: Path | None = None,
    verbose: bool = True,
) -> NBodyData:
    """The ``split`` of the N-body data set, simulated once and then read from the cache.

    ``n`` defaults to the EGNN size (3,000 / 2,000 / 2,000); a smaller ``n`` is the first ``n`` systems
    of the cached full split, a larger one (up to the stream's 10,000 training slots) is simulated and
    cached on its own. The cache file (in :func:`se3mol.data.qm9.cache_dir`) is named by the split,
    the count and a hash of ``config`` and :data:`GENERATOR_VERSION`; it is written atomically.
    """
    config = config or NBodyConfig()
    default = SPLIT_SIZES[_check_split(split)]
    if n is not None and n < 1:
        raise ValueError(f"n must be positive, got {n}")
    count = max(default, n or 0)
    path = (cache or cache_dir()) / f"nbody-{split}-{count}-{config.key()}.pt"
    data = _read_cache(path, split, config, count)
    if data is None:
        if verbose:
            print(f"Simulating {count} N-body {split} trajectories once (about {count // 100 + 2} s); "
                  f"caching to {path}", file=sys.stderr)
        data = generate(split, count, config)
        _write_cache(path, data)
    return data if n is None or n == count else data.head(n)


def _read_cache(path: Path, split: str, config: NBodyConfig, count: int) -> NBodyData | None:
    if not path.exists():
        return None
    try:
        d = torch.load(path, weights_only=True)
        data = NBodyData(**d["tensors"], split=split, config=config)
        if d["config"] != asdict(config) | {"stream_slots": list(config.stream_slots)} or len(data) != count:
            raise ValueError("cache does not match its name")
        return data
    except Exception:  # noqa: BLE001  (a corrupt or foreign cache file is rebuilt, not fatal)
        path.unlink(missing_ok=True)
        return None


def _write_cache(path: Path, data: NBodyData) -> None:
    tensors = {f.name: getattr(data, f.name) for f in fields(data) if isinstance(getattr(data, f.name), Tensor)}
    cfg = asdict(data.config) | {"stream_slots": list(data.config.stream_slots)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"tensors": tensors, "config": cfg, "version": GENERATOR_VERSION}, tmp)
    os.replace(tmp, path)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown N-body split {split!r}; choose train, val or test")
    return split


# ----------------------------------------------------------------------------------------------
# Baseline


def fit_velocity_scale(data: NBodyData) -> float:
    """Least-squares ``c`` in ``target_loc ~ loc + c * vel`` (the linear baseline of EGNN's Table 2)."""
    dx, v = (data.target_loc - data.loc).reshape(-1), data.vel.reshape(-1)
    return float((dx @ v) / (v @ v))


def velocity_baseline_mse(data: NBodyData, c: float) -> float:
    """Mean squared error per coordinate of ``loc + c * vel`` against ``target_loc`` (EGNN's MSE)."""
    return float(((data.loc + c * data.vel - data.target_loc) ** 2).mean())
