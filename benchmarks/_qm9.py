"""QM9 test molecules as RDKit molecules with bonds, the input of the ``se3mol predict`` benchmarks."""

from __future__ import annotations

from collections.abc import Iterator

from rdkit import Chem


def bonded_test_molecules() -> Iterator[tuple[str, Chem.Mol]]:
    """(name, molecule) of the standard QM9 test split in split order: the DFT geometry, with hydrogens, and bonds
    perceived by RDKit (``DetermineBonds``); molecules without consistent bond orders are left out."""
    from rdkit import RDLogger
    from rdkit.Chem import rdDetermineBonds

    from se3mol.data import load_qm9, standard_split

    RDLogger.DisableLog("rdApp.*")  # DetermineBonds complains about the molecules it leaves out
    q = load_qm9(verbose=False)
    table = Chem.GetPeriodicTable()
    for k in standard_split()["test"]:
        m = q.molecule(int(k))
        xyz = f"{m.n_atoms}\n\n" + "\n".join(f"{table.GetElementSymbol(int(z))} {x:.6f} {y:.6f} {zz:.6f}"
                                              for z, (x, y, zz) in zip(m.z, m.pos, strict=True))
        mol = Chem.MolFromXYZBlock(xyz)
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=0)
        except ValueError:
            continue
        yield m.name, mol
