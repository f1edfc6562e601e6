"""Data-parallel training on several processes (``torchrun``): the plumbing the training loop needs.

``torchrun --nproc_per_node=N -m se3mol train ...`` (or ``se3mol train --nproc N``) starts N copies
of the trainer. Each one finds its rank in the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), joins a process group (gloo on CPU, NCCL on CUDA
with one device per local rank) and wraps its model in :class:`~torch.nn.parallel.DistributedDataParallel`,
which averages gradients during ``backward``.

Batches, as in Lightning and chemprop: ``--batch-size`` is per process, so one optimizer step sees a
*global batch* of ``batch_size * world_size`` molecules: the next ``batch_size * world_size`` entries of
the epoch's permutation (the same permutation as on one process). Rank ``r`` takes every
``world_size``-th of them, starting at ``r`` -- what a ``DistributedSampler`` would hand it -- and
weights its loss so that DDP's average equals the mean over the global batch even when the last batch
of an epoch does not split evenly (a rank left without molecules computes on one with weight 0, so
that every rank still joins the gradient all-reduce). A run on N processes with ``--batch-size B``
therefore computes what one process computes with ``--batch-size N*B``, up to the order in which
floating-point sums are taken.

Everything else that is not per-molecule work happens on rank 0 and is broadcast: reading the
checkpoint to resume from, validation, the final test evaluation. Only rank 0 writes files and draws
progress. Without torchrun (``WORLD_SIZE`` unset or 1) every method here is a no-op on one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """True in a worker process started by torchrun (or any launcher that sets ``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """True on rank 0, or when not launched by torchrun. Usable before the process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


class _DDP(DistributedDataParallel):
    """DDP that forwards unknown attributes to the wrapped model.

    The training hooks call ``self.model.heads``, ``self.model.elements``...; with this, they work
    unchanged whether or not ``self.model`` is wrapped, while its ``forward`` goes through DDP (which
    is what arranges the gradient all-reduce).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


@dataclass
class Shard:
    """This rank's part of one global batch.

    ``idx [b]`` are the molecules to compute the loss on; ``weight`` multiplies that loss so that the
    gradient DDP averages over ranks is the gradient of the global batch's mean; ``n`` is the number of
    molecules that really count (0 when ``idx`` is a stand-in because the rank got none).
    """

    idx: Tensor
    weight: float
    n: int


class Distributed:
    """The process group of one training run (or a single process, where every method is trivial)."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0,
                 device: torch.device | None = None) -> None:
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.device = device if device is not None else torch.device("cpu")
        self._owns_group = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and draws progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls, device: torch.device) -> Distributed:
        """Join the process group torchrun describes in the environment, or stay on one process.

        ``device`` is what ``--device`` resolved to: on CUDA each process takes ``cuda:LOCAL_RANK`` and
        talks NCCL; on CPU, gloo.
        """
        if not launched_by_torchrun():
            return cls(device=device)
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            if device.index is not None and device.index != local_rank:
                raise ValueError(f"--device {device} under torchrun: each process uses the GPU of its local rank; "
                                 "pass --device cuda (or auto)")
            if local_rank >= torch.cuda.device_count():
                raise ValueError(f"local rank {local_rank} needs a GPU of its own, but this node has "
                                 f"{torch.cuda.device_count()}: start fewer processes per node, or use --device cpu")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
            backend = "nccl"
        elif device.type == "cpu":
            backend = "gloo"
        else:
            raise ValueError(f"distributed training runs on cpu (gloo) or cuda (NCCL), not {device.type}")
        group = cls(rank, world, local_rank, device)
        if not dist.is_initialized():
            dist.init_process_group(backend, rank=rank, world_size=world,
                                    device_id=device if device.type == "cuda" else None)
            group._owns_group = True
        elif dist.get_world_size() != world:
            raise ValueError("a process group of another size is already initialised")
        return group

    def close(self) -> None:
        """Leave the process group, if this object joined it.

        Every rank waits for the others first: a rank that tore down its gloo threads while a peer was still
        finishing the last broadcast was seen to abort at exit ("terminate called without an active
        exception") after a complete run."""
        if self._owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self._owns_group = False

    # ------------------------------------------------------------------ model and data
    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in DDP (gradients averaged across ranks), or ``model`` itself on one process.

        Buffers (normalisation, element lookup) are fixed before training, so DDP need not broadcast
        them at every forward -- which also lets rank 0 run validation alone. Parts of a model can be
        unused for some targets (the dipole or tensor head when training ``gap``); DDP is told so, and
        their gradients stay ``None`` as on one process.
        """
        if not self.active:
            return model
        ids = [self.device] if self.device is not None and self.device.type == "cuda" else None
        return _DDP(model, device_ids=ids, forward_sync_buffers=False, find_unused_parameters=True)

    def shard(self, batch: Tensor) -> Shard:
        """This rank's molecules of the global batch ``batch [G]``: ``batch[rank::world_size]``.

        The weight ``world_size * n_rank / G`` makes DDP's gradient average the gradient of the mean
        over all ``G`` molecules (losses are means over the molecules of a batch).
        """
        if not self.active:
            return Shard(batch, 1.0, len(batch))
        mine = batch[self.rank::self.world_size]
        if len(mine) == 0:  # fewer molecules than ranks: join the all-reduce with zero weight
            return Shard(batch[:1], 0.0, 0)
        return Shard(mine, self.world_size * len(mine) / len(batch), len(mine))

    # ------------------------------------------------------------------ communication
    def sum(self, *values: float) -> list[float]:
        """Sum scalars over ranks (float64), e.g. a running loss and its molecule count."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (e.g. one rank's time budget ran out)."""
        if not self.active:
            return flag
        return self.sum(float(flag))[0] > 0

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and give its result to every rank.

        An exception on rank 0 is raised on every rank, so they all stop with the same message instead
        of waiting for rank 0 forever.
        """
        if not self.active:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except Exception as exc:  # noqa: BLE001  (handed to every rank, then raised)
                box[0] = ("error", exc)
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        status, value = box[0]
        if status == "error":
            raise value
        return value

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device if self.device is not None and self.device.type == "cuda" else torch.device("cpu")
