"""The N-body dynamics task (se3mol.tasks.dynamics): an EGNN trained on it beats predicting no motion."""

from se3mol.data.nbody import load_nbody


def test_nbody_training_beats_standing_still(tmp_path):
    from se3mol.tasks import make_task
    from se3mol.training import TrainConfig, Trainer

    cfg = TrainConfig(task="nbody", model="egnn", dataset="nbody", model_config={"hidden": 32, "layers": 2},
                      epochs=8, batch_size=50, lr=1e-3, limit=200, warmup_steps=2, seed=0, out=str(tmp_path))
    result = Trainer(make_task(cfg)).train()
    data = load_nbody("test", n=200, verbose=False)
    still = float((data.loc - data.target_loc).pow(2).mean())  # predicting no motion
    assert result.test["mse"] < 0.5 * still
