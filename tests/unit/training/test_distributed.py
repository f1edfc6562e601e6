"""The sharding arithmetic of distributed training, checked without starting processes."""

import pytest
import torch

from se3mol.training.distributed import Distributed, launched_by_torchrun


@pytest.mark.parametrize("world,size", [(2, 8), (2, 7), (3, 8), (4, 2), (2, 1)])
def test_shards_partition_the_global_batch_and_weights_give_its_mean(world, size):
    batch = torch.randperm(100)[:size]  # [G] molecule indices
    losses = torch.rand(100, dtype=torch.float64)  # a per-molecule loss
    shards = [Distributed(rank=r, world_size=world).shard(batch) for r in range(world)]
    real = [s for s in shards if s.n]
    # disjoint, and together exactly the global batch (what a DistributedSampler would hand out)
    assert sorted(torch.cat([s.idx for s in real]).tolist()) == sorted(batch.tolist())
    assert sum(s.n for s in shards) == size
    assert max(s.n for s in shards) - min(s.n for s in shards) <= 1
    # DDP averages the ranks' (weighted) losses: that average must be the mean over the global batch
    ddp = sum(s.weight * losses[s.idx].mean() for s in shards) / world
    assert float(ddp) == pytest.approx(float(losses[batch].mean()), rel=1e-12)
    for s in shards:
        if s.n == 0:  # fewer molecules than ranks: a stand-in molecule with weight 0 keeps the rank in step
            assert s.weight == 0 and len(s.idx) == 1


def test_one_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launched_by_torchrun()
    d = Distributed.from_environment(torch.device("cpu"))
    assert (d.rank, d.world_size, d.is_main, d.active) == (0, 1, True, False)
    batch = torch.arange(5)
    s = d.shard(batch)
    assert s.idx is batch and s.weight == 1.0 and s.n == 5
    model = torch.nn.Linear(2, 2)
    assert d.wrap(model) is model
    assert d.sum(1.5, 3) == [1.5, 3]
    assert d.on_main(lambda: 42) == 42
    with pytest.raises(ValueError, match="boom"):
        d.on_main(lambda: (_ for _ in ()).throw(ValueError("boom")))
