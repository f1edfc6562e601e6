"""N-body simulator and data set: physics it must keep, the EGNN reference it must match, seeds, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from se3mol.data import nbody
from se3mol.data.nbody import (
    SPLIT_SIZES,
    NBodyConfig,
    fit_velocity_scale,
    generate,
    initial_states,
    load_nbody,
    simulate,
    velocity_baseline_mse,
)
from tests.helpers import FIXTURES
from tests.helpers import random_orthogonal as _orthogonal

# A cheap configuration of the same generator: 300-step trajectories, frames 0 -> 1 (steps 100 -> 200).
CHEAP = NBodyConfig(length=300, frame_in=0, frame_out=1)
TINY = NBodyConfig(length=300, frame_in=0, frame_out=1, stream_slots=(20, 10, 10))  # and a short stream


@pytest.fixture(scope="module")
def states():
    """64 initial states of the EGNN training stream: positions, velocities [64,5,3], charges [64,5]."""
    return initial_states(NBodyConfig(), "train", 64)


def test_initial_states_have_the_published_distribution():
    loc, vel, q = initial_states(NBodyConfig(), "train", 2000)
    assert set(np.unique(q).tolist()) == {-1.0, 1.0}
    assert abs((q > 0).mean() - 0.5) < 0.02  # 10,000 fair coin flips: sd 0.005
    np.testing.assert_allclose(np.linalg.norm(vel, axis=-1), 0.5, rtol=1e-12)  # every speed is vel_norm
    assert abs(loc.std() - 1.0) < 0.03 and abs(loc.mean()) < 0.03  # N(0, 1) per coordinate
    assert abs(vel.mean()) < 0.01  # isotropic directions


def test_momentum_is_conserved_without_clipping(states):
    loc, vel, q = states
    steps = [250, 1000]
    xs, vs, clips = simulate(loc, vel, q, steps, max_force=None)
    assert clips.sum() == 0
    p0 = vel.sum(axis=1)  # [M,3], unit masses
    for a, s in enumerate(steps):
        np.testing.assert_allclose(vs[a].sum(axis=1), p0, atol=1e-12)
        # the centroid moves in a straight line: sum x_s = sum x_0 + s dt P
        np.testing.assert_allclose(xs[a].sum(axis=1), loc.sum(axis=1) + s * 0.001 * p0, atol=1e-10)


def test_reference_force_clip_breaks_momentum_only_where_it_acts(states):
    """EGNN's data clip each net force component at 100; that breaks action = reaction, nothing else does."""
    loc, vel, q = states
    _, vs, clips = simulate(loc, vel, q, [1000], max_force=100.0)
    dp = np.abs(vs[0].sum(axis=1) - vel.sum(axis=1)).max(axis=1)  # [M]
    clipped = clips[0] > 0
    assert 0 < clipped.sum() < len(clipped)  # both kinds are present among these 64 systems
    assert dp[~clipped].max() < 1e-12
    assert dp[clipped].max() > 1e-3


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_trajectories_are_euclidean_equivariant(states, proper):
    loc, vel, q = states
    r, t = _orthogonal(1, proper), np.array([0.7, -1.3, 2.1])
    for max_force in (None, 100.0):
        xs, vs, c1 = simulate(loc, vel, q, [400, 1000], max_force=max_force)
        xr, vr, c2 = simulate(loc @ r.T + t, vel @ r.T, q, [400, 1000], max_force=max_force)
        # the reference's clip acts per Cartesian component, so only unclipped systems are equivariant
        ok = (c1.sum(0) == 0) & (c2.sum(0) == 0)
        assert ok.sum() >= 40
        np.testing.assert_allclose(xr[:, ok], xs[:, ok] @ r.T + t, atol=1e-7)
        np.testing.assert_allclose(vr[:, ok], vs[:, ok] @ r.T, atol=1e-7)
    # and where the clip acts, a rotation changes the outcome: the test above can tell
    xr, _, c2 = simulate(loc @ r.T, vel @ r.T, q, [1000], max_force=100.0)
    assert np.abs(xr[0] - xs[0] @ r.T).max() > 1e-3


def test_translation_and_permutation_equivariance_with_the_clip(states):
    loc, vel, q = states
    xs, vs, _ = simulate(loc, vel, q, [500], max_force=100.0)
    xt, vt, _ = simulate(loc + np.array([3.0, -2.0, 0.5]), vel, q, [500], max_force=100.0)
    np.testing.assert_allclose(xt[0], xs[0] + np.array([3.0, -2.0, 0.5]), atol=1e-6)
    np.testing.assert_allclose(vt[0], vs[0], atol=1e-5)
    perm = np.array([3, 0, 4, 1, 2])
    xp, vp, _ = simulate(loc[:, perm], vel[:, perm], q[:, perm], [500], max_force=100.0)
    np.testing.assert_allclose(xp[0], xs[0][:, perm], atol=1e-6)


def test_matches_the_egnn_reference_generator():
    """Charges and states at frames 0, 30 and 40 of the reference's first three training trajectories."""
    ref = json.loads((FIXTURES / "nbody_egnn_reference.json").read_text())["trajectories"]
    config = NBodyConfig()
    loc0, vel0, q = initial_states(config, "train", len(ref))
    frames = (0, 30, 40)
    xs, vs, _ = simulate(loc0, vel0, q, [(f + 1) * 100 for f in frames])
    for k, r in enumerate(ref):
        assert q[k].tolist() == r["charges"]
        for a, f in enumerate(frames):
            np.testing.assert_allclose(xs[a, k], r[f"loc_frame{f}"], rtol=0, atol=1e-9)
            np.testing.assert_allclose(vs[a, k], r[f"vel_frame{f}"], rtol=0, atol=1e-8)


