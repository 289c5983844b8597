"""The plugin's surface through pytester: options, markers, user benchmarks, results and failure handling."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from pytest_mlperf.results import schema
from tests.conftest import FAST

USER_TEST = """
import pytest

@pytest.mark.mlperf(accuracy=0.95, latency_ms=500, min_qps=1)
def test_tiny(mlperf, mlperf_scenario, mlperf_mode, tiny_model, tiny_dataset):
    result = mlperf.run(tiny_model, tiny_dataset)
    assert result.scenario == mlperf_scenario
    if mlperf_mode == "accuracy":
        assert result.metrics.accuracy["top1"] == 1.0
    else:
        assert result.valid
"""


def results_of(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "mlperf-results" / "results.json").read_text())


def test_help_lists_every_option_with_its_ini_twin(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*MLPerf LoadGen benchmarks (pytest-mlperf)*", "*--mlperf-scenarios=LIST*"])
    from pytest_mlperf.config import OPTIONS

    # argparse wraps help at spaces and hyphens, so compare with all whitespace removed.
    text = "".join(result.stdout.str().split())

    def compact(words: str) -> str:
        return "".join(words.split())

    for spec in OPTIONS:
        # The flag, its whole help ending with the declared default, then its ini twin, in one entry.
        assert compact(f"{spec.flag}") in text
        assert compact(f"{spec.help} [ini: {spec.ini}]") in text, spec.flag
        assert compact(f"Default: {spec.default_text}. [ini: {spec.ini}]") in text, spec.flag
        # The ini key's own entry points back at the flag.
        assert compact(f"{spec.ini} (") in text, spec.ini
        assert compact(f"Default for {spec.flag}") in text, spec.ini


def test_user_benchmark_runs_all_scenarios_and_modes(project: pytest.Pytester) -> None:
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest(*FAST)
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*mlperf results*", "*test_tiny?Server-performance?*Server*VALID*PASS*"])
    doc = results_of(project)
    jsonschema.validate(doc, schema())
    assert doc["status"] == "complete"
    assert {(r["scenario"], r["mode"]) for r in doc["runs"]} == {
        (s, m) for s in ("SingleStream", "MultiStream", "Server", "Offline") for m in ("performance", "accuracy")
    }
    for run in doc["runs"]:
        log_dir = project.path / "mlperf-results" / run["log_dir"]
        assert not Path(run["log_dir"]).is_absolute()  # portable with the results file
        assert (log_dir / "mlperf_log_detail.txt").is_file()
        if run["mode"] == "performance":
            assert run["settings"]["min_duration_ms"] == 200
        if run["mode"] == "accuracy":
            assert run["metrics"]["accuracy"] == {"top1": 1.0, "count": 64.0}
            assert (log_dir / "mlperf_log_accuracy.json").stat().st_size > 100
        else:
            assert run["valid"] is True
            if run["scenario"] == "MultiStream":  # LoadGen reports no throughput for MultiStream
                assert run["metrics"]["qps"] is None
            else:
                assert run["metrics"]["qps"] > 0


def test_scenario_and_mode_options_select_cases(project: pytest.Pytester) -> None:
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest("--mlperf-scenarios=offline,Server", "--mlperf-mode=accuracy", "--co", "-q")
    result.stdout.fnmatch_lines(
        ["*test_tiny?Offline-accuracy?*", "*test_tiny?Server-accuracy?*", "*2 tests collected*"]
    )


def test_ini_twins_are_read(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nmlperf_scenarios = SingleStream\nmlperf_mode = performance\n")
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest(*FAST, "--co", "-q")
    result.stdout.fnmatch_lines(["*test_tiny?SingleStream-performance?*", "*1 test collected*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--mlperf-scenarios=Batch"],
            "*unknown scenario 'Batch'; valid scenarios are SingleStream, MultiStream, Server, Offline*",
        ),
        (["--mlperf-mode=fast"], "*unknown mode 'fast'; valid modes are performance, accuracy, both*"),
        (["--mlperf-profile=quick"], "*unknown profile 'quick'; valid profiles are smoke, official*"),
        (["--mlperf-mode=accuracy", "--mlperf-min-duration-ms=10"], "*only affect performance runs*"),
        (["--mlperf-batch-size=0"], "*--mlperf-batch-size: 0 is not valid; it must be from 1 to 4096*"),
        (["--mlperf-accuracy-target=150"], "*--mlperf-accuracy-target: 150 is not valid; it must be from 0 to 100*"),
        (["--mlperf-backend=jax"], "*unknown backend 'jax'; valid backends are onnxruntime, openvino, litert, *noop*"),
    ],
)
def test_bad_options_are_usage_errors(project: pytest.Pytester, args: list[str], message: str) -> None:
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_value_names_the_key(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nmlperf_min_duration_ms = soon\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option mlperf_min_duration_ms = 'soon' is not a valid int*"])


def test_malformed_user_conf_names_file_and_line(project: pytest.Pytester) -> None:
    conf = project.path / "user.conf"
    conf.write_text("# tuned\n*.Offline.target_qps = 100\nresnet50.Server.target_qps=5\n")
    result = project.runpytest(f"--mlperf-user-conf={conf}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{conf}:3: malformed line 'resnet50.Server.target_qps=5'*spaces around '='*"])


def test_user_conf_is_applied(project: pytest.Pytester) -> None:
    conf = project.path / "user.conf"
    conf.write_text("*.Offline.min_duration = 321\n")
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest(
        "--mlperf-profile=official", f"--mlperf-user-conf={conf}", "--mlperf-scenarios=Offline",
        "--mlperf-mode=accuracy", "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)
    run = results_of(project)["runs"][0]
    assert run["profile"] == "official"
    assert run["settings"]["min_duration_ms"] == 321


def test_unknown_marker_argument_is_refused(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.mlperf(latency=3)
        def test_x(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset, scenario="Offline")
        """
    )
    result = project.runpytest(*FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # at collection, before any case runs
    result.stderr.fnmatch_lines(
        ["*unknown mlperf marker argument(s) latency; allowed: accuracy, latency_ms, min_qps, model_name*"]
    )


def test_suite_level_marker_defaults_merge_with_the_test_marker(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.mlperf(accuracy=0.5, latency_ms=1000, model_name="tiny")

        @pytest.mark.mlperf(latency_ms=900)
        def test_x(mlperf, tiny_model, tiny_dataset):
            result = mlperf.run(tiny_model, tiny_dataset, scenario="SingleStream")
            assert result.thresholds["accuracy"] == 0.5  # from the module
            assert result.thresholds["latency_ms"] == 900  # the test's own marker wins
            assert result.model == "tiny"
        """
    )
    project.runpytest(*FAST).assert_outcomes(passed=1)


def test_unmet_thresholds_fail_with_every_reason(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        from conftest import make_dataset

        @pytest.mark.mlperf(accuracy=0.99)
        def test_acc(mlperf, tiny_model):
            mlperf.run(tiny_model, make_dataset(wrong_labels=8), scenario="Offline", mode="accuracy")

        def test_perf(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset, scenario="SingleStream", latency_ms=0.000001, min_qps=1e12)
        """
    )
    result = project.runpytest(*FAST, "--mlperf-accuracy-target=98")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*top-1 accuracy 87.50 % < target 98.00 % (on 64 samples)*",
        "*p90 latency * ms > bound 1e-06 ms*",
        "*throughput * samples/s < floor 1,000,000,000,000.0 samples/s*",
    ])
    runs = results_of(project)["runs"]
    assert [r["passed"] for r in runs] == [False, False]
    assert runs[0]["thresholds"]["accuracy"] == 0.98


