"""QM9 (Ramakrishnan et al. 2014) from the ``qm9pack`` package: 130,831 molecules, no download.

The CSV files that qm9pack ships are parsed once into a compact tensor file in the user cache
directory, keyed by a checksum of those files; later loads read only that file.
qm9pack's own loader imports ``pkg_resources``, so its CSV files are read directly here.

Targets and units (as reported to users): mu D; alpha a0^3; homo, lumo, gap, zpve, U0, U, H, G
meV; r2 a0^2; Cv cal/(mol K). U0, U, H and G are atomization energies: the B3LYP atom
reference energies below are subtracted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from se3mol.graph import Batch, GraphConfig, build_batch
from se3mol.targets import QM9_TARGETS
from se3mol.units import HARTREE_TO_MEV

CACHE_FORMAT = 1
N_MOLECULES = 130_831
SPLIT_SIZES = {"train": 110_000, "val": 10_000, "test": 10_831}
SPLIT_SEED = 42  # the fixed permutation: numpy.random.default_rng(42).permutation(130831)

# B3LYP/6-31G(2df,p) atom energies (Hartree) for U0, U, H, G.
ATOM_REFERENCE: dict[int, tuple[float, float, float, float]] = {
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063163, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}
_SYMBOL_TO_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
_CSV_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
# qm9pack column -> (target, factor to user unit)
_COLUMNS = {
    "mu": ("Dipole_debye", 1.0),
    "alpha": ("Polarizability_bohr3", 1.0),
    "homo": ("HOMO_au", HARTREE_TO_MEV),
    "lumo": ("LUMO_au", HARTREE_TO_MEV),
    "gap": ("HOMO_LUMO_gap_au", HARTREE_TO_MEV),
    "r2": ("R2_bohr2", 1.0),
    "zpve": ("ZPVE_au", HARTREE_TO_MEV),
    "U0": ("InternalEnergy_0K_au", HARTREE_TO_MEV),
    "U": ("InternalEnergy_298K_au", HARTREE_TO_MEV),
    "H": ("Enthalphy_298K_au", HARTREE_TO_MEV),
    "G": ("GibbsFreeEnergy_298K_au", HARTREE_TO_MEV),
    "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0),
}
TARGET_NAMES: tuple[str, ...] = tuple(QM9_TARGETS)


def cache_dir() -> Path:
    """``$SE3MOL_CACHE``, else ``$XDG_CACHE_HOME/se3mol``, else ``~/.cache/se3mol``."""
    if os.environ.get("SE3MOL_CACHE"):
        return Path(os.environ["SE3MOL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "se3mol"


def _data_dir() -> Path:
    # Locate the package without importing it: qm9pack's __init__ imports pkg_resources,
    # which recent setuptools no longer provides.
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError('QM9 needs the qm9pack package, which ships the data set: pip install "se3mol[qm9]"')
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (data / _CSV_FILES[0]).exists():
        raise ImportError(f"qm9pack is installed but its data files are missing from {data}; reinstall it")
    return data


def _checksum(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


@dataclass(kw_only=True)
class PackedMolecules:
    """Molecules packed into flat tensors, from which batches of any graph kind are cut.

    Attributes:
        z: atomic numbers of all atoms ``[A]`` (int8).
        pos: coordinates in Angstrom ``[A,3]`` (float32).
        counts: atoms per molecule ``[M]``; ``offsets`` ``[M]`` index the first atom of each.
        smiles: SMILES strings, ``M`` of them.
        bonds, bond_orders, bond_counts: covalent bonds as local atom pairs ``[Mb,2]``, orders ``[Mb]``
            and bonds per molecule ``[M]``; needed for bond and hop graphs; ``None`` if unknown.
        charge: total charge of each molecule ``[M]`` (int8); ``None``: all neutral.
        mol_attr: per-molecule inputs ``[M,F]`` (fingerprint counts, uint8), attached for models that take them
            (:func:`se3mol.data.files.attach_fingerprints`); ``None`` otherwise.
    """

    z: Tensor
    pos: Tensor
    counts: Tensor
    offsets: Tensor
    smiles: list[str]
    bonds: Tensor | None = None
    bond_orders: Tensor | None = None
    bond_counts: Tensor | None = None
    charge: Tensor | None = None
    mol_attr: Tensor | None = None

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def target_values(self, mol_idx: Tensor, names: list[str]) -> Tensor:
        """Labels ``[B,D]`` of molecules ``mol_idx [B]`` for targets ``names`` (NaN where missing)."""
        raise ValueError(f"these molecules carry no labels; asked for {names}")

    def batch(self, mol_idx: Tensor, graph: GraphConfig, targets: Sequence[str] | None = None) -> Batch:
        """Build a :class:`Batch` of molecules ``mol_idx [B]``, with the labels of ``targets`` as ``y [B,D]``
        when they are named."""
        y = None if targets is None else self.target_values(mol_idx, list(targets)).to(torch.get_default_dtype())
        counts = self.counts[mol_idx]
        atom = self.atom_index(mol_idx)
        z, pos = self.z[atom].long(), self.pos[atom].to(torch.get_default_dtype())
        if not graph.needs_bonds:
            b = build_batch(z, pos, counts, graph, y=y)
        elif self.bonds is None:
            raise ValueError(f"{graph.kind} graph asked for, but no bonds attached: call attach_bonds(qm9) first")
        else:
            b = self._bond_batch(mol_idx, z, pos, counts, y, graph)
        if self.charge is not None:
            b = b.replace(charge=self.charge[mol_idx].to(pos.dtype))
        if self.mol_attr is not None:
            b = b.replace(mol_attr=self.mol_attr[mol_idx].to(pos.dtype))
        return b

    def atom_index(self, mol_idx: Tensor) -> Tensor:
        """Positions in the packed atom arrays of the atoms of molecules ``mol_idx [B]``, in order ``[N]``."""
        counts = self.counts[mol_idx]
        starts = self.offsets[mol_idx]
        return torch.repeat_interleave(starts - (torch.cumsum(counts, 0) - counts), counts) + torch.arange(
            int(counts.sum()))

    def composition(self, mol_idx: Tensor) -> Tensor:
        """Atoms of each element in molecules ``mol_idx [B]``: ``[B,119]`` (float64)."""
        mol_of_atom = torch.repeat_interleave(torch.arange(len(self)), self.counts)  # [A]
        full = torch.zeros(len(self), 119, dtype=torch.float64)
        full.index_put_((mol_of_atom, self.z.long()), torch.ones(len(mol_of_atom), dtype=torch.float64),
                        accumulate=True)
        return full[mol_idx]

    def domain(self, mol_idx: Tensor, elements: Sequence[int]) -> dict[str, Any]:
        """What a model trained on molecules ``mol_idx [B]`` has seen, for predict's extrapolation warnings:
        its ``elements``, the largest molecule (atoms, heavy atoms) and the total charges (``charges``, sorted;
        ``[0]`` for neutral data)."""
        heavy = (self.composition(mol_idx)[:, 2:].sum(1)).long()  # [B]  (column 1 counts hydrogens)
        charges = [0] if self.charge is None else sorted({int(q) for q in self.charge[mol_idx].tolist()})
        return {"elements": list(elements), "max_atoms": int(self.counts[mol_idx].max()),
                "max_heavy_atoms": int(heavy.max()), "charges": charges}

    def bond_tables(self) -> tuple[Tensor, Tensor, Tensor]:
        """``bonds [Mb,2]``, ``bond_orders [Mb]`` and ``bond_counts [M]``; a clear error when not attached."""
        if self.bonds is None or self.bond_orders is None or self.bond_counts is None:
            raise ValueError("these molecules have no bonds attached: call attach_bonds(data) first")
        return self.bonds, self.bond_orders, self.bond_counts

    def _bond_batch(self, mol_idx: Tensor, z: Tensor, pos: Tensor, counts: Tensor, y: Tensor | None,
                    graph: GraphConfig) -> Batch:
        from se3mol.graph import bond_type_index, both_directions, hop_edges

        bonds, bond_orders, bond_counts = self.bond_tables()
        bc = bond_counts[mol_idx]  # [B]
        bond_start = (torch.cumsum(bond_counts, 0) - bond_counts)[mol_idx]
        rows = torch.repeat_interleave(bond_start - (torch.cumsum(bc, 0) - bc), bc) + torch.arange(int(bc.sum()))
        atom_offset = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, bc)  # [Eb]
        pairs = bonds[rows].long() + atom_offset[:, None]  # [Eb,2]
        t = torch.from_numpy(bond_type_index(bond_orders[rows].double().numpy()))
        ei, attr = hop_edges(counts, pairs, t, graph.max_hops) if graph.kind == "hops" else both_directions(pairs, t)
        attr = attr.to(pos.dtype)
        batch = torch.repeat_interleave(torch.arange(len(counts)), counts)
        return Batch(z=z, pos=pos, edge_index=ei, batch=batch, num_graphs=len(counts), edge_attr=attr, y=y)

    def molecule(self, k: int):
        """Molecule ``k`` as a :class:`~se3mol.molecule.Molecule` (with its bonds, if known)."""
        from se3mol.molecule import Molecule

        s, n = int(self.offsets[k]), int(self.counts[k])
        bonds = orders = None
        if self.bonds is not None:
            all_bonds, all_orders, bond_counts = self.bond_tables()
            b0 = int(bond_counts[:k].sum())
            nb = int(bond_counts[k])
            bonds = all_bonds[b0:b0 + nb].long().numpy()
            orders = all_orders[b0:b0 + nb].double().numpy()
        return Molecule(z=self.z[s:s + n].numpy(), pos=self.pos[s:s + n].double().numpy(), bonds=bonds,
                        bond_orders=orders, name=self.name(k), smiles=self.smiles[k])

    def name(self, k: int) -> str:
        return f"molecule {k}"


@dataclass(kw_only=True)
class QM9(PackedMolecules):
    """QM9 as packed tensors (see :class:`PackedMolecules`), with its targets.

    Attributes:
        y: all 12 targets in user units ``[M,12]`` (float64), columns in ``TARGET_NAMES`` order.
        ids: QM9 molecule numbers (``dsgdb9nsd_NNNNNN``) ``[M]``.
        charges: Mulliken partial charges ``[A]`` (e).
        polarizability: polarizability tensors ``[M,3,3]`` (a0^3).
        bonds, bond_orders, bond_counts: perceived from the DFT geometries with RDKit (``attach_bonds``).
    """

    y: Tensor
    ids: Tensor
    charges: Tensor
    polarizability: Tensor

    def head(self, n: int) -> QM9:
        """The first ``n`` molecules as a QM9 of their own (for tests and quick experiments)."""
        a = int(self.counts[:n].sum())
        head = QM9(z=self.z[:a], pos=self.pos[:a], counts=self.counts[:n], offsets=self.offsets[:n], y=self.y[:n],
                   ids=self.ids[:n], smiles=self.smiles[:n], charges=self.charges[:a],
                   polarizability=self.polarizability[:n])
        if self.bonds is not None:
            bonds, orders, bond_counts = self.bond_tables()
            nb = int(bond_counts[:n].sum())
            head.bonds, head.bond_orders, head.bond_counts = bonds[:nb], orders[:nb], bond_counts[:n]
        return head

    def target_values(self, mol_idx: Tensor, names: list[str]) -> Tensor:
        """Targets of molecules ``mol_idx [B]`` in user units ``[B,D]``: one column per scalar target, nine
        (row-major 3x3) per tensor target, in the order of ``names``."""
        cols = []
        for n in names:
            if n in TARGET_NAMES:
                cols.append(self.y[mol_idx][:, TARGET_NAMES.index(n)][:, None])
            elif n == "alpha_tensor":
                cols.append(self.polarizability[mol_idx].reshape(-1, 9).double())
            else:
                raise ValueError(f"unknown QM9 target {n!r}; choose from {', '.join(TARGET_NAMES)}, alpha_tensor")
        return torch.cat(cols, dim=1)

    def name(self, k: int) -> str:
        return f"dsgdb9nsd_{int(self.ids[k]):06d}"


def standard_split(n: int = N_MOLECULES, seed: int = SPLIT_SEED) -> dict[str, Tensor]:
    """The fixed 110,000 / 10,000 / 10,831 split of molecule positions 0..n-1 (int64 tensors)."""
    if n != N_MOLECULES:
        raise ValueError(f"standard split is defined for {N_MOLECULES} molecules, data set has {n}")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    a, b = SPLIT_SIZES["train"], SPLIT_SIZES["train"] + SPLIT_SIZES["val"]
    return {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}


def load_qm9(cache: Path | None = None, verbose: bool = True) -> QM9:
    """Load QM9, parsing qm9pack's CSV files the first time and the cached tensors after that."""
    data = _data_dir()
    files = [data / f for f in _CSV_FILES] + [data / "qm9_polarizability.csv"]
    key = _checksum(files)
    path = (cache or cache_dir()) / f"qm9-v{CACHE_FORMAT}-{key}.pt"
    if path.exists():
        try:
            return QM9(**torch.load(path, weights_only=True))
        except Exception:  # noqa: BLE001  (a corrupt cache is rebuilt, not fatal)
            path.unlink(missing_ok=True)
    if verbose:
        import sys

        print(f"Parsing QM9 from qm9pack once (about a minute); caching to {path}", file=sys.stderr)
    fields = _parse(files)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(fields, tmp)
    os.replace(tmp, path)
    return QM9(**fields)


