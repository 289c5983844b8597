"""End to end: an official-profile digits session (reduced durations by a user.conf) becomes a submission tree that
matches its logs, a system JSON with the checker's fields, and refusals naming each problem; reproduce rebuilds
the command line."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_mlperf import cli
from pytest_mlperf.results import schema
from pytest_mlperf.submission import checks
from pytest_mlperf.submission.system import MEASUREMENT_FIELDS, REQUIRED_FIELDS

SUITE = Path(__file__).resolve().parents[2] / "suites" / "test_digits.py"
#: Reduced durations: 10 ms and 1024 queries (MultiStream's early stopping needs 662), speed hints far above this
#: machine's so that LoadGen never runs out of queries; a slower machine only makes the runs longer.
USER_CONF = """\
digits-cnn.*.min_duration = 10
digits-cnn.*.min_query_count = 1024
digits-cnn.SingleStream.target_latency = 1
digits-cnn.MultiStream.target_latency = 1
digits-cnn.Offline.target_qps = 2000000
"""
SYSTEM_YAML = """\
status: available
system_name: CI runner (CPU)
system_type: edge
host_processors_per_node: 1
host_memory_configuration: 1x unknown
host_storage_capacity: 100 GB
host_storage_type: SSD
host_networking: N/A
host_network_card_count: 0
host_networking_topology: N/A
cooling: air
measurements:
  input_data_types: fp32
  retraining: "No"
  starting_weights_filename: digits-cnn (trained in numpy by pytest-mlperf)
  weight_data_types: fp32
  weight_transformations: none
