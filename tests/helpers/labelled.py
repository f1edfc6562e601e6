"""Labelled data files written on the fly, shared by the data-set tests and the CLI tests of your own data."""

import numpy as np


def write_labelled_sdf(path, qm9, n=40, bad=True):
    """QM9 molecules 0..n-1 as an SDF with DFT geometries and fields Cv, gap, split; with ``bad``: a missing
    gap on every 5th, a non-numeric Cv on molecule 3, a duplicate id and an unreadable record at the end."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    blocks = []
    for k in range(n):
        m = qm9.molecule(k)
        xyz = f"{m.n_atoms}\n\n" + "".join(
            f"{Chem.GetPeriodicTable().GetElementSymbol(int(z))} {x:.6f} {y:.6f} {w:.6f}\n"
            for z, (x, y, w) in zip(m.z, m.pos, strict=True))
        rd = Chem.MolFromXYZBlock(xyz)
        rdDetermineBonds.DetermineConnectivity(rd)
        rd.SetProp("_Name", qm9.name(k))
        rd.SetProp("Cv", "n/a?" if (bad and k == 3) else f"{float(qm9.y[k, 11]):.4f}")
        if not (bad and k % 5 == 4):
            rd.SetProp("gap", f"{float(qm9.y[k, 4]):.3f}")
        rd.SetProp("split", "train" if k < n - 10 else ("val" if k < n - 5 else "test"))
        blocks.append(Chem.MolToMolBlock(rd) + "".join(
            f">  <{p}>\n{rd.GetProp(p)}\n\n" for p in ("Cv", "gap", "split") if rd.HasProp(p)) + "$$$$\n")
    if bad:
        blocks.append(blocks[1])  # a duplicate id
        blocks.append("garbage\n\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\nnot a molfile\nM  END\n$$$$\n")
    path.write_text("".join(blocks))
    return path


def ch4_frames(path, n=40):
    """``n`` jiggled methane frames with EMT energies and forces, written as extxyz (names m0, m1, ...)."""
    import ase.io
    from ase import Atoms
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(0)
    base = Atoms("CH4", positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63],
                                   [0.63, -0.63, -0.63]])
    frames = []
    for k in range(n):
        a = base.copy()
        a.positions += rng.normal(scale=0.08, size=a.positions.shape)
        a.calc = EMT()
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        a.info["name"] = f"m{k}"
        frames.append(a)
    ase.io.write(path, frames, format="extxyz")
    return path
