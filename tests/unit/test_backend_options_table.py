"""The engine option table: one entry per built-in engine, and its checks as pure functions."""

from __future__ import annotations

import pytest

from pytest_mlperf.backends import ENGINES
from pytest_mlperf.backends.base import BackendOptions
from pytest_mlperf.backends.options import ENGINE_KEYS, check_options, problem, session_problem
from pytest_mlperf.errors import ModelError


def test_every_built_in_engine_that_reads_options_has_an_entry() -> None:
    assert set(ENGINE_KEYS) == set(ENGINES) - {"noop"}


@pytest.mark.parametrize(
    ("engine", "key", "value"),
    [
        ("openvino", "hint", "latency"),  # case-insensitive, as OpenVINO's own names are upper case
        ("tensorflow", "data_format", "nhwc"),
        ("tvm", "cache", "OFF"),
        ("torch", "device", "cuda:1"),
        ("torch", "model_class", "torchvision.models:resnet50"),
        ("remote", "timeout_s", "0.1"),
        ("remote", "concurrency", "1024"),
        ("litert", "threads", "0"),
        ("tensorrt", "device", "0"),
    ],
)
def test_values_the_engines_take_pass(engine: str, key: str, value: str) -> None:
    assert problem(engine, key, value) is None


@pytest.mark.parametrize(
    ("engine", "key", "value"),
    [
        ("remote", "timeout_s", "inf"),
        ("remote", "concurrency", "1025"),
        ("remote", "retries", "1e1"),
        ("litert", "threads", "²"),  # a digit to str.isdigit, not to int()
        ("litert", "threads", " 2"),
        ("tensorrt", "device", "-1"),
        ("torch", "device", "cuda:"),
        ("onnxruntime", "outputs", " , "),
    ],
)
def test_values_the_engines_refuse_name_the_option(engine: str, key: str, value: str) -> None:
    found = problem(engine, key, value)
    assert found is not None and found.startswith(f"--mlperf-backend-option {engine}.{key}={value}: ")


def test_an_engine_made_outside_pytest_checks_its_options_too() -> None:
    with pytest.raises(ModelError, match=r"tensorrt\.precision=fp64: use one of fp32, fp16, int8"):
        check_options("tensorrt", BackendOptions(extra=(("precision", "fp64"),)))


def test_unprefixed_keys_are_checked_against_the_engines_that_run() -> None:
    known = (*ENGINES, "myengine")
    pairs = [("threads", "0")]
    assert session_problem(pairs, ("litert", "tensorflow"), known, "--mlperf-backend-option") is None
    found = session_problem(pairs, ("litert", "torch"), known, "--mlperf-backend-option")
    assert found == "--mlperf-backend-option torch.threads=0: give a whole number of intra-op threads, 1 or more"
    # A key only a model server reads is left to the remote engine, which a server URL picks per case.
    assert session_problem([("timeout_s", "5")], ("onnxruntime",), known, "--mlperf-backend-option") is None
    # A plugin's engine checks its own options, prefixed or not, running or not.
    assert session_problem([("flavour", "x")], ("myengine",), known, "--mlperf-backend-option") is None
    assert session_problem([("myengine.flavour", "x")], ("onnxruntime",), known, "--mlperf-sweep") is None
    assert session_problem([("flavour", "x")], ("myengine", "onnxruntime"), known, "--mlperf-sweep") == (
        "--mlperf-sweep flavour=...: the onnxruntime backend has no option 'flavour'; it reads: outputs=NAME[,NAME...] "
        "(the model outputs to fetch)"
    )


def test_a_prefix_that_names_no_engine_is_refused() -> None:
    known = (*ENGINES, "myengine")
    found = session_problem([("openvnio.device", "CPU")], ("onnxruntime",), known, "--mlperf-backend-option")
    assert found is not None
    assert found.startswith("--mlperf-backend-option openvnio.device=CPU: no engine is called 'openvnio'")
    assert "myengine" in found and "openvino" in found


def test_the_table_lists_exactly_the_keys_each_engine_reads() -> None:
    """An engine that read a key the table lacks would have it refused at startup; a key in the table that no
    engine reads would be accepted and then ignored. The engines' sources are read, not imported (most engines are
    optional)."""
    import re
    from pathlib import Path

    import pytest_mlperf.backends as package

    reads = re.compile(r'(?:options\.option|whole_option\(options,|_number\(options,|_flag\(options,)\(?\s*"(\w+)"')
    for engine, keys in ENGINE_KEYS.items():
        source = (Path(package.__file__).parent / f"{engine}.py").read_text()
        assert set(reads.findall(source)) == {key.name for key in keys}, engine
