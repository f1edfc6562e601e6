"""How closely ``se3mol.data.nbody`` reproduces the EGNN reference generator, trajectory by trajectory.

    python -m benchmarks.nbody.nbody_vs_reference --reference PATH/TO/egnn/n_body_system/dataset/synthetic_sim.py

The reference simulator (github.com/vgsatorras/egnn, ``ChargedParticlesSim``) is not part of se3mol
and not copied here: pass the path of your own checkout. It is imported as it is and driven the
way ``generate_dataset.py --num-train 10000 --seed 43 --sufix small`` drives it: one
``np.random.seed(43)``, then one ``sample_trajectory(T=5000, sample_freq=100)`` per trajectory. The
first ``--n`` training trajectories (a pure-Python loop of 5,000 steps each, about half a second
apiece) are compared with ours: charges exactly, positions and velocities at frame 0 (step 100),
the input frame 30 and the target frame 40.

Writes ``benchmarks/nbody/results/nbody_vs_reference.json`` and ``.md``; with ``--write-fixture``, also
``tests/fixtures/nbody_egnn_reference.json`` (the reference's charges and states at frames 0, 30
and 40 of its first three training trajectories), which ``tests/unit/data/test_nbody.py`` pins us to.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import time
from pathlib import Path

import numpy as np

from benchmarks._results import ROOT, invocation, results_dir, write_result
from se3mol.data.nbody import NBodyConfig, initial_states, simulate

RESULTS = results_dir(__file__)
FIXTURE = ROOT / "tests" / "fixtures" / "nbody_egnn_reference.json"


def reference_trajectories(path: Path, n: int, config: NBodyConfig) -> list[tuple[np.ndarray, ...]]:
    spec = importlib.util.spec_from_file_location("egnn_synthetic_sim", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import the reference simulator from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with contextlib.redirect_stdout(io.StringIO()):  # its constructor prints loc_std
        sim = module.ChargedParticlesSim(noise_var=0.0, n_balls=config.n_particles, vel_norm=config.vel_norm)
    np.random.seed(config.seed)
    out = []
    for _ in range(n):
        loc, vel, _edges, charges = sim.sample_trajectory(T=config.length, sample_freq=config.sample_freq)
        out.append((loc.transpose(0, 2, 1), vel.transpose(0, 2, 1), charges[:, 0]))  # [F,P,3], [F,P,3], [P]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="path to EGNN's synthetic_sim.py")
    parser.add_argument("--n", type=int, default=50, help="training trajectories to compare")
    parser.add_argument("--write-fixture", action="store_true", help=f"also write {FIXTURE.name}")
    args = parser.parse_args()
    config = NBodyConfig()
    frames = [0, config.frame_in, config.frame_out]

    t0 = time.perf_counter()
    ref = reference_trajectories(args.reference, args.n, config)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    loc0, vel0, q = initial_states(config, "train", args.n)
    xs, vs, clips = simulate(loc0, vel0, q, [(f + 1) * config.sample_freq for f in frames], dt=config.dt,
                             interaction_strength=config.interaction_strength, max_force=config.max_force)
    t_ours = time.perf_counter() - t0

    charges_equal = all(np.array_equal(r[2], q[k]) for k, r in enumerate(ref))
    dev = {}
    for a, f in enumerate(frames):
        dx = np.array([np.abs(r[0][f] - xs[a, k]).max() for k, r in enumerate(ref)])
        dv = np.array([np.abs(r[1][f] - vs[a, k]).max() for k, r in enumerate(ref)])
        dev[f] = {"max_abs_loc": float(dx.max()), "median_abs_loc": float(np.median(dx)),
                  "max_abs_vel": float(dv.max()),
                  "fraction_loc_within_1e-6": float((dx < 1e-6).mean()),
                  "fraction_loc_within_1e-3": float((dx < 1e-3).mean())}
    result = {"n": args.n, "charges_identical": charges_equal, "frames": dev,
              "trajectories_with_clipping_by_frame_40": float((clips.sum(0) > 0).mean()),
              "seconds_reference": t_ref, "seconds_ours": t_ours}
    if args.write_fixture:
        FIXTURE.write_text(json.dumps({
            "source": "github.com/vgsatorras/egnn e9ca6c0 n_body_system/dataset/synthetic_sim.py, "
                      "np.random.seed(43), sample_trajectory(T=5000, sample_freq=100), first 3 training "
                      "trajectories; written by benchmarks/nbody/nbody_vs_reference.py --write-fixture",
            "trajectories": [{"charges": r[2].tolist(), **{f"loc_frame{f}": r[0][f].tolist() for f in frames},
                              **{f"vel_frame{f}": r[1][f].tolist() for f in frames}} for r in ref[:3]],
        }, indent=1) + "\n")
    lines = [
        f"First {args.n} training trajectories of `generate_dataset.py --seed 43 --sufix small`, reference "
        f"simulator run from `{args.reference.name}`.",
        "",
        f"Charges identical: {charges_equal}. Trajectories with a clipped force by frame 40: "
        f"{result['trajectories_with_clipping_by_frame_40']:.0%}. Time: reference {t_ref:.1f} s, "
        f"se3mol {t_ours:.1f} s.",
        "",
        "| frame (step) | max abs dev. loc | median abs dev. loc | max abs dev. vel | loc within 1e-6 | within 1e-3 |",
        "|---|---|---|---|---|---|",
    ]
    for f, d in dev.items():
        lines.append(f"| {f} ({(f + 1) * config.sample_freq}) | {d['max_abs_loc']:.2e} | {d['median_abs_loc']:.2e} "
                     f"| {d['max_abs_vel']:.2e} | {d['fraction_loc_within_1e-6']:.0%} "
                     f"| {d['fraction_loc_within_1e-3']:.0%} |")
    # --reference names a file on this machine: the recorded command shows only its name
    command = invocation().replace(str(args.reference), f".../{args.reference.name}")
    write_result(RESULTS / "nbody_vs_reference", "N-body generator vs the EGNN reference", result, lines,
                 command=command)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
