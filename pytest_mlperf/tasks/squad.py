"""Question answering (BERT on SQuAD v1.1): start/end logits as [L, 2] float32 responses, scored as the reference does.

A response is the reference's (``language/bert/onnxruntime_SUT.py``): the start and end logits of one feature stacked
on the last axis, float32 ``[384, 2]`` (3072 bytes). Scoring follows MLCommons' ``accuracy-squad.py`` step by step:

1. per feature, the 20 best start and the 20 best end positions (ties: the earlier position first);
2. every pair whose start and end are context tokens of the feature (``token_to_orig``), whose start gets its most
   context in this feature, with start <= end and at most 30 tokens, is a candidate scored start + end logit
   (in float64, as the reference sums Python floats);
3. per question, the best candidate over all its features (ties: feature order, then start rank, then end rank)
   is mapped back to the original words with ``get_final_text``'s character alignment; a question without any
   candidate answers ``"empty"``;
4. the official SQuAD v1.1 evaluation (``evaluate_v1.1.py``): answers normalised (lower case, punctuation and the
   articles a/an/the removed, white space squeezed), exact match and token F1, each the best over the gold answers.

Metrics are fractions (``f1`` is the primary one, ``exact_match`` the other) plus the sums they come from, so that
``accuracy.txt`` is exactly the line ``evaluate_v1.1.py`` prints: ``{"exact_match": 83.6..., "f1": 90.8...}``.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_mlperf.tasks.base import AccuracyCoverageError, scored_indices

if TYPE_CHECKING:
    from pytest_mlperf.datasets.base import Dataset
    from pytest_mlperf.datasets.squad import SquadFeatures
    from pytest_mlperf.tasks.base import Outputs

__all__ = [
    "QuestionAnswering",
    "evaluate_squad",
    "exact_match_score",
    "f1_score",
    "final_text",
    "normalize_answer",
    "predict_answers",
]

#: What the reference answers for a question none of whose features has a valid span.
NO_ANSWER = "empty"


def _pick(outputs: Outputs, wanted: str | None, word: str, position: int) -> np.ndarray:
    if isinstance(outputs, np.ndarray):
        if outputs.ndim == 3 and outputs.shape[-1] == 2:  # already stacked [N, L, 2]
            return outputs[..., position]
        raise ValueError(
            f"question answering needs start and end logits, got one array of shape {outputs.shape}; return two "
            "outputs (start, end) or one [N, L, 2] array"
        )
    if wanted is not None:
        if wanted not in outputs:
            raise KeyError(f"the model has no output {wanted!r}; its outputs are {', '.join(map(repr, outputs))}")
        return outputs[wanted]
    named = [name for name in outputs if word in name.lower()]
    if len(named) == 1:
        return outputs[named[0]]
    if len(outputs) == 2:  # the reference stacks the outputs in the graph's order: start, then end
        return list(outputs.values())[position]
    raise ValueError(
        f"cannot tell the {word} logits among the outputs {', '.join(map(repr, outputs))}; name them with the task's "
        f"start_output= and end_output="
    )


@dataclass(frozen=True)
class QuestionAnswering:
    """SQuAD v1.1 extractive question answering, scored as MLCommons' ``accuracy-squad.py``.

    The dataset must carry the features as ``squad`` (a :class:`~pytest_mlperf.datasets.squad.SquadFeatures`);
    ``start_output``/``end_output`` name the logits when the output names do not say ``start``/``end``.
    """

    n_best: int = 20
    max_answer_length: int = 30
    start_output: str | None = None
    end_output: str | None = None
    name: str = "question-answering"
    metric: str = "f1"
    higher_is_better: bool = True

    def postprocess(self, outputs: Outputs) -> np.ndarray:
        start = _pick(outputs, self.start_output, "start", 0)
        end = _pick(outputs, self.end_output, "end", 1)
        n = len(start)
        block = np.empty((n, start.shape[-1], 2), np.float32)
        block[..., 0] = start.reshape(n, -1)
        block[..., 1] = end.reshape(n, -1)
        # One row per sample: the bytes of each row are the reference's [L, 2] response.
        return block.reshape(n, -1)

    def logits(self, responses: Mapping[int, bytes], count: int, length: int, subset: bool = False) -> np.ndarray:
        """The responses as float32 [count, length, 2], checked for size and, unless *subset*, for coverage (rows
        of samples a partial log lacks are left undefined)."""
        out = np.empty((count, length, 2), np.float32)
        size = length * 2 * 4
        for idx in scored_indices(responses, count, subset):
            data = responses[idx]
            if len(data) != size:
                raise AccuracyCoverageError(
                    f"response for qsl index {idx} has {len(data)} bytes, not float32 [{length}, 2] logits "
                    f"({size} bytes)"
                )
            out[idx] = np.frombuffer(data, np.float32).reshape(length, 2)
        return out

    def score(self, responses: Mapping[int, bytes], dataset: Dataset) -> dict[str, float]:
        squad = _features_of(dataset)
        logits = self.logits(responses, len(squad), squad.input_ids.shape[1])
        predictions = predict_answers(squad, logits, self.n_best, self.max_answer_length)
        return evaluate_squad([(q.qas_id, q.answers) for q in squad.questions], predictions)

    def score_subset(self, responses: Mapping[int, bytes], dataset: Dataset) -> dict[str, float]:
        """The features the responses hold, scored as ``accuracy-squad.py`` scores a partial log: a question whose
        features are all missing answers ``"empty"``, and every question of the dataset counts."""
        squad = _features_of(dataset)
        logits = self.logits(responses, len(squad), squad.input_ids.shape[1], subset=True)
        predictions = predict_answers(squad, logits, self.n_best, self.max_answer_length, present=set(responses))
        return evaluate_squad([(q.qas_id, q.answers) for q in squad.questions], predictions)

    def accuracy_line(self, metrics: Mapping[str, float]) -> str:
        # evaluate_v1.1.py: print(json.dumps({"exact_match": 100.0 * em / total, "f1": 100.0 * f1 / total}))
        total = int(metrics["count"])
        exact = int(metrics["exact_match_count"])
        return json.dumps({"exact_match": 100.0 * exact / total, "f1": 100.0 * metrics["f1_sum"] / total})


def _features_of(dataset: Dataset) -> SquadFeatures:
    if getattr(dataset, "synthetic_inputs", False):
        raise ValueError(f"dataset {dataset.name!r} is synthetic; its question-answering accuracy would mean nothing")
    squad = getattr(dataset, "squad", None)
    if squad is None:
        raise ValueError(
            f"dataset {dataset.name!r} has no SQuAD features (a 'squad' attribute), so question answering cannot "
            "score it; use pytest_mlperf.datasets.squad.SquadDataset"
        )
    return squad  # type: ignore[no-any-return]


def _best_indexes(logits: np.ndarray, n_best: int) -> np.ndarray:
    # sorted(..., reverse=True) keeps equal values in position order; a stable sort of the negation does too.
    order: np.ndarray = np.argsort(-logits, kind="stable")[:n_best]
    return order


def predict_answers(
    squad: SquadFeatures, logits: np.ndarray, n_best: int = 20, max_answer_length: int = 30,
    present: set[int] | None = None,
) -> dict[str, str]:
    """Question id -> predicted answer text, from float32 logits [features, L, 2] (``write_predictions``); with
    *present*, only those features are read (the reference skips the features a partial log lacks)."""
    lengths = squad.input_mask.sum(axis=1)
    by_question: dict[int, list[int]] = {}
    for feature, example in enumerate(squad.example_index.tolist()):
        by_question.setdefault(example, []).append(feature)
    predictions: dict[str, str] = {}
    for example, question in enumerate(squad.questions):
        scores: list[np.ndarray] = []
        picks: list[tuple[int, np.ndarray, np.ndarray]] = []
        for feature in by_question.get(example, []):
            if present is not None and feature not in present:
                continue
            start_logits = logits[feature, :, 0].astype(np.float64)
            end_logits = logits[feature, :, 1].astype(np.float64)
            starts = _best_indexes(start_logits, n_best)
            ends = _best_indexes(end_logits, n_best)
            s, e = np.meshgrid(starts, ends, indexing="ij")  # row-major: start rank, then end rank
            s, e = s.ravel(), e.ravel()
            orig = squad.token_to_orig[feature]
            ok = (
                (s < lengths[feature])
                & (e < lengths[feature])
                & (orig[s] >= 0)
                & (orig[e] >= 0)
                & squad.max_context[feature][s]
                & (e >= s)
                & (e - s + 1 <= max_answer_length)
            )
            s, e = s[ok], e[ok]
            scores.append(start_logits[s] + end_logits[e])
            picks.append((feature, s, e))
        total = np.concatenate(scores) if scores else np.empty(0)
        if len(total) == 0:
            predictions[question.qas_id] = NO_ANSWER
            continue
        # The reference sorts stably by score, best first: its first entry is the first maximum.
        best = int(np.argmax(total))
        ends = np.cumsum([len(s) for _, s, _ in picks])
        which = int(np.searchsorted(ends, best, side="right"))
        feature, s, e = picks[which]
        at = best - (int(ends[which - 1]) if which else 0)
        predictions[question.qas_id] = _answer_text(squad, question.doc_words, feature, int(s[at]), int(e[at]))
    return predictions


def _answer_text(squad: SquadFeatures, words: Sequence[str], feature: int, start: int, end: int) -> str:
    tok_text = " ".join(squad.tokens(feature, start, end))
    tok_text = tok_text.replace(" ##", "").replace("##", "")
    tok_text = " ".join(tok_text.strip().split())
    first, last = int(squad.token_to_orig[feature, start]), int(squad.token_to_orig[feature, end])
    orig_text = " ".join(words[first : last + 1])
    return final_text(squad, tok_text, orig_text)


def final_text(squad: SquadFeatures, pred_text: str, orig_text: str) -> str:
    """``get_final_text``: the part of *orig_text* that the normalised *pred_text* covers, else all of it."""
    from pytest_mlperf.datasets.squad import basic_tokenize

    tok_text = " ".join(basic_tokenize(squad.tokenizer, orig_text))
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1

    def strip_spaces(text: str) -> tuple[str, dict[int, int]]:
        kept = [(i, c) for i, c in enumerate(text) if c != " "]
        return "".join(c for _, c in kept), {n: i for n, (i, _) in enumerate(kept)}

    orig_ns, orig_map = strip_spaces(orig_text)
    tok_ns, tok_map = strip_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        return orig_text
    tok_to_ns = {i: n for n, i in tok_map.items()}
    if start not in tok_to_ns or tok_to_ns[start] not in orig_map:
        return orig_text
    if end not in tok_to_ns or tok_to_ns[end] not in orig_map:
        return orig_text
    return orig_text[orig_map[tok_to_ns[start]] : orig_map[tok_to_ns[end]] + 1]


# -- the official SQuAD v1.1 evaluation ----------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, punctuation removed, articles removed, white space squeezed (in the official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, truth: str) -> float:
    predicted = normalize_answer(prediction).split()
    gold = normalize_answer(truth).split()
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0
    precision = 1.0 * same / len(predicted)
    recall = 1.0 * same / len(gold)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(truth)


def evaluate_squad(questions: Sequence[tuple[str, Sequence[str]]], predictions: Mapping[str, str]) -> dict[str, Any]:
    """Exact match and F1 over (question id, gold answers), in order; an unanswered question scores 0.

    A question without gold answers raises, as ``max()`` does in the official script.
    """
    exact = 0
    f1: float = 0
    for qas_id, answers in questions:
        if qas_id not in predictions:
            continue
        if not answers:
            raise ValueError(f"question {qas_id!r} has no gold answers, so SQuAD v1.1 cannot score it")
        prediction = predictions[qas_id]
        exact += max(exact_match_score(prediction, gold) for gold in answers)
        f1 += max(f1_score(prediction, gold) for gold in answers)
    total = len(questions)
    return {
        "f1": f1 / total,
        "exact_match": exact / total,
        "count": float(total),
        "f1_sum": float(f1),
        "exact_match_count": float(exact),
    }
