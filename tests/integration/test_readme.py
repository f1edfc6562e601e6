"""The Python blocks of README.md and docs/python-api.md run as written (with the shipped default model).

Every block fenced ```python runs; a sketch that needs the reader's own files is fenced ```py instead.
"""

import re

import pytest

from tests.helpers import ROOT

DOCUMENTS = ["README.md", "docs/python-api.md"]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_python_blocks_run(document, monkeypatch, capsys):
    if not (ROOT / "models" / "qm9-egnn-gap.pt").exists():
        pytest.skip("shipped model not present")
    text = (ROOT / document).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"{document} has no python block"
    monkeypatch.chdir(ROOT)
    for code in blocks:
        exec(compile(code, document, "exec"), {})
    assert "gap_meV" in capsys.readouterr().out
