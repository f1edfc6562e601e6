"""Everything under tests/integration/ carries the ``integration`` marker: real processes, real QM9, minutes.

``pytest -m integration`` runs only these, ``pytest -m "not integration"`` everything else; ``slow`` is a
separate marker and still leaves the slowest of them out of the default run.
"""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the marker must already be there
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
