"""The N-body data set: generation time, what it contains, and the linear baselines of EGNN's Table 2.

    python -m benchmarks.nbody.nbody_data

Simulates the three splits from scratch (no cache is read or written) and measures
- wall time per split (one process, one thread: ``OMP_NUM_THREADS=1``);
- the fraction of +1 charges, the spread of positions and speeds at the input frame;
- the fraction of systems whose forces were clipped between input and target frame (where the
  reference's data are not exactly rotation-equivariant);
- linear baselines fitted by least squares on the 3,000 training systems and scored on the 2,000
  test systems, as mean squared error per coordinate (``nn.MSELoss``, EGNN's metric):
  ``x + c v`` with fitted ``c`` (EGNN's ``Linear_dynamics``, the "Linear" row of Table 2, published
  0.0819), ``x + v`` (``c = 1``: 1,000 steps of dt = 0.001 is one time unit), and an affine map of
  ``[x, v]`` per particle (EGNN's ``Linear(6, 3)``, not equivariant);
- how much the target depends on orientation: each test input state is rotated by a random
  rotation, simulated the 1,000 steps, and rotated back; the MSE of that against the target is
  twice the orientation variance of the target, so about half of it is the error no exactly
  rotation-equivariant model can avoid on average (the reference clips force components).

Writes ``benchmarks/nbody/results/nbody_data.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from benchmarks._results import results_dir, write_result
from se3mol.data.nbody import (
    SPLIT_SIZES,
    NBodyConfig,
    NBodyData,
    fit_velocity_scale,
    generate,
    simulate,
    velocity_baseline_mse,
)

RESULTS = results_dir(__file__)
PUBLISHED_LINEAR_MSE = 0.0819  # Satorras et al. 2021, Table 2


def affine_fit(data: NBodyData) -> torch.Tensor:
    """Least-squares ``W [7,3]`` with ``target ~ [x, v, 1] @ W`` over all particles."""
    a = torch.cat([data.loc, data.vel, torch.ones_like(data.loc[..., :1])], dim=-1).reshape(-1, 7)
    return torch.linalg.lstsq(a, data.target_loc.reshape(-1, 3)).solution


def affine_mse(data: NBodyData, w: torch.Tensor) -> float:
    a = torch.cat([data.loc, data.vel, torch.ones_like(data.loc[..., :1])], dim=-1).reshape(-1, 7)
    return float(((a @ w - data.target_loc.reshape(-1, 3)) ** 2).mean())


def rotation_sensitivity(data: NBodyData, seed: int = 0) -> tuple[float, float]:
    """MSE of ``R^T S(R x)`` against the target, and the fraction of systems where it exceeds 1e-12."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    rot = q * np.sign(np.diag(r))
    if np.linalg.det(rot) < 0:
        rot[:, 0] = -rot[:, 0]
    c = data.config
    xs, _, _ = simulate(data.loc.numpy() @ rot.T, data.vel.numpy() @ rot.T, data.charges.numpy(),
                        [c.step_out - c.step_in], dt=c.dt, interaction_strength=c.interaction_strength,
                        max_force=c.max_force)
    err = ((xs[0] @ rot - data.target_loc.numpy()) ** 2).mean(axis=(1, 2))  # [M]
    return float(err.mean()), float((err > 1e-12).mean())


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    config = NBodyConfig()
    sets, seconds = {}, {}
    for split in ("train", "val", "test"):
        t0 = time.perf_counter()
        sets[split] = generate(split, config=config)
        seconds[split] = time.perf_counter() - t0
    train, test = sets["train"], sets["test"]
    c = fit_velocity_scale(train)
    w = affine_fit(train)
    rot_mse, rot_frac = rotation_sensitivity(test)
    stats = {
        split: {
            "n": len(d),
            "seconds": seconds[split],
            "fraction_positive_charge": float((d.charges > 0).double().mean()),
            "loc_std": float(d.loc.std()),
            "mean_speed": float(d.vel.norm(dim=-1).mean()),
            "fraction_clipped_input_to_target": float((d.clipped > 0).double().mean()),
        }
        for split, d in sets.items()
    }
    result = {
        "config": {**config.__dict__, "stream_slots": list(config.stream_slots)},
        "splits": stats,
        "linear": {
            "fitted_c": c,
            "x_plus_c_v_test_mse": velocity_baseline_mse(test, c),
            "x_plus_v_test_mse": velocity_baseline_mse(test, 1.0),
            "affine_xv_test_mse": affine_mse(test, w),
            "published_linear_test_mse": PUBLISHED_LINEAR_MSE,
        },
        "rotation_sensitivity": {"test_mse_rotated_vs_target": rot_mse, "fraction_of_systems_affected": rot_frac},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    lin = result["linear"]
    lines = [
        "Simulated from scratch, no cache; run with `OMP_NUM_THREADS=1`.",
        "",
        "| split | systems | seconds | fraction q = +1 | std of x | mean speed | clipped input -> target |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, s in stats.items():
        lines.append(f"| {split} | {s['n']} | {s['seconds']:.1f} | {s['fraction_positive_charge']:.3f} "
                     f"| {s['loc_std']:.3f} | {s['mean_speed']:.3f} | {s['fraction_clipped_input_to_target']:.1%} |")
    lines += [
        "",
        f"Linear baselines, fitted on the {SPLIT_SIZES['train']:,} training systems, test MSE per coordinate:",
        "",
        "| model | test MSE | published (Table 2) |",
        "|---|---|---|",
        f"| x + c v, c = {lin['fitted_c']:.4f} fitted (EGNN `Linear_dynamics`) | {lin['x_plus_c_v_test_mse']:.4f} "
        f"| {PUBLISHED_LINEAR_MSE} |",
        f"| x + v (c = 1) | {lin['x_plus_v_test_mse']:.4f} | |",
        f"| affine in [x, v] (EGNN `Linear(6, 3)`) | {lin['affine_xv_test_mse']:.4f} | |",
    ]
    lines += [
        "",
        f"Orientation dependence of the target (force components are clipped): simulating each test input "
        f"rotated and rotating back gives MSE {rot_mse:.4f} against the target ({rot_frac:.1%} of systems differ); "
        f"an exactly rotation-equivariant model cannot beat about half of that ({rot_mse / 2:.4f}) on average.",
    ]
    write_result(RESULTS / "nbody_data", "N-body data set (EGNN `nbody_small`)", result, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
