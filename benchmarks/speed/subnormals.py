"""Subnormal floats: every family's training and inference speed before and after they were removed at source.

    python -m benchmarks.speed.subnormals      # writes benchmarks/speed/results/subnormals.{json,md}

Before the fix, the Gaussian distance expansion (``exp`` of a large negative number), nearly closed edge gates and
the sampler's repulsion kernel made subnormal floats, which many CPUs handle ~100x slower than normal ones. They are
now floored at ``eps^2`` (1.4e-14 in float32) at their source by a clamp before the exponential
(:func:`se3mol.nn.layers.exp_neg` and ``sigmoid_gate``).
This script measures, in one process and one thread, interleaved over ``--rounds`` rounds (best round kept):

- ``before``: the same model and weights with the old functions patched back in (``torch.exp``,
  ``torch.sigmoid``), i.e. the code as shipped before;
- ``now``: the code as it is;
- ``now, flushed``: the code as it is with ``torch.set_flush_denormal(True)`` around the timing only, the
  process-wide flag a library must not set for its users: what is left to gain from subnormals anywhere else.

Each row also gives the fraction of subnormal values among all values the forward pass produced
(:class:`se3mol.runtime.SubnormalCounter`). Batches: ``--batch-size`` QM9 training molecules (EGNN at the shipped
size, 4 x 128, and ClofNet on the full graph; TFN and the SE(3)-Transformer at their default sizes on the bond
graph), and the drug score model sampling 5 conformers of one drug-like molecule (30 atoms heavy + H).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator

import torch

from benchmarks._results import md_table, results_dir, write_result

RESULTS = results_dir(__file__)
FAMILIES = [("egnn", "full", {"hidden": 128, "layers": 4}), ("clofnet", "full", {}), ("tfn", "bond", {}),
            ("se3_transformer", "bond", {})]
DRUG = "Clc1ccc(cc1)C(c1ccccc1)N1CCNCC1"


@contextlib.contextmanager
def before_fix() -> Iterator[None]:
    """The functions that made subnormals, patched back in where se3mol now calls their clean versions."""
    from se3mol.conformers import sampler
    from se3mol.nn import clofnet, egnn, layers

    saved = [(layers.GaussianRBF, "forward", layers.GaussianRBF.forward), (egnn, "sigmoid_gate", egnn.sigmoid_gate),
             (clofnet, "sigmoid_gate", clofnet.sigmoid_gate), (sampler, "exp_neg", sampler.exp_neg)]
    layers.GaussianRBF.forward = lambda self, d: torch.exp(-self.gamma * (d[:, None] - self.centers) ** 2)
    egnn.sigmoid_gate = clofnet.sigmoid_gate = torch.sigmoid
    sampler.exp_neg = lambda x: torch.exp(-x)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


@contextlib.contextmanager
def flushed() -> Iterator[None]:
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "before": before_fix, "now": contextlib.nullcontext, "now, flushed": flushed}


def family_work(name: str, graph_kind: str, cfg: dict, batch_size: int, steps: int):
    """Closures that train ``steps`` steps and run inference on ``steps`` batches, and the batches' molecules."""
    from se3mol.data import attach_bonds, load_qm9, standard_split
    from se3mol.graph import GraphConfig
    from se3mol.nn import build_model
    from se3mol.targets import get_target

    q = load_qm9(verbose=False)
    if graph_kind == "bond":
        attach_bonds(q)
    graph, train = GraphConfig(graph_kind), standard_split()["train"]
    batches = [q.batch(train[k * batch_size:(k + 1) * batch_size], graph, ["gap"]) for k in range(steps)]
    torch.manual_seed(0)
    model = build_model(name, [get_target("gap")], cfg, graph=graph)
    opt = torch.optim.AdamW(model.parameters(), 5e-4)

    def train_steps() -> None:
        model.train()
        for b in batches:
            loss = (model(b)["gap"] - b.y[:, 0]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            for b in batches:
                model(b)

    return train_steps, infer, model, batches[0]


def timed(fn: Callable[[], None], ctx: Callable[[], contextlib.AbstractContextManager]) -> float:
    with ctx():
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t


def forward_fraction(model, batch, ctx) -> float:
    from se3mol.runtime import SubnormalCounter

    with ctx(), torch.no_grad(), SubnormalCounter() as c:
        model(batch)
    return c.fraction()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=4, help="training steps (and inference batches) per timing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows, table = [], []
    for name, graph_kind, cfg in FAMILIES:
        train_steps, infer, model, first = family_work(name, graph_kind, cfg, a.batch_size, a.steps)
        train_steps()  # warm-up: first-call costs paid before any timing
        infer()
        best: dict[tuple[str, str], float] = {}
        for _ in range(a.rounds):
            for variant, ctx in VARIANTS.items():
                for mode, fn in (("train", train_steps), ("infer", infer)):
                    s = timed(fn, ctx)
                    best[variant, mode] = min(best.get((variant, mode), float("inf")), s)
        n = a.steps * a.batch_size
        row = {"model": name, "graph": graph_kind, "config": cfg, "molecules": n,
               **{f"{mode}_molecules_per_s[{v}]": n / best[v, mode] for v in VARIANTS for mode in ("train", "infer")},
               "subnormal_fraction_before": forward_fraction(model, first, before_fix),
               "subnormal_fraction_now": forward_fraction(model, first, contextlib.nullcontext)}
        rows.append(row)
        print(row, flush=True)
    rows.append(sampler_row(a.rounds))
    print(rows[-1], flush=True)
    for r in rows:
        def rate(mode: str, variant: str, r: dict = r) -> float | None:
            return r.get(f"{mode}_molecules_per_s[{variant}]")

        cells = [f"{rate(m, v):.1f}" if rate(m, v) else "" for m in ("infer", "train") for v in VARIANTS]
        gains = [f"{rate(m, 'now') / rate(m, 'before'):.2f}x" if rate(m, "now") else ""  # type: ignore[operator]
                 for m in ("infer", "train")]
        table.append([r["model"], r["graph"], *cells, *gains, f"{r['subnormal_fraction_before']:.2e}",
                      f"{r['subnormal_fraction_now']:.2e}"])
    header = ["model", "graph", "infer before", "infer now", "infer now, flushed", "train before", "train now",
              "train now, flushed", "infer now/before", "train now/before", "subnormal before", "subnormal now"]
    write_result(RESULTS / "subnormals", "Subnormal floats removed at source: speed before and after, every family",
                 {"batch_size": a.batch_size, "steps": a.steps, "rounds": a.rounds, "threads": a.threads,
                  "rows": rows}, [
        f"Molecules per second (best of {a.rounds} interleaved rounds, one process, {a.threads} thread(s)); QM9 "
        f"training batches of {a.batch_size}. `before`: the old functions patched back in; `flushed`: "
        "`torch.set_flush_denormal(True)` around the timing (not something se3mol sets). Subnormal: fraction of "
        "all values the forward pass produced. The score-model row counts conformers sampled per second "
        "(5 conformers of one drug-like molecule, 50 levels x 1 step; no training).", "",
        *md_table(header, table)])


def sampler_row(rounds: int) -> dict:
    from rdkit import Chem

    from se3mol.conformers.sampler import SamplerSettings, ScoreSampler

    sampler = ScoreSampler.load("conformers-clofnet-drugs")
    mol = Chem.AddHs(Chem.MolFromSmiles(DRUG))
    settings = SamplerSettings(steps=1, repulsion=1.0)
    n = 5

    def sample() -> None:
        sampler.sample(mol, n, seed=0, settings=settings)

    sample()
    best: dict[str, float] = {}
    for _ in range(rounds):
        for variant, ctx in VARIANTS.items():
            best[variant] = min(best.get(variant, float("inf")), timed(sample, ctx))
    from se3mol.runtime import SubnormalCounter

    fractions = {}
    for variant in ("before", "now"):
        with VARIANTS[variant](), SubnormalCounter() as c:
            sampler.sample(mol, 2, seed=0, settings=SamplerSettings(levels=10, steps=1, repulsion=1.0))
        fractions[variant] = c.fraction()
    return {"model": "conformers-clofnet-drugs (sampler)", "graph": "hops", "molecules": n,
            **{f"infer_molecules_per_s[{v}]": n / best[v] for v in VARIANTS},
            "subnormal_fraction_before": fractions["before"], "subnormal_fraction_now": fractions["now"]}


if __name__ == "__main__":
    main()
