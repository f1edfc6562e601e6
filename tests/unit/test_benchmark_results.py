"""benchmarks._results: the one writer of benchmark results, and reading a result back whole."""

from __future__ import annotations

import json

import pytest

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


def test_drug_benchmark_sampler_settings_are_parsed_and_checked():
    from benchmarks.conformers.drugs import parse_settings

    assert parse_settings(["temperature=0.5", "steps=3"]) == {"temperature": 0.5, "steps": 3}
    assert isinstance(parse_settings(["steps=3"])["steps"], int)
    with pytest.raises(SystemExit, match="no sampler setting 'temprature'"):
        parse_settings(["temprature=0"])
    with pytest.raises(SystemExit, match="KEY=NUMBER"):
        parse_settings(["temperature"])


def test_drug_benchmark_paired_comparison(tmp_path):
    """Differences are B - A per molecule; a failure counts as COV 0 and leaves MAT out."""
    from benchmarks.conformers.drugs_paired import compare, side

    def row(r, method, cov, mat=None, error=False):
        if error:
            return {"row": r, "method": method, "error": "no conformer"}
        return {"row": r, "method": method, **{f"cov_mat_{t}": {"cov_r": cov, "mat_r": mat} for t in (1.25, 0.75)},
                "rel_median": 10 * mat, "rel_lowest": None}

    rows = [row(1, "a", 0.5, 1.0), row(2, "a", 1.0, 0.5), row(3, "a", 0.5, 0.8),
            row(1, "b", 1.0, 0.8), row(2, "b", 1.0, 0.4), row(3, "b", 0.0, error=True), row(4, "b", 1.0, 0.1)]
    write_result(tmp_path / "run", "t", {"molecules": rows}, per_molecule=["molecules"])
    (_, a), (name_b, b) = side(f"{tmp_path / 'run'}.json:a"), side(f"{tmp_path / 'run'}.json:b")
    res = compare(a, b)
    assert res["molecules"] == 3 and name_b == "run:b"  # row 4 only in b
    assert res["COV-R@1.25"]["mean"] == pytest.approx((0.5 + 0.0 - 0.5) / 3)
    assert (res["COV-R@1.25"]["better"], res["COV-R@1.25"]["worse"]) == (1, 1)
    assert res["MAT-R"]["mean"] == pytest.approx((-0.2 - 0.1) / 2) and res["MAT-R"]["molecules"] == 2
    assert res["xTB dE median"]["mean"] == pytest.approx((-2.0 - 1.0) / 2) and res["xTB dE median"]["better"] == 2
    assert "xTB dE lowest" not in res  # not scored
    with pytest.raises(SystemExit, match="no per-molecule rows for 'c'"):
        side(f"{tmp_path / 'run'}.json:c")
