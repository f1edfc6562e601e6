"""Peer implementations of se3mol's architectures, run side by side with se3mol in a separate environment.

The peers live in their own virtual environment (``benchmarks/peers/peer_env.sh``), never in se3mol's: they
pin or pull their own stacks (Lightning, Hydra, torch-geometric, NVIDIA Warp, ...) that se3mol does not
need, and one of them (schnetpack) only imports on torch 2.13 through a shim (see below). Each
measurement runs a worker script (``WORKER``) with that environment's Python in a fresh, memory-capped
process (``_isolated.run_isolated``), so its peak RSS is its own and a configuration that would exhaust
the machine is stopped by the cap. The workers never import se3mol.

Peers and how their configurations map to se3mol's (sizes in ``SIZES``; ``size`` = "small" | "paper"):

``egnn`` -- ``egnn-pytorch`` (``EGNN_Network``), against se3mol's ``egnn`` on the full graph.
    Paper: 7 layers, 128 features, message width ``m_dim`` 128, soft edges (``soft_edges=True``, the
    sigmoid edge gate of EGNN's QM9 model), coordinates not updated (``update_coors=False``), fully
    connected. Small: 4 layers x 64 (``m_dim`` 64). Same as se3mol: sum aggregation of gated messages,
    residual node update, no coordinate update, per-atom readout MLP [H, H, 1] summed over the molecule
    (the worker adds that readout; egnn-pytorch has none). Differs: egnn-pytorch's edge MLP has a hidden
    layer of twice its input width (2 * (2H + 1)), se3mol's has width H; its node MLP has a hidden
    layer of 2H, se3mol's of H; the distance enters as |x_i - x_j|^2 (se3mol: 32 Gaussians); its
    network puts a LayerNorm before every layer's node MLP (``EGNN_Network`` sets ``norm_feats=True``);
    it works on dense padded ``[B, n_max]`` tensors and so computes all n_max^2 pairs of every molecule,
    the self-pairs and padding included (masked afterwards), where se3mol gathers only the
    n(n-1) real pairs of each molecule.

``se3_transformer`` -- ``se3-transformer-pytorch`` (``SE3Transformer``), against se3mol's
    ``se3_transformer``. Paper: 7 layers, degrees 0-3 (``num_degrees=4``), 32 channels per degree,
    8 heads of 32 / 8 channels each (se3mol's heads also share out the channels of every degree).
    Small: 4 layers, degrees 0-2, 16 channels, 4 heads. Construction as in
    ``benchmarks/peers/se3_transformer_vs_peer.py``: token embedding, ``output_degrees=1``,
    ``reduce_dim_out=True`` (a linear map to one scalar per atom), summed over the atoms of each
    molecule. Differs: dense padded input, fully connected (``num_neighbors=inf``) with attention to
    the atom itself (``attend_self=True``), where se3mol attends over its graph's neighbours (the lead
    picks se3mol's graph); the peer keeps every pair's kernels in memory (paper width, 8 molecules of
    18 atoms: 6.9 GB at depth 1, 12.9 GB at depth 2, ``benchmarks/peers/results/se3_transformer_vs_peer.md``;
    small size, depth 4, 8 molecules: 4.9 GB), so ``run_peer(..., depth=1 or 2)`` overrides the
    depth when the paper's 7 layers cannot fit.

``painn`` -- ``schnetpack`` (``PaiNN`` in a ``NeuralNetworkPotential``), a reference point (se3mol
    has no PaiNN). Size = schnetpack's QM9 defaults (its ``configs/model/representation/painn.yaml``
    and ``configs/experiment/qm9_atomwise.yaml``): 3 interactions, 128 features, 20 Gaussian radial
    functions, cosine cutoff 5 A, unshared filters and interactions, ``Atomwise`` readout (pyramidal
    MLP 128-64-1) summed per molecule. "small" is the same model (the QM9 default is already small).
    Input: its own neighbour-list dict, built here outside the timed region (as schnetpack's data
    transforms do): all ordered pairs of distinct atoms of a molecule closer than the cutoff. Left
    out: the Atomref/mean offsets of its QM9 postprocessing (a per-element lookup, no cost).
    schnetpack 2.0.4 is used (2.1.x requires sympy<=1.12, torch 2.13 sympy>=1.13.3); both import
    ``T_co`` from ``torch.utils.data.dataloader``, which torch 2.13 no longer defines, so the worker
    defines that type variable there before importing schnetpack (a typing name, used only in type
    hints of its data loader, not by the model).

``et`` -- ``torchmd-net`` equivariant transformer (``create_model``), a reference point. Size =
    torchmd-net's QM9 example config (``examples/ET-QM9.yaml`` in its repository, not shipped in the
    wheel): 8 layers, 256 features, 8 heads, 64 ``expnorm`` radial functions, cutoff 0-5 A, at most 64
    neighbours, neighbour embedding, ``distance_influence: both``, SiLU, ``Scalar`` output summed per
    molecule. "small": 4 layers x 128 features, 8 heads, 32 rbf. Left out: its Atomref prior (a
    per-element lookup). Input: z, pos, batch index; the neighbour list is built inside its forward
    pass (so it is timed, unlike PaiNN's and se3mol's graphs).

Measurements (one JSON object from each worker, keys in ``run_peer``'s docstring): inference first
(``model.eval()``, ``torch.no_grad()``, one untimed warm-up batch), then training (forward + L1 loss
against ``y`` + backward + AdamW step, one untimed warm-up step); timed batches are ``batch_files[1:]``
cycled to ``steps`` batches (all batches if only one file is given), the same for every peer.
Input conversion (padding, pair lists) is done before timing, as se3mol's batches are in
``benchmarks/speed/models_throughput.py``.

Smoke check (orchestrating process under se3mol's environment; peers at the small size, 2 steps):

    PYTHONPATH=. python -m benchmarks.peers.peers --smoke --peer-python /tmp/peerenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from benchmarks._isolated import run_isolated

# Distribution and import names of each peer.
PEERS = {
    "egnn": ("egnn-pytorch", "egnn_pytorch"),
    "se3_transformer": ("se3-transformer-pytorch", "se3_transformer_pytorch"),
    "painn": ("schnetpack", "schnetpack"),
    "et": ("torchmd-net", "torchmdnet"),
}

# Elements the token embeddings of egnn-pytorch and se3-transformer-pytorch know (QM9's, as se3mol's
# element embedding of a QM9 model); PaiNN and ET keep their own max_z tables (100 elements).
TOKEN_ELEMENTS = (1, 6, 7, 8, 9)

# Model configuration of each peer and size; ``LAYER_KEY`` names the depth that ``depth=`` overrides.
SIZES: dict[str, dict[str, dict]] = {
    "egnn": {"paper": {"depth": 7, "dim": 128, "m_dim": 128},
             "small": {"depth": 4, "dim": 64, "m_dim": 64}},
    "se3_transformer": {"paper": {"depth": 7, "num_degrees": 4, "dim": 32, "heads": 8},
                        "small": {"depth": 4, "num_degrees": 3, "dim": 16, "heads": 4}},
    "painn": {"paper": {"n_interactions": 3, "n_atom_basis": 128, "n_rbf": 20, "cutoff": 5.0},
              "small": {"n_interactions": 3, "n_atom_basis": 128, "n_rbf": 20, "cutoff": 5.0}},
    "et": {"paper": {"num_layers": 8, "embedding_dimension": 256, "num_heads": 8, "num_rbf": 64,
                     "cutoff_upper": 5.0, "max_num_neighbors": 64},
           "small": {"num_layers": 4, "embedding_dimension": 128, "num_heads": 8, "num_rbf": 32,
                     "cutoff_upper": 5.0, "max_num_neighbors": 64}},
}
LAYER_KEY = {"egnn": "depth", "se3_transformer": "depth", "painn": "n_interactions", "et": "num_layers"}

# Runs in the peer environment: args = peer, config JSON, steps, threads, batch file, [batch file ...].
WORKER = r'''
import json, resource, sys, time, typing
import torch
from torch import nn

peer, cfg, steps, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
files = sys.argv[5:]
if threads > 0:
    torch.set_num_threads(threads)
torch.manual_seed(0)
batches = [torch.load(f, weights_only=True) for f in files]
GB = 1024 ** 2  # ru_maxrss is in KiB on Linux


def dense(b):
    """Padded tokens [B,n], coordinates [B,n,3] and mask [B,n] of a flat batch."""
    z, pos, counts = b["z"], b["pos"], b["counts"]
    lookup = torch.full((119,), -1, dtype=torch.long)
    lookup[list(cfg["elements"])] = torch.arange(len(cfg["elements"]))
    tok = lookup[z]
    if (tok < 0).any():
        raise ValueError(f"elements {sorted(set(z[tok < 0].tolist()))} not in the token table {cfg['elements']}")
    B, n = len(counts), int(counts.max())
    mask = torch.arange(n)[None, :] < counts[:, None]  # [B,n]
    toks = torch.zeros(B, n, dtype=torch.long)
    coors = torch.zeros(B, n, 3)
    toks[mask], coors[mask] = tok, pos
    return {"tok": toks, "coors": coors, "mask": mask, "pairs": B * n * n}


def pair_list(b, cutoff):
    """All ordered pairs (i, j), i != j, of atoms of one molecule closer than ``cutoff`` [E], [E]."""
    pos, counts = b["pos"], b["counts"]
    idx_i, idx_j, start = [], [], 0
    for n in counts.tolist():
        p = pos[start:start + n]
        keep = (torch.cdist(p, p) < cutoff) & ~torch.eye(n, dtype=torch.bool)
        i, j = keep.nonzero(as_tuple=True)
        idx_i.append(i + start)
        idx_j.append(j + start)
        start += n
    return torch.cat(idx_i), torch.cat(idx_j)


if peer == "egnn":
    from egnn_pytorch import EGNN_Network

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = EGNN_Network(num_tokens=len(cfg["elements"]), dim=cfg["dim"], depth=cfg["depth"],
                                    m_dim=cfg["m_dim"], soft_edges=True, update_coors=False)
            self.readout = nn.Sequential(nn.Linear(cfg["dim"], cfg["dim"]), nn.SiLU(), nn.Linear(cfg["dim"], 1))

        def forward(self, x):
            h, _ = self.net(x["tok"], x["coors"], mask=x["mask"])  # [B,n,H]
            return (self.readout(h).squeeze(-1) * x["mask"]).sum(-1)  # [B]

    model, prepare, forward = Model(), dense, None
elif peer == "se3_transformer":
    from se3_transformer_pytorch import SE3Transformer

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = SE3Transformer(num_tokens=len(cfg["elements"]), dim=cfg["dim"], heads=cfg["heads"],
                                      dim_head=cfg["dim"] // cfg["heads"], depth=cfg["depth"],
                                      num_degrees=cfg["num_degrees"], output_degrees=1, reduce_dim_out=True)

        def forward(self, x):
            out = self.net(x["tok"], x["coors"], x["mask"], return_type=0)  # [B,n]
            return (out * x["mask"]).sum(-1)  # [B]

    model, prepare, forward = Model(), dense, None
elif peer == "painn":
    import torch.utils.data.dataloader as _dl
    if not hasattr(_dl, "T_co"):  # removed in torch 2.13; schnetpack's loader imports it for type hints
        _dl.T_co = typing.TypeVar("T_co", covariant=True)
    import schnetpack as spk
    from schnetpack import properties as P

    rep = spk.representation.PaiNN(
        n_atom_basis=cfg["n_atom_basis"], n_interactions=cfg["n_interactions"],
        radial_basis=spk.nn.GaussianRBF(n_rbf=cfg["n_rbf"], cutoff=cfg["cutoff"]),
        cutoff_fn=spk.nn.CosineCutoff(cfg["cutoff"]), shared_interactions=False, shared_filters=False)
    model = spk.model.NeuralNetworkPotential(
        representation=rep, input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_in=cfg["n_atom_basis"], output_key="y", aggregation_mode="sum")])

    def prepare(b):
        i, j = pair_list(b, cfg["cutoff"])
        counts = b["counts"]
        return {P.Z: b["z"], P.R: b["pos"], P.n_atoms: counts, P.idx_i: i, P.idx_j: j,
                P.idx_m: torch.repeat_interleave(torch.arange(len(counts)), counts),
                P.offsets: torch.zeros(len(i), 3), "pairs": len(i)}

    def forward(x):
        return model(dict(x))["y"]  # [B]; the model adds keys to its input dict: give it a copy
elif peer == "et":
    import warp
    warp.config.quiet = True
    from torchmdnet.models.model import create_model

    args = {"model": "equivariant-transformer", "activation": "silu", "attn_activation": "silu", "aggr": "add",
            "rbf_type": "expnorm", "trainable_rbf": False, "cutoff_lower": 0.0, "max_z": 100,
            "neighbor_embedding": True, "distance_influence": "both", "output_model": "Scalar",
            "reduce_op": "add", "derivative": False, "atom_filter": -1, "prior_model": None,
            "precision": 32, **{k: v for k, v in cfg.items() if k != "elements"}}
    model = create_model(args)

    def prepare(b):
        i, _ = pair_list(b, cfg["cutoff_upper"])
        return {"z": b["z"], "pos": b["pos"], "batch": torch.repeat_interleave(torch.arange(len(b["counts"])),
                b["counts"]), "pairs": len(i)}

    def forward(x):
        y, _ = model(x["z"], x["pos"], batch=x["batch"])  # [B,1]
        return y.squeeze(-1)
else:
    raise SystemExit(f"unknown peer {peer!r}")
if forward is None:
    forward = model

inputs = [prepare(b) for b in batches]
ys = [b["y"].float() for b in batches]
sizes = [len(b["counts"]) for b in batches]
timed = [(1 + k) % len(batches) if len(batches) > 1 else 0 for k in range(steps)]
rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / GB

model.eval()
with torch.no_grad():
    forward(inputs[0])
    t = time.perf_counter()
    for k in timed:
        forward(inputs[k])
    infer_s = time.perf_counter() - t
rss_infer = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / GB

model.train()
opt = torch.optim.AdamW(model.parameters(), 5e-4)


def train_step(k):
    loss = (forward(inputs[k]) - ys[k]).abs().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss)


train_step(0)
t = time.perf_counter()
for k in timed:
    loss = train_step(k)
train_s = time.perf_counter() - t
molecules = sum(sizes[k] for k in timed)

import importlib.metadata as md
dist = {"egnn": "egnn-pytorch", "se3_transformer": "se3-transformer-pytorch", "painn": "schnetpack",
        "et": "torchmd-net"}[peer]
print(json.dumps({
    "peer": peer, "package": dist, "version": md.version(dist), "torch": torch.__version__,
    "config": {k: v for k, v in cfg.items() if k != "elements"},
    "parameters": sum(p.numel() for p in model.parameters()),
    "steps": steps, "threads": torch.get_num_threads(), "timed_molecules": molecules,
    "molecules_per_batch": sizes[timed[0]], "atoms_per_batch": int(batches[timed[0]]["counts"].sum()),
    "pairs_per_batch": int(inputs[timed[0]]["pairs"]),
    "infer_molecules_per_s": molecules / infer_s, "train_molecules_per_s": molecules / train_s,
    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / GB,
    "peak_rss_infer_gb": rss_infer, "rss_after_build_gb": rss_build, "last_loss": loss,
}))
'''

# Runs in the peer environment: which peers import, and their versions.
PROBE = r'''
import importlib, importlib.metadata as md, json, sys, typing
import torch
import torch.utils.data.dataloader as _dl
if not hasattr(_dl, "T_co"):
    _dl.T_co = typing.TypeVar("T_co", covariant=True)
out = {"torch": torch.__version__}
for name, (dist, module) in json.loads(sys.argv[1]).items():
    try:
        importlib.import_module(module)
        out[name] = {"package": dist, "version": md.version(dist)}
    except Exception as e:  # noqa: BLE001 - any failure means the peer is unavailable; say which
        out[name] = {"package": dist, "error": f"{type(e).__name__}: {e}"[:300]}
print(json.dumps(out))
'''


def peer_config(name: str, size: str, depth: int | None = None) -> dict:
    """The model configuration of peer ``name`` at ``size`` ("small" | "paper"), depth optionally overridden."""
    if name not in SIZES:
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(SIZES)}")
    if size not in SIZES[name]:
        raise ValueError(f"unknown size {size!r} for {name}; choose from {', '.join(SIZES[name])}")
    cfg = dict(SIZES[name][size])
    if depth is not None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        cfg[LAYER_KEY[name]] = depth
    return cfg


def write_batch_file(path: str | Path, z, pos, counts, y) -> None:
    """Save one batch of molecules for the workers: ``z [N]`` long, ``pos [N,3]`` float32 (Angstrom),
    ``counts [B]`` long (atoms per molecule, molecules contiguous in ``z``/``pos``), ``y [B]`` float32.

    Plain tensors in a ``torch.save`` dict, so the workers load them with ``weights_only=True``;
    written to a temporary file and renamed, so a reader never sees half a batch.
    """
    import torch

    z, pos = torch.as_tensor(z).long(), torch.as_tensor(pos).float()
    counts, y = torch.as_tensor(counts).long(), torch.as_tensor(y).float().reshape(-1)
    if z.ndim != 1 or pos.shape != (len(z), 3):
        raise ValueError(f"z must be [N] and pos [N,3]; got z {tuple(z.shape)}, pos {tuple(pos.shape)}")
    if counts.ndim != 1 or int(counts.sum()) != len(z) or bool((counts < 1).any()):
        raise ValueError(f"counts must be [B] positive atoms per molecule summing to N={len(z)}; "
                         f"got sum {int(counts.sum())}")
    if len(y) != len(counts):
        raise ValueError(f"y must have one value per molecule ({len(counts)}); got {len(y)}")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"z": z, "pos": pos.contiguous(), "counts": counts, "y": y}, tmp)
    tmp.replace(path)


def write_qm9_batch_files(directory: str | Path, q, index_batches, target: str = "gap") -> list[Path]:
    """Write one batch file per tensor of QM9 molecule indices (``q`` from ``se3mol.data.load_qm9``);
    the target ``target`` in user units is ``y``. Runs in se3mol's environment, not the workers'."""
    import torch

    paths = []
    for k, idx in enumerate(index_batches):
        idx = torch.as_tensor(idx).long()
        mols = [q.molecule(int(m)) for m in idx]
        path = Path(directory) / f"batch{k:03d}.pt"
        write_batch_file(path, torch.cat([torch.from_numpy(m.z).long() for m in mols]),
                         torch.cat([torch.from_numpy(m.pos).float() for m in mols]),
                         torch.tensor([len(m.z) for m in mols]), q.target_values(idx, [target])[:, 0].float())
        paths.append(path)
    return paths


def run_peer(peer_python: str, name: str, size: str, batch_files, steps: int, threads: int, cap_gb: float,
             depth: int | None = None) -> dict:
    """Measure peer ``name`` in a fresh process of ``peer_python`` capped at ``cap_gb`` GB of address space.

    Args:
        peer_python: the peer environment's interpreter, e.g. ``/tmp/peerenv/bin/python``.
        name: "egnn" | "se3_transformer" | "painn" | "et".
        size: "small" | "paper" (``SIZES``).
        batch_files: files from ``write_batch_file``; the first is the warm-up batch, the timed batches
            are the others cycled to ``steps`` (the first one alone if it is the only file). Give every
            implementation the same files and steps.
        steps: timed batches for inference and for training.
        threads: ``torch.set_num_threads`` of the worker (0: torch's default).
        cap_gb: address-space cap (RLIMIT_AS) of the worker; exceeding it fails the run with an error.
        depth: override of the number of layers / interactions (e.g. 1-2 for the SE(3)-Transformer peer,
            whose paper depth does not fit in memory).

    Returns the worker's JSON: ``peer``, ``package``, ``version``, ``torch``, ``config``, ``parameters``,
    ``steps``, ``threads``, ``timed_molecules``, ``molecules_per_batch``, ``atoms_per_batch``,
    ``pairs_per_batch`` (pairs the peer's input presents: B * n_max^2 for the dense peers, distinct-atom
    pairs within the cutoff for PaiNN and ET), ``infer_molecules_per_s``, ``train_molecules_per_s``,
    ``peak_rss_gb`` (whole run), ``peak_rss_infer_gb`` (after build + inference, before training),
    ``rss_after_build_gb`` (imports, model and inputs), ``last_loss``; plus ``size``, ``depth``,
    ``mem_cap_gb``. On failure (import error, exception, cap exceeded): ``{"error": ..., "mem_cap_gb":
    ...}`` plus ``peer``, ``size``, ``depth``.
    """
    cfg = peer_config(name, size, depth)
    if name in ("egnn", "se3_transformer"):
        cfg["elements"] = list(TOKEN_ELEMENTS)
    files = [str(f) for f in batch_files]
    if not files:
        raise ValueError("run_peer needs at least one batch file")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    try:
        r = run_isolated(peer_python, WORKER, [name, json.dumps(cfg), steps, threads, *files], cap_gb)
    except (OSError, json.JSONDecodeError, IndexError) as e:
        r = {"error": f"{type(e).__name__}: {e}", "mem_cap_gb": cap_gb}
    return {**r, "peer": name, "size": size, "depth": cfg[LAYER_KEY[name]], "mem_cap_gb": cap_gb}


def available_peers(peer_python: str) -> dict:
    """Which peers import in ``peer_python``'s environment: ``{"torch": version, name: {"package",
    "version"} or {"package", "error"}}``; ``{"error": ...}`` if that interpreter cannot run at all."""
    try:
        p = subprocess.run([peer_python, "-c", PROBE, json.dumps(PEERS)], capture_output=True, text=True,
                           timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="write a small QM9 batch and run every available peer")
    ap.add_argument("--peer-python", default="/tmp/peerenv/bin/python")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated peer names")
    ap.add_argument("--size", default="small", choices=("small", "paper"))
    ap.add_argument("--depth", type=int, default=None, help="override the number of layers")
    ap.add_argument("--molecules", type=int, default=8, help="molecules per batch")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mem-cap-gb", type=float, default=8.0)
    a = ap.parse_args()
    if not a.smoke:
        ap.error("nothing to do: pass --smoke (benchmarks/peers/run.py drives the full comparison)")
    import tempfile

    from se3mol.data import load_qm9, standard_split

    avail = available_peers(a.peer_python)
    print(json.dumps({"available": avail}), flush=True)
    q = load_qm9(verbose=False)
    train = standard_split()["train"]
    with tempfile.TemporaryDirectory() as d:
        files = write_qm9_batch_files(d, q, [train[:a.molecules]])
        for name in a.peers.split(","):
            if "version" not in avail.get(name, {}):
                print(json.dumps({"peer": name, "skipped": avail.get(name, {"error": "unknown peer"})}), flush=True)
                continue
            r = run_peer(a.peer_python, name, a.size, files, a.steps, a.threads, a.mem_cap_gb, a.depth)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
