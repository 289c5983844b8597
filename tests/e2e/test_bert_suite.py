"""End to end: the BERT suite on a designed stand-in, a designed SQuAD file and its vocabulary, through LoadGen.

The three assets are local copies (``--mlperf-asset``) of manifest entries that carry their sha256, offline. The
stand-in names its inputs as Hugging Face exports do (``attention_mask``, ``token_type_ids``), so the suite must
read them from the graph. Accuracy must be the hand-computed EM and F1 (tests/squad_designed.py); an independent
decoder of ``mlperf_log_accuracy.json`` written here agrees with the scorer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml

from pytest_mlperf.datasets.squad import build_features, read_squad, read_vocab
from pytest_mlperf.results import schema
from pytest_mlperf.tasks.squad import evaluate_squad
from tests.squad_designed import EXACT_MATCH, EXPECTED, F1, FEATURES, write_files

SUITES = Path(__file__).resolve().parents[2] / "suites"
SUITE_FILE = SUITES / "test_bert.py"
NAMES = {"model": "bert-large-onnx", "vocab": "bert-large-vocab", "data": "squad-v1.1-dev"}
QUIET = ["--mlperf-threads=1", "--mlperf-latency-bound-ms=500", "-p", "no:cacheprovider"]
FAST = ["--mlperf-min-duration-ms=200", *QUIET]


@pytest.fixture(autouse=True)
def _no_asset_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in [v for v in os.environ if v.startswith("PYTEST_MLPERF_")]:
        monkeypatch.delenv(var)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    data, vocab, model = write_files(tmp_path_factory.mktemp("bert"))
    return {"data": data, "vocab": vocab, "model": model}


def _manifest(path: Path, files: dict[str, Path], which: tuple[str, ...]) -> Path:
    entries: list[dict[str, Any]] = []
    for key in which:
        entries.append({
            "name": NAMES[key], "kind": "model" if key != "data" else "dataset",
            "url": f"http://127.0.0.1:9/{files[key].name}", "filename": files[key].name,
            "sha256": hashlib.sha256(files[key].read_bytes()).hexdigest(), "description": f"designed {key} (tests)",
        })  # fmt: skip
    path.write_text(yaml.safe_dump({"schema_version": 1, "assets": entries}), encoding="utf-8")
    return path


def _args(files: dict[str, Path], tmp_path: Path, which: tuple[str, ...] = ("model", "vocab", "data")) -> list[str]:
    manifest = _manifest(tmp_path / "designed.yaml", files, which)
    return [
        "--mlperf-offline", f"--mlperf-manifest={manifest}", f"--mlperf-cache-dir={tmp_path / 'cache'}",
        *[f"--mlperf-asset={NAMES[k]}={files[k]}" for k in which],
        f"--mlperf-results={tmp_path / 'results.json'}", f"--mlperf-log-dir={tmp_path / 'logs'}",
    ]  # fmt: skip


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_bert=SUITE_FILE.read_text())
    return pytester


def independent_predictions(log: Path, data: Path, vocab: Path) -> dict[str, str]:
    """The best span per question straight from the log: every valid (start, end) pair, the tokens joined.

    Written apart from the scorer: no n-best cut, no character alignment; the designed answers' normalised text is
    the same either way.
    """
    questions, tokens = read_squad(data), read_vocab(vocab)
    features = build_features(questions, tokens)
    entries = {int(e["qsl_idx"]): bytes.fromhex(e["data"]) for e in json.loads(log.read_text())}
    best: dict[int, tuple[float, str]] = {}
    for index in range(len(features["example_index"])):
        logits = np.frombuffer(entries[index], np.float32).reshape(384, 2).astype(np.float64)
        orig, context = features["token_to_orig"][index], features["max_context"][index]
        for start in range(384):
            if orig[start] < 0 or not context[start]:
                continue
            for end in range(start, min(start + 30, 384)):
                if orig[end] < 0:
                    continue
                score = logits[start, 0] + logits[end, 1]
                example = int(features["example_index"][index])
                if example not in best or score > best[example][0]:
                    words = [tokens[i] for i in features["input_ids"][index][start : end + 1]]
                    best[example] = (score, " ".join(words).replace(" ##", ""))
    return {questions[e].qas_id: text for e, (_, text) in best.items()}


def test_accuracy_is_the_hand_computed_em_and_f1_and_an_independent_decoder_agrees(
    suite: pytest.Pytester, files: dict[str, Path], tmp_path: Path
) -> None:
    run = suite.runpytest(*_args(files, tmp_path), "--mlperf-mode=accuracy", "--mlperf-scenarios=Offline",
                          "--mlperf-accuracy-target=75", "-k", "bert-99 and not 99.9", *QUIET)  # fmt: skip

    run.assert_outcomes(passed=1)
    (record,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    accuracy = record["metrics"]["accuracy"]
    assert accuracy["exact_match"] == pytest.approx(EXACT_MATCH, abs=1e-12)
    assert accuracy["f1"] == pytest.approx(F1, abs=1e-12)
    assert accuracy["count"] == len(EXPECTED)
    assert record["task"] == {"name": "question-answering", "metric": "f1", "higher_is_better": True}
    digest = record["dataset"].pop("digest")
    assert record["dataset"] == {"name": "squad-v1.1-dev", "count": FEATURES} and digest.startswith("sha256:")
    assert record["model"] == "bert"
    (log_dir,) = {p.parent for p in (tmp_path / "logs").rglob("mlperf_log_accuracy.json")}
    line = json.loads((log_dir / "accuracy.txt").read_text())
    assert list(line) == ["exact_match", "f1"]
    assert line["exact_match"] == pytest.approx(100 * EXACT_MATCH, abs=1e-9)
    assert line["f1"] == pytest.approx(100 * F1, abs=1e-9)

    independent = independent_predictions(log_dir / "mlperf_log_accuracy.json", files["data"], files["vocab"])
    gold = [(q.qas_id, q.answers) for q in read_squad(files["data"])]
    assert evaluate_squad(gold, independent) == accuracy
    for qas_id, (answer, exact, f1) in EXPECTED.items():
        one = evaluate_squad([g for g in gold if g[0] == qas_id], {qas_id: answer})
        assert (one["exact_match"], one["f1"]) == pytest.approx((exact, f1)), qas_id


def test_an_f1_below_the_target_fails_the_case(suite: pytest.Pytester, files: dict[str, Path], tmp_path: Path) -> None:
    run = suite.runpytest(*_args(files, tmp_path), "--mlperf-mode=accuracy", "--mlperf-scenarios=Offline",
                          "--mlperf-accuracy-target=80", "-k", "bert-99 and not 99.9", *QUIET)  # fmt: skip

    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines([f"*f1 accuracy {100 * F1:.2f} % < target 80.00 %*"])


def test_every_scenario_runs_on_squad_features_with_the_graph_input_names(
    pytester: pytest.Pytester, files: dict[str, Path], tmp_path: Path
) -> None:
    run = pytester.runpytest_subprocess(str(SUITES), "-k", "bert", "--mlperf-mode=performance",
                                        *_args(files, tmp_path), *FAST, "-rs", timeout=300)  # fmt: skip

    # bert-99.9 is the same model: its performance cases skip, saying so.
    run.assert_outcomes(passed=4, skipped=4)
    run.stdout.fnmatch_lines(["*bert-99.9 is bert-99's model with a higher accuracy target*"])
    doc = json.loads((tmp_path / "results.json").read_text())
    jsonschema.validate(doc, schema())
    runs = doc["runs"]
    assert sorted(r["scenario"] for r in runs) == ["MultiStream", "Offline", "Server", "SingleStream"]
    digests = {r["dataset"].pop("digest") for r in runs}
    assert len(digests) == 1 and digests.pop().startswith("sha256:")  # the same data in every scenario
    for r in runs:
        assert r["valid"] is True and r["passed"] is True and r["synthetic_inputs"] is False
        assert r["dataset"] == {"name": "squad-v1.1-dev", "count": FEATURES}
    server = next(r for r in runs if r["scenario"] == "Server")
    assert server["thresholds"]["latency_ms"] == 500.0  # the command line overrides the official 130 ms


def test_server_is_judged_at_the_official_130_ms(
    suite: pytest.Pytester, files: dict[str, Path], tmp_path: Path
) -> None:
    # An accuracy run records the case's thresholds without depending on this machine's latency.
    run = suite.runpytest(*_args(files, tmp_path), "--mlperf-mode=accuracy", "--mlperf-scenarios=Server",
                          "-k", "bert-99 and not 99.9", "-p", "no:cacheprovider")  # fmt: skip

    run.assert_outcomes(passed=1)
    (record,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert record["thresholds"]["latency_ms"] == 130.0


def test_without_squad_performance_runs_synthetic_and_accuracy_skips_saying_how(
    suite: pytest.Pytester, files: dict[str, Path], tmp_path: Path
) -> None:
    run = suite.runpytest(*_args(files, tmp_path, ("model", "vocab")), "--mlperf-scenarios=Offline", "-rs",
                          "-k", "bert-99 and not 99.9", *FAST)  # fmt: skip

    run.assert_outcomes(passed=1, skipped=1)
    run.stdout.fnmatch_lines([
        "*[[]squad-v1.1-dev[]] dataset 'squad-v1.1-dev' is not in the cache * offline mode is on*",
        "*--mlperf-asset squad-v1.1-dev=PATH*",
    ])  # fmt: skip
    (record,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert record["synthetic_inputs"] is True and record["dataset"]["name"] == "squad-synthetic"


def test_strict_assets_turns_the_missing_model_into_a_failure(suite: pytest.Pytester, tmp_path: Path) -> None:
    run = suite.runpytest("--mlperf-offline", "--mlperf-strict-assets", f"--mlperf-cache-dir={tmp_path / 'c'}",
                          "--mlperf-scenarios=Offline", "-k", "bert-99 and not 99.9")  # fmt: skip

    run.assert_outcomes(errors=2)
    run.stdout.fnmatch_lines([
        "*model 'bert-large-onnx' is not in the cache * and offline mode is on*",
        "*--mlperf-asset bert-large-onnx=PATH*",
        "(--mlperf-strict-assets turns this skip into a failure)",
    ])  # fmt: skip


def test_without_tokenizers_accuracy_skips_naming_the_extra_and_performance_runs_synthetic(
    pytester: pytest.Pytester, files: dict[str, Path], tmp_path: Path
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_bert=SUITE_FILE.read_text())
    # An import of tokenizers fails as it does where the package is not installed.
    pytester.makeconftest("import sys\nsys.modules['tokenizers'] = None\n")
    run = pytester.runpytest_subprocess(*_args(files, tmp_path), "--mlperf-scenarios=Offline", "-rs",
                                        "-k", "bert-99 and not 99.9", *FAST, timeout=300)  # fmt: skip

    run.assert_outcomes(passed=1, skipped=1)
    run.stdout.fnmatch_lines(
        ["SKIPPED*SQuAD features need the tokenizers package*pip install 'pytest-mlperf[[]language[]]'*"]
    )
    (record,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert record["synthetic_inputs"] is True
