"""--mlperf-sweep: the product of the settings as cases with readable ids, reaching the engine, and a Pareto report."""

from __future__ import annotations

import json

import jsonschema
import pytest

from pytest_mlperf.results import schema
from tests.conftest import FAST

TEST = """
def test_swept(mlperf, mlperf_scenario, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset, check=False)
"""


def _front_by_hand(points: dict[str, tuple[float, float]]) -> set[str]:
    """Configurations no other one beats on both samples/s (more) and latency (less), strictly on one."""
    front = set()
    for name, (qps, lat) in points.items():
        beaten = any(
            oq >= qps and ol <= lat and (oq > qps or ol < lat)
            for other, (oq, ol) in points.items()
            if other != name
        )
        if not beaten:
            front.add(name)
    return front


def test_a_2x3_sweep_runs_6_cases_and_marks_the_pareto_front(project: pytest.Pytester) -> None:
    project.makepyfile(test_swept=TEST)
    result = project.runpytest(
        *FAST, "--mlperf-scenarios=Server", "--mlperf-mode=performance",
        "--mlperf-sweep", "threads=1,2", "--mlperf-sweep", "batch_size=1,8,32", "-v",
    )
    result.assert_outcomes(passed=6)
    expected = [
        f"test_swept.py::test_swept[Server-threads={t}-batch_size={b}]" for t in (1, 2) for b in (1, 8, 32)
    ]
    document = json.loads((project.path / "mlperf-results" / "results.json").read_text())
    jsonschema.validate(document, schema())
    runs = document["runs"]
    assert [run["id"] for run in runs] == expected
    for run, (threads, batch) in zip(runs, [(t, b) for t in (1, 2) for b in (1, 8, 32)], strict=True):
        assert run["sweep"] == {"threads": str(threads), "batch_size": str(batch)}
        # The settings reached the engine: the backend reports the threads and batch ceiling it ran with.
        assert (run["backend_options"]["threads"], run["backend_options"]["batch_size"]) == (threads, batch)
        assert run["sut"]["batch_size"] <= batch
    # The front, worked out here from the recorded figures of the VALID runs.
    figures: dict[str, tuple[float, float]] = {}
    for run in runs:
        if run["valid"]:
            name = f"threads={run['sweep']['threads']}-batch_size={run['sweep']['batch_size']}"
            figures[name] = (run["metrics"]["qps"], run["metrics"]["latency_ns"]["p99"])
    front = _front_by_hand(figures)
    assert front  # the best throughput is always on it
    lines = result.stdout.lines
    start = lines.index(next(line for line in lines if "mlperf sweep: Pareto report" in line))
    assert lines[start + 1].startswith("test_swept[Server-*]  (Server; * = Pareto front")
    rows: dict[str, list[str]] = {}
    for line in lines[start + 3:start + 9]:
        cells = line.split()
        marked = cells[0] == "*"
        rows[cells[1] if marked else cells[0]] = cells
        assert marked == ((cells[1] if marked else cells[0]) in front), (line, front, figures)
    assert set(rows) == {name.split("[")[1].rstrip("]").replace("Server-", "") for name in expected}
    for name, (qps, lat) in figures.items():
        assert f"{qps:,.1f}" in rows[name] and f"{lat / 1e6:.3f}" in rows[name]


def test_a_backend_option_sweep_reaches_the_engine(project: pytest.Pytester) -> None:
    project.makepyfile(test_swept=TEST)
    result = project.runpytest(
        *FAST, "--mlperf-scenarios=Offline", "--mlperf-mode=performance", "--mlperf-backend-option=outputs=nothing",
        "--mlperf-sweep=outputs=logits",
    )
    result.assert_outcomes(passed=1)
    (run,) = json.loads((project.path / "mlperf-results" / "results.json").read_text())["runs"]
    assert run["id"].endswith("[Offline-outputs=logits]")
    # After --mlperf-backend-option, so the swept value is the one the engine read (outputs=nothing would fail).
    assert run["backend_options"]["options"] == {"outputs": "logits"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mlperf-sweep=threads"], "*--mlperf-sweep: 'threads' is not KEY=V1,V2,...; e.g. --mlperf-sweep thr*"),
        (["--mlperf-sweep=threads=1", "--mlperf-sweep=threads=2"], "*'threads' is swept twice*"),
        (["--mlperf-sweep=batch_size=0,8"], "*batch_size='0' is not valid; it must be a whole number, 1 or more*"),
        (["--mlperf-sweep=workers=1,1"], "*repeats a value*"),
        (["--mlperf-server-batch=8", "--mlperf-sweep=batch_size=4,8"],
         "*batch_size=4 is below --mlperf-server-batch 8*"),
        ([f"--mlperf-sweep=k{i}=1,2" for i in range(9)], "*512 configurations is more than 256*"),
    ],
)
def test_bad_sweeps_are_usage_errors(project: pytest.Pytester, args: list[str], message: str) -> None:
    project.makepyfile(test_swept=TEST)
    result = project.runpytest(*FAST, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_ini_sweep_lines(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nmlperf_sweep =\n    threads=1,2\n")
    project.makepyfile(test_swept=TEST)
    result = project.runpytest("-p", "no:cacheprovider", "--collect-only", "-q", "--mlperf-scenarios=Offline")
    result.stdout.fnmatch_lines([
        "test_swept.py::test_swept[[]Offline-threads=1[]]",
        "test_swept.py::test_swept[[]Offline-threads=2[]]",
    ])
