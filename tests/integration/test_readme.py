"""The README's Python block runs as written (with the shipped default model)."""

import re

import pytest

from tests.conftest import ROOT


def test_readme_python_block_runs(monkeypatch, capsys):
    if not (ROOT / "models" / "qm9-egnn-gap.pt").exists():
        pytest.skip("shipped model not present")
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python block"
    monkeypatch.chdir(ROOT)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert "gap_meV" in capsys.readouterr().out