Packed = TypeVar("Packed", bound=PackedMolecules)


def attach_bonds(qm9: Packed, cache: Path | None = None, workers: int | None = None, verbose: bool = True) -> Packed:
    """Attach covalent bonds perceived from the DFT geometries (RDKit ``DetermineBonds``, neutral charge;
    connectivity-only single bonds where no consistent bond orders exist), cached after the first run."""
    if qm9.bonds is not None:
        return qm9
    key = hashlib.sha256(qm9.pos.numpy().tobytes() + qm9.z.numpy().tobytes()).hexdigest()[:16]
    path = (cache or cache_dir()) / f"qm9-bonds-v{CACHE_FORMAT}-{key}.pt"
    if path.exists():
        try:
            d = torch.load(path, weights_only=True)
            qm9.bonds, qm9.bond_orders, qm9.bond_counts = d["bonds"], d["bond_orders"], d["bond_counts"]
            return qm9
        except Exception:  # noqa: BLE001  (a corrupt cache is rebuilt, not fatal)
            path.unlink(missing_ok=True)
    if verbose:
        import sys

        print(f"Perceiving bonds of {len(qm9)} QM9 geometries with RDKit once; caching to {path}", file=sys.stderr)
    from concurrent.futures import ProcessPoolExecutor

    chunks = [range(a, min(a + 2000, len(qm9))) for a in range(0, len(qm9), 2000)]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        parts = list(pool.map(_perceive_chunk, [(qm9.z, qm9.pos, qm9.counts, qm9.offsets, c) for c in chunks]))
    bonds = torch.cat([p[0] for p in parts])
    d = {"bonds": bonds, "bond_orders": torch.cat([p[1] for p in parts]),
         "bond_counts": torch.cat([p[2] for p in parts]), "connectivity_only": sum(p[3] for p in parts)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(d, tmp)
    os.replace(tmp, path)
    qm9.bonds, qm9.bond_orders, qm9.bond_counts = d["bonds"], d["bond_orders"], d["bond_counts"]
    return qm9


def _perceive_chunk(args) -> tuple[Tensor, Tensor, Tensor, int]:
    from se3mol.chem import perceive_bonds
    from se3mol.molecule import Molecule

    z, pos, counts, offsets, ks = args
    bonds, orders, nb, fallback = [], [], [], 0
    for k in ks:
        s, n = int(offsets[k]), int(counts[k])
        m = perceive_bonds(Molecule(z=z[s:s + n].numpy(), pos=pos[s:s + n].double().numpy()))
        fallback += any("connectivity only" in note for note in m.notes)
        assert m.bonds is not None and m.bond_orders is not None  # perceive_bonds always sets them
        bonds.append(torch.from_numpy(m.bonds.astype(np.int16)))
        orders.append(torch.from_numpy(m.bond_orders.astype(np.float32)))
        nb.append(len(m.bonds))
    return torch.cat(bonds), torch.cat(orders), torch.tensor(nb, dtype=torch.long), fallback


def _numbers(column) -> np.ndarray:
    """Flatten a column of bracketed number lists (which use forms like ``0.`` that JSON rejects)."""
    text = ",".join(column.astype(str)).replace("[", "").replace("]", "")
    return np.asarray(text.split(","), dtype=np.float64)


def _parse(files: list[Path]) -> dict:
    import pandas as pd

    cols = ["XYZ_file", "Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang", "Mulliken_pop"] + [
        c for c, _ in _COLUMNS.values()]
    df = pd.concat([pd.read_csv(f, usecols=cols) for f in files[:3]], ignore_index=True)
    pol = pd.read_csv(files[3])
    df = df.merge(pol, on="XYZ_file", how="left", validate="one_to_one").sort_values("Index", kind="stable")
    if len(df) != N_MOLECULES:
        raise ValueError(f"qm9pack has {len(df)} molecules; expected {N_MOLECULES}")
    z = np.concatenate([[_SYMBOL_TO_Z[s] for s in json.loads(e.replace("'", '"'))] for e in df["Elements"]])
    pos = _numbers(df["XYZ_Ang"]).reshape(-1, 3)
    charges = _numbers(df["Mulliken_pop"])
    counts = df["N_atoms"].to_numpy(np.int64)
    if z.shape[0] != counts.sum() or pos.shape != (counts.sum(), 3):
        raise ValueError("qm9pack atom lists and atom counts disagree")
    y = np.stack([df[c].to_numpy(np.float64) * f for c, f in _COLUMNS.values()], axis=1)
    # Atomization energies: subtract the atom reference energies (meV) of each molecule's atoms.
    ref = np.zeros((119, 4))
    for zi, e in ATOM_REFERENCE.items():
        ref[zi] = np.asarray(e) * HARTREE_TO_MEV
    mol_of_atom = np.repeat(np.arange(len(counts)), counts)
    atom_ref = np.zeros((len(counts), 4))
    np.add.at(atom_ref, mol_of_atom, ref[z])
    for k, name in enumerate(("U0", "U", "H", "G")):
        y[:, TARGET_NAMES.index(name)] -= atom_ref[:, k]
    p = df[["A_xx", "A_xy", "A_xz", "A_xy", "A_yy", "A_yz", "A_xz", "A_yz", "A_zz"]].to_numpy(np.float64)
    return {
        "z": torch.from_numpy(z.astype(np.int8)),
        "pos": torch.from_numpy(pos.astype(np.float32)),
        "counts": torch.from_numpy(counts.copy()),
        "offsets": torch.from_numpy(np.cumsum(counts) - counts),
        "y": torch.from_numpy(y),
        "ids": torch.from_numpy(df["Index"].to_numpy(np.int64).copy()),
        "smiles": df["SMILES"].astype(str).tolist(),
        "charges": torch.from_numpy(charges.astype(np.float32)),
        "polarizability": torch.from_numpy(p.reshape(-1, 3, 3).astype(np.float32)),
    }
