"""``se3mol train --task conformers``: on a user's SDF of conformers (split by molecule), exact resume,
a run directory with a checkpoint the sampler loads, and clear errors."""

import json

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from typer.testing import CliRunner

from se3mol.cli.app import app
from se3mol.conformers.data import conformer_dataset
from se3mol.conformers.sampler import SamplerSettings, ScoreSampler
from se3mol.tasks import make_task
from se3mol.training import TrainConfig, Trainer
from tests.helpers import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SMILES = ["CCO", "CC(=O)O", "CCN", "C=CC=O", "OCCO", "CC#N", "COC", "NC=O", "CCC", "OC(F)F"]


@pytest.fixture(scope="module")
def conformer_sdf(tmp_path_factory):
    path = tmp_path_factory.mktemp("confs") / "confs.sdf"
    w = Chem.SDWriter(str(path))
    for k, smi in enumerate(SMILES):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        cids = AllChem.EmbedMultipleConfs(mol, numConfs=3, randomSeed=k)
        for cid in cids:
            mol.SetProp("_Name", f"{smi} {cid}")
            w.write(mol, confId=cid)
    w.close()
    return path


def _cfg(out, sdf, **kw):
    base = dict(task="conformers", model="clofnet", dataset=str(sdf), epochs=2, batch_size=8, warmup_steps=2,
                ema_decay=0.9, seed=1, out=str(out),
                model_config={"hidden": 16, "layers": 2, "num_rbf": 8, "frame_features": 8, "sigma_features": 8})
    base.update(kw)
    return TrainConfig(**base)


def test_sdf_collection_is_split_by_molecule(conformer_sdf):
    data, split, info = conformer_dataset(str(conformer_sdf))
    assert info["conformers"] == 30 and info["molecules"] == 10
    assert sum(len(v) for v in split.values()) == 30
    groups = {s: {data.smiles[int(k)] for k in v} for s, v in split.items()}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert len(split["train"]) == 24


def test_resume_mid_run_is_exact_and_the_checkpoint_samples(tmp_path, conformer_sdf):
    full = Trainer(make_task(_cfg(tmp_path / "a", conformer_sdf, save_every=2)))
    full.train()

    class Interrupted(Exception):
        pass

    def die(info):  # 3 steps per epoch: dies mid-epoch 2, after last.pt was saved at step 4
        if info["event"] == "step" and info["epoch"] == 2 and info["step"] == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        Trainer(make_task(_cfg(tmp_path / "b", conformer_sdf, save_every=2)), progress=die).train()
    resumed = Trainer(make_task(_cfg(tmp_path / "b", conformer_sdf, save_every=2)))
    resumed.resume(tmp_path / "b" / "last.pt")
    resumed.train()
    sa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ra = json.loads((tmp_path / "a" / "results.json").read_text())
    rb = json.loads((tmp_path / "b" / "results.json").read_text())
    assert ra["val"] == rb["val"] and ra["test"] == rb["test"] and np.isfinite(ra["test"]["dsm_loss"])
    sampler = ScoreSampler.load(str(tmp_path / "a" / "best.pt"))
    xyz = sampler.sample(Chem.AddHs(Chem.MolFromSmiles("CCO")), 2, seed=0, settings=SamplerSettings(levels=3, steps=1))
    assert xyz.shape == (2, 9, 3) and np.isfinite(xyz).all()


