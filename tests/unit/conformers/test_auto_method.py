"""The default conformer method chooses per molecule: the QM9 score model in its domain, else the hybrid, else
ETKDG; each record names the method that made it. Salts follow the fragment policy."""

import pytest

from se3mol import limits
from se3mol.conformers.generate import generate_conformers
from se3mol.conformers.inputs import SmilesInput
from se3mol.conformers.methods import METHODS, AutoMethod, make_method


@pytest.fixture(scope="module")
def auto():
    return make_method("auto", preset="fast")


def _run(method, smiles, n=2):
    items = [SmilesInput(k, "-", s) for k, s in enumerate(smiles)]
    return list(generate_conformers(items, method, n))


def test_auto_is_the_first_method_and_loads_nothing_up_front():
    assert next(iter(METHODS)) == "auto"
    loaded = []
    method = AutoMethod(load_qm9=lambda: loaded.append("qm9"), load_drugs=lambda: loaded.append("drugs"))
    assert loaded == [] and method.check is not None


def test_each_molecule_gets_the_method_that_fits_it(auto):
    ethanol, chloro, phosphonic, palmitic = _run(auto, ["CCO", "Clc1ccc(cc1)C(N)=O", "OP(=O)(O)c1ccccc1",
                                                         "CCCCCCCCCCCCCCCC(=O)O"])
    assert (ethanol.method, chloro.method, phosphonic.method, palmitic.method) == ("clofnet", "hybrid", "etkdg",
                                                                                  "hybrid")
    assert all(r.status in ("ok", "warning") and r.n_conformers == 2 for r in (ethanol, chloro, phosphonic, palmitic))
    assert "element(s) P not in" in phosphonic.notes[0] and "Cl not in" in chloro.notes[0]
    assert "50 atoms with hydrogens" in palmitic.notes[0]
    props = [p for _, _, _, p in chloro.records()]
    assert {p["method"] for p in props} == {"hybrid"} and not any(p["clashes"] != "none" for p in props)


def test_salts_follow_the_fragment_policy(auto):
    (salt,) = _run(auto, ["CCCC[NH3+].[Cl-]"])
    assert salt.status in ("ok", "warning") and salt.canonical_smiles == "CCCCN"
    assert any("removed [Cl-]" in n for n in salt.notes)
    with limits.use(limits.Limits(fragments="error")):
        (salt,) = _run(auto, ["CCCC[NH3+].[Cl-]"])
    assert salt.status == "error" and "salt, hydrate or mixture" in salt.error
    with limits.use(limits.Limits(fragments="all")):
        (salt,) = _run(auto, ["CCCC[NH3+].[Cl-]"])
    assert salt.status == "error" and "several fragments" in salt.error
