"""Losses and metrics of property training, shared by training, ``se3mol evaluate`` and release tools.

Labels may be missing (NaN): a missing label carries no loss, no gradient and no weight in a metric.
Tensors ``[B,D]`` hold one column per scalar target and nine per rank-2 tensor target.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from se3mol.data.qm9 import PackedMolecules
from se3mol.graph import GraphConfig
from se3mol.nn.layers import scatter_sum
from se3mol.nn.model import MoleculeModel
from se3mol.targets import Target


@torch.no_grad()
def evaluate(model: MoleculeModel, data: PackedMolecules, idx: Tensor, graph: GraphConfig, device: torch.device,
             batch_size: int = 256, return_values: bool = False):
    """Mean absolute error per target (user units; tensors: over their nine components) on molecules ``idx``.

    With ``return_values``, also the stacked predictions and references ``[M,D]``.
    """
    model.eval()
    names = [t.name for t in model.targets]
    preds, refs = [], []
    for k in range(0, len(idx), batch_size):
        b = data.batch(idx[k:k + batch_size], graph, names).to(device)
        assert b.y is not None  # labels of the named targets
        preds.append(model.heads.stack(model(b)).double().cpu())
        refs.append(b.y.double().cpu())
    p, r = torch.cat(preds), torch.cat(refs)
    col_target = model.heads.column_target()
    mae = {}
    for j, n in enumerate(names):
        err = (p[:, col_target == j] - r[:, col_target == j]).abs()
        mae[n] = float(err[torch.isfinite(err)].mean())  # missing labels (NaN) do not count
    return (mae, p, r) if return_values else mae


def predicted_forces(energy: Tensor, pos: Tensor, create_graph: bool = False) -> Tensor:
    """Forces ``-dE/dpos [N,3]`` of per-molecule energies ``energy [B]`` on positions ``pos [N,3]``
    (which must require grad): the conservative forces, equivariant when the energy is invariant."""
    (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph)
    return -grad


def masked_force_l1(pred: Tensor, ref: Tensor) -> Tensor:
    """Mean absolute error of force components ``[N,3]`` over atoms with labels (NaN: none)."""
    have = torch.isfinite(ref)
    if not bool(have.any()):
        return pred.sum() * 0.0
    return ((pred - torch.where(have, ref, torch.zeros_like(ref))).abs() * have).sum() / have.sum()


def force_mae(model: MoleculeModel, data: PackedMolecules, idx: Tensor, graph: GraphConfig, device: torch.device,
              batch_size: int = 128) -> float:
    """MAE of the force components ``-dE/dpos`` of the model's first target on molecules ``idx`` (energy
    unit per Angstrom), over atoms with force labels."""
    was = model.training
    model.eval()
    err, n = 0.0, 0
    name = model.targets[0].name
    for k in range(0, len(idx), batch_size):
        b = data.batch(idx[k:k + batch_size], graph, [name]).to(device)
        b = b.replace(pos=b.pos.detach().requires_grad_(True))
        with torch.enable_grad():
            f = predicted_forces(model(b)[name], b.pos).detach()
        if b.forces is None:
            raise ValueError("force MAE asked for, but the data has no forces")
        have = torch.isfinite(b.forces)
        err += float(((f - torch.where(have, b.forces, torch.zeros_like(f))).abs() * have).sum())
        n += int(have.sum())
    model.train(was)
    return err / max(n, 1)


def masked_l1(pred: Tensor, y: Tensor, scale: Tensor, col_target: Tensor, n_targets: int) -> Tensor:
    """L1 loss of predictions ``pred [B,D]`` against labels ``y [B,D]`` (NaN where missing).

    Each column's error is in units of its target's ``scale [T]``, averaged over the molecules that have
    that label, then within each target (a tensor's nine columns count once), then over the targets
    labelled in this batch. A missing label contributes neither loss nor gradient.
    """
    have = torch.isfinite(y)  # [B,D]
    # NaN must not reach the graph at all: |pred - NaN| * 0 would still give NaN gradients.
    diff = (pred - torch.where(have, y, torch.zeros_like(y))).abs() * have / scale[col_target]  # [B,D]
    count = have.sum(0)  # [D]
    per_col = diff.sum(0) / count.clamp(min=1)  # [D]
    labelled = (count > 0).to(pred.dtype)  # [D]
    per_target = scatter_sum(per_col * labelled, col_target, n_targets)  # [T]
    cols = scatter_sum(labelled, col_target, n_targets)  # [T]
    present = cols > 0
    return (per_target[present] / cols[present]).mean() if bool(present.any()) else pred.sum() * 0.0


def regression_metrics(pred: Tensor, ref: Tensor, targets: Sequence[Target]) -> dict[str, dict[str, float]]:
    """MAE, RMSE, R^2 and the number of labelled molecules per target, from ``pred, ref [M,D]`` in the
    targets' units (NaN in ``ref`` where a label is missing; a tensor target pools its nine columns)."""
    out = {}
    col = 0
    for t in targets:
        p, r = pred[:, col:col + t.width].double(), ref[:, col:col + t.width].double()
        col += t.width
        ok = torch.isfinite(r).all(1)
        p, r = p[ok].reshape(-1), r[ok].reshape(-1)
        if len(r) == 0:
            out[t.name] = {"mae": float("nan"), "rmse": float("nan"), "r2": float("nan"), "n": 0}
            continue
        err = p - r
        ss_tot = float(((r - r.mean()) ** 2).sum())
        out[t.name] = {"mae": float(err.abs().mean()), "rmse": float((err ** 2).mean().sqrt()),
                       "r2": 1.0 - float((err ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
                       "n": int(ok.sum())}
    return out


#: Fraction of a normal distribution within one standard deviation of its mean.
WITHIN_ONE_SIGMA = 0.682689492137086


def _spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (ties broken by order; fine for continuous values)."""
    ra = torch.empty_like(a).scatter_(0, a.argsort(), torch.arange(len(a), dtype=a.dtype))
    rb = torch.empty_like(b).scatter_(0, b.argsort(), torch.arange(len(b), dtype=b.dtype))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp(min=1e-300))


def _scalar_columns(pred: Tensor, std: Tensor, ref: Tensor, targets: Sequence[Target]):
    """Per scalar target: its name and its labelled (error, std) columns as float64."""
    col = 0
    for t in targets:
        if t.width == 1:
            p, s, r = (x[:, col].double() for x in (pred, std, ref))
            ok = torch.isfinite(r) & torch.isfinite(s)
            yield t.name, (p - r)[ok], s[ok]
        col += t.width


def fit_std_scale(pred: Tensor, std: Tensor, ref: Tensor, targets: Sequence[Target]) -> dict[str, float]:
    """Per scalar target, the factor ``s`` for which ``|error| <= s * std`` holds for the normal share
    (68.27 %) of molecules: an ensemble's spread rescaled into a calibrated standard deviation. Fit it on
    data the models were not trained on (the validation split), check it on other data (:func:`calibration`).
    A quantile, not a variance ratio: QM9 errors are heavy-tailed, and a few outliers would inflate it."""
    out = {}
    for name, err, s in _scalar_columns(pred, std, ref, targets):
        z = err.abs() / s.clamp(min=1e-12)
        out[name] = float(torch.quantile(z, WITHIN_ONE_SIGMA)) if len(z) else float("nan")
    return out


def calibration(pred: Tensor, std: Tensor, ref: Tensor, targets: Sequence[Target],
                scale: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """How well an ensemble's ``std`` (times ``scale[target]``, default 1) describes its errors, per scalar
    target: the fractions of molecules whose error is within 1 and 2 std (a normal distribution: 0.683 and
    0.954), the Spearman correlation between std and |error| (does a larger std flag a larger error?), the
    mean std and the MAE, and the number of molecules."""
    out = {}
    for name, err, s in _scalar_columns(pred, std, ref, targets):
        s = s * (scale or {}).get(name, 1.0)
        a = err.abs()
        out[name] = {"within_1std": float((a <= s).double().mean()), "within_2std": float((a <= 2 * s).double().mean()),
                     "spearman_std_abs_error": _spearman(s, a), "mean_std": float(s.mean()), "mae": float(a.mean()),
                     "n": int(len(a))}
    return out
