"""benchmarks._results: the one writer of benchmark results, and reading a result back whole."""

from __future__ import annotations

import json

from benchmarks._results import md_table, read_result, write_result


def test_write_result_splits_per_molecule_lists_and_reads_them_back(tmp_path):
    data = {"n_molecules": 2, "results": [{"method": "a", "cov_r_mean": 0.5, "molecules": [{"id": "m1"}, {"id": "m2"}]},
                                          {"method": "b", "cov_r_mean": 1.0, "molecules": [{"id": "m1"}]}]}
    stem = tmp_path / "results" / "run.v1"  # a dot in the stem is kept
    path = write_result(stem, "A title", data, md_table(["method", "COV-R"], [["a", "50%"], ["b", "100%"]]),
                        command="python -m benchmarks.x.y --flag", per_molecule=("results.*.molecules",))
    assert path == tmp_path / "results" / "run.v1.json"
    summary = json.loads(path.read_text())
    assert summary["title"] == "A title" and summary["command"] == "python -m benchmarks.x.y --flag"
    assert {"date", "machine"} <= set(summary) and "cores" in summary["machine"]
    assert summary["results"] == [{"method": "a", "cov_r_mean": 0.5}, {"method": "b", "cov_r_mean": 1.0}]
    assert (tmp_path / "results" / "per_molecule" / "run.v1.json.gz").exists()
    assert read_result(path)["results"] == data["results"]
    assert data["results"][0]["molecules"]  # the caller's data is left as it was
    md = (tmp_path / "results" / "run.v1.md").read_text().splitlines()
    assert md[0] == "# A title" and md[2] == "`python -m benchmarks.x.y --flag`" and md[-1] == "| b | 100% |"
    assert not list((tmp_path / "results").glob(".*"))  # no temporary file left behind


def test_a_report_keeps_its_own_command_date_and_machine(tmp_path):
    joined = {"command": "a; b (joined)", "date": "2026-01-01", "machine": "x86_64, 2 cores", "rows": []}
    summary = json.loads(write_result(tmp_path / "j", "Joined", joined).read_text())
    assert (summary["command"], summary["date"], summary["machine"]) == ("a; b (joined)", "2026-01-01",
                                                                         "x86_64, 2 cores")
    assert not (tmp_path / "per_molecule").exists()
