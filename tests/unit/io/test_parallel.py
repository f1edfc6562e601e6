"""Records finished by several processes come out as one process gives them: same order, same molecules, same
errors, the limits in force applied in the workers too."""

from se3mol import limits
from se3mol.io import read_records

SMILES = ["CCO ethanol", "C1CC broken", "CC(=O)Oc1ccccc1C(=O)O aspirin", "CCN.Cl salt", "C" * 60 + " long",
          "c1ccccc1 benzene", "[Na+].[Cl-] table-salt"] * 3


def _summary(records):
    return [(r.index, r.id, r.error, r.molecule.formula if r.molecule else None, r.notes) for r in records]


def test_parallel_records_equal_serial_ones(tmp_path):
    path = tmp_path / "in.smi"
    path.write_text("\n".join(SMILES) + "\n")
    with limits.use(limits.Limits(max_atoms=150)):  # the 60-carbon chain (182 atoms) is over it, in workers too
        serial = _summary(read_records([str(path)]))
        parallel = _summary(read_records([str(path)], workers=2))
    assert parallel == serial
    assert len(serial) == len(SMILES) and sum(e is not None for _, _, e, _, _ in serial) == 6
    assert any(e and "more than the limit of 150" in e for _, _, e, _, _ in parallel)
