"""The remote backend against a real Open Inference Protocol server (KServe's ModelServer) on 127.0.0.1.

The digits model served remotely scores as it does locally in every scenario; a server that dies, errs, returns
malformed tensors or stalls mid-run fails its case naming the URL and the error, and the next case runs; the bearer
token never reaches the results, the LoadGen logs or pytest's output.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import urllib3

from pytest_mlperf.backends import BackendOptions, create_backend
from pytest_mlperf.backends.remote import RemoteBackend
from pytest_mlperf.errors import InferenceError, MLPerfWarning, ModelError
from pytest_mlperf.models.digits import ensure_digits_model, load_digits
from tests.e2e.engine_checks import run_digits_suite, runs_of, top1_by_engine
from tests.e2e.remote_server import OipServer, free_port, oip_server, self_signed_cert, server_python

SCENARIOS = {"SingleStream", "MultiStream", "Server", "Offline"}
TOKEN = "tok-7f3a9c1e5b2d4680-never-logged"


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    server_python()  # skip before training the model when there is no server environment
    return ensure_digits_model(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def digits_server(digits_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OipServer]:
    with oip_server(tmp_path_factory.mktemp("server"), "--onnx", str(digits_onnx), grpc=True) as server:
        yield server


def remote(url: str, **options: str) -> RemoteBackend:
    backend = create_backend("remote", url, BackendOptions(extra=tuple(options.items())))
    assert isinstance(backend, RemoteBackend)
    return backend


def test_logits_match_onnxruntime_over_binary_json_and_grpc(digits_server: OipServer, digits_onnx: Path) -> None:
    import onnxruntime as ort

    images = load_digits()[0]
    expected = ort.InferenceSession(str(digits_onnx)).run(None, {"input": images[:40]})[0]
    for url, binary, protocol in ((digits_server.url, "auto", "rest+binary"), (digits_server.url, "false", "rest+json"),
                                  (digits_server.grpc_url, "auto", "grpc")):
        backend = remote(url, binary=binary)
        try:
            backend.warmup(images[:1])
            for rows in (slice(0, 1), slice(0, 40), slice(3, 10)):
                np.testing.assert_array_equal(backend.run(images[rows])["logits"], expected[rows])
            described = backend.describe()
            assert described["protocol"] == protocol
            assert described["url"] == url
            assert described["server"] == {"name": "kserve", "version": described["server"]["version"]}
            assert backend.model_identity.startswith("digits version default")
        finally:
            backend.close()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_digits_served_remotely_scores_as_locally_in_every_scenario(
    pytester: pytest.Pytester, tmp_path: Path, digits_server: OipServer, transport: str
) -> None:
    url = digits_server.url if transport == "rest" else digits_server.grpc_url
    doc = run_digits_suite(
        pytester, tmp_path, "remote", f"--mlperf-backend-option=remote.url={url}",
        "--mlperf-backend-option=remote.digest=sha256:feedbeef",
    )
    top1 = top1_by_engine(doc)
    assert top1["remote"] == top1["onnxruntime"]
    runs = runs_of(doc, "remote")
    assert {run["scenario"] for run in runs} == SCENARIOS
    for run in runs:
        # The suite's local file is not what ran: the fingerprint holds what the server reports, and the digest.
        assert run["model_sha256"] is None
        assert run["model_identity"] == "digits version default on unknown platform digest sha256:feedbeef"
        assert run["backend_options"]["url"] == url
        assert run["backend_options"]["protocol"] == {"rest": "rest+binary", "grpc": "grpc"}[transport]
    assert all(run["model_sha256"] for run in runs_of(doc, "onnxruntime"))


def test_a_dataset_that_does_not_fit_the_served_model_names_both(digits_server: OipServer) -> None:
    backend = remote(digits_server.url)
    try:
        flat = load_digits()[0].reshape(-1, 64)
        with pytest.raises(ModelError) as info:
            backend.warmup(flat[:1])
        message = str(info.value)
        assert "the dataset gives 'input' FP32 [64] per sample" in message
        assert f"{digits_server.url} expects 'input' FP32 [1,8,8]" in message
    finally:
        backend.close()


def test_a_server_that_is_down_or_serves_another_model_fails_naming_the_url(digits_server: OipServer) -> None:
    down = f"kserve-v2+http://127.0.0.1:{free_port()}/models/digits"
    with pytest.raises(ModelError) as info:
        remote(down, retries="1", timeout_s="5")
    assert str(info.value).startswith(f"{down}: GET /v2/health/ready failed after 1 retries")
    assert "Connection refused" in str(info.value) or "NewConnectionError" in str(info.value)

    other = digits_server.url.replace("/models/digits", "/models/resnet50")
    with pytest.raises(ModelError) as info:
        remote(other)
    assert str(info.value).startswith(f"{other}: model 'resnet50''s readiness (GET /v2/models/resnet50/ready) "
                                      "answered HTTP 404")


FAULT_TESTS = textwrap.dedent(
    """
    import os
    import pytest
    from pytest_mlperf import ArrayDataset, Classification
    from pytest_mlperf.models.digits import load_digits, split_indices

    @pytest.fixture(scope="module")
    def data():
        images, labels = load_digits()
        return ArrayDataset(images, labels, name="digits", task=Classification())

    @pytest.mark.parametrize("fault", ["exit", "error", "malformed", "slow"])
    def test_remote(mlperf, data, fault):
        mlperf.run(os.environ["OIP_URL_" + fault.upper()], data, scenario="Offline", mode="performance")

    def test_local_runs_after(mlperf, data):
        result = mlperf.run(os.environ["DIGITS_ONNX"], data, scenario="Offline", mode="accuracy")
        assert result.metrics.accuracy["top1"] > 0.9
    """
)


def test_a_server_failing_mid_run_fails_the_case_and_the_next_case_runs(
    pytester: pytest.Pytester, tmp_path: Path, digits_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each fault starts after the warm-up and calibration requests, inside LoadGen's run.
    faults = {
        "exit": ("--exit-after", "60"),
        "error": ("--fail-after", "60"),
        "malformed": ("--malformed-after", "60"),
        "slow": ("--sleep-after", "60", "--sleep-s", "120"),
    }
    servers: dict[str, OipServer] = {}
    with ExitStack() as stack:
        for fault, args in faults.items():
            servers[fault] = stack.enter_context(oip_server(tmp_path / "servers", "--onnx", str(digits_onnx), *args))
            monkeypatch.setenv(f"OIP_URL_{fault.upper()}", servers[fault].url)
        monkeypatch.setenv("DIGITS_ONNX", str(digits_onnx))
        pytester.makepyfile(test_faults=FAULT_TESTS)
        results = tmp_path / "results.json"
        result = pytester.runpytest_subprocess(
            f"--mlperf-results={results}", f"--mlperf-log-dir={tmp_path / 'logs'}",
            "--mlperf-backend-option=remote.timeout_s=5", "--mlperf-backend-option=remote.retries=1",
            "-p", "no:cacheprovider", timeout=600,
        )
    result.assert_outcomes(failed=4, passed=1)
    output = result.stdout.str()
    expected = {
        "exit": "failed after 1 retries",
        "error": "answered HTTP 500",
        "malformed": "gave a malformed inference response: output 'logits' has shape",
        "slow": "Read timed out",
    }
    doc = json.loads(results.read_text())
    by_fault = {run["id"].split("[")[-1].rstrip("]"): run for run in doc["runs"] if "[" in run["id"]}
    for fault, text in expected.items():
        assert f"{servers[fault].url}: POST /v2/models/digits/infer" in output, fault
        assert text in output, fault
        run = by_fault[fault]
        # The failure came from inside LoadGen's run (mid-run), not from the warm-up before it.
        assert run["reasons"][0].startswith("inference failed: "), run["reasons"]
        assert servers[fault].url in run["reasons"][0]
        assert run["valid"] is False
    local = [run for run in doc["runs"] if run["id"].endswith("test_local_runs_after")]
    assert local and local[0]["passed"] is True


TOKEN_TESTS = textwrap.dedent(
    """
    import os
    import pytest
    from pytest_mlperf import ArrayDataset, Classification
    from pytest_mlperf.models.digits import load_digits, split_indices

    @pytest.mark.parametrize("scenario", ["SingleStream", "Server"])
    def test_remote(mlperf, scenario):
        images, labels = load_digits()
        _, held_out = split_indices(labels)
        data = ArrayDataset(images[held_out], labels[held_out], name="digits", task=Classification())
        result = mlperf.run(os.environ["OIP_URL"], data, scenario=scenario, mode="accuracy")
        assert result.metrics.accuracy["top1"] > 0.9
        assert result.backend == "remote"
    """
)


def test_a_bearer_token_authorises_and_is_never_written_anywhere(
    pytester: pytest.Pytester, tmp_path: Path, digits_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with oip_server(tmp_path / "server", "--onnx", str(digits_onnx), env={"OIP_SERVER_TOKEN": TOKEN}) as server:
        monkeypatch.setenv("OIP_URL", server.url)
        pytester.makepyfile(test_token=TOKEN_TESTS)
        results, logs = tmp_path / "results.json", tmp_path / "logs"
        args = [f"--mlperf-results={results}", f"--mlperf-log-dir={logs}", "-p", "no:cacheprovider", "-v", "-rA",
                "--mlperf-backend-option=remote.token_env=OIP_TEST_TOKEN"]

        monkeypatch.setenv("OIP_TEST_TOKEN", "wrong-" + TOKEN)
        refused = pytester.runpytest_subprocess(*args, timeout=600)
        refused.assert_outcomes(failed=2)
        refused.stdout.fnmatch_lines([f"*{server.url}: POST /v2/models/digits/infer answered HTTP 401*"])

        monkeypatch.setenv("OIP_TEST_TOKEN", TOKEN)
        result = pytester.runpytest_subprocess(*args, timeout=600)
        result.assert_outcomes(passed=2)
    written = [results, *(path for path in logs.rglob("*") if path.is_file())]
    assert len(written) > 4
    for output in (refused, result):
        assert TOKEN not in output.stdout.str() + output.stderr.str()
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path
    doc = json.loads(results.read_text())
    assert {run["backend_options"]["options"]["token_env"] for run in doc["runs"]} == {"OIP_TEST_TOKEN"}


def test_an_unset_token_variable_is_refused_by_name(digits_server: OipServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OIP_UNSET_TOKEN", raising=False)
    with pytest.raises(ModelError, match=r"remote.token_env=OIP_UNSET_TOKEN: the environment variable "
                                         r"OIP_UNSET_TOKEN is not set or empty"):
        remote(digits_server.url, token_env="OIP_UNSET_TOKEN")


def test_an_inference_error_names_the_url(digits_server: OipServer) -> None:
    backend = remote(digits_server.url, binary="false")
    try:
        with pytest.raises(InferenceError, match=r"POST /v2/models/digits/infer answered HTTP \d+"):
            backend.run({"input": np.zeros((2, 3), dtype=np.float32)})
    finally:
        backend.close()


def test_tls_is_verified_by_default_and_a_ca_bundle_or_a_loud_opt_out_lets_it_through(
    tmp_path: Path, digits_onnx: Path
) -> None:
    cert, key = self_signed_cert(tmp_path)
    with oip_server(tmp_path / "server", "--onnx", str(digits_onnx), tls=(cert, key)) as server:
        assert server.url.startswith("kserve-v2+https://127.0.0.1:")
        with pytest.raises(ModelError) as info:
            remote(server.url, retries="0")
        assert str(info.value).startswith(f"{server.url}: GET /v2/health/ready failed")
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)

        images = load_digits()[0][:4]
        trusted = remote(server.url, ca_bundle=str(cert))
        with (pytest.warns(MLPerfWarning, match=r"TLS certificate verification is OFF \(remote.insecure=true\)"),
              pytest.warns(urllib3.exceptions.InsecureRequestWarning)):
            unverified = remote(server.url, insecure="true")
        try:
            with pytest.warns(urllib3.exceptions.InsecureRequestWarning):  # and urllib3 warns on its requests too
                unverified_logits = unverified.run(images)["logits"]
            np.testing.assert_array_equal(trusted.run(images)["logits"], unverified_logits)
            assert trusted.describe()["tls_verify"] is True
            assert unverified.describe()["tls_verify"] is False
        finally:
            trusted.close()
            unverified.close()


def test_grpc_failures_name_the_url_and_a_token_travels_as_metadata(
    tmp_path: Path, digits_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = f"kserve-v2+grpc://127.0.0.1:{free_port()}/models/digits"
    with pytest.raises(ModelError) as info:
        remote(down, retries="1", timeout_s="5")
    assert str(info.value).startswith(f"{down}: gRPC ServerReady failed after 1 retries")
    assert "UNAVAILABLE" in str(info.value)

    images = load_digits()[0][:3]
    with oip_server(tmp_path / "server", "--onnx", str(digits_onnx), grpc=True,
                    env={"OIP_SERVER_TOKEN": TOKEN}) as server:
        monkeypatch.setenv("OIP_TEST_TOKEN", TOKEN)
        backend = remote(server.grpc_url, token_env="OIP_TEST_TOKEN")
        assert backend.run(images)["logits"].shape == (3, 10)
        backend.close()
        monkeypatch.setenv("OIP_TEST_TOKEN", "wrong-" + TOKEN)
        refused = remote(server.grpc_url, token_env="OIP_TEST_TOKEN", retries="0")
        with pytest.raises(InferenceError) as failed:
            refused.run(images)
        refused.close()
    assert str(failed.value).startswith(f"{server.grpc_url}: gRPC ModelInfer failed")
    assert TOKEN not in str(failed.value)
