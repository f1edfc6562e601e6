"""GFN2-xTB energies and geometry optimisation through ``tblite`` (an optional extra: ``pip install se3mol[xtb]``).

GFN2-xTB (Bannwarth, Ehlert and Grimme 2019) is the semi-empirical method GEOM's CREST ensembles were built
with. ``tblite`` computes its energy and gradient; the optimiser here is SciPy's L-BFGS on Cartesian
coordinates, converged like ``xtb --opt normal`` (energy change below 5e-6 Eh and largest gradient component
below 1e-3 Eh/bohr). Gas phase, the molecule's total formal charge, closed shell for an even electron count.

Nothing here is imported by ``se3mol predict``; ``tblite`` is needed only by ``se3mol conformers --relax xtb``,
the drug-like data builder (:mod:`se3mol.data.drugs`) and the benchmarks that score energies.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EH_TO_KCAL",
    "XTB_METHOD",
    "XtbOutcome",
    "XtbUnavailableError",
    "require_tblite",
    "xtb_energy",
    "xtb_optimise",
]

#: The Hamiltonian every energy here is computed with.
XTB_METHOD = "GFN2-xTB"
#: Hartree to kcal/mol (CODATA 2018, as ASE's ``units.Hartree / (units.kcal / units.mol)``).
EH_TO_KCAL = 627.509474
_BOHR = 0.529177210903  # Angstrom
#: ``xtb --opt normal`` thresholds: energy change (Eh) and largest gradient component (Eh/bohr).
ECONV, GCONV = 5e-6, 1e-3
#: L-BFGS iterations per conformer before giving up (reported as not converged).
XTB_MAX_STEPS = 500


class XtbUnavailableError(ValueError):
    """``tblite`` is not installed (it is an optional extra)."""


def require_tblite() -> None:
    """Raise :class:`XtbUnavailableError`, saying how to install it, when ``tblite`` is missing."""
    if importlib.util.find_spec("tblite") is None:
        raise XtbUnavailableError(
            "GFN2-xTB needs the optional package tblite, which is not installed: pip install 'se3mol[xtb]' "
            "(tblite publishes wheels for CPython 3.11 on Linux and macOS); or use --relax mmff")


@dataclass
class XtbOutcome:
    """One GFN2-xTB optimisation: energies in Eh, positions in Angstrom, ``steps`` energy/gradient evaluations."""

    converged: bool
    energy_before: float
    energy_after: float
    positions: np.ndarray
    steps: int


def _calculator(numbers: np.ndarray, positions: np.ndarray, charge: int):
    require_tblite()
    from tblite.interface import Calculator

    n_electrons = int(np.asarray(numbers).sum()) - int(charge)
    calc = Calculator(XTB_METHOD, np.asarray(numbers, dtype=np.int64), np.asarray(positions, float) / _BOHR,
                      charge=float(charge), uhf=n_electrons % 2)
    calc.set("verbosity", 0)
    return calc


def xtb_energy(numbers: np.ndarray, positions: np.ndarray, charge: int = 0) -> float:
    """GFN2-xTB single-point energy (Eh) of one geometry (Angstrom).

    Raises:
        XtbUnavailableError: ``tblite`` is not installed.
        ValueError: the SCF failed (e.g. atoms on top of each other).
    """
    calc = _calculator(numbers, positions, charge)
    try:
        return float(calc.singlepoint().get("energy"))
    except RuntimeError as exc:
        raise ValueError(f"GFN2-xTB failed: {exc}") from None


def xtb_optimise(numbers: np.ndarray, positions: np.ndarray, charge: int = 0,
                 max_steps: int = XTB_MAX_STEPS) -> XtbOutcome:
    """Minimise the GFN2-xTB energy of one geometry (Angstrom) with L-BFGS from ``positions``.

    The SCF of each step starts from the previous step's density (``tblite`` keeps it), which is what makes a
    Cartesian optimiser affordable here: about 1 s for ibuprofen, 5-10 s for imatinib on one core from an
    MMFF94 geometry.

    Raises:
        XtbUnavailableError: ``tblite`` is not installed.
        ValueError: the SCF failed at the start geometry.
    """
    from scipy.optimize import minimize

    x0 = np.asarray(positions, dtype=float).reshape(-1) / _BOHR
    calc = _calculator(numbers, positions, charge)
    state: dict[str, object] = {"steps": 0}
    cache: dict[bytes, tuple[float, np.ndarray]] = {}

    def energy_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        key = x.tobytes()
        if key not in cache:
            calc.update(positions=x.reshape(-1, 3))
            res = calc.singlepoint()
            state["steps"] = int(state["steps"]) + 1  # type: ignore[call-overload]
            cache.clear()
            cache[key] = (float(res.get("energy")), np.asarray(res.get("gradient")).reshape(-1))
        return cache[key]

    try:
        e0, _ = energy_gradient(x0)
    except RuntimeError as exc:
        raise ValueError(f"GFN2-xTB failed at the start geometry: {exc}") from None
    best: list = [x0, e0]  # the lowest point evaluated: [positions, energy]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            e, g = energy_gradient(x)
        except RuntimeError:  # an SCF failure in a line search: a wall the line search backs off from
            return e0 + 1.0, np.zeros_like(x)
        if e < best[1]:
            best[:] = [x.copy(), e]
        return e, g

    minimize(fun, x0, jac=True, method="L-BFGS-B",
             options={"maxiter": max_steps, "maxfun": 2 * max_steps, "ftol": ECONV / max(abs(e0), 1.0),
                      "gtol": GCONV, "maxcor": 20})
    x = np.asarray(best[0])
    e, g = energy_gradient(x)
    return XtbOutcome(converged=bool(np.abs(g).max() < GCONV), energy_before=e0, energy_after=e,
                      positions=x.reshape(-1, 3) * _BOHR, steps=int(state["steps"]))  # type: ignore[call-overload]
