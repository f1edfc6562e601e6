"""Property training must import where RDKit and ASE are not installed (an accelerator node that only trains), and the
constants written out for that case must be ASE's."""

import subprocess
import sys

from ase import units

from se3mol import units as se3mol_units

BLOCK = """
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('rdkit', 'ase', 'qm9pack'):
            raise ImportError('not installed here: ' + name)
sys.meta_path.insert(0, Block())
for m in sys.argv[1:]:
    importlib.import_module(m)
from se3mol.units import BOHR_TO_ANGSTROM, DEBYE_TO_E_ANGSTROM
from se3mol.molecule import check_elements
print(BOHR_TO_ANGSTROM, DEBYE_TO_E_ANGSTROM, 'rdkit' in sys.modules or 'ase' in sys.modules)
"""


def test_training_imports_without_rdkit_and_ase():
    modules = ["se3mol.training", "se3mol.tasks", "se3mol.tasks.properties",
               "se3mol.data.qm9", "se3mol.nn"]
    r = subprocess.run([sys.executable, "-c", BLOCK, *modules], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    bohr, debye, leaked = r.stdout.split()
    assert float(bohr) == units.Bohr and float(debye) == units.Debye and leaked == "False"


def test_written_out_constants_are_ases():
    assert se3mol_units.BOHR_TO_ANGSTROM == units.Bohr and se3mol_units.DEBYE_TO_E_ANGSTROM == units.Debye


HELP = """
import sys
sys.argv = ['se3mol'] + sys.argv[1:]
from se3mol.cli.app import main
try:
    main()
except SystemExit:
    pass
print('LOADED', sorted(m for m in ('e3nn', 'se3mol.nn.tfn', 'se3mol.nn.se3_transformer', 'se3mol.equivariance')
                       if m in sys.modules))
"""


def test_command_line_imports_no_model_family_it_does_not_run():
    """Listing the families for --help used to import every family module, e3nn's among them (about 1.5 s of
    torch._dynamo), on every se3mol command."""
    for args in (["--help"], ["train", "--help"], ["check-equivariance", "--help"], ["predict", "--help"]):
        r = subprocess.run([sys.executable, "-c", HELP, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip().splitlines()[-1] == "LOADED []", (args, r.stdout[-500:])


def test_the_registry_knows_its_controls_without_importing_them():
    from se3mol.nn.registry import CONTROLS, FAMILIES, get_entry, model_names

    assert CONTROLS <= set(FAMILIES)
    assert {n for n in FAMILIES if get_entry(n).control} == set(CONTROLS)
    assert set(model_names()) == set(FAMILIES) - CONTROLS
