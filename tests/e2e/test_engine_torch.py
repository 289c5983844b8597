"""The PyTorch engine: parity with ONNX Runtime, the digits suite on both engines, its options and its threading."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pytest_mlperf.backends import BackendOptions, create_backend  # noqa: E402
from pytest_mlperf.backends.torch import quiet_jit  # noqa: E402
from pytest_mlperf.errors import ModelError  # noqa: E402
from pytest_mlperf.models.digits import (  # noqa: E402
    digits_logits,
    digits_weights_from_onnx,
)
from pytest_mlperf.models.digits_formats import digits_model_for  # noqa: E402
from pytest_mlperf.models.digits_torch import DigitsNet  # noqa: E402

SUITES = Path(__file__).resolve().parents[2] / "suites"
DIGITS_NET = "pytest_mlperf.models.digits_torch:DigitsNet"


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    # torch's thread count is process-wide: a test that sets it must not leak it into the next one.
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(engine_cache: Path, digits_images: np.ndarray) -> dict[str, np.ndarray]:
    onnx_path = digits_model_for("onnxruntime", engine_cache)
    ort = create_backend("onnxruntime", onnx_path, BackendOptions()).run(digits_images)["logits"]
    return {"ort": ort, "numpy": digits_logits(digits_weights_from_onnx(onnx_path), digits_images)}


def make(engine_cache: Path, *extra: tuple[str, str], model: Path | None = None) -> object:
    return create_backend("torch", model or digits_model_for("torch", engine_cache), BackendOptions(extra=tuple(extra)))


@pytest.mark.parametrize(
    "extra",
    [(), (("mode", "eager"), ("model_class", DIGITS_NET)), (("mode", "scripted"), ("model_class", DIGITS_NET))],
    ids=["torchscript-file", "eager", "scripted-from-class"],
)
def test_logits_match_onnxruntime_and_the_numpy_reference(
    engine_cache: Path, digits_images: np.ndarray, reference: dict[str, np.ndarray], extra: tuple[tuple[str, str], ...]
) -> None:
    backend = make(engine_cache, *extra)
    logits = backend.run(digits_images)["output"]  # type: ignore[attr-defined]
    assert logits.dtype == np.float32 and logits.shape == (len(digits_images), 10)
    np.testing.assert_allclose(logits, reference["ort"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(logits, reference["numpy"], rtol=0, atol=1e-4)


def test_a_state_dict_loads_through_its_model_class(
    engine_cache: Path, tmp_path: Path, digits_images: np.ndarray, reference: dict[str, np.ndarray]
) -> None:
    # The route the MLPerf ResNet50 .pth takes (model_class=torchvision.models:resnet50): weights only, class given.
    net = DigitsNet()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in reference_weights(engine_cache).items()})
    pth = tmp_path / "digits.pth"
    torch.save(net.state_dict(), pth)
    backend = make(engine_cache, ("model_class", DIGITS_NET), model=pth)
    assert backend.describe()["mode"] == "eager"  # type: ignore[attr-defined]
    np.testing.assert_allclose(backend.run(digits_images)["output"], reference["ort"], rtol=0, atol=1e-4)  # type: ignore[attr-defined]
    with pytest.raises(ModelError, match=r"digits\.pth as TorchScript.*model_class=package\.module:Class"):
        make(engine_cache, model=pth)


def reference_weights(engine_cache: Path) -> dict[str, np.ndarray]:
    return digits_weights_from_onnx(digits_model_for("onnxruntime", engine_cache))


def test_the_torchscript_file_is_cached_and_reused(engine_cache: Path) -> None:
    first = digits_model_for("torch", engine_cache)
    stamp = first.stat().st_mtime_ns
    again = digits_model_for("torch", engine_cache)
    assert again == first and again.stat().st_mtime_ns == stamp
    assert first.suffix == ".pt" and f"torch{'.'.join(torch.__version__.split('.')[:2])}" in first.name
    # It is plain TorchScript: torch alone loads it, without pytest-mlperf's class.
    with quiet_jit():
        assert isinstance(torch.jit.load(str(first)), torch.jit.ScriptModule)


def test_options_are_recorded(engine_cache: Path) -> None:
    described = make(engine_cache, ("threads", "1"), ("device", "cpu"), ("mode", "scripted")).describe()  # type: ignore[attr-defined]
    assert described["version"] == torch.__version__
    assert (described["mode"], described["threads"], described["device"]) == ("scripted", 1, "cpu")
    assert torch.get_num_threads() == 1
    assert "providers" not in described  # ONNX Runtime's knobs do not enter a torch run's fingerprint
    eager = make(engine_cache, ("model_class", DIGITS_NET)).describe()  # type: ignore[attr-defined]
    assert (eager["mode"], eager["model_class"]) == ("eager", DIGITS_NET)
    assert eager["threads"] == torch.get_num_threads() >= 1


def test_named_outputs(engine_cache: Path, digits_images: np.ndarray) -> None:
    out = make(engine_cache, ("outputs", "logits")).run(digits_images[:3])  # type: ignore[attr-defined]
    assert list(out) == ["logits"]
    with pytest.raises(ModelError, match=r"torch\.outputs=a,b names 2 output\(s\), but .* returns 1"):
        make(engine_cache, ("outputs", "a,b")).run(digits_images[:3])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((("mode", "fast"),), r"torch\.mode=fast: use one of eager, scripted, compiled"),
        ((("mode", "eager"),), r"torch\.mode=eager: this mode runs the Python nn\.Module, so it needs its class"),
        ((("mode", "compiled"),), r"torch\.mode=compiled: .*torch\.model_class="),
        ((("threads", "0"),), r"torch\.threads=0: give a whole number of intra-op threads"),
        ((("threads", "many"),), r"torch\.threads=many: give a whole number"),
        ((("device", "tpu"),), r"torch\.device=tpu: use cpu, cuda or cuda:N"),
        ((("model_class", "nowhere"),), r"torch\.model_class=nowhere: give it as package\.module:Class"),
        ((("model_class", "no_such_pkg:Net"),), r"torch\.model_class=no_such_pkg:Net: cannot import it"),
        ((("model_class", "numpy:pi"),), r"torch\.model_class=numpy:pi: it is not a class or function"),
        ((("model_class", "numpy:zeros"),), r"numpy:zeros: calling it without arguments failed \(TypeError"),
        ((("model_class", "collections:OrderedDict"),), r"it built a OrderedDict, not an nn\.Module"),
        ((("precision", "fp16"),), r"no option 'precision'; it reads: mode=eager\|scripted\|compiled, threads=N"),
    ],
)
def test_a_bad_option_is_a_clear_error(engine_cache: Path, extra: tuple[tuple[str, str], ...], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        make(engine_cache, *extra)


def test_cuda_without_a_gpu_is_a_clear_error(engine_cache: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ModelError, match=r"torch\.device=cuda: torch .* sees no CUDA device.*use device=cpu"):
        make(engine_cache, ("device", "cuda"))


def test_a_missing_or_corrupt_model_file_is_a_clear_error(engine_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model file not found: .*nothere\.pt"):
        make(engine_cache, model=tmp_path / "nothere.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match=r"junk\.pt as TorchScript"):
        make(engine_cache, model=junk)
    with pytest.raises(ModelError, match=r"torch could not read weights from .*junk\.pt"):
        make(engine_cache, ("model_class", DIGITS_NET), model=junk)


@pytest.mark.parametrize("extra", [(), (("model_class", DIGITS_NET),)], ids=["scripted", "eager"])
def test_concurrent_calls_give_the_serial_results(
    engine_cache: Path, digits_images: np.ndarray, extra: tuple[tuple[str, str], ...]
) -> None:
    # thread_safe=True makes the harness share one instance between inference threads: check that it may.
    backend = make(engine_cache, *extra)
    assert backend.thread_safe is True  # type: ignore[attr-defined]
    batches = [digits_images[i : i + 17] for i in range(0, len(digits_images), 17)]
    serial = [backend.run(b)["output"] for b in batches]  # type: ignore[attr-defined]
    got: dict[tuple[int, int], np.ndarray] = {}
    start = threading.Barrier(4)

    def worker(t: int) -> None:
        start.wait()
        for _ in range(5):
            for i, batch in enumerate(batches):
                got[(t, i)] = backend.run(batch)["output"]  # type: ignore[attr-defined]

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 * len(batches)
    for (_, i), out in got.items():
        np.testing.assert_array_equal(out, serial[i])


@pytest.mark.slow
def test_compiled_mode_matches_onnxruntime(
    engine_cache: Path, digits_images: np.ndarray, reference: dict[str, np.ndarray]
) -> None:
    backend = make(engine_cache, ("mode", "compiled"), ("model_class", DIGITS_NET))
    backend.warmup(digits_images[:32])  # type: ignore[attr-defined]
    # Two batch sizes, one compile (dynamic=True); both agree with ONNX Runtime.
    np.testing.assert_allclose(backend.run(digits_images)["output"], reference["ort"], rtol=0, atol=1e-4)  # type: ignore[attr-defined]
    np.testing.assert_allclose(backend.run(digits_images[:5])["output"], reference["ort"][:5], rtol=0, atol=1e-4)  # type: ignore[attr-defined]
    assert backend.describe()["compile"] == {"backend": "inductor", "dynamic": True}  # type: ignore[attr-defined]


@pytest.mark.slow
def test_digits_suite_on_onnxruntime_and_torch_agree(pytester: pytest.Pytester, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    result = pytester.runpytest_subprocess(
        str(SUITES / "test_digits.py"), "--mlperf-backends=onnxruntime,torch",
        "--mlperf-backend-option=torch.threads=1",
        f"--mlperf-results={results}", f"--mlperf-log-dir={tmp_path / 'logs'}",
        f"--mlperf-cache-dir={tmp_path / 'cache'}", "--mlperf-min-duration-ms=300", "-p", "no:cacheprovider",
        timeout=600,
    )
    result.assert_outcomes(passed=16)
    result.stdout.fnmatch_lines_random(
        ["*test_digits?torch-Offline-accuracy?*", "*test_digits?torch-Server-performance?*"]
    )
    runs = json.loads(results.read_text())["runs"]
    top1 = {r["backend"]: r["metrics"]["accuracy"]["top1"] for r in runs if r["mode"] == "accuracy"}
    assert set(top1) == {"onnxruntime", "torch"}
    assert top1["torch"] >= 0.97
    assert abs(top1["torch"] - top1["onnxruntime"]) <= 0.001
    for run in runs:
        if run["backend"] == "torch":
            assert run["backend_options"]["threads"] == 1
            assert run["backend_options"]["mode"] == "scripted"
            assert run["backend_options"]["version"] == torch.__version__



def test_every_torch_call_runs_on_the_one_engine_thread(engine_cache: Path, digits_images: np.ndarray) -> None:
    # libgomp keeps an OpenMP team per thread that starts torch work: every backend's calls go to one thread, whichever
    # thread calls run (the harness warms up on the main thread, LoadGen issues from its own).
    eager = make(engine_cache, ("mode", "eager"), ("model_class", DIGITS_NET))
    scripted = make(engine_cache)
    seen: list[threading.Thread] = []
    eager._module.register_forward_hook(lambda *_: seen.append(threading.current_thread()))  # type: ignore[attr-defined]
    eager.warmup(digits_images[:1])  # type: ignore[attr-defined]
    eager.run(digits_images[:4])  # type: ignore[attr-defined]
    callers = [threading.Thread(target=eager.run, args=(digits_images[:3],)) for _ in range(3)]  # type: ignore[attr-defined]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(seen) == BackendOptions().warmup_runs + 1 + len(callers)
    (engine,) = set(seen)
    assert engine.name == "mlperf-torch"
    assert engine is not threading.main_thread() and engine not in callers
    assert [t for t in threading.enumerate() if t.name == "mlperf-torch"] == [engine]  # shared by both backends
    eager.close()  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match=r"the torch backend of .* is closed"):
        eager.run(digits_images[:1])  # type: ignore[attr-defined]
    assert engine.is_alive()  # the other backend still runs on it
    assert scripted.run(digits_images[:2])["output"].shape[0] == 2  # type: ignore[attr-defined]


def test_an_error_on_the_engine_thread_reaches_the_caller_and_later_calls_work(
    engine_cache: Path, digits_images: np.ndarray, reference: dict[str, np.ndarray]
) -> None:
    backend = make(engine_cache)
    with pytest.raises(RuntimeError):  # torch's own shape error, raised in the caller's thread
        backend.run(np.zeros((2, 3, 5, 5), dtype=np.float32))  # type: ignore[attr-defined]
    np.testing.assert_allclose(backend.run(digits_images)["output"], reference["ort"], rtol=0, atol=1e-4)  # type: ignore[attr-defined]