def test_missing_model_names_the_path(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_x(mlperf, tiny_dataset):
            mlperf.run("models/nowhere.onnx", tiny_dataset, scenario="Offline")
        """
    )
    result = project.runpytest(*FAST)
    result.assert_outcomes(failed=1)
    # The message names the file and the fix, without a traceback through the plugin's frames.
    result.stdout.fnmatch_lines(["Offline performance: model file not found: models/nowhere.onnx*"])
    result.stdout.no_fnmatch_line("*raise ModelError*")


def test_corrupt_model_names_the_path(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_x(mlperf, tiny_dataset, tmp_path):
            bad = tmp_path / "broken.onnx"
            bad.write_bytes(b"this is not protobuf" * 10)
            mlperf.run(bad, tiny_dataset, scenario="Offline")
        """
    )
    result = project.runpytest(*FAST)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["Offline performance: onnxruntime could not load */broken.onnx*provision it again*"])
    result.stdout.no_fnmatch_line("*raise ModelError*")


@pytest.mark.parametrize("scenario", ["SingleStream", "Server", "Offline"])
def test_inference_exception_fails_case_and_next_case_runs(project: pytest.Pytester, scenario: str) -> None:
    project.makepyfile(
        f"""
        import numpy as np
        from conftest import make_dataset

        class Poisoned(type(make_dataset())):
            # Sample 40 comes back with 5 features; calibration only touches the first 32 samples,
            # so onnxruntime raises inside the SUT while LoadGen is running.
            def one(self, index):
                out = super().one(index)
                return np.zeros((1, 5), np.float32) if index == 40 else out

            def batch(self, indices):
                out = super().batch(indices)
                return np.zeros((len(indices), 5), np.float32) if 40 in list(indices) else out

        def test_broken(mlperf, tiny_model):
            base = make_dataset()
            mlperf.run(tiny_model, Poisoned(base.inputs, base.labels, name="poisoned"), scenario="{scenario}")

        def test_next(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset, scenario="{scenario}")
        """
    )
    result = project.runpytest(*FAST)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "*InvalidArgument*",  # the original onnxruntime error, chained
        "*The above exception was the direct cause of the following exception*",
        "*InferenceError: *test_broken: inference or sample loading raised during the " + scenario
        + " performance run*",
    ])
    runs = results_of(project)["runs"]
    assert runs[0]["passed"] is False
    assert runs[0]["reasons"][0].startswith("inference failed: ")
    assert runs[1]["passed"] is True