def test_cli_trains_and_refuses_other_models_and_bad_files(tmp_path, conformer_sdf):
    runner = CliRunner()
    args = ["train", "--task", "conformers", "--dataset", str(conformer_sdf), "--epochs", "1", "--batch-size", "8",
            "--set", "hidden=8", "--set", "layers=1", "--out", str(tmp_path / "run")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["test"]["dsm_loss"] > 0
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "learning_curve.png").is_file()
    r = runner.invoke(app, [*args[:-2], "--model", "egnn", "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "conformer score model is a ClofNet" in r.output
    bad = tmp_path / "mols.xyz"
    bad.write_text("1\n\nC 0 0 0\n")
    r = runner.invoke(app, ["train", "--task", "conformers", "--dataset", str(bad), "--out", str(tmp_path / "y")])
    assert r.exit_code == 1 and "reads SDF files" in r.output
    smi = str(ROOT / "examples" / "molecules.smi")
    r = runner.invoke(app, ["predict", smi, "-m", str(tmp_path / "run" / "best.pt")])
    assert r.exit_code == 4 and "conformer_score model, not a property model" in r.output


def test_a_score_model_fine_tunes_onto_the_three_hop_graph_but_not_onto_other_settings(tmp_path, conformer_sdf):
    small = {"hidden": 16, "layers": 2, "num_rbf": 8, "frame_features": 8, "sigma_features": 8}
    Trainer(make_task(_cfg(tmp_path / "all", conformer_sdf, epochs=1,
                               model_config={**small, "max_hops": None}))).train()
    best = str(tmp_path / "all" / "best.pt")
    tuned = Trainer(make_task(_cfg(tmp_path / "near", conformer_sdf, epochs=1, init_from=best,
                                   model_config={**small, "max_hops": 3})))
    saved = torch.load(best, weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in tuned.module.state_dict().items())
    assert tuned.module.graph.max_hops == 3 and tuned.task.graph.max_hops == 3
    tuned.train()
    with pytest.raises(ValueError, match="its model differs.*r_max"):
        Trainer(make_task(_cfg(tmp_path / "other", conformer_sdf, init_from=best,
                               model_config={**small, "max_hops": 3, "r_max": 6.0})))


def test_init_from_a_checkpoint_written_before_max_hops_keeps_every_pair(tmp_path, conformer_sdf):
    from se3mol.pretrained import recorded_model_config

    small = {"hidden": 16, "layers": 2, "num_rbf": 8, "frame_features": 8, "sigma_features": 8}
    Trainer(make_task(_cfg(tmp_path / "all", conformer_sdf, epochs=1,
                               model_config={**small, "max_hops": None}))).train()
    ckpt = torch.load(tmp_path / "all" / "best.pt", weights_only=True)
    del ckpt["model"]["config"]["max_hops"]  # as the score models before the option recorded themselves
    torch.save(ckpt, tmp_path / "old.pt")
    assert recorded_model_config(str(tmp_path / "old.pt"))["max_hops"] is None
    assert recorded_model_config(str(tmp_path / "all" / "best.pt"))["max_hops"] is None
    from se3mol.pretrained import load_score_model

    model, _ = load_score_model(tmp_path / "old.pt")
    assert model.graph.max_hops is None


def test_init_from_a_model_of_fewer_elements_takes_the_shared_rows_and_starts_the_new_ones_fresh(
        tmp_path, conformer_sdf):
    small = {"hidden": 16, "layers": 2, "num_rbf": 8, "frame_features": 8, "sigma_features": 8}
    Trainer(make_task(_cfg(tmp_path / "all", conformer_sdf, epochs=1, model_config=small))).train()
    ckpt = torch.load(tmp_path / "all" / "best.pt", weights_only=True)
    elements = ckpt["model"]["elements"]
    key = "net.embed.embedding.weight"
    table = ckpt["state_dict"][key]
    # the same model as if trained without its last element (a QM9 model before data with S, Cl, Br)
    fewer = {**ckpt, "model": {**ckpt["model"], "elements": elements[:-1]},
             "state_dict": {**ckpt["state_dict"], key: table[:-1].clone()}}
    torch.save(fewer, tmp_path / "fewer.pt")
    tuned = Trainer(make_task(_cfg(tmp_path / "ft", conformer_sdf, epochs=1, seed=3, model_config=small,
                                   init_from=str(tmp_path / "fewer.pt"))))
    got = tuned.module.state_dict()
    assert list(tuned.module.elements) == elements
    assert torch.equal(got[key][:-1], table[:-1])  # shared elements: their learned rows
    assert not torch.equal(got[key][-1], table[-1])  # the new element: a fresh row, not a copy of anything
    assert all(torch.equal(v, got[k]) for k, v in ckpt["state_dict"].items() if k != key)
    tuned.train()
    none_shared = {**fewer, "model": {**fewer["model"], "elements": [99] * (len(elements) - 1)}}
    torch.save(none_shared, tmp_path / "alien.pt")
    with pytest.raises(ValueError, match="elements.*none shared"):
        Trainer(make_task(_cfg(tmp_path / "x", conformer_sdf, model_config=small,
                               init_from=str(tmp_path / "alien.pt"))))
