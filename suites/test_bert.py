"""MLPerf BERT-Large on SQuAD v1.1: ``pytest suites/ -k bert``, four scenarios, performance and accuracy.

Assets come from the manifests (``fixtures/*.yaml``) through the ``mlperf_assets`` fixture: the MLPerf BERT-Large
ONNX (fp32, sequence length 384, ``bert-large-onnx``), its uncased WordPiece ``vocab.txt`` (``bert-large-vocab``)
and the SQuAD v1.1 dev set (``squad-v1.1-dev``), each downloaded once and verified by its published checksum, or a
local copy (``--mlperf-asset NAME=PATH``) or a mirror. The features are the reference's (384 tokens, stride 128:
10,833 samples for 10,570 questions), built once into the cache; the model's three input names are read from its
graph (``input_ids``/``input_mask``/``segment_ids`` or ``attention_mask``/``token_type_ids``).

Two benchmarks share the model: ``bert-99`` (F1 >= 89.965) and ``bert-99.9`` (F1 >= 90.783), each an accuracy
target on the whole dev set; ``--mlperf-accuracy-target`` overrides both (and is the only target on a smaller SQuAD
file). Performance is the same model's, so it is measured once, under ``bert-99``. Server is judged at p99 against
the official 130 ms (``--mlperf-latency-bound-ms`` overrides). MultiStream is not a BERT scenario in the MLPerf
rules (edge systems submit SingleStream and Offline, datacenter ones Server and Offline), but LoadGen runs it with
its defaults for every model (8 samples per query, judged at p99); it runs here so that the four scenarios are
comparable across suites, with no latency bound unless you give one.

Without SQuAD or the vocabulary, performance runs on synthetic token inputs of the right shape (marked
``synthetic_inputs``; ids within the vocabulary when there is one, else the official model's 30,522) and accuracy is
skipped, saying how to provide them. Without the model, every case is
skipped with the reason and the ways to provide it (``--mlperf-strict-assets`` makes these failures).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mlperf import ArrayDataset
from pytest_mlperf.datasets.squad import (
    FULL_QUESTIONS,
    SQUAD_DEV,
    VOCAB,
    SquadDataset,
    SquadError,
    TokenizersMissing,
    bert_input_names,
    onnx_input_names,
    read_vocab,
    synthetic_squad,
)
from pytest_mlperf.errors import ModelError
from pytest_mlperf.provisioning.assets import MLPerfAssets
from pytest_mlperf.rules import BERT_F1_TARGETS, BERT_MODEL_KEY, BERT_SERVER_LATENCY_MS
from pytest_mlperf.runner import CaseRunner

MODEL = "bert-large-onnx"


@pytest.fixture(scope="session")
def bert_onnx(mlperf_assets: MLPerfAssets) -> Path:
    return mlperf_assets.get(MODEL)


@pytest.fixture(scope="session")
def bert_inputs(bert_onnx: Path) -> dict[str, str]:
    """BERT's three inputs (ids, mask, segments) -> the names this model's graph gives them."""
    try:
        return bert_input_names(onnx_input_names(bert_onnx))
    except (ValueError, ModelError) as exc:
        pytest.fail(f"{bert_onnx}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def squad_dev(mlperf_assets: MLPerfAssets, mlperf_cache_dir: Path, bert_inputs: dict[str, str]) -> SquadDataset | str:
    """The SQuAD QSL with the reference's features (cached); or, when SQuAD or the vocabulary is missing, why."""
    data, vocab = mlperf_assets.optional(SQUAD_DEV), mlperf_assets.optional(VOCAB)
    if data is None or vocab is None:
        missing = [name for name, got in ((SQUAD_DEV, data), (VOCAB, vocab)) if got is None]
        return "\n".join(f"[{name}] {mlperf_assets.why_unavailable(name)}" for name in missing)
    try:
        return SquadDataset(data.path, vocab.path, mlperf_cache_dir, input_names=bert_inputs)
    except TokenizersMissing as exc:
        return str(exc)  # performance can still run on synthetic tokens
    except SquadError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def bert_dataset(
    mlperf_mode: str, mlperf_assets: MLPerfAssets, squad_dev: SquadDataset | str, bert_inputs: dict[str, str]
) -> SquadDataset | ArrayDataset:
    """SQuAD when there is some; else synthetic tokens for performance, and a skip (with the how-to) for accuracy."""
    if not isinstance(squad_dev, str):
        return squad_dev
    if mlperf_mode == "accuracy":
        mlperf_assets.unavailable(squad_dev)
    vocab = mlperf_assets.optional(VOCAB)  # token ids must fit the model: the official model's range without it
    try:
        tokens = read_vocab(vocab.path) if vocab is not None else None
    except SquadError as exc:
        pytest.fail(str(exc), pytrace=False)
    return synthetic_squad(input_names=bert_inputs, vocab=tokens)


@pytest.mark.parametrize("bert_benchmark", list(BERT_F1_TARGETS))
@pytest.mark.mlperf(model_name=BERT_MODEL_KEY, latency_ms={"Server": BERT_SERVER_LATENCY_MS})
def test_bert(
    mlperf: CaseRunner,
    mlperf_scenario: str,
    mlperf_mode: str,
    bert_benchmark: str,
    bert_onnx: Path,
    bert_dataset: SquadDataset | ArrayDataset,
) -> None:
    if mlperf_mode == "performance" and bert_benchmark != "bert-99":
        pytest.skip(f"{bert_benchmark} is bert-99's model with a higher accuracy target: its performance is bert-99's")
    dataset = bert_dataset
    if isinstance(dataset, SquadDataset) and dataset.question_count == FULL_QUESTIONS:
        result = mlperf.run(bert_onnx, dataset, accuracy=BERT_F1_TARGETS[bert_benchmark])
    else:
        result = mlperf.run(bert_onnx, dataset)  # a smaller SQuAD file: only --mlperf-accuracy-target applies
    if mlperf_mode == "accuracy":
        assert result.metrics.accuracy is not None
        assert result.metrics.accuracy["count"] == dataset.question_count  # type: ignore[union-attr]
    else:
        assert result.valid is True
        assert result.synthetic_inputs is dataset.synthetic_inputs
