"""Molecular properties: QM9 targets or the labels of your own molecules (``se3mol train --task properties``).

Loss: L1 on standardised targets (each target in units of its spread on the training split), averaged
over the labels present (a missing label, NaN, carries no loss and no gradient). With ``forces``, the
negative gradient of the first target (an energy) is also trained on per-atom force labels. Reported:
MAE per target in its unit on validation and test, plus RMSE and R^2 on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from se3mol import limits
from se3mol.checkpoint import model_checkpoint, read_checkpoint
from se3mol.data.files import LabelledDataset, attach_fingerprints, split_dataset
from se3mol.data.qm9 import QM9, SPLIT_SEED, attach_bonds, load_qm9, standard_split
from se3mol.graph import GraphConfig, GraphKind
from se3mol.nn.model import MORGAN, QM9_ELEMENTS, MoleculeModel, build_model
from se3mol.nn.registry import get_entry
from se3mol.pretrained import resolve_checkpoint
from se3mol.targets import Target, get_target
from se3mol.tasks.base import Task
from se3mol.training.config import TrainConfig
from se3mol.training.metrics import (
    evaluate,
    force_mae,
    masked_force_l1,
    masked_l1,
    predicted_forces,
    regression_metrics,
)
from se3mol.training.plots import learning_curve, parity_plot


class PropertyTask(Task[MoleculeModel]):
    """Molecular properties on QM9 (``dataset`` ``qm9``, its standard split) or on a file of your own
    labelled molecules (a :class:`~se3mol.data.files.LabelledDataset`, split as the config says).

    Both data sets offer the same interface, so nothing after ``__init__`` knows which it is. ``data``
    may be given in memory (a QM9 already loaded, or a ``LabelledDataset`` built in Python); the config
    then records it as ``<in-memory LabelledDataset>`` with its targets.
    """

    name = "properties"
    metric = "mae"
    val_key, test_key = "val_mae", "test_mae"

    def __init__(self, config: TrainConfig, data: QM9 | LabelledDataset | None = None) -> None:
        self.data: QM9 | LabelledDataset
        if isinstance(data, LabelledDataset) and config.dataset == "qm9":
            config = replace(config, dataset="<in-memory LabelledDataset>",
                             targets=[f"{t.name}:{t.unit}:{t.pooling}" for t in data.targets])
        self.config = config
        self.split_info: dict[str, Any] = {"seed": SPLIT_SEED}
        self.charge_input = False
        if config.dataset == "qm9":
            self.targets: list[Target] = [get_target(t) for t in config.targets]
            self.data = data if isinstance(data, QM9) else load_qm9()
            split = standard_split(len(self.data), SPLIT_SEED)
            self.elements: tuple[int, ...] = QM9_ELEMENTS
        else:
            pretrained, init_charge = self._init_model()
            if data is not None and not isinstance(data, LabelledDataset):
                raise ValueError(f"data for {config.dataset}: give a LabelledDataset, not a {type(data).__name__}")
            self.data, split = data_from_config(config, pretrained, data, neutral_only=init_charge is False)
            self.targets = list(self.data.targets)
            self.split_info = {"method": config.split, "fractions": list(config.split_fractions),
                               "seed": config.split_seed, "val_data": config.val_data,
                               "test_data": config.test_data}
            self.elements = pretrained or self.data.elements
            # The total charge is a model input, unless the model fine-tuned from takes neutral molecules only: a
            # model trained on neutral molecules alone scores an ion as its neutral self (the charge's weights
            # start at zero and get no gradient), and predict says so, instead of dropping the row.
            self.charge_input = init_charge if init_charge is not None else True
        self.forces: Tensor | None = getattr(self.data, "forces", None) if config.forces else None  # [A,3]
        if config.forces:
            if self.forces is None:
                raise ValueError(f"--forces {config.forces}: the data has no per-atom forces")
            if self.targets[0].kind != "scalar" or self.targets[0].pooling != "sum":
                raise ValueError(f"--forces trains the gradient of the first target, an energy summed over atoms; "
                                 f"{self.targets[0].name} is pooled by {self.targets[0].pooling}")
        self.target_names = [t.name for t in self.targets]
        if config.graph == "auto":  # own data without --graph: the graph that fits the molecules' size
            config = self.config = replace(config, graph=auto_graph(self.data))
            if config.graph == "radius" and "cutoff" not in config.model_config and hasattr(
                    get_entry(config.model).make_config({}), "cutoff"):
                # messages fade out smoothly at the graph's edge instead of jumping to zero there
                config = self.config = replace(config, model_config={**config.model_config, "cutoff": config.cutoff})
        self.graph = GraphConfig(cast(GraphKind, config.graph), config.cutoff)  # the kind is checked there
        if config.fingerprint not in ("none", "morgan", "auto"):
            raise ValueError(f"unknown fingerprint {config.fingerprint!r}; choose none, morgan or auto")
        self.fingerprint = dict(MORGAN) if config.fingerprint in ("morgan", "auto") else None
        if self.fingerprint is not None:
            try:
                attach_fingerprints(self.data, self.fingerprint)
            except ValueError:
                if config.fingerprint == "morgan":
                    raise
                self.fingerprint = None  # auto: molecules without SMILES (3D files of unknown bonds) go without
            config = self.config = replace(config, fingerprint="morgan" if self.fingerprint else "none")
        if config.limit:
            split = {k: v[: config.limit] for k, v in split.items()}
        self.split = split
        if self.graph.needs_bonds:
            attach_bonds(self.data)

    def _init_model(self) -> tuple[tuple[int, ...] | None, bool | None]:
        """The elements of the model fine-tuned from (``init_from``), to which the data is limited, and whether
        it takes the total charge (if not, the data is limited to neutral molecules); ``(None, None)`` from
        scratch."""
        if not self.config.init_from:
            return None, None
        try:
            ckpt = read_checkpoint(resolve_checkpoint(self.config.init_from))
        except FileNotFoundError as exc:
            raise ValueError(f"--init-from {self.config.init_from}: {exc}") from None
        return tuple(ckpt["model"].get("elements", QM9_ELEMENTS)), bool(ckpt["model"].get("charge_input", False))

    # ------------------------------------------------------------------ model and loss
    def build_model(self) -> MoleculeModel:
        cfg = self.config
        model = build_model(cfg.model, self.targets, cfg.model_config, self.elements, self.graph, self.charge_input,
                            self.fingerprint)
        train_idx = self.split["train"]
        model.heads.fit_normalization(self.data.target_values(train_idx, self.target_names),
                                      self.data.counts[train_idx], self.data.composition(train_idx))
        self._scale = model.heads.loss_scale()  # [T]
        self._col_target = model.heads.column_target()  # [D]
        self._force_scale = 1.0
        if self.forces is not None:
            f = self.forces[self.data.atom_index(train_idx)]  # [A,3]
            f = f[torch.isfinite(f).all(1)]
            self._force_scale = float(f.std()) if len(f) > 1 and float(f.std()) > 0 else 1.0
        return model

    def loss(self, model: MoleculeModel, idx: Tensor, device: torch.device, key: int) -> tuple[Tensor, int]:
        batch = self.data.batch(idx, self.graph, self.target_names).to(device)
        if self.config.forces:
            batch = batch.replace(pos=batch.pos.detach().requires_grad_(True))
        out = model(batch)
        pred = model.heads.stack(out)  # [B,D]
        assert batch.y is not None  # the labels of self.target_names
        loss = masked_l1(pred, batch.y, self._scale.to(device), self._col_target.to(device), len(self.targets))
        if batch.forces is not None:
            f = predicted_forces(out[self.targets[0].name], batch.pos, create_graph=True)  # [N,3]
            loss = loss + self.config.forces_weight * masked_force_l1(f, batch.forces) / self._force_scale
        return loss, batch.num_graphs

    # ------------------------------------------------------------------ metrics
    def validate(self, model: MoleculeModel, device: torch.device) -> tuple[dict[str, float], float]:
        val = evaluate(model, self.data, self.split["val"], self.graph, device)
        terms = [val[t.name] / float(s) for t, s in zip(self.targets, self._scale, strict=True)]
        if self.config.forces:
            val["forces"] = force_mae(model, self.data, self.split["val"], self.graph, device)
            terms.append(self.config.forces_weight * val["forces"] / self._force_scale)
        return val, float(np.mean(terms))

    def metric_columns(self, val: dict[str, float]) -> dict[str, float]:
        cols = {f"val_mae_{t.column}": val[t.name] for t in self.targets}
        if "forces" in val:
            cols[f"val_mae_forces_{self.targets[0].slug}_A"] = val["forces"]
        return cols

    def checkpoint(self, model: MoleculeModel, **extra: Any) -> dict[str, Any]:
        return model_checkpoint(model, domain=self.data.domain(self.split["train"], model.elements), **extra)

    def test(self, model: MoleculeModel, device: torch.device) -> tuple[dict[str, float], int, dict[str, Any]]:
        test_idx = self.split["test"]
        test, pred, ref = evaluate(model, self.data, test_idx, self.graph, device, return_values=True)
        full = regression_metrics(pred, ref, model.targets)
        units = {t.name: t.unit for t in self.targets}
        if self.config.forces:
            test["forces"] = force_mae(model, self.data, test_idx, self.graph, device)
            units["forces"] = f"{self.targets[0].unit}/A"
        return test, int(len(test_idx)), {"metrics": {"test_metrics": full},
                                          "results": {"test_metrics": full, "units": units}, "pred": pred,
                                          "ref": ref}

    def plots(self, history: list[dict[str, Any]], extra: dict[str, Any], out: Path) -> None:
        """``learning_curve.png`` and ``parity_test.png``."""
        learning_curve(history, self.targets, out / "learning_curve.png")
        parity_plot(extra["pred"], extra["ref"], self.targets, out / "parity_test.png")

    # ------------------------------------------------------------------ reports
    def write_reports(self, out: Path) -> None:
        """``data_report.csv``: every record of your own data, used or skipped, with the reason."""
        if isinstance(self.data, LabelledDataset):
            self.data.write_report(out / "data_report.csv")

    def summary(self) -> str | None:
        if not isinstance(self.data, LabelledDataset):
            return None
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.split.items())
        c = self.config
        given = [f"{part} from {Path(f).name}" for part, f in (("val", c.val_data), ("test", c.test_data)) if f]
        made = [p for p, f in (("val", c.val_data), ("test", c.test_data)) if not f]
        how = ", ".join(given + ([f"{' and '.join(made)} by split {c.split} of the rest"] if made and given else []))
        return (f"data: {self.data.summary()}; split: {sizes} ({how or 'split ' + c.split}); per-record reasons in "
                f"{Path(self.config.out) / 'data_report.csv'}")


#: Mean atoms per molecule (hydrogens included) above which ``--graph auto`` takes the radius graph: a QM9-sized
#: molecule (18 atoms on average, 29 at most) keeps every pair; a drug-sized one (~60 atoms: 3,540 pairs) would
#: spend all of a step on them (``benchmarks/speed/results/graph_cost.md``: 5.8 against 28.5 molecules/s).
AUTO_FULL_GRAPH_ATOMS = 30


def auto_graph(data: QM9 | LabelledDataset) -> str:
    """The graph ``se3mol train --data`` takes when none is given: ``full`` for molecules of at most
    :data:`AUTO_FULL_GRAPH_ATOMS` atoms on average, else ``radius`` (the cutoff of the config, 5 A by default).
    On two MoleculeACE development sets (5 minutes, batches of 32) the radius graph gave test RMSE 0.896 and 1.020
    against 0.951 and 1.068 for the full graph (``docs/notes/own-data.md``)."""
    mean_atoms = float(data.counts.float().mean()) if len(data.counts) else 0.0
    return "full" if mean_atoms <= AUTO_FULL_GRAPH_ATOMS else "radius"


def data_from_config(cfg: TrainConfig, elements: Sequence[int] | None = None,
                     data: LabelledDataset | None = None, neutral_only: bool = False,
                     ) -> tuple[LabelledDataset, dict[str, Tensor]]:
    """The labelled data set and split a config describes (``dataset`` a file; ``val_data``, ``test_data``);
    ``elements`` and ``neutral_only`` limit it to what a model fine-tuned from can take."""
    keep = [cfg.split.split(":", 1)[1]] if cfg.split.startswith("column:") else []
    read: dict[str, Any] = dict(targets=cfg.targets, smiles_column=cfg.smiles_column, id_column=cfg.id_column,
                                embed_seed=cfg.embed_seed, elements=elements, forces=cfg.forces,
                                outlier_mad=cfg.outlier_mad, neutral_only=neutral_only)
    with limits.use(limits.Limits(cfg.max_atoms, cfg.embed_timeout, cfg.fragments)):
        train = data if data is not None else LabelledDataset.from_files([cfg.dataset], keep_fields=keep, **read)
        val = LabelledDataset.from_files([cfg.val_data], **read) if cfg.val_data else None
        test = LabelledDataset.from_files([cfg.test_data], **read) if cfg.test_data else None
    return split_dataset(train, cfg.split, cfg.split_fractions, cfg.split_seed, val, test)
