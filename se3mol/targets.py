"""Properties a model can learn: their units, how atoms add up to them, and what kind of output they are.

>>> get_target("gap").column
'gap_meV'
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

Pooling = Literal["sum", "mean"]
TargetKind = Literal["scalar", "dipole", "tensor2"]
# Components of a symmetric rank-2 tensor written as columns, and their (row, column) in the matrix.
TENSOR_COMPONENTS: tuple[tuple[str, int, int], ...] = (
    ("xx", 0, 0), ("yy", 1, 1), ("zz", 2, 2), ("xy", 0, 1), ("xz", 0, 2), ("yz", 1, 2))


@dataclass(frozen=True)
class Target:
    """One learnable property.

    Attributes:
        name: short name (``gap``).
        unit: unit as shown to people (``meV``, ``a0^3``).
        slug: unit as written in column names (``meV``, ``bohr3``); column is ``{name}_{slug}``.
        pooling: ``sum`` for extensive properties (energies, polarizability), ``mean`` for intensive ones.
        kind: ``scalar`` (invariant per molecule), ``dipole`` (predicted as a vector, reported as its norm),
            or ``tensor2`` (a symmetric rank-2 tensor per molecule, in the frame of the input coordinates).
        description: one line for humans.
    """

    name: str
    unit: str
    slug: str
    pooling: Pooling = "sum"
    kind: TargetKind = "scalar"
    description: str = ""

    @property
    def column(self) -> str:
        return f"{self.name}_{self.slug}" if self.slug else self.name

    @property
    def width(self) -> int:
        """Numbers per molecule: 1, or 9 for a rank-2 tensor (row-major 3x3)."""
        return 9 if self.kind == "tensor2" else 1

    @property
    def columns(self) -> list[str]:
        """Output columns: ``gap_meV``, or ``alpha_tensor_xx_bohr3`` ... for the 6 unique tensor components."""
        if self.kind == "tensor2":
            return [f"{self.name}_{c}_{self.slug}" for c, _, _ in TENSOR_COMPONENTS]
        return [self.column]

    def row_values(self, flat: list[float]) -> dict[str, float]:
        """Column values from this target's ``width`` numbers."""
        if self.kind == "tensor2":
            return {f"{self.name}_{c}_{self.slug}": flat[3 * i + j] for c, i, j in TENSOR_COMPONENTS}
        return {self.column: flat[0]}

    def to_dict(self) -> dict:
        return asdict(self)


QM9_TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("mu", "D", "D", "sum", "dipole", "dipole moment (norm of the predicted vector)"),
        Target("alpha", "a0^3", "bohr3", "sum", "scalar", "isotropic polarizability"),
        Target("homo", "meV", "meV", "mean", "scalar", "HOMO energy"),
        Target("lumo", "meV", "meV", "mean", "scalar", "LUMO energy"),
        Target("gap", "meV", "meV", "mean", "scalar", "HOMO-LUMO gap"),
        Target("r2", "a0^2", "bohr2", "sum", "scalar", "electronic spatial extent"),
        Target("zpve", "meV", "meV", "sum", "scalar", "zero-point vibrational energy"),
        Target("U0", "meV", "meV", "sum", "scalar", "atomization internal energy at 0 K"),
        Target("U", "meV", "meV", "sum", "scalar", "atomization internal energy at 298.15 K"),
        Target("H", "meV", "meV", "sum", "scalar", "atomization enthalpy at 298.15 K"),
        Target("G", "meV", "meV", "sum", "scalar", "atomization free energy at 298.15 K"),
        Target("Cv", "cal/(mol K)", "cal_molK", "sum", "scalar", "heat capacity at 298.15 K"),
    ]
}


# Beyond the 12 standard targets: the full polarizability tensor that qm9pack also ships.
QM9_EXTRA_TARGETS: dict[str, Target] = {
    "alpha_tensor": Target("alpha_tensor", "a0^3", "bohr3", "sum", "tensor2",
                           "static polarizability tensor (symmetric 3x3, frame of the input coordinates)"),
}


