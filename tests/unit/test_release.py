"""se3mol.release: refreshing a shipped conformer model's benchmark figures."""

from __future__ import annotations

import json

import pytest

from se3mol.release import benchmark_sections, conformer_benchmarks, main, refresh_benchmarks


def _bench(tmp_path, name, cov):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"command": "python -m benchmarks.conformers.conformers", "date": "2026-11-23",
                                "n_molecules": 2, "k": 10, "threshold": 0.5, "stereo": "smiles", "unused": 1,
                                "results": [{"method": "clofnet", "cov_r_mean": cov, "molecules": [1, 2],
                                             "failures": []}]}))
    return path


def test_refresh_replaces_only_the_benchmark_sections(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    card = {"name": "m", "task": "conformers", "history": [{"epoch": 1}], "benchmark": {"results": []}}
    (models / "m.json").write_text(json.dumps(card))
    (models / "m.pt").write_bytes(b"weights")
    new = refresh_benchmarks("m", models, {"benchmark": _bench(tmp_path, "a", 0.9),
                                           "benchmark_reference_stereo": tmp_path / "missing.json"})
    stored = json.loads((models / "m.json").read_text())
    assert stored == new and stored["history"] == [{"epoch": 1}] and (models / "m.pt").read_bytes() == b"weights"
    assert stored["benchmark"]["results"] == [{"method": "clofnet", "cov_r_mean": 0.9}]  # per-molecule lists left out
    assert stored["benchmark"]["n_molecules"] == 2 and "unused" not in stored["benchmark"]
    assert "benchmark_reference_stereo" not in stored  # nothing measured, nothing claimed

    (models / "p.json").write_text(json.dumps({"name": "p", "model": "egnn"}))
    with pytest.raises(ValueError, match="not the card of a conformer score model"):
        refresh_benchmarks("p", models)
    with pytest.raises(SystemExit):
        main(["run_dir", "m", "--refresh-benchmarks"])
    with pytest.raises(SystemExit):
        main(["m"])  # releasing a run needs RUN_DIR and --command


def test_default_benchmark_files_are_the_committed_results(tmp_path):
    paths = conformer_benchmarks()
    assert all(p.is_file() for p in paths.values()), paths  # resolved from the source tree, not the working directory
    sections = benchmark_sections()
    assert sections["benchmark"]["source"] == "benchmarks/conformers/results/conformers.json"
    assert all("molecules" not in row for row in sections["benchmark"]["results"])
    assert conformer_benchmarks(tmp_path)["benchmark"] == tmp_path / "conformers.json"


def test_a_drug_benchmark_is_summarised_under_its_key_and_shown_by_models(tmp_path):
    from se3mol.cli.models import _conformer_metric

    drugs = tmp_path / "drugs.json"
    row = {"method": "hybrid", "molecules": 2, "failed": 0, "COV-R@1.25": {"mean": 0.875, "median": 1.0},
           "mat_r": {"mean": 0.512, "median": 0.5}}
    drugs.write_text(json.dumps({"command": "python -m benchmarks.conformers.drugs", "date": "2026-12-05",
                                 "reference": {"molecules": 2}, "model": "runs/d/best.pt", "start_sigma": 0.3,
                                 "summary": [row], "molecules": [{"row": 1}]}))
    sections = benchmark_sections({"benchmark_drugs": drugs})
    assert sections["benchmark_drugs"]["results"] == [row]
    assert sections["benchmark_drugs"]["start_sigma"] == 0.3 and "molecules" not in sections["benchmark_drugs"]
    assert _conformer_metric(sections) == "drugs (hybrid): COV-R 87.5%, MAT-R 0.512 A"
    with pytest.raises(SystemExit):
        main(["run_dir", "m", "--command", "x", "--benchmark", str(drugs)])  # KEY=FILE
    with pytest.raises(SystemExit):
        main(["run_dir", "m", "--command", "x", "--benchmark", f"benchmark_drugs={tmp_path / 'none.json'}"])


def test_the_card_names_the_hardware_the_run_trained_on():
    from se3mol.release import _hardware
    from se3mol.runtime import describe_hardware

    assert _hardware({"hardware": "NVIDIA H200, 16 threads, torch 2.13.0"}) == "NVIDIA H200, 16 threads, torch 2.13.0"
    old_run = _hardware({})
    assert old_run.startswith(describe_hardware()) and "did not record where it trained" in old_run
    assert "x 2 processes" in describe_hardware("cpu", 2) and "processes" not in describe_hardware()
