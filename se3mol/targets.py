"""Properties a model can learn: their units, how atoms add up to them, and what kind of output they are.

>>> get_target("gap").column
'gap_meV'
"""

from __future__ import annotations

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
        return f"{self.name}_{self.slug}"

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


def get_target(name: str) -> Target:
    t = QM9_TARGETS.get(name) or QM9_EXTRA_TARGETS.get(name)
    if t is None:
        known = ", ".join([*QM9_TARGETS, *QM9_EXTRA_TARGETS])
        raise ValueError(f"unknown target {name!r}; known: {known}")
    return t