def test_the_splits_follow_each_other_in_one_stream():
    config = NBodyConfig(stream_slots=(5, 3, 2))
    loc_all = initial_states(config, "test", 2)[0]
    assert not np.allclose(loc_all, initial_states(config, "val", 2)[0])
    # the test split starts after 5 + 3 trajectories: the same as slot 8 of a longer training stream
    longer = NBodyConfig(stream_slots=(10, 3, 2))
    np.testing.assert_array_equal(initial_states(longer, "train", 10)[0][8:], loc_all)


def test_seeds_reproduce_and_subsets_are_prefixes():
    a = generate("val", 6, TINY)
    b = generate("val", 6, TINY)
    for name in ("loc", "vel", "charges", "target_loc", "target_vel", "clipped"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    small = generate("val", 2, TINY)  # simulated alone, yet bit-identical to the first two of six
    assert torch.equal(small.target_loc, a.target_loc[:2]) and torch.equal(small.vel, a.vel[:2])
    other = generate("val", 6, NBodyConfig(length=300, frame_in=0, frame_out=1, stream_slots=(20, 10, 10), seed=44))
    assert not torch.allclose(other.loc, a.loc)
    assert not torch.allclose(generate("test", 6, TINY).loc, a.loc)


def test_input_and_target_are_frames_30_and_40():
    config = NBodyConfig()
    assert (config.n_frames, config.step_in, config.step_out) == (49, 3100, 4100)
    assert config.step_out - config.step_in == 1000  # "1,000 timesteps" of the EGNN paper
    d = generate("train", 2, CHEAP)
    loc0, vel0, q = initial_states(CHEAP, "train", 2)
    xs, vs, _ = simulate(loc0, vel0, q, [100, 200])
    assert torch.equal(d.loc, torch.from_numpy(xs[0])) and torch.equal(d.target_loc, torch.from_numpy(xs[1]))
    assert torch.equal(d.target_vel, torch.from_numpy(vs[1]))


def test_default_sizes_and_cache_round_trip(tmp_path, monkeypatch):
    assert SPLIT_SIZES == {"train": 3000, "val": 2000, "test": 2000}
    sets = {s: load_nbody(s, config=CHEAP, cache=tmp_path, verbose=False) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in sets.items()} == SPLIT_SIZES
    assert sets["train"].loc.shape == (3000, 5, 3) and sets["train"].charges.shape == (3000, 5)
    assert sets["train"].loc.dtype == torch.float64
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 and all(f.startswith("nbody-") and f.endswith(f"{CHEAP.key()}.pt") for f in files)

    def no_simulation(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(nbody, "generate", no_simulation)
    again = load_nbody("val", config=CHEAP, cache=tmp_path)
    assert torch.equal(again.target_loc, sets["val"].target_loc) and again.config == CHEAP
    head = load_nbody("val", n=10, config=CHEAP, cache=tmp_path)
    assert len(head) == 10 and torch.equal(head.loc, sets["val"].loc[:10])
    monkeypatch.undo()

    path = next(tmp_path.glob("nbody-test-*.pt"))
    path.write_bytes(b"not a torch file")  # a corrupt cache is rebuilt, not fatal
    rebuilt = load_nbody("test", config=CHEAP, cache=tmp_path, verbose=False)
    assert torch.equal(rebuilt.loc, sets["test"].loc)
    assert not list(tmp_path.glob("*.tmp*"))
    other = NBodyConfig(length=300, frame_in=0, frame_out=1, max_force=None)
    assert other.key() != CHEAP.key()


def test_batch_is_a_full_graph_with_charge_products():
    d = generate("test", 4, TINY)
    b = d.batch([2, 0])
    g = b.graph
    assert g.num_graphs == 2 and g.pos.shape == (10, 3) and g.edge_index.shape == (2, 40)
    assert g.z.tolist() == [nbody.DUMMY_Z] * 10
    assert torch.equal(g.batch, torch.tensor([0] * 5 + [1] * 5))
    assert torch.allclose(g.pos[:5].double(), d.loc[2]) and torch.allclose(b.target_pos[5:].double(), d.target_loc[0])
    q = b.charges
    assert torch.equal(g.edge_attr[:, 0], q[g.edge_index[0]] * q[g.edge_index[1]])
    assert (g.batch[g.edge_index[0]] == g.batch[g.edge_index[1]]).all()
    assert b.vel.shape == b.target_vel.shape == (10, 3) and q.dtype == torch.get_default_dtype()
    with pytest.raises(IndexError, match="out of range"):
        d.batch([4])
    with pytest.raises(ValueError, match="empty"):
        d.batch([])


def test_bad_requests_get_clear_errors():
    with pytest.raises(ValueError, match="unknown N-body split 'valid'"):
        load_nbody("valid")
    with pytest.raises(ValueError, match="10000 trajectories"):
        initial_states(NBodyConfig(), "train", 10_001)
    with pytest.raises(ValueError, match="frame_in < frame_out"):
        NBodyConfig(frame_in=40, frame_out=30)
    with pytest.raises(ValueError, match="multiple of sample_freq"):
        NBodyConfig(length=5050)
    with pytest.raises(ValueError, match="strictly increasing"):
        simulate(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), np.ones((1, 2)), [5, 5])
    with pytest.raises(ValueError, match=r"\[M,P,3\]"):
        simulate(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(2), [1])


@pytest.mark.slow
def test_linear_baseline_matches_the_published_scale():
    """EGNN Table 2 reports 0.0819 test MSE for the linear model x + c v; the data must give about that."""
    train, test = generate("train"), generate("test")
    c = fit_velocity_scale(train)
    assert 0.6 < c < 0.85
    assert 0.075 < velocity_baseline_mse(test, c) < 0.09
