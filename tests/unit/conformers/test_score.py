"""The conformer score model, its training, and the annealed Langevin sampler.

The sampler is checked against an *exact* score (that of a point mass at a reference geometry,
modulo rigid motions): with it, annealed Langevin must land on the reference. A sampler with a
wrong sign, step size or schedule does not.
"""

import math

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from se3mol.conformers.sampler import (
    PRECISIONS,
    SamplerSettings,
    ScoreSampler,
    native_bfloat16,
    repulsion_score,
    resolve_precision,
)
from se3mol.conformers.score import (
    ScoreModel,
    ScoreModelConfig,
    dsm_loss,
    kabsch_align,
    noise_levels,
)
from se3mol.graph import GraphConfig, collate
from se3mol.molecule import Molecule

ELEMENTS = (1, 6, 7, 8, 9)


def _mol(smiles="CC(=O)O"):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    return mol


def _tiny():
    torch.manual_seed(0)
    return ScoreModel(ScoreModelConfig(hidden=16, layers=2, num_rbf=8, frame_features=8, sigma_features=8), ELEMENTS)


def test_noise_levels_are_the_geometric_schedule():
    s = noise_levels(10.0, 0.01, 50)
    assert len(s) == 50 and s[0] == pytest.approx(10.0) and s[-1] == pytest.approx(0.01)
    ratio = s[1:] / s[:-1]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio))


def test_kabsch_recovers_a_rigid_motion():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.linalg.det(q))
    y = x @ q.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    batch = torch.zeros(7, dtype=torch.long)
    assert torch.allclose(kabsch_align(x, y, batch, 1), y, atol=1e-10)


