"""pytest's own reports through pytester: --junitxml properties, the short summary, skipped suites, ini lists."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.conftest import FAST

TWO_CASES = """
import pytest

@pytest.mark.mlperf(accuracy=0.95, latency_ms=500, min_qps=1)
def test_tiny(mlperf, mlperf_scenario, mlperf_mode, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset)
"""


def properties(xml_path: object) -> dict[str, list[tuple[str, str]]]:
    root = ET.parse(str(xml_path)).getroot()
    return {
        case.get("name", ""): [(p.get("name", ""), p.get("value", "")) for p in case.iter("property")]
        for case in root.iter("testcase")
    }


def test_junitxml_gets_short_machine_readable_properties(project: pytest.Pytester) -> None:
    project.makepyfile(test_user=TWO_CASES)
    xml = project.path / "junit.xml"
    result = project.runpytest(
        *FAST, f"--junitxml={xml}", "--mlperf-scenarios=Offline,SingleStream", "--mlperf-mode=both"
    )
    result.assert_outcomes(passed=4)
    cases = properties(xml)
    offline = dict(cases["test_tiny[Offline-performance]"])
    assert offline["mlperf.scenario"] == "Offline"
    assert offline["mlperf.mode"] == "performance"
    assert offline["mlperf.valid"] == "true"
    assert offline["mlperf.verdict"] == "pass"
    assert float(offline["mlperf.samples_per_s"]) > 0
    single = dict(cases["test_tiny[SingleStream-performance]"])
    assert float(single["mlperf.latency_p90_ms"]) > 0
    assert "mlperf.samples_per_s" not in single  # SingleStream's metric is latency
    accuracy = dict(cases["test_tiny[Offline-accuracy]"])
    assert accuracy["mlperf.accuracy_top1_percent"] == "100"
    assert accuracy["mlperf.valid"] in ("none", "true")
    for props in cases.values():
        # Short: no Python repr of a run, no latency samples, nothing long.
        assert all(len(value) < 64 for _, value in props), props
        assert not any(name in ("mlperf_run", "mlperf_comparison") for name, _ in props)
    assert xml.stat().st_size < 20_000


def test_junitxml_keeps_a_tests_own_properties_and_numbers_repeats(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_tiny(mlperf, tiny_model, tiny_dataset, record_property):
            record_property("owner", "team-a")
            mlperf.run(tiny_model, tiny_dataset, scenario="Offline")
        """
    )
    xml = project.path / "junit.xml"
    project.runpytest(*FAST, f"--junitxml={xml}", "--mlperf-repeat=2").assert_outcomes(passed=1)
    (props,) = properties(xml).values()
    names = [name for name, _ in props]
    assert ("owner", "team-a") in props
    assert "mlperf.repeat0.samples_per_s" in names and "mlperf.repeat1.samples_per_s" in names


def test_short_summary_names_the_first_reason_and_counts_the_others(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # pytest cuts the summary line at the terminal's width
    project.makepyfile(
        test_s="""
        from conftest import make_dataset

        def test_perf(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset, scenario="SingleStream", latency_ms=0.000001, min_qps=1e12)

        def test_acc(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, make_dataset(wrong_labels=8), scenario="Offline", mode="accuracy", accuracy=0.99)
        """
    )
    result = project.runpytest(*FAST, "-rf")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "FAILED test_s.py::test_perf - Failed: SingleStream performance: p90 latency * ms > bound 1e-06 ms*"
        " (+1 more reason)",
    ])
    text = result.stdout.str()
    summary = text[text.index("short test summary info"):]
    acc_line = next(line for line in summary.splitlines() if "::test_acc" in line)
    assert "Failed: Offline accuracy: top-1 accuracy 87.50 % < target 99.00 %" in acc_line
    assert "more reason" not in acc_line


@pytest.fixture
def toml_project(pytester: pytest.Pytester) -> pytest.Pytester:
    from tests.conftest import TINY_CONFTEST

    pytester.makeconftest(TINY_CONFTEST.read_text())
    pytester.makepyfile(
        test_user="""
        def test_tiny(mlperf, mlperf_scenario, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset)
        """
    )
    return pytester


