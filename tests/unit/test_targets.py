"""Target specs written by users (NAME[:UNIT[:POOLING]]): unit, column name and pooling."""

import pytest

from se3mol.targets import parse_target_spec


def test_target_specs_carry_units_and_pooling():
    t = parse_target_spec("logS:log(mol/L)")
    assert (t.name, t.unit, t.column, t.pooling) == ("logS", "log(mol/L)", "logS_log_mol_L", "mean")
    assert parse_target_spec("energy:eV").pooling == "sum"
    assert parse_target_spec("energy:eV:mean").pooling == "mean"
    assert parse_target_spec("Cv:cal/(mol K)").column == "Cv_cal_mol_K"
    assert parse_target_spec("y1").column == "y1"
    with pytest.raises(ValueError, match="must start with a letter"):
        parse_target_spec("1y:eV")