# Units of extensive properties (they add up over atoms): energies and heat capacities. Anything else a
# user declares (log solubility, a gap, a fraction) is taken as intensive, pooled as a mean over atoms.
_EXTENSIVE_UNITS = ("ev", "mev", "hartree", "ha", "kcal/mol", "kj/mol", "cal/(mol k)", "j/(mol k)", "cal/mol/k",
                    "kcal", "kj", "ry", "rydberg")
_EXTENSIVE_NAMES = ("energy", "enthalpy", "free_energy", "u0", "cv", "heat_capacity", "zpve", "atomization")
# Orbital energies and their differences are per molecule, not per atom, whatever their unit.
_INTENSIVE_NAMES = ("gap", "homo", "lumo", "ionization", "affinity", "ip", "ea", "band")


def unit_slug(unit: str) -> str:
    """A unit as it may appear in a column name: ``log(mol/L)`` -> ``log_mol_L``, ``kcal/mol`` -> ``kcal_mol``.

    >>> unit_slug("cal/(mol K)"), unit_slug("")
    ('cal_mol_K', '')
    """
    slug = re.sub(r"[^0-9A-Za-z.+-]+", "_", unit.replace("^", "")).strip("_")
    return slug


def parse_target_spec(spec: str) -> Target:
    """A user target from ``NAME[:UNIT[:POOLING]]``, e.g. ``logS:log(mol/L)`` or ``energy:eV:sum``.

    ``POOLING`` is ``sum`` (extensive: energies, heat capacities) or ``mean`` (intensive: everything
    else). When it is left out, energy-like units (eV, kcal/mol, Hartree, ...) and names (``energy``,
    ``U0``, ``Cv``) are summed over atoms, unless the name says an orbital energy or gap (``gap``,
    ``homo``, ``lumo``...), and anything else is averaged; a QM9 name keeps QM9's pooling (not its unit:
    a file's labels are in the unit the spec declares, none if it declares none).

    >>> t = parse_target_spec("logS:log(mol/L)")
    >>> t.column, t.pooling
    ('logS_log_mol_L', 'mean')
    >>> parse_target_spec("energy:eV").pooling, parse_target_spec("gap_pbe:eV").pooling
    ('sum', 'mean')
    """
    text = spec.strip()
    # A unit may hold colons only in odd cases; split off the pooling from the right when it is one.
    parts = text.split(":")
    pooling: Pooling | None = None
    if len(parts) >= 3 and parts[-1].strip().lower() in ("sum", "mean"):
        pooling = "sum" if parts.pop().strip().lower() == "sum" else "mean"
    name = parts[0].strip()
    unit = ":".join(parts[1:]).strip()
    if not name:
        raise ValueError(f"target {spec!r}: give a name, as NAME[:UNIT[:sum|mean]] (e.g. logS:log(mol/L))")
    if not re.fullmatch(r"[A-Za-z_][\w.\-]*", name):
        raise ValueError(f"target name {name!r} must start with a letter and hold only letters, digits, _ . -")
    if pooling is None and name in QM9_TARGETS:
        pooling = QM9_TARGETS[name].pooling
    if pooling is None:
        low = name.lower()
        extensive = (unit.lower() in _EXTENSIVE_UNITS or low in _EXTENSIVE_NAMES) and not any(
            k in low.split("_") or low.startswith(k) for k in _INTENSIVE_NAMES)
        pooling = "sum" if extensive else "mean"
    slug = unit_slug(unit)
    return Target(name, unit, slug, pooling, "scalar", "user target" + (f" ({unit})" if unit else ""))


def get_target(name: str) -> Target:
    t = QM9_TARGETS.get(name) or QM9_EXTRA_TARGETS.get(name)
    if t is None:
        known = ", ".join([*QM9_TARGETS, *QM9_EXTRA_TARGETS])
        raise ValueError(f"unknown target {name!r}; known: {known}")
    return t
