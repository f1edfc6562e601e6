"""Training: loss falls, exact resume from a saved step, changed configuration refused."""

import json

import pytest
import torch

from se3mol.tasks import make_task
from se3mol.training import TrainConfig, Trainer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _cfg(out, **kw):
    base = dict(model_config={"hidden": 16, "layers": 2}, targets=["gap"], epochs=2, batch_size=16, limit=48,
                warmup_steps=2, ema_decay=0.9, seed=3, out=str(out))
    base.update(kw)
    return TrainConfig(**base)


def test_resume_mid_run_is_exact(tmp_path, qm9):
    full = Trainer(make_task(_cfg(tmp_path / "a", save_every=2), qm9))
    full.train()

    class Interrupted(Exception):
        pass

    def die_at_step_5(info):  # 3 steps per epoch: dies mid-epoch 2, after last.pt was saved at step 4
        if info["event"] == "step" and info["epoch"] == 2 and info["step"] == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        Trainer(make_task(_cfg(tmp_path / "b", save_every=2), qm9), progress=die_at_step_5).train()
    resumed = Trainer(make_task(_cfg(tmp_path / "b", save_every=2), qm9))
    resumed.resume(tmp_path / "b" / "last.pt")
    assert (resumed.epoch, resumed.step_in_epoch, resumed.global_step) == (1, 1, 4)
    resumed.train()
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["test_mae"] == b["test_mae"] and a["val_mae"] == b["val_mae"]
    sa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ha = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    hb = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    strip_time = [",".join(r.split(",")[:-1]) for r in ha], [",".join(r.split(",")[:-1]) for r in hb]
    assert strip_time[0] == strip_time[1]


def test_changed_configuration_is_refused(tmp_path, qm9):
    t = Trainer(make_task(_cfg(tmp_path / "c", epochs=1), qm9))
    t.train()
    other = Trainer(make_task(_cfg(tmp_path / "c", epochs=1, lr=1e-3, batch_size=8), qm9))
    with pytest.raises(ValueError, match="changed configuration: .*lr: 0.0005 -> 0.001"):
        other.resume(tmp_path / "c" / "last.pt")


def test_run_directory_contents(tmp_path, qm9):
    Trainer(make_task(_cfg(tmp_path / "d", epochs=1), qm9)).train()
    d = tmp_path / "d"
    for f in ("config.json", "metrics.csv", "best.pt", "last.pt", "results.json", "learning_curve.png",
              "parity_test.png"):
        assert (d / f).is_file(), f
    header = (d / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,step,train_loss,val_mae_gap_meV,weights,lr,time_s"
    assert TrainConfig.from_json(d / "config.json") == _cfg(d, epochs=1)
    best = torch.load(d / "best.pt", weights_only=True)
    assert len(best["split"]["test"]) == 48 and best["metrics"]["test_n"] == 48
    assert best["domain"]["max_heavy_atoms"] <= 9


def test_ema_warmup_forgets_the_initial_weights():
    from se3mol.training.loop import ema_with_warmup

    update = ema_with_warmup(0.999)
    ema, cur = [torch.zeros(3)], [torch.ones(3)]
    for t in range(200):
        update(ema, cur, torch.tensor(t))
    # plain decay 0.999 would still hold 82% of the initial zeros after 200 steps; the warm-up only ~5%
    assert float(ema[0][0]) > 0.9


def test_time_budget_ends_the_run_and_fits_the_schedule(tmp_path, qm9, monkeypatch):
    import se3mol.training.loop as loop

    ticks = iter(range(10**7))

    class Clock:  # every reading of the clock is one "second" after the last: a run of known pace
        @staticmethod
        def perf_counter() -> float:
            return float(next(ticks))

    monkeypatch.setattr(loop, "time", Clock)
    t = Trainer(make_task(_cfg(tmp_path / "t", epochs=1000, max_time=40.0), qm9))
    result = t.train()
    assert 3 <= result.epochs_run < 1000  # ended by the budget, not by --epochs
    assert 40.0 <= t.elapsed < 40.0 + 3 * t.steps_per_epoch  # stopped within an epoch of the budget
    last_lr = t.history[-1]["lr"]
    assert last_lr < 0.3 * t.cfg.lr  # the cosine schedule ran its course within the budget
    assert t.total_steps < t.steps_per_epoch * 1000
    assert (tmp_path / "t" / "results.json").is_file()


def test_init_from_starts_at_the_checkpoints_weights_and_refuses_another_model(tmp_path, qm9):
    Trainer(make_task(_cfg(tmp_path / "base", epochs=1), qm9)).train()
    best = tmp_path / "base" / "best.pt"
    saved = torch.load(best, weights_only=True)["state_dict"]
    tuned = Trainer(make_task(_cfg(tmp_path / "ft", epochs=1, seed=7, init_from=str(best)), qm9))
    got = tuned.module.state_dict()
    assert all(torch.equal(saved[k], got[k]) for k in saved)
    fresh = Trainer(make_task(_cfg(tmp_path / "fresh", epochs=1, seed=7), qm9)).module.state_dict()
    assert not all(torch.equal(saved[k], fresh[k]) for k in saved)
    tuned.train()
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init_from"] == str(best)
    with pytest.raises(ValueError, match="its model differs.*'hidden': 16.*'hidden': 8"):
        Trainer(make_task(_cfg(tmp_path / "x", model_config={"hidden": 8, "layers": 2}, init_from=str(best)), qm9))
    with pytest.raises(ValueError, match="no shipped model called 'nope'"):
        Trainer(make_task(_cfg(tmp_path / "y", init_from="nope"), qm9))


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path, qm9):
    Trainer(make_task(_cfg(tmp_path / "e", epochs=1), qm9)).train()
    first = json.loads((tmp_path / "e" / "results.json").read_text())
    longer = Trainer(make_task(_cfg(tmp_path / "e", epochs=3), qm9))
    longer.resume(tmp_path / "e" / "last.pt")
    assert longer.epoch == 1 and longer.total_steps == 3 * longer.steps_per_epoch
    lr_after_first = longer.sched.get_last_lr()[0]
    longer.train()
    assert [r["epoch"] for r in longer.history] == [1, 2, 3]
    assert longer.history[1]["lr"] > lr_after_first * 1.5  # warm restart, then decays to the new end
    assert longer.history[2]["lr"] < longer.history[1]["lr"]
    assert json.loads((tmp_path / "e" / "results.json").read_text())["epochs_run"] == 3 != first["epochs_run"]
    with pytest.raises(ValueError, match="epochs: 3 -> 2"):  # fewer epochs is still a changed configuration
        Trainer(make_task(_cfg(tmp_path / "e", epochs=2), qm9)).resume(tmp_path / "e" / "last.pt")


def test_a_short_time_budget_still_warms_up_and_decays(tmp_path, qm9, monkeypatch):
    """With the default warm-up (1,000 steps) and many epochs, a budget of a few dozen steps ended in warm-up."""
    from se3mol.training import loop

    ticks = iter(range(10**7))

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            return float(next(ticks))

    monkeypatch.setattr(loop, "time", Clock)
    lrs = []
    t = Trainer(make_task(_cfg(tmp_path / "s", epochs=1000, max_time=60.0, warmup_steps=1000, limit=96), qm9),
                progress=lambda info: lrs.append(t.sched.get_last_lr()[0]) if info["event"] == "step" else None)
    t.train()
    peak = t.cfg.lr
    assert 10 <= len(lrs) < 100  # a few dozen steps in the budget
    assert max(lrs) > 0.9 * peak  # the warm-up completed
    assert lrs[-1] < 0.3 * peak  # and the rate decayed by the end
