"""Hard limits on one input record, checked before any work whose cost grows faster than the record, and the
policy for records of several fragments.

A vendor table may hold a polymer row of 20,000 carbons, an XYZ file a frame of 50,000 atoms. Without a bound,
RDKit's canonicalisation of the first overflows its stack (a segfault that takes every other record with it),
an all-pairs distance check of the second allocates tens of GB, and 3D embedding of a 200-carbon chain takes
minutes. Each limit below is checked before that work starts; a record over a limit becomes an error row that
names the limit and the option that raises it, never a crash.

The limits in force are process-wide (the readers run in a background thread of ``se3mol predict``): the
commands set them from their options with :func:`use`, library users may do the same.

>>> current().max_atoms
400
>>> with use(Limits(max_atoms=10)):
...     current().max_atoms
10
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["FRAGMENT_POLICIES", "Limits", "check_atoms", "check_fragments", "check_smiles_length", "current",
           "set_current", "use"]

#: What a record of several fragments (a salt, hydrate or mixture) becomes: its largest organic fragment (the
#: default, as chemprop and RDKit's standardiser do), every fragment (embedded apart), or an error row.
FRAGMENT_POLICIES = ("largest", "all", "error")


def check_fragments(policy: str) -> str:
    """``policy`` if it is one of :data:`FRAGMENT_POLICIES`, else ``ValueError`` naming them."""
    if policy not in FRAGMENT_POLICIES:
        raise ValueError(f"unknown fragment policy {policy!r}; choose {', '.join(FRAGMENT_POLICIES)}")
    return policy


@dataclass(frozen=True)
class Limits:
    """Limits on one record.

    Attributes:
        max_atoms: atoms of one molecule, hydrogens included (``--max-atoms``). Checked before reading a record's
            geometry further, before 3D embedding and before any all-pairs computation. The default, 400, covers
            drug-like molecules and cyclic peptides (cyclosporin: 196 atoms) and keeps the peak memory of
            ``se3mol predict`` with the default full-graph model under 1 GB for one record (0.83 GB at 400 atoms,
            1.06 GB at 500: ``tests/unit/test_limits.py`` holds it there).
        embed_timeout: seconds RDKit's ETKDG may spend on one embedding attempt of one molecule
            (``--embed-timeout``; two attempts at most: ETKDG, then from random coordinates).
        fragments: what a record of several fragments (a salt, hydrate or mixture) becomes (``--fragments``):
            ``largest`` (its largest organic fragment, the others named in the record's notes), ``all`` (every
            fragment, embedded apart when embedded) or ``error`` (an error row). See
            :func:`se3mol.chem.select_fragments`.
    """

    max_atoms: int = 400
    embed_timeout: int = 30
    fragments: str = "largest"

    def __post_init__(self) -> None:
        if self.max_atoms < 1 or self.embed_timeout < 1:
            raise ValueError(f"limits must be at least 1, got {self}")
        check_fragments(self.fragments)

    @property
    def max_smiles_length(self) -> int:
        """Characters of one SMILES, checked before RDKit parses it: 10 per allowed atom (a SMILES of fewer
        atoms than :attr:`max_atoms` is far shorter, brackets, bonds and ring closures included)."""
        return 10 * self.max_atoms


_current = Limits()


def current() -> Limits:
    """The limits in force."""
    return _current


def set_current(limits: Limits) -> Limits:
    """Put ``limits`` in force (process-wide) and return the ones they replace (for a ``finally`` to restore)."""
    global _current
    before, _current = _current, limits
    return before


@contextlib.contextmanager
def use(limits: Limits) -> Iterator[Limits]:
    """Put ``limits`` in force (process-wide) inside the block."""
    before = set_current(limits)
    try:
        yield limits
    finally:
        set_current(before)


def check_atoms(n_atoms: int, what: str = "molecule") -> None:
    """Raise ``ValueError`` when ``n_atoms`` is over :attr:`Limits.max_atoms`."""
    limit = _current.max_atoms
    if n_atoms > limit:
        raise ValueError(f"{what} has {n_atoms} atoms, more than the limit of {limit} atoms per record "
                         f"(raise it with --max-atoms; cost and memory grow with the square of the atoms)")


def check_smiles_length(smiles: str) -> None:
    """Raise ``ValueError`` when ``smiles`` is longer than :attr:`Limits.max_smiles_length`."""
    limit = _current.max_smiles_length
    if len(smiles) > limit:
        raise ValueError(f"SMILES of {len(smiles)} characters, more than the limit of {limit} (10 per atom of "
                         f"--max-atoms {_current.max_atoms}): a polymer, or a whole table in one cell?")
