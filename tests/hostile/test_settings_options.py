"""Hostile option values: every numeric option has a declared range, and a value outside it (or not finite), an
unknown execution provider or a batch that cannot fit is a usage error before any case runs."""

from __future__ import annotations

import pytest

from pytest_mlperf.config import OPTIONS
from pytest_mlperf.loadgen.limits import fmt_number

USER_TEST = """
def test_tiny(mlperf, tiny_model, tiny_dataset):
    assert mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="performance").valid
"""


def assert_usage_error(result: pytest.RunResult, *patterns: str) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    assert "passed" not in text and "failed" not in text, "a case ran before the refusal"
    result.stderr.fnmatch_lines(list(patterns))


NUMERIC = [spec for spec in OPTIONS if spec.bound is not None]


def test_every_numeric_option_declares_its_range() -> None:
    assert {spec.name for spec in OPTIONS if spec.kind in ("int", "float")} <= {spec.name for spec in NUMERIC}
    assert {"batch-size", "threads", "workers", "target-qps", "min-duration-ms", "min-query-count"} <= {
        spec.name for spec in NUMERIC
    }


@pytest.mark.parametrize("spec", NUMERIC, ids=[spec.name for spec in NUMERIC])
@pytest.mark.parametrize("where", ["above", "below", "nan"])
def test_a_value_outside_the_declared_range_is_a_usage_error(project: pytest.Pytester, spec, where: str) -> None:
    assert spec.bound is not None
    value = {"above": spec.bound.high * 10 + 1, "below": spec.bound.low - 1, "nan": float("nan")}[where]
    if spec.kind == "int" and where == "nan":
        value = "nan"  # argparse refuses it as an int: still a usage error, naming the option
    elif spec.kind == "int":
        value = int(value)
    else:
        value = float(value)  # as argparse hands it over, and the message shows it
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest(f"{spec.flag}={value}", "-p", "no:cacheprovider")
    if value == "nan":
        assert_usage_error(result, f"*{spec.flag}: invalid int value: 'nan'*")
    else:
        assert_usage_error(result, f"*{spec.flag}: {fmt_number(value)} is not valid; it must be {spec.bound.text()}*")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Was OOM-killed with no message.
        (["--mlperf-batch-size=99999999999"], "*--mlperf-batch-size: 99999999999 is not valid; it must be from 1 "
         "to 4096 (a batch is one tensor in memory*"),
        (["--mlperf-threads=100000"], "*--mlperf-threads: 100000 is not valid; it must be from 0 to 1024 (more "
         "threads than cores*"),
        (["--mlperf-target-qps=inf"], "*--mlperf-target-qps: inf is not valid; it must be from 0.001 to "
         "1000000000 QPS*"),
        (["--mlperf-target-qps=-5"], "*--mlperf-target-qps: -5 is not valid*"),
        (["--mlperf-latency-bound-ms=0"], "*--mlperf-latency-bound-ms: 0 is not valid; it must be above 0 "
         "to 3600000 ms*"),
        (["--mlperf-repeat=100000"], "*--mlperf-repeat: 100000 is not valid; it must be from 1 to 1000*"),
        (["--mlperf-providers=FooExecutionProvider"], "*--mlperf-providers: unknown execution provider "
         "'FooExecutionProvider'; onnxruntime * here has *CPUExecutionProvider*"),
        (["--mlperf-providers=cpuexecutionprovider"], "*unknown execution provider 'cpuexecutionprovider'*"
         "case-sensitive*"),
        (["--mlperf-backends=onnxruntime", "--mlperf-providers=NopeProvider"], "*unknown execution provider*"),
    ],
)
def test_named_bad_values_are_usage_errors_before_any_case(
    project: pytest.Pytester, args: list[str], message: str
) -> None:
    project.makepyfile(test_user=USER_TEST)
    assert_usage_error(project.runpytest(*args, "-p", "no:cacheprovider"), message)


def test_a_provider_missing_from_this_build_is_a_usage_error(project: pytest.Pytester) -> None:
    import onnxruntime as ort

    absent = [p for p in ort.get_all_providers() if p not in ort.get_available_providers()]
    if not absent:
        pytest.skip("this onnxruntime build has every provider it knows")
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest(f"--mlperf-providers={absent[0]}", "-p", "no:cacheprovider")
    assert_usage_error(result, f"*--mlperf-providers: {absent[0]} is not in this onnxruntime * build*")


