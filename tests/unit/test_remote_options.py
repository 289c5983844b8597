"""The remote backend's URL form and options: what parses, and the errors that name the fix."""

from __future__ import annotations

import pytest

from pytest_mlperf.backends import BackendOptions, create_backend, engine_for
from pytest_mlperf.backends.remote import Endpoint, is_remote_model, parse_url
from pytest_mlperf.config import options_for
from pytest_mlperf.errors import ModelError


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("kserve-v2+http://host:8000/models/resnet50", Endpoint("http://host:8000", "resnet50")),
        ("kserve-v2+https://host/models/bert/versions/2", Endpoint("https://host", "bert", "2")),
        ("http://10.0.0.1:9000/serving/models/m/", Endpoint("http://10.0.0.1:9000/serving", "m")),
        ("kserve-v2+http://[::1]:8000/models/m", Endpoint("http://[::1]:8000", "m")),
        ("kserve-v2+grpc://host:8081/models/m/versions/3", Endpoint("grpc://host:8081", "m", "3")),
    ],
)
def test_urls_parse_to_endpoints(text: str, endpoint: Endpoint) -> None:
    parsed = parse_url(text, "the model URL")
    assert parsed == endpoint
    assert parsed.model_path == f"/v2/models/{endpoint.model}" + (
        f"/versions/{endpoint.version}" if endpoint.version else ""
    )


def test_the_display_form_round_trips() -> None:
    text = "kserve-v2+https://host:8443/models/bert/versions/2"
    assert str(parse_url(text, "x")) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kserve-v2+ftp://host/models/m", "is not a model server URL"),
        ("kserve-v2+http://host:8000/", "names no model"),
        ("kserve-v2+http://host:8000/v2/models", "names no model"),
        ("kserve-v2+http://user:secret@host/models/m", "the URL carries credentials"),
        ("kserve-v2+http://host/models/m?token=secret", "has a query or fragment"),
        ("kserve-v2+http://host:99999/models/m", "is not a valid URL"),
        ("kserve-v2+http://[::1/models/m", "is not a valid URL"),
        ("kserve-v2+grpc://host/models/m", "a gRPC URL needs a port and no path prefix"),
        ("kserve-v2+grpc://host:8081/prefix/models/m", "a gRPC URL needs a port and no path prefix"),
    ],
)
def test_bad_urls_are_refused_with_the_form(text: str, message: str) -> None:
    with pytest.raises(ModelError, match=message) as info:
        parse_url(text, "--mlperf-backend-option remote.url")
    assert str(info.value).startswith("--mlperf-backend-option remote.url: ")
    assert "secret" not in str(info.value)


def test_a_server_url_picks_the_remote_engine_whatever_the_default() -> None:
    assert is_remote_model("kserve-v2+http://h/models/m")
    assert engine_for("kserve-v2+http://h/models/m", "onnxruntime") == "remote"
    assert engine_for("model.onnx", "openvino") == "openvino"
    assert not is_remote_model("http://h/models/m")  # a plain URL could be a download: only the prefix selects


def test_remote_options_reach_only_the_remote_engine() -> None:
    pairs = (("remote.url", "kserve-v2+http://h/models/m"), ("outputs", "logits"))
    assert options_for("remote", pairs, ("onnxruntime", "remote")) == (("url", "kserve-v2+http://h/models/m"),
                                                                       ("outputs", "logits"))
    assert options_for("onnxruntime", pairs, ("onnxruntime", "remote")) == (("outputs", "logits"),)


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [
        ("timeout_s", "0", "give a number from 0.1 to 600"),
        ("timeout_s", "soon", "give a number from 0.1 to 600"),
        ("retries", "11", "give a whole number from 0 to 10"),
        ("concurrency", "0", "give a whole number from 1 to 1024"),
        ("binary", "maybe", "use one of auto, true, false"),
        ("insecure", "yes", "use one of false, true"),
    ],
)
def test_out_of_range_options_name_the_range(key: str, value: str, fix: str) -> None:
    options = BackendOptions(extra=(("url", "kserve-v2+http://127.0.0.1:9/models/m"), (key, value)))
    with pytest.raises(ModelError) as info:
        create_backend("remote", "unused.onnx", options)
    assert str(info.value) == f"--mlperf-backend-option remote.{key}={value}: {fix}"


def test_an_unknown_option_lists_the_ones_it_reads() -> None:
    with pytest.raises(ModelError, match=r"remote.*has no option 'token'.*token_env=ENV_VAR_NAME"):
        create_backend("remote", "kserve-v2+http://127.0.0.1:9/models/m", BackendOptions(extra=(("token", "x"),)))


def test_without_a_url_the_error_says_how_to_give_one() -> None:
    with pytest.raises(ModelError, match=r"needs a model server URL, not model.onnx: pass mlperf.run\("):
        create_backend("remote", "model.onnx", BackendOptions())