def test_dataset_load_failure_inside_loadgen_fails_the_case_cleanly(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        from conftest import make_dataset

        class Unloadable(type(make_dataset())):
            def load(self, indices):
                if len(indices) > 32:  # LoadGen's load, not the harness's warm-up of the first samples
                    raise OSError("disk vanished while loading samples")
                super().load(indices)

        def test_broken(mlperf, tiny_model):
            base = make_dataset()
            mlperf.run(tiny_model, Unloadable(base.inputs, base.labels, name="unloadable"), scenario="Offline")

        def test_next(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset, scenario="Offline")
        """
    )
    result = project.runpytest(*FAST)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*OSError: disk vanished while loading samples*", "*InferenceError*test_broken*"])


def test_keyboard_interrupt_keeps_finished_runs(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import os, signal, threading
        from conftest import make_dataset
        from pytest_mlperf import Classification

        # Ctrl-C as in a terminal, even where this process was started with SIGINT ignored (a background job).
        signal.signal(signal.SIGINT, signal.default_int_handler)

        class Interrupting(Classification):
            calls = 0
            def postprocess(self, outputs):
                # Counted in LoadGen's run only (off the main thread), not in the warm-up's timed calls, so that
                # the interrupt lands inside a run however many calls the calibration makes on a busy machine.
                if threading.current_thread() is not threading.main_thread():
                    Interrupting.calls += 1
                    if Interrupting.calls == 50:
                        os.kill(os.getpid(), signal.SIGINT)
                return super().postprocess(outputs)

        def test_first(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset, scenario="Offline")

        def test_second(mlperf, tiny_model):
            base = make_dataset()
            ds = type(base)(base.inputs, base.labels, name="interrupting", task=Interrupting(topk=1))
            mlperf.run(tiny_model, ds, scenario="SingleStream", min_qps=0)

        def test_third(mlperf, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset, scenario="Offline")
        """
    )
    result = project.runpytest_subprocess(*FAST, "--mlperf-min-duration-ms=1500", timeout=120)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    doc = results_of(project)
    jsonschema.validate(doc, schema())
    assert doc["status"] == "interrupted"
    assert [r["id"].split("::")[-1] for r in doc["runs"]] == ["test_first"]


def test_xdist_pins_workers_to_disjoint_cores(project: pytest.Pytester) -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("needs two usable cores to pin two workers")
    project.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_perf(mlperf, tiny_model, tiny_dataset, n):
            mlperf.run(tiny_model, tiny_dataset, scenario="Offline")
        """
    )
    result = project.runpytest(*FAST, "-n", "2")
    result.assert_outcomes(passed=4)
    runs = results_of(project)["runs"]
    assert len(runs) == 4
    affinities = {tuple(r["backend_options"]["cpu_affinity"]) for r in runs}
    assert len(affinities) == 2
    first, second = affinities
    assert not set(first) & set(second)


def test_xdist_with_more_workers_than_cores_is_refused(project: pytest.Pytester) -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    result = project.runpytest("-n", str(cores + 1))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*-n {cores + 1} starts more xdist workers than the {cores} usable cores*"])
