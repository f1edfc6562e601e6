"""Properties a model can learn: their units, how atoms add up to them, and what kind of output they are.

>>> get_target("gap").column
'gap_meV'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Pooling = Literal["sum", "mean"]
TargetKind = Literal["scalar", "dipole"]


@dataclass(frozen=True)
class Target:
    """One learnable property.

    Attributes:
        name: short name (``gap``).
        unit: unit as shown to people (``meV``, ``a0^3``).
        slug: unit as written in column names (``meV``, ``bohr3``); column is ``{name}_{slug}``.
        pooling: ``sum`` for extensive properties (energies, polarizability), ``mean`` for intensive ones.
        kind: ``scalar`` (invariant per molecule) or ``dipole`` (predicted as a vector, reported as its norm).
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
        return f"{self.name}_{self.slug}"

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


def get_target(name: str) -> Target:
    try:
        return QM9_TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(QM9_TARGETS)}") from None