def test_the_ini_twin_is_held_to_the_same_range(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nmlperf_threads = 100000\n")
    project.makepyfile(test_user=USER_TEST)
    assert_usage_error(project.runpytest("-p", "no:cacheprovider"), "*--mlperf-threads: 100000 is not valid*")


def test_a_settings_combination_loadgen_cannot_build_fails_the_case_before_loadgen_starts(
    project: pytest.Pytester,
) -> None:
    """Each value in range, together more samples than LoadGen can hold: the case fails with the numbers."""
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest_subprocess(
        "--mlperf-target-qps=1000000000", "--mlperf-min-duration-ms=600000", "-p", "no:cacheprovider"
    )
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert "INTERNALERROR" not in text
    result.stdout.fnmatch_lines(["*LoadGen was not started: LoadGen would build 6.6e+11 samples before the run*"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("threads=100000", "*--mlperf-backend-option: threads=100000 is not valid; a thread count must be a whole "
         "number from 0 to 1024*"),
        ("litert.threads=-1", "*--mlperf-backend-option: litert.threads=-1 is not valid*"),
        ("tensorflow.inter_op_threads=²", "*--mlperf-backend-option: tensorflow.inter_op_threads=² is not valid*"),
    ],
)
def test_engine_thread_counts_are_bounded_at_configure_time(project: pytest.Pytester, value: str, message: str) -> None:
    project.makepyfile(test_user=USER_TEST)
    assert_usage_error(project.runpytest(f"--mlperf-backend-option={value}", "-p", "no:cacheprovider"), message)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("latency_ms=float('nan')", "*test_user.py::test_tiny: mlperf marker latency_ms: nan is not valid; it must be "
         "above 0 to 3600000 ms*"),
        ("min_qps=-1", "*mlperf marker min_qps: -1 is not valid; it must be a finite number 0 or more QPS*"),
        ("latency_ms={'Offline': float('inf')}", "*mlperf marker latency_ms: inf is not valid*"),
        ("model_name='resnet 50'", "*mlperf marker model_name='resnet 50' is not a model name LoadGen can match*"),
    ],
)
def test_marker_thresholds_have_the_options_ranges(project: pytest.Pytester, marker: str, message: str) -> None:
    project.makepyfile(
        test_user=f"""
import pytest

@pytest.mark.mlperf({marker})
def test_tiny(mlperf, tiny_model, tiny_dataset):
    mlperf.run(tiny_model, tiny_dataset, scenario="Offline", mode="performance")
"""
    )
    result = project.runpytest("-p", "no:cacheprovider")
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "INTERNALERROR" not in text and "Traceback" not in text
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("threads=1,100000", "*--mlperf-sweep: threads: 100000 is not valid; it must be from 0 to 1024*"),
        ("batch_size=8,99999999999", "*--mlperf-sweep: batch_size: 99999999999 is not valid; it must be from 1 to "
         "4096*"),
        ("litert.threads=2,100000", "*--mlperf-sweep: litert.threads=100000 is not valid; a thread count*"),
    ],
)
def test_a_sweep_is_held_to_the_options_ranges(project: pytest.Pytester, sweep: str, message: str) -> None:
    project.makepyfile(test_user=USER_TEST)
    assert_usage_error(project.runpytest(f"--mlperf-sweep={sweep}", "-p", "no:cacheprovider"), message)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("openvino.precision=f64", "*openvino.precision=f64: use one of f32, bf16, f16, default*"),
        ("openvino.hint=fastest", "*openvino.hint=fastest: use one of auto, LATENCY, THROUGHPUT*"),
        ("openvino.devcie=CPU", "*openvino.devcie=...: the openvino backend has no option 'devcie'; it reads: "
         "device=*"),
        ("litert.delegate=/nonexistent/libdelegate.so", "*litert.delegate=/nonexistent/libdelegate.so: not xnnpack "
         "or none, and no delegate library exists at that path*"),
        ("torch.mode=fast", "*torch.mode=fast: use one of eager, scripted, compiled*"),
        ("torch.threads=0", "*torch.threads=0: give a whole number of intra-op threads, 1 or more*"),
        ("torch.device=tpu", "*torch.device=tpu: use cpu, cuda or cuda:N*"),
        ("torch.model_class=resnet50", "*torch.model_class=resnet50: give it as package.module:Class*"),
        ("tensorflow.data_format=CHW", "*tensorflow.data_format=CHW: use one of NCHW, NHWC*"),
        ("tvm.cache=sometimes", "*tvm.cache=sometimes: use one of on, off*"),
        ("tensorrt.precision=fp8", "*tensorrt.precision=fp8: use one of fp32, fp16, int8*"),
        ("tensorrt.workspace_mib=0", "*tensorrt.workspace_mib=0: give a whole number of MiB, 1 or more*"),
        ("remote.timeout_s=nan", "*remote.timeout_s=nan: give a number from 0.1 to 600*"),
        ("remote.token_env=MY-TOKEN", "*remote.token_env=MY-TOKEN: give the name of the environment variable*"),
        ("precision=fp16", "*precision=...: the onnxruntime backend has no option 'precision'; it reads: outputs=*"),
        ("nosuch.x=1", "*nosuch.x=1: no engine is called 'nosuch'; ENGINE.KEY=VALUE reaches one engine (onnxruntime, "
         "openvino, *"),
    ],
)
def test_engine_options_are_checked_before_any_case_runs(project: pytest.Pytester, value: str, message: str) -> None:
    """A bad engine option is one usage error at startup, not one failure per case; the engine's package need not
    be installed for its options to be checked (tensorrt is not, on CI)."""
    project.makepyfile(test_user=USER_TEST)
    assert_usage_error(project.runpytest(f"--mlperf-backend-option={value}", "-p", "no:cacheprovider"), message)


def test_a_swept_engine_option_is_checked_before_any_case_runs(project: pytest.Pytester) -> None:
    project.makepyfile(test_user=USER_TEST)
    assert_usage_error(
        project.runpytest("--mlperf-sweep=openvino.hint=LATENCY,fastest", "-p", "no:cacheprovider"),
        "*--mlperf-sweep openvino.hint=fastest: use one of auto, LATENCY, THROUGHPUT*",
    )


def test_options_for_an_engine_that_does_not_run_are_left_to_it(project: pytest.Pytester) -> None:
    """An ini file may hold options for every engine a team uses; a run on one engine takes its own and leaves the
    others' (still checked, so a typo there is found too)."""
    project.makeini("[pytest]\nmlperf_backend_option =\n    openvino.precision=f32\n    torch.mode=scripted\n")
    project.makepyfile(test_user=USER_TEST)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