def test_score_is_rotation_equivariant_and_translation_invariant():
    model = _tiny().double()
    mol = _mol()
    template = ScoreSampler(model).molecule(mol)
    template.pos = mol.GetConformer().GetPositions()
    b = collate([template, template], model.graph).to(dtype=torch.float64)
    sigma = torch.tensor([0.3, 2.0], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    q = q * torch.sign(torch.linalg.det(q))
    with torch.no_grad():
        s0 = model.score(b, sigma)
        s1 = model.score(b.replace(pos=b.pos @ q.T + 3.0), sigma)
    assert torch.allclose(s1, s0 @ q.T, atol=1e-10)
    assert s0.abs().max() > 0


def test_dsm_training_lowers_the_loss():
    model = _tiny()
    mol = _mol()
    m = ScoreSampler(model).molecule(mol)
    m.pos = mol.GetConformer().GetPositions()
    batch = collate([m] * 8, model.graph)
    sigmas = noise_levels(1.0, 0.05, 10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_at(seed):
        with torch.no_grad():
            return float(dsm_loss(model, batch, sigmas, torch.Generator().manual_seed(seed)))

    before = np.mean([loss_at(k) for k in range(5)])
    for step in range(120):
        loss = dsm_loss(model, batch, sigmas, torch.Generator().manual_seed(100 + step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = np.mean([loss_at(k) for k in range(5)])
    assert after < 0.8 * before


class _ExactScore(torch.nn.Module):
    """The score of a point mass at ``ref`` (up to rigid motion), smoothed at level sigma."""

    def __init__(self, ref: np.ndarray) -> None:
        super().__init__()
        self.ref = torch.as_tensor(ref, dtype=torch.float32)
        self.graph = GraphConfig("hops", max_hops=3)
        self.elements = ELEMENTS
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def score(self, batch, sigma):
        n = batch.num_graphs
        ref = self.ref.repeat(n, 1).to(batch.pos)
        target = kabsch_align(ref, batch.pos, batch.batch, n)
        return -(batch.pos - target) / sigma[batch.batch, None] ** 2


def _rmsd_after_alignment(a: np.ndarray, b: np.ndarray) -> float:
    ta, tb = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    aligned = kabsch_align(ta, tb, torch.zeros(len(a), dtype=torch.long), 1)
    return float((aligned - tb).pow(2).sum(-1).mean().sqrt())


@pytest.mark.parametrize("preset", ["fast", "default"])
def test_annealed_langevin_with_the_exact_score_finds_the_reference(preset):
    mol = _mol()
    ref = mol.GetConformer().GetPositions()
    sampler = ScoreSampler(_ExactScore(ref))
    xyz = sampler.sample(mol, 4, seed=3, settings=SamplerSettings.preset(preset))
    assert xyz.shape == (4, mol.GetNumAtoms(), 3) and np.isfinite(xyz).all()
    for x in xyz:
        assert _rmsd_after_alignment(x, ref) < 0.05


def test_refinement_starts_from_given_conformers_and_runs_the_low_noise_levels():
    mol = _mol()
    ref = mol.GetConformer().GetPositions()
    settings = SamplerSettings(start_sigma=0.3)
    levels = [sigma for sigma, _, _ in settings.schedule()]
    assert len(levels) == 25 and max(levels) <= 0.3 and settings.evaluations == 51  # 25 of 50 levels x 2 + denoise
    start = ref[None] + 0.15 * np.random.default_rng(0).standard_normal((3, *ref.shape))  # [3,N,3]
    xyz = ScoreSampler(_ExactScore(ref)).sample(mol, 3, seed=1, settings=settings, start=start)
    for x in xyz:
        assert _rmsd_after_alignment(x, ref) < 0.05  # the exact score pulls each start onto the reference
    with pytest.raises(ValueError, match="needs both"):
        ScoreSampler(_ExactScore(ref)).sample(mol, 3, settings=settings)
    with pytest.raises(ValueError, match="needs both"):
        ScoreSampler(_ExactScore(ref)).sample(mol, 3, settings=SamplerSettings(), start=start)
    with pytest.raises(ValueError, match="expected"):
        ScoreSampler(_ExactScore(ref)).sample(mol, 2, settings=settings, start=start)
    with pytest.raises(ValueError, match="start_sigma"):
        SamplerSettings(start_sigma=20.0)


def test_sampler_is_seeded_and_refuses_unknown_elements():
    model = _tiny()
    sampler = ScoreSampler(model)
    mol = _mol("CO")
    settings = SamplerSettings(levels=3, steps=2)
    a = sampler.sample(mol, 2, seed=7, settings=settings)
    b = sampler.sample(mol, 2, seed=7, settings=settings)
    c = sampler.sample(mol, 2, seed=8, settings=settings)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="Cl not in the score model's training set"):
        sampler.sample(Chem.AddHs(Chem.MolFromSmiles("CCl")), 1, settings=settings)
    with pytest.raises(ValueError, match="implicit hydrogens"):
        sampler.sample(Chem.MolFromSmiles("CCO"), 1, settings=settings)


class _RecordsAutocast(torch.nn.Module):
    """A tiny score model that records whether each call ran under bfloat16 autocast."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _tiny()
        self.graph, self.elements, self.seen = self.net.graph, self.net.elements, []

    def score(self, batch, sigma):
        self.seen.append(torch.is_autocast_enabled(batch.pos.device.type)
                         and torch.get_autocast_dtype(batch.pos.device.type) == torch.bfloat16)
        return self.net.score(batch, sigma)


def test_bfloat16_runs_the_network_under_autocast_and_keeps_coordinates_in_float32():
    mol = _mol("CO")
    model = _RecordsAutocast()
    sampler = ScoreSampler(model)
    fast = SamplerSettings(levels=3, steps=1, precision="bfloat16")
    xyz = sampler.sample(mol, 2, seed=1, settings=fast)
    assert model.seen and all(model.seen) and np.isfinite(xyz).all() and xyz.dtype == np.float64
    model.seen.clear()
    sampler.sample(mol, 2, seed=1, settings=SamplerSettings(levels=3, steps=1))
    assert model.seen and not any(model.seen)
    # the network's output in bfloat16 stays close to float32's: a rounding, not another model
    b = collate([sampler.molecule(mol)], model.graph)
    b = b.replace(pos=torch.as_tensor(mol.GetConformer().GetPositions(), dtype=torch.float32))
    sigma = torch.tensor([0.5])
    with torch.no_grad():
        exact = model.net.score(b, sigma)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.net.score(b, sigma).float()
    assert torch.allclose(low, exact, rtol=0.05, atol=0.05 * exact.abs().max().item())
    assert not torch.equal(low, exact)


def test_precision_is_resolved_for_the_device():
    assert resolve_precision("auto", "cpu") == ("bfloat16" if native_bfloat16("cpu") else "float32")
    assert [resolve_precision(p, "cpu") for p in PRECISIONS] == list(PRECISIONS)
    assert native_bfloat16("meta") is False
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="unknown precision"):
        SamplerSettings(precision="float16")


def test_settings_presets_and_validation():
    assert SamplerSettings.preset("paper").levels == 50 and SamplerSettings.preset("paper").steps == 100
    assert SamplerSettings.preset("paper").step_size == pytest.approx(2.4e-6)
    assert SamplerSettings(steps=10).step_size == pytest.approx(2.4e-5)
    with pytest.raises(ValueError):
        SamplerSettings.preset("slow")
    with pytest.raises(ValueError):
        SamplerSettings(steps=0)
    with pytest.raises(ValueError):
        SamplerSettings(coarse_steps=0)


def test_coarse_levels_take_fewer_larger_steps():
    plain, coarse = SamplerSettings(), SamplerSettings(coarse_sigma=1.0, coarse_steps=1)
    assert plain.evaluations == 101
    high = [(sigma, n, s) for sigma, n, s in coarse.schedule() if sigma > 1.0]
    assert len(high) == 17 and coarse.evaluations == 101 - 17
    for (sigma, n, s), (_, n0, s0) in zip(coarse.schedule(), plain.schedule(), strict=True):
        # the same diffusion time per level: n * s is unchanged
        assert n * s == pytest.approx(n0 * s0) and (n, s) == ((1, 2 * s0) if sigma > 1.0 else (n0, s0))


def test_molecule_template_keeps_bonds_and_hydrogens():
    mol = _mol("C=O")
    m: Molecule = ScoreSampler(_tiny()).molecule(mol)
    assert list(m.z) == [6, 8, 1, 1] and len(m.bonds) == 3 and sorted(m.bond_orders) == [1.0, 1.0, 2.0]


def test_max_hops_keeps_exactly_the_pairs_within_reach_and_survives_a_checkpoint():
    mol = _mol("CCCCCO")  # a chain: many pairs are more than three bonds apart
    template = ScoreSampler(_tiny()).molecule(mol)
    hops = Chem.GetDistanceMatrix(mol)
    full = collate([template], GraphConfig("hops"))
    for max_hops in (1, 2, 3):
        b = collate([template, template], GraphConfig("hops", max_hops=max_hops))
        half = b.edge_index.shape[1] // 2
        (i, j), types = b.edge_index[:, :half], b.edge_attr[:half].argmax(-1)  # the first molecule's edges
        assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == sorted(
            (p, q) for p in range(len(hops)) for q in range(len(hops)) if p != q and hops[p, q] <= max_hops)
        # the same edge types as on the full graph
        typed = {(p, q): row for p, q, row in zip(*full.edge_index.tolist(), full.edge_attr.argmax(-1).tolist(),
                                                 strict=True)}
        assert all(typed[(p, q)] == t for p, q, t in zip(i.tolist(), j.tolist(), types.tolist(), strict=True))
    with pytest.raises(ValueError, match="max_hops"):
        GraphConfig("full", max_hops=3)

    model = ScoreModel(ScoreModelConfig(hidden=16, layers=1, num_rbf=8, frame_features=8, sigma_features=8,
                                        max_hops=3), ELEMENTS)
    again = ScoreModel.from_description(model.describe())
    assert again.graph == GraphConfig("hops", max_hops=3) == model.graph
    assert _tiny().graph == GraphConfig("hops", max_hops=3)  # the default, as the spec
    every_pair = ScoreModel(ScoreModelConfig(hidden=16, layers=1, num_rbf=8, frame_features=8, sigma_features=8,
                                             max_hops=None), ELEMENTS)
    assert ScoreModel.from_description(every_pair.describe()).graph == GraphConfig("hops")
    # a checkpoint written before max_hops existed does not record it: it was trained on every pair
    old = every_pair.describe()
    del old["config"]["max_hops"]
    assert ScoreModel.from_description(old).graph == GraphConfig("hops")


def _superimposed_d2(a, b):
    """Mean squared deviation of ``a`` and ``b [M,3]`` after the best proper rotation, differentiable (SVD)."""
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = torch.linalg.svd(b.T @ a)
    d = torch.sign(torch.linalg.det(vt.T @ u.T))
    rot = vt.T @ torch.diag(torch.stack([torch.ones_like(d), torch.ones_like(d), d])) @ u.T
    return (a - b @ rot.T).pow(2).sum(-1).mean()


def test_repulsion_is_the_gradient_of_the_particle_potential():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, 3, generator=g, dtype=torch.float64)
    weight = 0.7
    with torch.no_grad():
        d2 = torch.stack([torch.stack([_superimposed_d2(a, b) for b in x]) for a in x])
    off = ~torch.eye(5, dtype=torch.bool)
    h = d2[off].median() / math.log(5)
    xr = x.clone().requires_grad_(True)
    potential = -(weight * 7 / 2) * sum(torch.exp(-_superimposed_d2(xr[i], xr[j]) / h)
                                        for i in range(5) for j in range(5) if i != j)
    (expected,) = torch.autograd.grad(potential, xr)
    got = repulsion_score(x, weight)
    assert torch.allclose(got, expected, atol=1e-10) and got.abs().max() > 0.1
    assert torch.allclose(got.sum(1), torch.zeros(5, 3, dtype=torch.float64), atol=1e-12)  # no drift


def test_repulsion_ignores_rigid_motions_and_pushes_conformers_apart():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.linalg.det(q))
    moved = x.clone()
    moved[2] = x[2] @ q.T + torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    a, b = repulsion_score(x, 1.0), repulsion_score(moved, 1.0)
    assert torch.allclose(b[[0, 1, 3]], a[[0, 1, 3]], atol=1e-10)  # the others do not see conformer 2 move
    assert torch.allclose(b[2], a[2] @ q.T, atol=1e-10)  # its own term rotates with it
    # A rotated copy is the same conformer and is not pushed; a mirror image is a different one and is.
    assert repulsion_score(torch.stack([x[0], x[0] @ q.T]), 1.0).abs().max() < 1e-8
    assert repulsion_score(torch.stack([x[0], -x[0]]), 1.0).norm() > 0.1
    # A small step along it spreads the conformers: every superimposed distance grows.
    spread = x + 1e-3 * a
    for i in range(4):
        for j in range(i):
            assert _superimposed_d2(spread[i], spread[j]) > _superimposed_d2(x[i], x[j])
    assert not repulsion_score(x[:1], 1.0).any() and not repulsion_score(x, 0.0).any()


def test_repulsion_in_the_sampler_is_seeded_and_optional():
    mol = _mol("CCCO")
    ref = mol.GetConformer().GetPositions()
    sampler = ScoreSampler(_ExactScore(ref))
    plain = sampler.sample(mol, 3, seed=2, settings=SamplerSettings(levels=5))
    again = sampler.sample(mol, 3, seed=2, settings=SamplerSettings(levels=5, repulsion=0.0))
    pushed = sampler.sample(mol, 3, seed=2, settings=SamplerSettings(levels=5, repulsion=1.0))
    assert np.array_equal(plain, again) and not np.allclose(plain, pushed)
    assert np.array_equal(pushed, sampler.sample(mol, 3, seed=2, settings=SamplerSettings(levels=5, repulsion=1.0)))
    with pytest.raises(ValueError, match="repulsion"):
        SamplerSettings(repulsion=-1.0)


def test_zero_temperature_follows_the_score_to_its_minimum_without_noise():
    """Temperature 0 drops the Langevin noise: with the exact score a refinement descends onto the reference
    itself, where temperature 1 keeps a thermal spread of about sigma_min (without the final denoising step)."""
    mol = _mol()
    ref = mol.GetConformer().GetPositions()
    start = ref[None] + 0.05 * np.random.default_rng(0).standard_normal((3, *ref.shape))
    sampler = ScoreSampler(_ExactScore(ref))

    def spread(temperature):
        settings = SamplerSettings(start_sigma=0.08, denoise=False, temperature=temperature)
        xyz = sampler.sample(mol, 3, seed=1, settings=settings, start=start)
        return max(_rmsd_after_alignment(x, ref) for x in xyz)

    cold, warm = spread(0.0), spread(1.0)
    assert cold < 1e-3 < 3e-3 < warm, (cold, warm)
    with pytest.raises(ValueError, match="temperature"):
        SamplerSettings(temperature=-0.5)


def test_sampler_settings_change_on_the_methods_that_sample():
    from dataclasses import replace

    from se3mol.conformers.methods import ClofnetMethod, EtkdgMethod, HybridMethod, with_sampler_settings

    clofnet = ClofnetMethod(sampler=ScoreSampler(_tiny()), sampler_settings=SamplerSettings())
    hybrid = HybridMethod(start=EtkdgMethod(),
                          refine=replace(clofnet, sampler_settings=SamplerSettings(start_sigma=0.08)))
    cold = with_sampler_settings(hybrid, {"temperature": 0.0})
    assert cold.refine.sampler_settings == SamplerSettings(start_sigma=0.08, temperature=0.0)
    assert hybrid.refine.sampler_settings.temperature == 1.0  # the original is left as it was
    assert with_sampler_settings(clofnet, {"steps": 5}).sampler_settings.steps == 5
    assert with_sampler_settings(EtkdgMethod(), {"steps": 5}) == EtkdgMethod()