def test_toml_list_in_ini_options_selects_scenarios(toml_project: pytest.Pytester) -> None:
    toml_project.makepyprojecttoml(
        '[tool.pytest.ini_options]\nmlperf_scenarios = ["Server", "Offline"]\n'
    )
    result = toml_project.runpytest(*FAST, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_user.py::test_tiny[[]Server[]]", "test_user.py::test_tiny[[]Offline[]]"])
    assert "SingleStream" not in result.stdout.str()
    assert result.ret == 0


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[tool.pytest.ini_options]\nmlperf_threads = ["1", "2"]\n',
         "ini option mlperf_threads = ['1', '2'] is a list; --mlperf-threads takes one value"),
        ('[tool.pytest.ini_options]\nmlperf_scenarios = ["Server", 3]\n',
         "ini option mlperf_scenarios = ['Server', 3] is a list; write each value as a string"),
        ('[tool.pytest]\nmlperf_scenarios = ["Server"]\n',
         # pytest 9.0 lets the plugin read it (and the plugin adds the fix); 9.2 refuses it itself, naming the key.
         "config option 'mlperf_scenarios' expects a string, got list: ['Server']"),
    ],
)
def test_toml_values_that_mean_nothing_are_refused_with_the_fix(
    toml_project: pytest.Pytester, toml: str, message: str
) -> None:
    toml_project.makepyprojecttoml(toml)
    result = toml_project.runpytest(*FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["in-process", "xdist"])
def test_skipped_suites_get_one_line_each_without_rs(project: pytest.Pytester, xdist: list[str]) -> None:
    project.makepyfile(
        test_suite="""
        import pytest

        @pytest.fixture
        def big_model():
            pytest.skip(
                "resnet50.onnx is not in the cache and --mlperf-offline is set\\nprovide it with --mlperf-asset"
            )

        def test_big(mlperf, mlperf_scenario, mlperf_mode, big_model):
            mlperf.run(big_model, None)

        def test_plain():
            pytest.skip("not a benchmark")
        """
    )
    result = project.runpytest(*FAST, "--mlperf-scenarios=Server,Offline", *xdist)
    result.assert_outcomes(skipped=5)
    result.stdout.fnmatch_lines([
        "*mlperf skipped suites*",
        "test_suite.py: 4 benchmark cases skipped: resnet50.onnx is not in the cache and --mlperf-offline is set"
        " (-rs shows the whole reason)",
    ])
    assert "not a benchmark" not in result.stdout.str()  # only benchmark cases are summarised


def test_official_profile_on_a_users_model_says_what_to_do(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_s="""
        def test_own(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset, scenario="Offline")
        """
    )
    result = project.runpytest("-p", "no:cacheprovider", "--mlperf-profile=official")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "min duration not met" in text
    assert "--mlperf-profile official runs mlperf.conf unchanged (at least 600 s per performance case)" in text
    assert "--mlperf-user-conf" in text and "model_name=" in text
    line = text[text.index("`*.Offline.target_qps = ") + 1:]
    assert float(line.split("=", 1)[1].split("`", 1)[0]) > 1  # this run's figure, not mlperf.conf's default


def test_results_say_where_what_and_on_which_data(project: pytest.Pytester) -> None:
    import json
    import platform
    from pathlib import Path

    import jsonschema

    from pytest_mlperf.results import schema

    project.makepyfile(
        test_s="""
        def test_tiny(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset, scenario="Offline")
        """
    )
    results = project.path / "out" / "nested" / "results.json"
    project.runpytest(*FAST, f"--mlperf-results={results}").assert_outcomes(passed=1)
    doc = json.loads(results.read_text())
    jsonschema.validate(doc, schema())
    assert doc["machine"]["hostname"] == platform.node()
    assert set(doc["machine"]["cpu_frequency"]) == {"current_mhz", "max_mhz", "min_mhz", "governor"}
    packages = doc["packages"]
    from importlib.metadata import version

    assert packages["onnxruntime"] == version("onnxruntime") and packages["pytest-mlperf"] == version("pytest-mlperf")
    (run,) = doc["runs"]
    from tiny_conftest_module import make_dataset  # the same arrays as the project's tiny_dataset

    assert run["dataset"]["digest"] == make_dataset().digest
    assert make_dataset(wrong_labels=1).digest != make_dataset().digest
    # Logs are named relative to the results file, so the two travel as one artifact.
    assert not Path(run["log_dir"]).is_absolute()
    assert (results.parent / run["log_dir"] / "mlperf_log_detail.txt").is_file()