"""
EDGE = ("SingleStream", "MultiStream", "Offline")


@dataclass
class Session:
    project: Path
    results: Path
    document: dict[str, Any]
    system: Path


def run_cli(*args: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    project = tmp_path_factory.mktemp("project")
    shutil.copy(SUITE, project / SUITE.name)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "user.conf").write_text(USER_CONF)
    (project / "edge-cpu.yaml").write_text(SYSTEM_YAML)
    command = [
        sys.executable, "-m", "pytest", SUITE.name, "-p", "no:cacheprovider", "--mlperf-profile", "official",
        "--mlperf-user-conf", "user.conf", f"--mlperf-scenarios={','.join(EDGE)}",
        f"--mlperf-cache-dir={project / 'cache'}", "--mlperf-latency-bound-ms=1000", "--mlperf-min-qps=0",
        "--mlperf-compliance",
    ]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    results = project / "mlperf-results" / "results.json"
    assert results.is_file(), done.stdout[-4000:] + done.stderr[-2000:]
    document = json.loads(results.read_text())
    # 10 ms runs are noisy: the compliance runs' performance bands may fail under load (the open division does
    # not need compliance). Nothing else may fail.
    for run in document["runs"]:
        assert all(reason.startswith(("TEST01 performance", "TEST04 performance")) for reason in run["reasons"]), \
            run["reasons"]
        assert run["mode"] == "accuracy" or run["valid"] is True
    yield Session(project, results, document, project / "edge-cpu.yaml")


def build(session: Session, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return run_cli("submission", session.results, "--division", "open", "--submitter", "Acme", "--system",
                   session.system, "--out", out, "--model-map", "digits-cnn=resnet", *extra, capsys=capsys)


def test_results_record_the_invocation_and_the_applied_user_conf(session: Session) -> None:
    jsonschema.validate(session.document, schema())
    assert "--mlperf-user-conf" in session.document["invocation"]["args"]
    for run in session.document["runs"]:
        assert run["conf"]["user_conf"]["text"] == USER_CONF
        assert run["conf"]["applied_user_conf"] == USER_CONF  # the official profile adds nothing
        assert run["conf"]["mlperf_conf"] == {"source": "built-in", "model_name": "digits-cnn",
                                              "loadgen": session.document["versions"]["loadgen"]}


def test_the_tree_has_the_checkers_layout_and_its_files_are_the_logs(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = build(session, tmp_path, capsys, "--allow-short-runs")
    assert code == 0, err
    root = tmp_path / "open" / "Acme"
    assert f"wrote {3 + 3 * 18} files to {root}" in out
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    expected = {"systems/edge-cpu.json", "src/resnet/README.md", "model_mapping.json"}
    for scenario in EDGE:
        base = f"results/edge-cpu/resnet/{scenario}"
        expected |= {f"{base}/{name}" for name in ("TEST01/verify_accuracy.txt", "TEST01/verify_performance.txt",
                                                   "TEST01/accuracy/mlperf_log_accuracy.json",
                                                   "TEST01/accuracy/accuracy.txt",
                                                   "TEST01/performance/run_1/mlperf_log_detail.txt",
                                                   "TEST01/performance/run_1/mlperf_log_summary.txt",
                                                   "TEST04/verify_performance.txt",
                                                   "TEST04/performance/run_1/mlperf_log_detail.txt",
                                                   "TEST04/performance/run_1/mlperf_log_summary.txt")}
        expected |= {f"{base}/{name}" for name in ("user.conf", "measurements.json", "README.md",
                                                   "performance/run_1/mlperf_log_detail.txt",
                                                   "performance/run_1/mlperf_log_summary.txt",
                                                   "accuracy/accuracy.txt", "accuracy/mlperf_log_accuracy.json",
                                                   "accuracy/mlperf_log_detail.txt",
                                                   "accuracy/mlperf_log_summary.txt")}
    assert files == expected
    assert json.loads((root / "model_mapping.json").read_text()) == {"digits-cnn": "resnet"}
    runs = {(r["scenario"], r["mode"]): r for r in session.document["runs"]}
    for scenario in EDGE:
        base = root / "results" / "edge-cpu" / "resnet" / scenario
        perf = session.results.parent / runs[scenario, "performance"]["log_dir"]
        acc = session.results.parent / runs[scenario, "accuracy"]["log_dir"]
        for name in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
            assert (base / "performance" / "run_1" / name).read_bytes() == (perf / name).read_bytes()
            assert (base / "accuracy" / name).read_bytes() == (acc / name).read_bytes()
        # As truncate_accuracy_log.py leaves them: the log's two ends, and its whole hash in accuracy.txt.
        whole = (acc / "mlperf_log_accuracy.json").read_bytes()
        assert len(whole) > 2 * 4096
        assert (base / "accuracy" / "mlperf_log_accuracy.json").read_bytes() == (
            whole[:4096] + b"\n\n...\n\n" + whole[-4096:])
        assert (base / "accuracy" / "accuracy.txt").read_text() == (
            (acc / "accuracy.txt").read_text() + f"\nhash={hashlib.sha256(whole).hexdigest()}\n")
        assert (base / "user.conf").read_text() == USER_CONF
        for test in ("TEST01", "TEST04"):
            for name in ("verify_performance.txt", "performance/run_1/mlperf_log_detail.txt"):
                assert (base / test / name).read_bytes() == (perf / test / name).read_bytes()
        assert (base / "TEST01" / "verify_accuracy.txt").read_text().splitlines()[-1] == "TEST PASS"
        # TEST01's sampled log, scored as the MLCommons script scores a partial log, then hashed like the others.
        sampled = (perf / "TEST01" / "accuracy" / "mlperf_log_accuracy.json").read_bytes()
        scored = (perf / "TEST01" / "accuracy" / "accuracy.txt").read_text()
        assert re.fullmatch(r"accuracy=\d+\.\d{3}%, good=\d+, total=\d+\n", scored)
        assert (base / "TEST01" / "accuracy" / "accuracy.txt").read_text() == (
            scored + f"\nhash={hashlib.sha256(sampled).hexdigest()}\n")
        measurements = json.loads((base / "measurements.json").read_text())
        assert set(measurements) == set(MEASUREMENT_FIELDS) and measurements["retraining"] == "No"
        readme = (base / "README.md").read_text()
        assert f"'test_digits.py::test_digits[{scenario}-performance]'" in readme
        assert "pip install pytest-mlperf==" in readme and "--mlperf-user-conf=user.conf" in readme


def test_the_system_json_has_every_required_field_from_the_machine_and_the_yaml(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A YAML without the fields only a person knows: they are written empty and listed.
    (tmp_path / "bare.yaml").write_text("system_type: edge\nstatus: available\n")
    code, out, err = run_cli("submission", session.results, "--division", "open", "--submitter", "Acme",
                             "--system", tmp_path / "bare.yaml", "--out", tmp_path / "out", "--model-map",
                             "digits-cnn=resnet", "--allow-short-runs", capsys=capsys)
    assert code == 0, err
    described = json.loads((tmp_path / "out" / "open" / "Acme" / "systems" / "bare.json").read_text())
    assert list(described) == list(REQUIRED_FIELDS)
    machine = session.document["machine"]
    assert described["host_processor_model_name"] == machine["cpu"]
    assert described["operating_system"] == machine["os"]
    assert described["division"] == "open" and described["submitter"] == "Acme"
    assert described["framework"].startswith("onnxruntime ")
    assert described["system_name"] == "" and "still to fill in before the checker: system_name" in out
    assert "measurements.json: retraining" in out
    # The full YAML wins over the machine record, and a count of 0 is written as the checker reads an answer.
    code, out, err = build(session, tmp_path / "full", capsys, "--allow-short-runs")
    assert code == 0, err
    full = json.loads((tmp_path / "full" / "open" / "Acme" / "systems" / "edge-cpu.json").read_text())
    assert full["system_name"] == "CI runner (CPU)" and full["host_network_card_count"] == "0"
    assert "still to fill in" not in out


def test_dry_run_prints_the_plan_and_writes_nothing(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = build(session, tmp_path / "out", capsys, "--allow-short-runs", "--dry-run")
    assert code == 0
    assert "results/edge-cpu/resnet/Offline/performance/run_1/mlperf_log_detail.txt  <- copy of" in out
    assert not (tmp_path / "out").exists()


def test_an_existing_tree_is_never_overwritten(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "open" / "Acme").mkdir(parents=True)
    code, _, err = build(session, tmp_path, capsys, "--allow-short-runs")
    assert code == 2 and "already exists" in err


def refusals(document: dict[str, Any], division: str = "open", system_type: str = "edge",
             mapping: dict[str, str] | None = None, **kwargs: Any) -> list[str]:
    items, found = checks.entries(document["runs"], {"digits-cnn": "resnet"} if mapping is None else mapping)
    return found + checks.problems(items, division, system_type, **kwargs)


def test_short_runs_and_a_small_dataset_are_refused_unless_allowed(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = build(session, tmp_path, capsys)
    assert code == 2
    assert "test_digits[Offline-performance] (Offline performance): too short for a submission (min_duration 10 ms " \
           "< the rules' 600000 ms)" in err
    assert "min_query_count 1024 < mlperf.conf's" not in err  # 1024 is SingleStream's own minimum
    assert "performance_sample_count 359 < 1024 that resnet needs" in err
    assert "accuracy samples (the whole dataset) 359 < 50000" in err
    assert not (tmp_path / "open").exists()


def test_each_problem_the_checker_refuses_is_named(session: Session) -> None:
    assert refusals(session.document, allow_short=True) == []
    smoke = copy.deepcopy(session.document)
    smoke["runs"][0]["profile"] = "smoke"
    assert any("ran in the smoke profile" in p for p in refusals(smoke, allow_short=True))
    invalid = copy.deepcopy(session.document)
    perf = next(r for r in invalid["runs"] if r["mode"] == "performance")
    perf["valid"], perf["validity_reasons"] = False, ["min duration not met"]
    assert any("LoadGen judged the run INVALID (min duration not met)" in p
               for p in refusals(invalid, allow_short=True))
    missing = copy.deepcopy(session.document)
    missing["runs"] = [r for r in missing["runs"] if r["scenario"] != "MultiStream"]
    # The closed division needs the model to be the benchmark's own: the same runs under resnet50's name.
    for run in missing["runs"]:
        run["model"] = "resnet50"
        if run["mode"] == "performance" and run["scenario"] == "Offline":
            del run["compliance"]["TEST04"]
        elif run["mode"] == "performance":
            run["compliance"]["TEST01"] = {"passed": False, "reasons": ["TEST01 accuracy: 3 of 9 differ"],
                                           "log_dir": "TEST01"}
    closed = refusals(missing, "closed", mapping={}, allow_short=True)
    assert any("system_type edge requires SingleStream, MultiStream, Offline; missing MultiStream" in p
               for p in closed)
    assert any("[Offline-performance] (Offline performance): compliance test TEST04 is missing; run the session "
               "with --mlperf-compliance" in p for p in closed)
    assert any("[SingleStream-performance] (SingleStream performance): compliance test TEST01 failed (TEST01 "
               "accuracy: 3 of 9 differ)" in p for p in closed)
    assert any("`digits-cnn.*.min_duration = 10` changes a setting mlperf.conf fixes" in p for p in closed)
    assert not any(".target_qps = " in p for p in closed), closed  # a performance hint is allowed
    low = copy.deepcopy(missing)
    for run in low["runs"]:
        if run["mode"] == "accuracy":
            run["metrics"]["accuracy"]["top1"] = 0.5
    assert any("top1 50.0000% is below the closed-division target 75.6954% for resnet" in p
               for p in refusals(low, "closed", mapping={}, allow_short=True))
    # A model of our own is no benchmark in the closed division, and unknown without a mapping in open.
    assert any("no MLPerf benchmark the checker knows" in p and "--model-map digits-cnn=resnet" in p
               for p in refusals(session.document, mapping={}))


def test_a_missing_system_type_and_a_bad_submitter_are_refused(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "s.yaml").write_text("status: available\n")
    code, _, err = run_cli("submission", session.results, "--division", "open", "--submitter", "Acme", "--system",
                           tmp_path / "s.yaml", "--out", tmp_path, "--model-map", "digits-cnn=resnet",
                           "--allow-short-runs", capsys=capsys)
    assert code == 2 and "system_type is None; give one of edge, datacenter" in err
    (tmp_path / "t.yaml").write_text("system_type: edge\nsystem_nme: typo\n")
    code, _, err = run_cli("submission", session.results, "--division", "open", "--submitter", "Acme", "--system",
                           tmp_path / "t.yaml", "--out", tmp_path, capsys=capsys)
    assert code == 2 and "unknown field(s) system_nme" in err
    code, _, err = build(session, tmp_path, capsys, "--submitter", "../x")
    assert code == 2 and "not usable as a folder name" in err


def test_reproduce_prints_the_pinned_install_the_user_conf_and_the_command(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli("reproduce", session.results, "--case", "test_digits[Offline-performance]",
                             capsys=capsys)
    assert code == 0, err
    versions = session.document["versions"]
    assert f"pip install pytest-mlperf=={versions['plugin']} mlcommons-loadgen=={versions['loadgen']}" in out
    assert f"onnxruntime=={versions['onnxruntime']}" in out
    assert "cat > user.conf <<'EOF'\n" + USER_CONF + "EOF\n" in out
    command = next(line for line in out.splitlines() if line.startswith("python -m pytest"))
    args = shlex.split(command)
    assert args[3] == "test_digits.py::test_digits[Offline-performance]"
    assert {"--mlperf-profile=official", "--mlperf-scenarios=Offline", "--mlperf-mode=performance",
            "--mlperf-user-conf=user.conf", "--mlperf-latency-bound-ms=1000", "--mlperf-min-qps=0"} <= set(args)
    code, _, err = run_cli("reproduce", session.results, "--case", "nope", capsys=capsys)
    assert code == 2 and "no run with id 'nope'" in err
