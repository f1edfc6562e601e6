"""RDKit helpers: 3D embedding, bond perception, RDKit <-> :class:`~se3mol.molecule.Molecule`, and RDKit's
log turned into messages a chemist can read.

The readers (:mod:`se3mol.io`), the conformer generator and its metrics all go through these functions;
nothing outside this module calls RDKit's embedding or bond perception directly.

RDKit explains a failed parse only through its log, so the first use routes RDKit's log through Python's
``logging`` module (``rdBase.LogToPythonLogger()``, logger ``"rdkit"``, a process-wide RDKit setting), and
:func:`rdkit_messages` collects what RDKit says inside its block instead of letting it reach stderr. That
interception is not thread-safe: call RDKit from one thread at a time.

>>> mol = embed_smiles("CCO", seed=0)
>>> mol.formula, len(mol.bonds)
('C2H6O', 8)
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDetermineBonds, rdDistGeom, rdForceFieldHelpers
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Geometry import Point3D

from se3mol import limits
from se3mol.molecule import Molecule

__all__ = [
    "bonds_from_rdkit", "clean_rdkit_messages", "conformer_positions", "embed_3d", "embed_smiles",
    "molecule_from_rdkit", "perceive_bonds", "perceive_rdkit", "rdkit_from_coordinates", "rdkit_from_smiles",
    "rdkit_messages", "select_fragments", "smiles_error_detail", "smiles_or_empty", "with_conformers",
]

#: Gap (Angstrom) between fragments embedded apart: far enough that no atom pair is a clash or a bond.
FRAGMENT_GAP = 4.0

_MAX_FF_ITERS = 2000
_BOND_ORDERS = {
    Chem.BondType.SINGLE: 1.0,
    Chem.BondType.DOUBLE: 2.0,
    Chem.BondType.TRIPLE: 3.0,
    Chem.BondType.AROMATIC: 1.5,
    Chem.BondType.DATIVE: 1.0,
}


def embed_smiles(smiles: str, seed: int = 0, name: str = "") -> Molecule:
    """Build a 3D molecule with hydrogens from a SMILES string.

    RDKit ETKDGv3 (seeded with ``seed``; retried from random coordinates if that fails), then MMFF94
    optimisation, or UFF when MMFF has no parameters for the molecule. The note on the molecule says which.

    Raises:
        ValueError: if the SMILES does not parse or no 3D coordinates can be generated.
    """
    text = smiles.strip()
    mol, fragment_notes = select_fragments(rdkit_from_smiles(text))
    canonical = Chem.MolToSmiles(mol)
    mol = Chem.AddHs(mol)
    try:
        notes = embed_3d(mol, seed)
    except ValueError as exc:
        raise ValueError(f"SMILES {text!r}: {exc}") from None
    molecule = molecule_from_rdkit(mol)
    molecule.name = name
    molecule.smiles = canonical
    molecule.notes = [*fragment_notes, f"3D coordinates embedded from SMILES ({notes[0]}, seed {seed})",
                      *notes[1:]]
    return molecule


def select_fragments(mol: Chem.Mol, policy: str | None = None) -> tuple[Chem.Mol, list[str]]:
    """``mol`` as the fragment policy (``policy``, else the one in force: :attr:`se3mol.limits.Limits.fragments`)
    has it, and a note saying what was removed or kept.

    ``largest``: the largest organic fragment (RDKit's ``LargestFragmentChooser(preferOrganic=True)``), the
    others removed and named in the note, and neutralised where its charge came with the removed counter-ions
    (RDKit's ``Uncharger``: a carboxylate of a sodium salt becomes the acid, ChEMBL's parent compound; a
    quaternary ammonium keeps its charge); ``all``: every fragment (embedded apart by :func:`embed_3d`);
    ``error``: a record of several fragments is refused.

    >>> m, notes = select_fragments(Chem.MolFromSmiles("CCN.Cl"), "largest")
    >>> Chem.MolToSmiles(m), notes
    ('CCN', ['2 fragments (salt, hydrate or mixture): kept the largest organic one, removed Cl (--fragments)'])

    Raises:
        ValueError: several fragments under ``error``.
    """
    policy = limits.check_fragments(policy or limits.current().fragments)
    frags = Chem.GetMolFrags(mol, asMols=True)
    if len(frags) < 2:
        return mol, []
    names = [Chem.MolToSmiles(f) for f in frags]
    if policy == "error":
        raise ValueError(f"{len(frags)} fragments ({' . '.join(names)}): a salt, hydrate or mixture; use "
                         "--fragments largest (keep the largest organic fragment) or --fragments all")
    if policy == "all":
        return mol, [f"{len(frags)} fragments kept (--fragments all): {' . '.join(names)}"]
    with rdkit_messages():
        kept = rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol)
        kept_name = Chem.MolToSmiles(kept)
        removed = list(names)
        if kept_name in removed:
            removed.remove(kept_name)
        neutral = kept
        if Chem.GetFormalCharge(kept) != 0 and Chem.GetFormalCharge(mol) == 0:  # its counter-ions were removed
            neutral = rdMolStandardize.Uncharger().uncharge(kept)
    note = (f"{len(frags)} fragments (salt, hydrate or mixture): kept the largest organic one, removed "
            f"{', '.join(removed)} (--fragments)")
    if Chem.GetFormalCharge(neutral) != Chem.GetFormalCharge(kept):
        note += f"; neutralised {kept_name} to {Chem.MolToSmiles(neutral)}"
    return neutral, [note]


def rdkit_from_smiles(smiles: str, add_hs: bool = False) -> Chem.Mol:
    """The sanitised RDKit molecule of ``smiles``, without coordinates; with explicit hydrogens if ``add_hs``.

    Raises:
        ValueError: for an empty SMILES, one with non-ASCII characters, an invalid one (with RDKit's reason),
            one without atoms, or one over the limits (:mod:`se3mol.limits`: its length before RDKit parses it,
            its atoms with hydrogens before RDKit does anything else with it).
    """
    text = smiles.strip()
    if not text:
        raise ValueError("empty SMILES")
    limits.check_smiles_length(text)
    if not text.isascii():
        # SMILES are ASCII. RDKit would echo the string cut at a byte position in its error message, which
        # then cannot be decoded and escapes as a SystemError instead of an invalid-SMILES result.
        k, char = next((k, c) for k, c in enumerate(text) if not c.isascii())
        raise ValueError(f"invalid SMILES {text!r}: non-ASCII character {char!r} at position {k + 1} "
                         "(SMILES use plain ASCII only)")
    with rdkit_messages() as messages:
        try:
            mol = Chem.MolFromSmiles(text)
        except Exception:  # a message RDKit could not hand to Python; the SMILES is bad either way
            messages.append("RDKit could not parse it (its error message was unreadable)")
            mol = None
    if mol is None:
        detail = smiles_error_detail(messages, text)
        raise ValueError(f"invalid SMILES {text!r}" + (f" (RDKit: {detail})" if detail else ""))
    if mol.GetNumAtoms() == 0:
        raise ValueError(f"SMILES {text!r} has no atoms")
    # Before canonicalisation, hydrogens or embedding: RDKit's canonical ranking of a 20,000-atom chain
    # overflows the C stack (a segfault no try can catch).
    limits.check_atoms(mol.GetNumAtoms() + sum(a.GetTotalNumHs() for a in mol.GetAtoms()), "SMILES")
    return Chem.AddHs(mol) if add_hs else mol


def morgan_counts(smiles: str, radius: int = 2, bits: int = 2048) -> np.ndarray:
    """Morgan (ECFP-like) count fingerprint of ``smiles``: ``[bits]`` uint8, counts clipped at 255, hydrogens
    implicit (the fingerprint of the 2D molecule, whatever its conformer). Raises ``ValueError`` for a SMILES
    RDKit cannot read (:func:`rdkit_from_smiles`)."""
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    counts = gen.GetCountFingerprintAsNumPy(rdkit_from_smiles(smiles))
    return np.minimum(counts, 255).astype(np.uint8)


def morgan_matrix(smiles: list[str], spec: dict[str, Any]) -> np.ndarray:
    """:func:`morgan_counts` of each SMILES, stacked ``[M,bits]`` (uint8); ``spec`` as a model records it
    (``radius``, ``bits``)."""
    return np.stack([morgan_counts(s, spec["radius"], spec["bits"]) for s in smiles])


def with_conformers(mol: Chem.Mol, pos: np.ndarray) -> Chem.Mol:
    """A copy of ``mol`` whose conformers are ``pos [K,N,3]`` (Angstrom), in order, flagged 3D."""
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    for xyz in pos:
        conf = Chem.Conformer(mol.GetNumAtoms())
        for i, (x, y, z) in enumerate(xyz.tolist()):
            conf.SetAtomPosition(i, Point3D(x, y, z))
        conf.Set3D(True)
        out.AddConformer(conf, assignId=True)
    return out


def conformer_positions(mol: Chem.Mol) -> np.ndarray:
    """The coordinates of every conformer of ``mol`` ``[K,N,3]`` (Angstrom)."""
    return np.stack([c.GetPositions() for c in mol.GetConformers()]).reshape(-1, mol.GetNumAtoms(), 3)


def molecule_from_rdkit(mol: Chem.Mol) -> Molecule:
    """Convert an RDKit molecule with a conformer to a :class:`Molecule`.

    Takes conformer 0's coordinates, every atom as it is (no H added or removed), bonds with their orders
    (aromatic 1.5, dative 1), the sum of formal charges, the name from ``_Name`` and the canonical SMILES
    with hydrogens removed.

    Raises:
        ValueError: if the molecule has no conformer or has a bond type other than single, double,
            triple, aromatic or dative.
    """
    if mol.GetNumConformers() == 0:
        raise ValueError("no coordinates: the RDKit molecule has no conformer")
    pos = np.asarray(mol.GetConformer(0).GetPositions(), dtype=np.float64)  # [N,3]
    atoms = list(mol.GetAtoms())  # RDKit's atom sequence is slow to index; walk it once
    z = np.array([a.GetAtomicNum() for a in atoms], dtype=np.int64)  # [N]
    bonds, orders = bonds_from_rdkit(mol)
    try:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
    except Exception:  # RDKit raises several exception types; a SMILES is only a label here
        smiles = ""
    return Molecule(
        z=z,
        pos=pos,
        bonds=bonds,
        bond_orders=orders,
        charge=int(sum(a.GetFormalCharge() for a in atoms)),
        name=mol.GetProp("_Name").strip() if mol.HasProp("_Name") else "",
        smiles=smiles,
        radical_electrons=int(sum(a.GetNumRadicalElectrons() for a in atoms)),
    )


def perceive_bonds(mol: Molecule) -> Molecule:
    """Return a copy of ``mol`` with bonds and bond orders perceived from its coordinates.

    Uses RDKit ``rdDetermineBonds.DetermineBonds`` with the molecule's total charge. When no consistent set
    of bond orders exists (radicals, wrong charge, metals), falls back to ``DetermineConnectivity``: every
    bond single, with a note saying so.

    Raises:
        ValueError: if even the connectivity cannot be determined.
    """
    rd, note = perceive_rdkit(mol)
    bonds, orders = bonds_from_rdkit(rd)
    smiles = mol.smiles
    if not smiles and note is None:
        smiles = smiles_or_empty(rd)
    notes = [*mol.notes, note or "bonds perceived from coordinates (RDKit DetermineBonds)"]
    return replace(mol, bonds=bonds, bond_orders=orders, smiles=smiles, notes=notes)


def embed_3d(mol: Chem.Mol, seed: int) -> list[str]:
    """Embed ``mol`` in 3D in place (ETKDGv3, then MMFF or UFF).

    Bounded by :mod:`se3mol.limits`: a molecule over ``max_atoms`` is refused before ETKDG starts, and each of
    the (at most three) ETKDG attempts stops after ``embed_timeout`` seconds: the default start, random starting
    coordinates, and random coordinates without enforcing chirality (a note then says whether the stereocentres
    came out as the SMILES has them).

    Returns notes, the first of the form ``"RDKit ETKDG+MMFF"`` for the caller to complete.
    """
    limits.check_atoms(mol.GetNumAtoms())
    if len(Chem.GetMolFrags(mol)) > 1:
        return _embed_apart(mol, seed)
    params: Any = rdDistGeom.ETKDGv3()  # Any: RDKit's stubs type its settings (randomSeed, ...) wrongly
    params.randomSeed = seed
    params.timeout = limits.current().embed_timeout
    extra: list[str] = []
    with rdkit_messages() as messages:
        status = rdDistGeom.EmbedMolecule(mol, params)
        if status != 0:
            # The distance-geometry start fails for some strained or large molecules; random starting
            # coordinates are RDKit's documented fallback.
            params.useRandomCoords = True
            status = rdDistGeom.EmbedMolecule(mol, params)
        if status != 0:
            # Bridged polycycles with many stereocentres (morphinans) can fail both within the timeout while
            # embedding in well under a second when chirality is checked after the fact instead of enforced.
            params.enforceChirality = False
            status = rdDistGeom.EmbedMolecule(mol, params)
            if status == 0:
                extra.append("embedded without enforcing chirality: " + (
                    "its stereocentres match the SMILES" if _stereo_kept(mol)
                    else "some stereocentres differ from the SMILES"))
    if status != 0:
        detail = clean_rdkit_messages(messages)
        raise ValueError(
            "RDKit ETKDG could not generate 3D coordinates, also from random starting coordinates and without "
            f"enforcing chirality, within {params.timeout} s per attempt (--embed-timeout)"
            + (f" (RDKit: {detail})" if detail else "")
        )
    with rdkit_messages():
        if rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
            field_name, not_converged = "MMFF", rdForceFieldHelpers.MMFFOptimizeMolecule(mol, maxIters=_MAX_FF_ITERS)
        elif rdForceFieldHelpers.UFFHasAllMoleculeParams(mol):
            field_name, not_converged = "UFF", rdForceFieldHelpers.UFFOptimizeMolecule(mol, maxIters=_MAX_FF_ITERS)
        else:
            return ["RDKit ETKDG, not optimised: neither MMFF nor UFF has parameters for this molecule", *extra]
    notes = [f"RDKit ETKDG+{field_name}", *extra]
    if field_name == "UFF":
        notes.append("MMFF has no parameters for this molecule: optimised with UFF")
    if not_converged:
        notes.append(f"{field_name} optimisation did not converge in {_MAX_FF_ITERS} steps")
    return notes


def _stereo_kept(mol: Chem.Mol) -> bool:
    """Whether the stereocentres and double bonds of ``mol``'s 3D conformer are those of its graph."""
    from_3d = Chem.Mol(mol)
    Chem.AssignStereochemistryFrom3D(from_3d)
    return Chem.MolToSmiles(Chem.RemoveHs(from_3d)) == Chem.MolToSmiles(Chem.RemoveHs(mol))


def _embed_apart(mol: Chem.Mol, seed: int) -> list[str]:
    """Embed each fragment of ``mol`` on its own (ETKDG stacks disconnected fragments on top of each other)
    and lay them side by side along x, :data:`FRAGMENT_GAP` apart; one conformer on ``mol``, atom order kept."""
    mapping: list[tuple[int, ...]] = []
    frags = Chem.GetMolFrags(mol, asMols=True, fragsMolAtomMapping=mapping)
    pos = np.zeros((mol.GetNumAtoms(), 3))
    notes: list[str] = []  # each fragment's, once
    edge = 0.0
    for frag, atoms in zip(frags, mapping, strict=True):
        frag = Chem.Mol(frag)
        notes += [n for n in embed_3d(frag, seed) if n not in notes]
        xyz = frag.GetConformer().GetPositions()
        xyz = xyz - [xyz[:, 0].min() - edge, xyz[:, 1].mean(), xyz[:, 2].mean()]
        edge = float(xyz[:, 0].max()) + FRAGMENT_GAP
        pos[list(atoms)] = xyz
    mol.RemoveAllConformers()
    conf = Chem.Conformer(mol.GetNumAtoms())
    for i, p in enumerate(pos.tolist()):
        conf.SetAtomPosition(i, Point3D(*p))
    conf.Set3D(True)
    mol.AddConformer(conf, assignId=True)
    return [*notes, f"{len(frags)} fragments embedded each on its own, {FRAGMENT_GAP} A apart"]


def bonds_from_rdkit(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    """Bonds ``[M,2]`` (0-based atom indices) and orders ``[M]`` of an RDKit molecule."""
    pairs: list[tuple[int, int]] = []
    values: list[float] = []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        kind = Chem.BondType.AROMATIC if bond.GetIsAromatic() else bond.GetBondType()
        if kind not in _BOND_ORDERS:
            raise ValueError(
                f"bond between atoms {i + 1} and {j + 1} is of RDKit type {kind}, which se3mol cannot "
                "represent (single, double, triple, aromatic or dative only)"
            )
        pairs.append((i, j))
        values.append(_BOND_ORDERS[kind])
    bonds = np.array(pairs, dtype=np.int64).reshape(-1, 2)  # [M,2]
    orders = np.array(values, dtype=np.float64)  # [M]
    return bonds, orders


def rdkit_from_coordinates(mol: Molecule) -> Chem.RWMol:
    """An RDKit molecule of bare atoms with ``mol``'s coordinates and no bonds."""
    rd = Chem.RWMol()
    for zi in mol.z:
        rd.AddAtom(Chem.Atom(int(zi)))
    conf = Chem.Conformer(mol.n_atoms)
    for i, p in enumerate(mol.pos):
        conf.SetAtomPosition(i, p.tolist())
    rd.AddConformer(conf, assignId=True)
    return rd


def perceive_rdkit(mol: Molecule) -> tuple[Chem.RWMol, str | None]:
    """RDKit molecule with perceived bonds, and a note if only connectivity could be determined."""
    rd = rdkit_from_coordinates(mol)
    with rdkit_messages() as messages:
        try:
            rdDetermineBonds.DetermineBonds(rd, charge=int(mol.charge))
            with contextlib.suppress(Exception):  # aromatic flags are a nicety; Kekule orders stand
                Chem.SanitizeMol(rd)
            return rd, None
        except Exception as exc:  # RDKit raises ValueError or RuntimeError here
            orders_error = str(exc) or clean_rdkit_messages(messages)
        rd = rdkit_from_coordinates(mol)  # DetermineBonds may have left partial bonds behind
        try:
            rdDetermineBonds.DetermineConnectivity(rd)
        except Exception as exc:
            detail = str(exc) or clean_rdkit_messages(messages)
            raise ValueError(f"could not perceive bonds from the coordinates (RDKit: {detail})") from None
    note = (
        f"bond orders could not be determined from the coordinates with charge {mol.charge} "
        f"(RDKit: {orders_error}); connectivity only, every bond set to single"
    )
    return rd, note


def smiles_or_empty(rd: Chem.Mol) -> str:
    try:
        return Chem.MolToSmiles(Chem.RemoveHs(rd))
    except Exception:  # best effort
        return ""


class _CollectRDKitLog(logging.Filter):
    """Logger filter that keeps RDKit's messages and stops them from being printed."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())
        return False


@contextlib.contextmanager
def rdkit_messages() -> Iterator[list[str]]:
    """Collect RDKit's warning and error messages logged inside the block (instead of printing them).

    RDKit reports molfile syntax errors on its *warning* channel (``rdBase.CaptureErrorLog`` sees only
    errors), so both channels are taken from the Python logger RDKit can be routed to.
    """
    global _rdkit_log_routed
    if not _rdkit_log_routed:
        before = rdBase.LogStatus()
        rdBase.LogToPythonLogger()
        for level in ("rdApp.debug", "rdApp.info"):  # LogToPythonLogger switches these on; keep them as were
            if f"{level}:disabled" in before:
                rdBase.DisableLog(level)
        _rdkit_log_routed = True
    status = rdBase.LogStatus()
    switched_on = [level for level in ("rdApp.warning", "rdApp.error") if f"{level}:disabled" in status]
    for level in switched_on:
        rdBase.EnableLog(level)
    collector = _CollectRDKitLog()
    logger = logging.getLogger("rdkit")
    # First in line: logging stops at the first filter that rejects, so a nested capture must come first.
    logger.filters.insert(0, collector)
    try:
        yield collector.messages
    finally:
        logger.removeFilter(collector)
        for level in switched_on:
            rdBase.DisableLog(level)


def clean_rdkit_messages(messages: list[str], drop: tuple[str, ...] = ()) -> str:
    """RDKit log lines as one message: timestamps, stack traces and repeats removed, ``"; "``-joined."""
    kept: list[str] = []
    for message in messages:
        for line in message.splitlines():
            line = _TIMESTAMP.sub("", line).strip()
            if line and line not in drop and not _NOISE.match(line) and line not in kept:
                kept.append(line)
    return "; ".join(kept)


def smiles_error_detail(messages: list[str], smiles: str) -> str:
    """RDKit's SMILES complaint without its echo of the input and its caret drawing."""
    lines = []
    for message in messages:
        for line in message.splitlines():
            line = _TIMESTAMP.sub("", line).strip().removeprefix("SMILES Parse Error:").strip()
            if not line.startswith("Failed parsing SMILES"):
                lines.append(line.rstrip(":"))
    return clean_rdkit_messages(lines, drop=(smiles,))


_rdkit_log_routed = False


_TIMESTAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s?")
# Lines of RDKit's invariant-violation reports that say nothing to a chemist.
_NOISE = re.compile(
    r"^(\*+|-+|[~^ ]+|Stacktrace:?|\d+# .*|Violation occurred .*|Failed Expression: .*|.*\bViolation)$"
)
