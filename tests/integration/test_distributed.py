"""Distributed training: 2 processes (torchrun, gloo, this machine) match 1 process with the same global batch.

``se3mol train --nproc 2 --batch-size 4`` takes 8 molecules per step (4 on each rank); one process with
``--batch-size 8`` sees the same molecules in the same steps. The two compute the same thing in exact
arithmetic, but not in the same order: each rank sums its own 4 molecules and gloo adds the two
partial gradients (and DDP divides by 2), where one process sums all 8 at once; the last batch of an
epoch (1 molecule here) leaves rank 1 a zero-weight stand-in. Float32 rounding therefore differs in
the last bits. Measured after 14 steps: weights within 3e-8, train loss and validation MAE within
3e-7 relative. Tolerance: 1e-4 relative on metrics and predictions, 1e-4 (absolute and relative) on
weights: room for other CPUs and BLAS builds, and still far below what a real fault changes (a rank
training on its shard alone, a missing gradient average, a wrongly weighted last batch move the
weights by ~lr = 5e-4 per step and the training loss by percents; the stand-in molecule once counted
in the training loss moved it by 0.8%).
"""

import json

import pytest
import torch

from tests.helpers.runs import (
    assert_no_truncated_files,
    differences,
    finish,
    kill_mid_epoch,
    load,
    metrics_without_time,
    results_without_time,
    run,
    squeezed,
    start,
    train_command,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

RTOL = 1e-4
# 49 training molecules: 7 steps of 8 per epoch, the last with a single molecule (rank 1 gets none).
COMMON = ["--limit", "49", "--epochs", "2", "--set", "hidden=16", "--set", "layers=2", "--seed", "5",
          "--device", "cpu", "--target", "gap", "--target", "mu"]


def _close_rows(a: list[dict[str, str]], b: list[dict[str, str]]) -> list[str]:
    out = []
    for ra, rb in zip(a, b, strict=True):
        for k in ra:
            try:
                x, y = float(ra[k]), float(rb[k])
            except ValueError:
                ok = ra[k] == rb[k]
            else:
                ok = abs(x - y) <= RTOL * abs(y)
            if not ok:
                out.append(f"epoch {ra['epoch']} {k}: {ra[k]} vs {rb[k]}")
    return out


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    single = start(train_command(*COMMON, "--batch-size", "8", "--out", str(one)))
    out2, err2 = run(train_command(*COMMON, "--nproc", "2", "--batch-size", "4", "--out", str(two)))
    finish(single)

    # rank 0 alone reports and writes
    assert len([line for line in out2.splitlines() if line.startswith("{")]) == 1
    assert squeezed(err2).count("rundirectory:") == 1 and "launching2processes" in squeezed(err2)
    cfg = json.loads((two / "config.json").read_text())
    assert (cfg["batch_size"], cfg["world_size"]) == (4, 2)
    assert_no_truncated_files(two)

    m2, m1 = metrics_without_time(two), metrics_without_time(one)
    assert [r["step"] for r in m2] == [r["step"] for r in m1] == ["7", "14"]
    bad = _close_rows(m2, m1)
    assert not bad, bad
    r2, r1 = results_without_time(two), results_without_time(one)
    for split in ("val_mae", "test_mae"):
        for t in ("gap", "mu"):
            assert r2[split][t] == pytest.approx(r1[split][t], rel=RTOL)
    # The trained functions agree: predictions of best.pt and last.pt on the test molecules.
    for name in ("best.pt", "last.pt"):
        p2, p1 = _test_predictions(two / name), _test_predictions(one / name)
        assert torch.allclose(p2, p1, rtol=RTOL, atol=RTOL * float(p1.abs().max())), name
    # Weights: every parameter that the outputs depend on agrees too. (One does not, here: the bias of
    # the dipole's charge readout, which q - mean(q) cancels exactly. Its gradient is rounding noise,
    # which Adam normalises into full-size steps, so it drifts at random by ~lr per step, differently
    # in any two runs that round differently -- harmless to predictions, checked above.)
    w2, w1 = load(two / "last.pt")["state_dict"], load(one / "last.pt")["state_dict"]
    drifting = {"heads.readout.2.bias"}
    assert not differences({k: v for k, v in w2.items() if k not in drifting},
                           {k: v for k, v in w1.items() if k not in drifting}, rtol=RTOL, atol=RTOL)
    print("largest weight difference, 2 processes vs 1:",
          {k: float((w2[k].double() - w1[k].double()).abs().max()) for k in sorted(w1, key=lambda k: -float(
              (w2[k].double() - w1[k].double()).abs().max()))[:3]})


def _test_predictions(path):
    """Predictions ``[M,D]`` of checkpoint ``path`` on the test molecules of its own split."""
    from se3mol.data import load_qm9
    from se3mol.training import evaluate, load_model

    model, ckpt = load_model(path)
    _, pred, _ = evaluate(model, load_qm9(verbose=False), ckpt["split"]["test"].long(), model.graph,
                          torch.device("cpu"), return_values=True)
    return pred


@pytest.mark.slow
def test_distributed_run_killed_mid_epoch_resumes_bit_identically(tmp_path):
    """SIGKILL the whole torchrun process group mid-epoch, resume on 2 processes: identical to the last bit."""
    args = ["--limit", "48", "--epochs", "2", "--batch-size", "2", "--set", "hidden=16", "--set", "layers=2",
            "--save-every", "1", "--seed", "11", "--device", "cpu", "--target", "gap", "--nproc", "2"]
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = start(train_command(*args, "--out", str(ref_dir)))
    victim = start(train_command(*args, "--out", str(run_dir)))
    epoch, step_in_epoch, global_step = kill_mid_epoch(victim, run_dir, min_epoch=1, min_step=5)
    assert 0 < step_in_epoch < 12
    temps = assert_no_truncated_files(run_dir)
    print(f"killed 2 ranks at epoch {epoch + 1}, step {step_in_epoch}/12 of it (global step {global_step}); "
          f"interrupted writes left: {temps or 'none'}")

    # A different number of processes is refused: --batch-size is per process.
    p = start(train_command("--resume", str(run_dir)))
    _, err = p.communicate(timeout=600)
    assert p.returncode == 1 and squeezed("world_size: 2 -> 1") in squeezed(err)

    run(train_command("--resume", str(run_dir), "--nproc", "2"))
    finish(reference)
    assert assert_no_truncated_files(run_dir) == []
    assert metrics_without_time(run_dir) == metrics_without_time(ref_dir)
    assert results_without_time(run_dir) == results_without_time(ref_dir)
    for name in ("last.pt", "best.pt"):
        diffs = differences(load(run_dir / name), load(ref_dir / name))
        assert not diffs, f"{name}: {diffs[:5]}"
    assert torch.load(run_dir / "last.pt", weights_only=True)["train_config"]["world_size"] == 2


@pytest.mark.slow
def test_conformer_training_runs_on_two_processes(tmp_path):
    """ConformerTrainer only overrides hooks: it trains under DDP unchanged, rank 0 writing the run."""
    out = tmp_path / "conf"
    stdout, _ = run(train_command("--task", "conformers", "--limit", "40", "--epochs", "2", "--batch-size", "5",
                                  "--set", "hidden=16", "--set", "layers=2", "--set", "num_rbf=8",
                                  "--set", "frame_features=8", "--set", "sigma_features=8", "--seed", "1",
                                  "--device", "cpu", "--nproc", "2", "--out", str(out)))
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["best_epoch"] >= 1 and result["test"]["dsm_loss"] > 0
    rows = metrics_without_time(out)
    assert [r["step"] for r in rows] == ["4", "8"]  # 40 molecules, 5 per process and step, 2 processes
    assert_no_truncated_files(out)
