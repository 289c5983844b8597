"""A SQuAD v1.1 file, a vocabulary and a BERT stand-in whose answers are designed, with EM and F1 worked out by hand.

The stand-in (``pytest_mlperf.models.bert_standin``) gives a token a start or end logit by its id alone, so each
context's answer is the span from its start-scored word to its end-scored word. ``[CLS]`` and a few question words
score higher still: they must lose because they are outside the context. Per question (``EXPECTED``): the answer the
model gives, and its exact match and F1 against the gold answers, by the official rules (lower case, punctuation
and the articles a/an/the dropped, then token overlap):

1. "Paris, France" vs "Paris, France": EM 1, F1 1.
2. "Paris, France" vs "France" (best gold): EM 0; overlap 1, precision 1/2, recall 1/1, F1 2/3.
3. "Great Wall" vs "The Great Wall of China" (-> "great wall of china"; the answer is a strict subset): EM 0;
   overlap 2, precision 2/2, recall 2/4, F1 2/3.
4. "Great Wall" vs "the Great Wall." (-> "great wall"): EM 1, F1 1.
5. "The Beatles!" (-> "beatles") vs "Beatles": EM 1, F1 1.
6. "Marie Curie" in a context of 506 tokens, which needs two features (378 context tokens each, the second from
   token 128): the answer at token 300 has its most context in the second feature. EM 1, F1 1.
7. "Nile" vs "Yangtze" / "the Yangtze River": EM 0, F1 0 (a wrong answer).

Totals over 7 questions: exact match 4/7, F1 (1 + 2/3 + 2/3 + 1 + 1 + 1 + 0) / 7.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pytest_mlperf.models.bert_standin import HF_INPUTS, build_bert_standin

LONG_CONTEXT = " ".join(["lorem"] * 300 + ["Marie", "Curie"] + ["ipsum"] * 203) + " ."


def _qa(qas_id: str, question: str, *answers: str) -> dict[str, Any]:
    return {"id": qas_id, "question": question, "answers": [{"text": a, "answer_start": 0} for a in answers]}


def _paragraph(context: str, *qas: dict[str, Any]) -> dict[str, Any]:
    return {"context": context, "qas": list(qas)}


SQUAD = {
    "version": "1.1",
    "data": [{"title": "Designed", "paragraphs": [
        _paragraph("In 1887 the tower was built in Paris, France by Gustave Eiffel's company.",
                   _qa("q1", "Was the tower built in Paris?", "Paris, France", "in Paris"),
                   _qa("q2", "Which country, France or Spain?", "France", "the French Republic")),
        _paragraph("The answer is the Great Wall of China.",
                   _qa("q3", "What is it?", "The Great Wall of China"),
                   _qa("q4", "What is the long wall called?", "China", "the Great Wall.")),
        _paragraph('Its name was "The Beatles!" in 1960.', _qa("q5", "Which band?", "Beatles")),
        _paragraph(LONG_CONTEXT, _qa("q6", "Who won?", "Marie Curie", "Curie")),
        _paragraph("The river Nile flows north.", _qa("q7", "Which river is longest in Asia?", "Yangtze",
                                                      "the Yangtze River")),
    ]}],
}  # fmt: skip

#: Per question: (the model's answer, exact match, F1), as worked out in the module docstring.
EXPECTED = {
    "q1": ("Paris, France", 1, 1.0),
    "q2": ("Paris, France", 0, 2 / 3),
    "q3": ("Great Wall", 0, 2 / 3),
    "q4": ("Great Wall", 1, 1.0),
    "q5": ("The Beatles!", 1, 1.0),
    "q6": ("Marie Curie", 1, 1.0),
    "q7": ("Nile", 0, 0.0),
}
EXACT_MATCH = 4 / 7
F1 = (1 + 2 / 3 + 2 / 3 + 1 + 1 + 1 + 0) / 7
#: Features: one per question, but two for the long context.
FEATURES = 8

#: Start and end logits by word; the rest score 0. [CLS] and the question's "paris"/"france"/"won" lose anyway.
START = {"[CLS]": 50.0, "paris": 10.0, "great": 10.0, "the": 2.0, "marie": 10.0, "nile": 10.0, "won": 40.0}
END = {"[CLS]": 50.0, "france": 10.0, "wall": 10.0, "!": 10.0, "curie": 10.0, "nile": 10.0, "won": 40.0}


def vocabulary() -> list[str]:
    """Special tokens, then every lower-cased word and punctuation mark of the file (no word pieces needed)."""
    texts = []
    for paragraph in SQUAD["data"][0]["paragraphs"]:  # type: ignore[index]
        texts.append(paragraph["context"])
        texts.extend(qa["question"] for qa in paragraph["qas"])
    words = sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]


def write_files(directory: Path) -> tuple[Path, Path, Path]:
    """The SQuAD file, the vocabulary and the stand-in (Hugging Face input names) in *directory*."""
    vocab = vocabulary()
    ids = {token: index for index, token in enumerate(vocab)}
    # The Beatles' answer starts at "the", but "the" also opens other contexts: there the other start words win.
    model = build_bert_standin(
        len(vocab),
        {ids[w]: s for w, s in START.items()},
        {ids[w]: s for w, s in END.items()},
        input_names=HF_INPUTS,
    )
    data, vocab_file, model_file = directory / "dev-v1.1.json", directory / "vocab.txt", directory / "bert.onnx"
    data.write_text(json.dumps(SQUAD), encoding="utf-8")
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    model_file.write_bytes(model)
    return data, vocab_file, model_file
