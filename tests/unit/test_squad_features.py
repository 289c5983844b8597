"""SQuAD features and question-answering scoring on small hand-worked examples (no model, no LoadGen)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tokenizers", reason="SQuAD features need tokenizers: pip install 'pytest-mlperf[language]'")

from pytest_mlperf.datasets.squad import (
    SquadDataset,
    SquadError,
    SquadParams,
    bert_input_names,
    build_features,
    read_squad,
    synthetic_squad,
)
from pytest_mlperf.tasks.base import AccuracyCoverageError
from pytest_mlperf.tasks.squad import QuestionAnswering, evaluate_squad, f1_score, normalize_answer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghij", "x", "y", "cafe", ",", "un", "##aff", "##able",
         "!"]  # fmt: skip
ID = {t: i for i, t in enumerate(VOCAB)}
#: 12 tokens: [CLS] + 2 question tokens + [SEP] leave 7 context tokens; windows start every 3 tokens.
SMALL = SquadParams(max_seq_length=12, max_query_length=4, doc_stride=3)


def squad_file(tmp_path: Path, paragraphs: list[dict[str, Any]]) -> Path:
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


def qa(qid: str, question: str, *answers: str) -> dict[str, Any]:
    return {"id": qid, "question": question, "answers": [{"text": a, "answer_start": 0} for a in answers]}


@pytest.fixture
def vocab_file(tmp_path: Path) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    return path


def test_a_long_context_becomes_two_windows_with_the_reference_max_context(tmp_path: Path) -> None:
    data = squad_file(tmp_path, [{"context": "a b c d e f g h i j", "qas": [qa("q", "x y", "c")]}])
    f = build_features(read_squad(data), VOCAB, SMALL)

    # Windows: context tokens 0..6, then (start + min(7, 3)) 3..9, which reaches the end.
    assert f["example_index"].tolist() == [0, 0]
    assert [VOCAB[i] for i in f["input_ids"][0]] == ["[CLS]", "x", "y", "[SEP]", *"abcdefg", "[SEP]"]
    assert [VOCAB[i] for i in f["input_ids"][1]] == ["[CLS]", "x", "y", "[SEP]", *"defghij", "[SEP]"]
    assert f["segment_ids"].tolist() == [[0] * 4 + [1] * 8] * 2
    assert f["input_mask"].tolist() == [[1] * 12] * 2
    assert f["token_to_orig"][1].tolist() == [-1] * 4 + list(range(3, 10)) + [-1]
    # Token p scores min(p - start, end - p) + 0.01 x 7 in each window holding it: d (3) and e (4) have more
    # context in the first window (3 vs 0, 2 vs 1), f (5) and g (6) in the second (1 vs 2, 0 vs 3).
    assert f["max_context"][0].tolist() == [False] * 4 + [True] * 5 + [False] * 3
    assert f["max_context"][1].tolist() == [False] * 6 + [True] * 5 + [False]


def test_word_pieces_map_back_to_their_words_and_padding_is_zero(tmp_path: Path) -> None:
    data = squad_file(tmp_path, [{"context": "Café, unaffable!", "qas": [qa("q", "x", "cafe")]}])
    f = build_features(read_squad(data), VOCAB, SquadParams(max_seq_length=16, max_query_length=4, doc_stride=3))

    tokens = ["[CLS]", "x", "[SEP]", "cafe", ",", "un", "##aff", "##able", "!", "[SEP]"]
    assert f["input_ids"][0].tolist() == [ID[t] for t in tokens] + [0] * 6
    assert f["input_mask"][0].tolist() == [1] * 10 + [0] * 6
    assert f["segment_ids"][0].tolist() == [0] * 3 + [1] * 7 + [0] * 6
    assert f["token_to_orig"][0].tolist() == [-1] * 3 + [0, 0, 1, 1, 1, 1] + [-1] * 7


def test_the_question_is_cut_to_max_query_length(tmp_path: Path) -> None:
    data = squad_file(tmp_path, [{"context": "a", "qas": [qa("q", "x y x y x y", "a")]}])
    f = build_features(read_squad(data), VOCAB, SMALL)
    assert [VOCAB[i] for i in f["input_ids"][0][:8]] == ["[CLS]", "x", "y", "x", "y", "[SEP]", "a", "[SEP]"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[1, 2]", "has no 'data' list"),
        ('{"data": [{"paragraphs": [{"qas": []}]}]}', r"data\[0\].paragraphs\[0\] has no 'context' string"),
        ('{"data": [{"paragraphs": [{"context": "a", "qas": [{"id": "q"}]}]}]}', "needs an 'id' and a 'question'"),
        ('{"data": []}', "holds no questions"),
        ("{not json", "cannot be read as JSON"),
    ],
)
def test_a_malformed_squad_file_is_named_with_what_is_wrong(tmp_path: Path, document: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(document)
    with pytest.raises(SquadError, match=message) as info:
        read_squad(path)
    assert str(path) in str(info.value)


# -- scoring ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path, vocab_file: Path) -> SquadDataset:
    """Two questions on one 10-word context (two windows each) and one on a 1-word context: 5 features.

    Features 0, 1 (q1) and 2, 3 (q2): positions 4..10 hold context words 0..6 (a..g), then 3..9 (d..j); the
    first window gives words a..e their most context, the second f..j. Feature 4 (q3): position 3 holds "a".
    """
    data = squad_file(tmp_path, [
        {"context": "a b c d e f g h i j", "qas": [qa("q1", "x y", "h", "b"), qa("q2", "y x", "c d")]},
        {"context": "a", "qas": [qa("q3", "x", "b")]},
    ])  # fmt: skip
    return SquadDataset(data, vocab_file, tmp_path / "cache", params=SMALL)


def logits_for(dataset: SquadDataset, spans: dict[int, list[tuple[int, float, float]]]) -> np.ndarray:
    """Logits [features, 12, 2]: -1 everywhere, then (position, start, end) values per feature."""
    out = np.full((dataset.total_count, 12, 2), -1.0, np.float32)
    for feature, values in spans.items():
        for position, start, end in values:
            out[feature, position] = (start, end)
    return out


def score(dataset: SquadDataset, logits: np.ndarray) -> dict[str, float]:
    return QuestionAnswering().score({i: logits[i].tobytes() for i in range(len(logits))}, dataset)


def test_the_best_span_wins_across_windows_inside_the_context_and_its_most_context(small: SquadDataset) -> None:
    assert small.total_count == 5
    logits = logits_for(small, {
        # q1: [CLS] and the question word x score 9 + 9 but are not context; c..d scores 3 + 3 in the first window,
        # h..h 4 + 4 in the second: q1 answers "h" (right).
        0: [(0, 9, 9), (1, 9, 9), (6, 3, 0), (7, 0, 3)],
        1: [(8, 4, 4)],
        # q2: g (position 10 of the first window) would start a 9 - 1 span, but g has its most context in the
        # second window, where it scores -1: q2 answers "c d" (right).
        2: [(6, 3, 0), (7, 0, 3), (10, 9, -1)],
    })  # fmt: skip
    metrics = score(small, logits)
    # q3's only context word is "a"; its gold answer is "b" (wrong). 2 of 3 right, exactly.
    assert (metrics["exact_match_count"], metrics["f1_sum"], metrics["count"]) == (2.0, 2.0, 3.0)
    assert metrics["exact_match"] == metrics["f1"] == 2 / 3


def test_spans_longer_than_max_answer_length_or_reversed_are_not_answers(small: SquadDataset) -> None:
    from pytest_mlperf.tasks.squad import predict_answers

    # c..d scores 3 + 3; with max_answer_length=1, c..c (3 - 1) and d..d (-1 + 3) tie at 2 and the one met first
    # (by start rank: c) wins.
    logits = logits_for(small, {0: [(6, 3, -1), (7, -1, 3)]})
    assert predict_answers(small.squad, logits)["q1"] == "c d"
    assert predict_answers(small.squad, logits, max_answer_length=1)["q1"] == "c"
    # c..a would score 5 + 6 but ends before it starts: a..a (-1 + 6) beats c..c (5 - 1).
    logits = logits_for(small, {0: [(6, 5, -1), (4, -1, 6)]})
    assert predict_answers(small.squad, logits)["q1"] == "a"


def test_n_best_limits_the_positions_tried_and_no_candidate_answers_empty(small: SquadDataset) -> None:
    from pytest_mlperf.tasks.squad import predict_answers

    # q1, first window: c..c (1 + 1) is the best context span among the 20 best starts and ends. With n_best=2
    # the two best starts are [CLS] and x in the first window and positions 0 and 1 (ties go to the earlier
    # position) in the second: no candidate at all, and the reference's answer for that is "empty".
    logits = logits_for(small, {0: [(0, 9, 9), (1, 8, 8), (6, 1, 1)]})
    assert predict_answers(small.squad, logits, n_best=20)["q1"] == "c"
    assert predict_answers(small.squad, logits, n_best=2)["q1"] == "empty"


def test_accuracy_line_is_what_evaluate_v11_prints(small: SquadDataset) -> None:
    metrics = score(small, logits_for(small, {0: [(6, 3, 0), (7, 0, 3)]}))
    line = QuestionAnswering().accuracy_line(metrics)
    assert line == json.dumps({"exact_match": 100.0 * metrics["exact_match_count"] / 3,
                               "f1": 100.0 * metrics["f1_sum"] / 3})  # fmt: skip
    assert line.startswith('{"exact_match": ')


def test_missing_or_malformed_responses_are_refused(small: SquadDataset) -> None:
    logits = logits_for(small, {})
    responses = {i: logits[i].tobytes() for i in range(5)}
    with pytest.raises(AccuracyCoverageError, match="covers 4 of 5 samples"):
        QuestionAnswering().score({i: responses[i] for i in range(4)}, small)
    with pytest.raises(AccuracyCoverageError, match=r"qsl index 2 has 48 bytes, not float32 \[12, 2\] logits"):
        QuestionAnswering().score({**responses, 2: responses[2][:48]}, small)


def test_synthetic_inputs_cannot_be_scored() -> None:
    dataset = synthetic_squad(4)
    assert dataset.synthetic_inputs is True
    with pytest.raises(ValueError, match="synthetic"):
        QuestionAnswering().score({}, dataset)


def test_postprocess_stacks_start_and_end_as_the_reference_writes_them() -> None:
    rng = np.random.default_rng(0)
    start, end = rng.standard_normal((3, 384), dtype=np.float32), rng.standard_normal((3, 384), dtype=np.float32)
    for outputs in ({"output_start_logits": start, "output_end_logits": end},
                    {"end_logits": end, "start_logits": start}):  # fmt: skip
        block = QuestionAnswering().postprocess(outputs)
        assert block.shape == (3, 768) and block.dtype == np.float32
        assert block[1].tobytes() == np.stack([start[1], end[1]], axis=-1).tobytes()  # onnxruntime_SUT.py's layout
    with pytest.raises(ValueError, match="cannot tell the start logits"):
        QuestionAnswering().postprocess({"a": start, "b": end, "c": end})


def test_the_official_normalisation_and_f1() -> None:
    assert normalize_answer("The  Cat, an apple!") == "cat apple"
    assert normalize_answer("theatre") == "theatre"  # articles are whole words only
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(2 * 1.0 * (2 / 3) / (1.0 + 2 / 3))
    assert f1_score("dog", "cat") == 0
    # The best gold answer counts; an unanswered question scores 0 but counts.
    metrics = evaluate_squad([("a", ["x y", "x"]), ("b", ["z"])], {"a": "x"})
    assert (metrics["exact_match"], metrics["f1"], metrics["count"]) == (0.5, 0.5, 2.0)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["input_ids", "input_mask", "segment_ids"], ["input_ids", "input_mask", "segment_ids"]),
        (["input_ids", "attention_mask", "token_type_ids"], ["input_ids", "attention_mask", "token_type_ids"]),
        (["segment_ids:0", "bert/input_mask:0", "input_ids:0"], ["input_ids:0", "bert/input_mask:0", "segment_ids:0"]),
    ],
)
def test_bert_input_names_are_read_through_the_aliases(names: list[str], expected: list[str]) -> None:
    found = bert_input_names(names)
    assert [found["input_ids"], found["input_mask"], found["segment_ids"]] == expected


def test_an_unrecognised_graph_is_refused_with_its_names() -> None:
    with pytest.raises(
        ValueError,
        match=r"no input for BERT's input_mask .* its inputs are input_ids, mask, kind\. "
        r"Pass input_names=\{'input_ids': \.\.\., .*\} to the dataset$",
    ):
        bert_input_names(["input_ids", "mask", "kind"])
    with pytest.raises(ValueError, match=r"several inputs \(input_ids, bert/input_ids\) for BERT's input_ids"):
        bert_input_names(["input_ids", "bert/input_ids", "input_mask", "segment_ids"])


def test_features_are_built_once_and_keyed_by_the_vocabulary_and_the_data(tmp_path: Path, vocab_file: Path) -> None:
    data = squad_file(tmp_path, [{"context": "a b c", "qas": [qa("q", "x", "b")]}])
    first = SquadDataset(data, vocab_file, tmp_path / "cache", params=SMALL)
    stamp = first.cache_file.stat().st_mtime_ns
    again = SquadDataset(data, vocab_file, tmp_path / "cache", params=SMALL)
    assert again.cache_file == first.cache_file and again.cache_file.stat().st_mtime_ns == stamp
    assert first.cache_file.parent.name == "preprocessed" and (tmp_path / "cache" / "CACHEDIR.TAG").is_file()

    vocab_file.write_text("\n".join([*VOCAB, "z"]) + "\n")  # a different vocabulary: new features
    other_vocab = SquadDataset(data, vocab_file, tmp_path / "cache", params=SMALL)
    data.write_text(data.read_text().replace('"a b c"', '"a b c d"'))  # different data: new features
    other_data = SquadDataset(data, vocab_file, tmp_path / "cache", params=SMALL)
    assert len({first.cache_file, other_vocab.cache_file, other_data.cache_file}) == 3
    assert other_data.squad.token_to_orig[0].tolist()[3:8] == [0, 1, 2, 3, -1]


def test_a_partial_log_scores_every_question_and_the_missing_ones_answer_empty(small: SquadDataset) -> None:
    # As accuracy-squad.py scores TEST01's sampled log: features 0 and 1 (q1) and 4 (q3) are logged; q2's features
    # are not, so q2 answers "empty" and still counts. q1 answers "h" (right), q3 "a" (wrong): 1 of 3.
    logits = logits_for(small, {1: [(8, 4, 4)]})
    metrics = QuestionAnswering().score_subset({i: logits[i].tobytes() for i in (0, 1, 4)}, small)
    assert (metrics["exact_match_count"], metrics["count"]) == (1.0, 3.0)
    with pytest.raises(AccuracyCoverageError, match=r"unknown qsl indices \[7\]"):
        QuestionAnswering().score_subset({7: logits[0].tobytes()}, small)
