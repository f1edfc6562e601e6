"""se3mol.io over a hostile corpus (tests/helpers/hostile.py), from files and from stdin: no exception escapes,
every record of a file is one Record (broken ones included), and every error names its problem."""

import io
import re

import pytest

from se3mol.io import detect_format, read_records
from tests.helpers.hostile import CASES, Case, write_corpus

# What an error message must never look like: a Python exception's class name or repr, a traceback, an address.
_NOT_SPECIFIC = re.compile(r"Traceback|\b[A-Z]\w*(?:Error|Exception)\b|object at 0x|^\s*$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, tuple]:
    return {case.name: (path, case) for path, case in write_corpus(tmp_path_factory.mktemp("hostile"))}


@pytest.mark.parametrize("source", ["file", "stdin"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_record_is_one_record_and_every_error_names_its_problem(corpus, case: Case, source):
    path, _ = corpus[case.name]
    if source == "file":
        records = list(read_records([str(path)]))
    else:  # the same bytes piped in, the format given as it would be on the command line
        records = list(read_records(["-"], detect_format(str(path)), stdin=io.BytesIO(case.data)))

    assert len(records) == case.records, [(r.id, r.error) for r in records]
    assert [r.index for r in records] == list(range(case.records))
    errors = [r.error for r in records if r.molecule is None]
    assert len(errors) == len(case.errors), errors
    for error, fragment in zip(errors, case.errors, strict=True):
        assert fragment in error
        assert not _NOT_SPECIFIC.search(error), error
    for rec in records:
        assert (rec.molecule is None) == (rec.error is not None)
        assert rec.id and not re.search(r"[\x00-\x1f\x7f]", rec.id), rec.id  # usable in a row and on a terminal


def test_the_corpus_is_small():
    assert sum(len(c.data) for c in CASES) < 200_000
    assert len({c.name for c in CASES}) == len(CASES)
