"""SQuAD v1.1 for BERT: the reference's WordPiece features (384 tokens, stride 128), cached, as a three-tensor QSL.

The features are the ones MLCommons' ``language/bert/create_squad_data.py`` builds (``read_squad_examples`` then
``convert_examples_to_features`` with ``max_seq_length=384``, ``max_query_length=64``, ``doc_stride=128``), so that
sample *i* here is the reference's feature *i* and MLCommons' ``accuracy-squad.py`` can score our accuracy log:

* a context is split into words on the reference's white space (space, tab, CR, LF and U+202F only);
* the question is tokenized whole and cut to 64 tokens; every context word is tokenized on its own, and each of its
  word pieces remembers the word (``token_to_orig``);
* windows of at most ``384 - len(question) - 3`` context tokens start every 128 tokens (``doc_stride``), the last one
  ending at the context's end; each window is ``[CLS] question [SEP] context [SEP]`` padded with 0, with its mask,
  its segment ids, and for each context token whether this window gives it the most context (``max_context``).

Tokenization is the ``tokenizers`` package's WordPiece on the model's ``vocab.txt`` behind a BERT normalizer and
pre-tokenizer, which follow BERT's basic tokenizer (control characters removed, white space unified, CJK characters
split, accents stripped, punctuation split, lower case one character at a time as ``transformers``' BertTokenizer
does, special tokens such as a literal ``[SEP]`` kept whole). Two steps are done here in Python first, where
``tokenizers`` differs from the reference (:func:`basic_clean`): it keeps unassigned code points, which the reference
removes as control characters, and it does not space CJK Extension E ideographs.

The features are built once into ``<cache>/preprocessed/squad-<key>.npz``, the key hashing the vocabulary's and
the data's bytes, the parameters, :data:`FEATURES_VERSION` and the ``tokenizers`` version; the text (questions,
context words, gold answers) is read again from the data file, which takes well under a second.
"""

from __future__ import annotations

import hashlib
import io
import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_mlperf.datasets.base import ArrayDataset, PreloadedSamples, array_digest
from pytest_mlperf.errors import ProvisioningError
from pytest_mlperf.tasks.squad import QuestionAnswering

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "FEATURES_VERSION",
    "FULL_FEATURES",
    "FULL_QUESTIONS",
    "INPUT_ALIASES",
    "SQUAD_DEV",
    "VOCAB",
    "Question",
    "SquadDataset",
    "SquadError",
    "SquadFeatures",
    "SquadParams",
    "TokenizersMissing",
    "basic_tokenize",
    "bert_input_names",
    "bert_tokenizer",
    "build_features",
    "onnx_input_names",
    "read_squad",
    "read_vocab",
    "require_tokenizers",
    "synthetic_squad",
    "wordpiece",
]

#: Manifest entries: the SQuAD v1.1 dev set and the BERT vocabulary.
SQUAD_DEV = "squad-v1.1-dev"
VOCAB = "bert-large-vocab"
#: The dev set's questions, and the features the reference makes of them; targets apply to the whole set only.
FULL_QUESTIONS = 10_570
FULL_FEATURES = 10_833
#: Bump whenever the code changes the features it produces: it is part of the cache key.
FEATURES_VERSION = 1
#: The roles of BERT's three inputs and the names exports give them; the first name is the reference's.
INPUT_ALIASES: dict[str, tuple[str, ...]] = {
    "input_ids": ("input_ids",),
    "input_mask": ("input_mask", "attention_mask"),
    "segment_ids": ("segment_ids", "token_type_ids"),
}
#: read_squad_examples' white space (not Python's: U+00A0 and friends stay inside words there).
_WORD_BREAKS = frozenset(" \t\r\n\u202f")


class SquadError(ProvisioningError):
    """The SQuAD data or the vocabulary is not usable as given; the message names the file and what is wrong."""


@dataclass(frozen=True)
class SquadParams:
    """The reference's feature parameters; every field is part of the cache key."""

    max_seq_length: int = 384
    max_query_length: int = 64
    doc_stride: int = 128

    def __post_init__(self) -> None:
        if self.max_query_length + 3 >= self.max_seq_length or self.doc_stride < 1:
            raise ValueError(f"SQuAD parameters {self} leave no room for the context")


@dataclass(frozen=True)
class Question:
    """One SQuAD question: its id, text, the context split into words, and the gold answers."""

    qas_id: str
    text: str
    doc_words: tuple[str, ...]
    answers: tuple[str, ...]
    paragraph: int


def _split_words(context: str) -> tuple[str, ...]:
    words: list[str] = []
    current: list[str] = []
    for char in context:
        if char in _WORD_BREAKS:
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return tuple(words)


def read_squad(path: Path) -> list[Question]:
    """The questions of a SQuAD v1.1 JSON file, in file order; SquadError naming the file and the entry."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SquadError(f"SQuAD file {path} cannot be read as JSON: {exc}") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise SquadError(
            f"SQuAD file {path} has no 'data' list; expected the SQuAD v1.1 format "
            "{'version': '1.1', 'data': [{'title', 'paragraphs': [{'context', 'qas'}]}]}"
        )
    questions: list[Question] = []
    seen: set[str] = set()
    paragraph_index = 0
    for a, article in enumerate(data):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise SquadError(f"SQuAD file {path}: data[{a}] has no 'paragraphs' list")
        for p, paragraph in enumerate(paragraphs):
            where = f"SQuAD file {path}: data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                raise SquadError(f"{where} has no 'context' string")
            qas = paragraph.get("qas")
            if not isinstance(qas, list):
                raise SquadError(f"{where} has no 'qas' list")
            words = _split_words(paragraph["context"])
            for q, qa in enumerate(qas):
                entry = f"{where}.qas[{q}]"
                if (
                    not isinstance(qa, dict)
                    or not isinstance(qa.get("id"), str)
                    or not isinstance(qa.get("question"), str)
                ):
                    raise SquadError(f"{entry} needs an 'id' and a 'question' string")
                answers = qa.get("answers", [])
                if not isinstance(answers, list) or not all(
                    isinstance(x, dict) and isinstance(x.get("text"), str) for x in answers
                ):
                    raise SquadError(f"{entry}: 'answers' must be a list of {{'text': ..., 'answer_start': ...}}")
                if qa["id"] in seen:
                    raise SquadError(f"{entry}: question id {qa['id']!r} appears twice")
                seen.add(qa["id"])
                questions.append(
                    Question(qa["id"], qa["question"], words, tuple(x["text"] for x in answers), paragraph_index)
                )
            paragraph_index += 1
    if not questions:
        raise SquadError(f"SQuAD file {path} holds no questions")
    return questions


# -- tokenization --------------------------------------------------------------------------------------------------


def read_vocab(path: Path) -> list[str]:
    """The vocabulary's tokens by id, one a line (as BertTokenizer reads ``vocab.txt``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SquadError(f"vocabulary {path} cannot be read as UTF-8 text: {exc}") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    missing = [t for t in ("[CLS]", "[SEP]", "[UNK]") if t not in tokens]
    if missing:
        raise SquadError(f"vocabulary {path} lacks {', '.join(missing)}: it is not a BERT WordPiece vocab.txt")
    return tokens


class TokenizersMissing(SquadError):
    """The ``tokenizers`` package, which builds the features, is not installed."""


def require_tokenizers() -> None:
    """TokenizersMissing, saying how to install it, unless ``tokenizers`` can be imported."""
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        raise TokenizersMissing(
            "SQuAD features need the tokenizers package, which is not installed: pip install 'pytest-mlperf[language]' "
            "(or pip install tokenizers)"
        ) from None


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class _BasicTable(dict[int, "str | None"]):
    """``str.translate`` table for the basic tokenizer's first two steps, by Python's Unicode database.

    Removed: NUL, U+FFFD and every category C character but tab, CR and LF (``tokenizers`` keeps unassigned code
    points); spaced: the CJK ideographs, in every range BERT lists (``tokenizers`` misses Extension E). Filled as
    characters are first met, so a text costs one Python call per distinct character, once per process.
    """

    def __missing__(self, cp: int) -> str | None:
        char = chr(cp)
        value: str | None = char
        if cp in (0, 0xFFFD) or (cp not in (9, 10, 13) and unicodedata.category(char).startswith("C")):
            value = None
        elif _is_cjk(cp):
            value = f" {char} "
        self[cp] = value
        return value


_BASIC_TABLE = _BasicTable()


def basic_clean(text: str, *, lower: bool = False) -> str:
    """The text as BERT's basic tokenizer has it before splitting: cleaned and CJK spaced (by Python's tables).

    ``tokenizers`` then does the rest identically. Doing these steps here keeps two of its differences out: it keeps
    unassigned code points, and it does not space CJK Extension E. *lower* lower-cases with Python's ``str.lower``,
    as ``accuracy-squad.py``'s basic tokenizer does (a word-final capital sigma becomes the final form U+03C2); the
    features are lower-cased one character at a time (U+03C3), as ``transformers``' BertTokenizer and ``tokenizers``
    do.
    """
    cleaned = text.translate(_BASIC_TABLE)
    return cleaned.lower() if lower else cleaned


def bert_tokenizer(vocab: Sequence[str]) -> Tokenizer:
    """BERT's uncased WordPiece on *vocab* (tokens by id), no special tokens added (the features add their own)."""
    require_tokenizers()
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    # A token listed twice maps to its last line, as in the reference's load_vocab.
    ids = {token: index for index, token in enumerate(vocab)}
    tokenizer = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # transformers' BertTokenizer keeps a literal "[SEP]" (and the other special tokens) in the text whole.
    tokenizer.add_special_tokens([t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in ids])
    return tokenizer


def wordpiece(tokenizer: Tokenizer, text: str) -> list[str]:
    """*text* as the reference's ``tokenizer.tokenize`` gives it: BERT's word pieces."""
    return list(tokenizer.encode(basic_clean(text), add_special_tokens=False).tokens)


#: Words accuracy-squad.py's basic tokenizer (NVIDIA's tokenization.py) keeps whole and unchanged.
_NEVER_SPLIT = frozenset(("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"))


def basic_tokenize(tokenizer: Tokenizer, text: str) -> list[str]:
    """BERT's basic tokenizer (lower case) as ``accuracy-squad.py`` runs it to map answers back to the text."""
    assert tokenizer.normalizer is not None and tokenizer.pre_tokenizer is not None
    normalize, split = tokenizer.normalizer.normalize_str, tokenizer.pre_tokenizer.pre_tokenize_str
    out: list[str] = []
    for word in basic_clean(text).split():
        if word in _NEVER_SPLIT:
            out.append(word)
        else:
            out.extend(piece for piece, _ in split(normalize(word.lower())))
    return out


@dataclass
class SquadFeatures:
    """The reference's features as arrays, one row per feature, plus the text the scorer maps answers back to."""

    questions: list[Question]
    vocab: list[str]
    input_ids: np.ndarray  # int32 [N, L]
    input_mask: np.ndarray  # uint8 [N, L]
    segment_ids: np.ndarray  # uint8 [N, L]
    example_index: np.ndarray  # int32 [N]: the question each feature belongs to
    token_to_orig: np.ndarray  # int32 [N, L]: context word of each context token, -1 elsewhere
    max_context: np.ndarray  # bool [N, L]: this feature gives the token its most context
    tokenizer: Tokenizer

    def __len__(self) -> int:
        return len(self.example_index)

    def tokens(self, feature: int, start: int, end: int) -> list[str]:
        """The word pieces at positions start..end (inclusive) of a feature."""
        return [self.vocab[int(i)] for i in self.input_ids[feature, start : end + 1]]


def build_features(
    questions: Sequence[Question], vocab: Sequence[str], params: SquadParams = SquadParams()
) -> dict[str, np.ndarray]:
    """``convert_examples_to_features`` (evaluation) as arrays; see the module docstring for the rules."""
    tokenizer = bert_tokenizer(vocab)
    ids = {token: index for index, token in enumerate(vocab)}
    cls_id, sep_id = ids["[CLS]"], ids["[SEP]"]
    length = params.max_seq_length
    # A paragraph's words are tokenized once for all of its questions; tokenizers runs the batch on its threads.
    paragraphs: dict[int, tuple[str, ...]] = {}
    for question in questions:
        paragraphs.setdefault(question.paragraph, question.doc_words)
    order = sorted(paragraphs)
    doc_encodings = tokenizer.encode_batch(
        [[basic_clean(w) for w in paragraphs[p]] for p in order], is_pretokenized=True, add_special_tokens=False
    )
    docs = {
        p: (np.asarray(enc.ids, np.int32), np.asarray([-1 if w is None else w for w in enc.word_ids], np.int32))
        for p, enc in zip(order, doc_encodings, strict=True)
    }
    query_encodings = tokenizer.encode_batch([basic_clean(q.text) for q in questions], add_special_tokens=False)

    rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for example, (question, query) in enumerate(zip(questions, query_encodings, strict=True)):
        query_ids = np.asarray(query.ids[: params.max_query_length], np.int32)
        doc_ids, doc_words = docs[question.paragraph]
        max_tokens = length - len(query_ids) - 3
        spans: list[tuple[int, int]] = []
        start = 0
        while start < len(doc_ids):
            span = min(len(doc_ids) - start, max_tokens)
            spans.append((start, span))
            if start + span == len(doc_ids):
                break
            start += min(span, params.doc_stride)
        best = _max_context_span(spans, len(doc_ids))
        offset = len(query_ids) + 2
        for index, (start, span) in enumerate(spans):
            row = np.zeros(length, np.int32)
            row[0] = cls_id
            row[1 : offset - 1] = query_ids
            row[offset - 1] = sep_id
            row[offset : offset + span] = doc_ids[start : start + span]
            row[offset + span] = sep_id
            real = offset + span + 1
            orig = np.full(length, -1, np.int32)
            orig[offset : offset + span] = doc_words[start : start + span]
            context = np.zeros(length, bool)
            context[offset : offset + span] = best[start : start + span] == index
            rows.append((example, row, orig, context, np.asarray([real, offset], np.int32)))

    count = len(rows)
    input_ids = np.zeros((count, length), np.int32)
    input_mask = np.zeros((count, length), np.uint8)
    segment_ids = np.zeros((count, length), np.uint8)
    token_to_orig = np.full((count, length), -1, np.int32)
    max_context = np.zeros((count, length), bool)
    example_index = np.zeros(count, np.int32)
    positions = np.arange(length)
    for n, (example, row, orig, context, (real, offset)) in enumerate(rows):
        example_index[n] = example
        input_ids[n] = row
        input_mask[n] = positions < real
        # [CLS], the question and its [SEP] are segment 0; the context and the last [SEP] segment 1; padding 0.
        segment_ids[n] = (positions >= offset) & (positions < real)
        token_to_orig[n] = orig
        max_context[n] = context
    return {
        "input_ids": input_ids,
        "input_mask": input_mask,
        "segment_ids": segment_ids,
        "example_index": example_index,
        "token_to_orig": token_to_orig,
        "max_context": max_context,
    }


def _max_context_span(spans: Sequence[tuple[int, int]], count: int) -> np.ndarray:
    """``_check_is_max_context`` for every context token at once: the index of the span that wins it.

    A span's score for a token is min(left context, right context) + 0.01 x span length; the first best span wins.
    """
    if not spans or count == 0:
        return np.zeros(count, np.int64)
    position = np.arange(count, dtype=np.float64)
    scores = np.full((len(spans), count), -np.inf)
    for index, (start, span) in enumerate(spans):
        end = start + span - 1
        inside = (position >= start) & (position <= end)
        score = np.minimum(position - start, end - position) + 0.01 * span
        scores[index, inside] = score[inside]
    winner: np.ndarray = np.argmax(scores, axis=0)
    return winner


# -- the QSL -------------------------------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    from pytest_mlperf.fileio import file_sha256

    return file_sha256(path)


def features_key(data: Path, vocab: Path, params: SquadParams) -> str:
    """What decides the cached features: the two files' bytes, the parameters, this code and the tokenizer."""
    require_tokenizers()
    import tokenizers

    fields = {
        "data": _digest(data),
        "vocab": _digest(vocab),
        "params": asdict(params),
        "version": FEATURES_VERSION,
        "tokenizers": tokenizers.__version__,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def bert_input_names(graph_inputs: Iterable[str]) -> dict[str, str]:
    """Role (``input_ids``, ``input_mask``, ``segment_ids``) -> the graph's input name, read through the aliases.

    A name matches a role when, lower-cased and without a ``:0`` suffix, it is one of the role's aliases or ends
    with ``/<alias>`` or ``_<alias>``; ValueError lists the graph's names when a role has no match or several.
    """
    names = list(graph_inputs)
    found: dict[str, str] = {}
    for role, aliases in INPUT_ALIASES.items():
        hits = []
        for name in names:
            bare = name.lower().split(":")[0]
            if any(bare == a or bare.endswith((f"/{a}", f"_{a}", f".{a}")) for a in aliases):
                hits.append(name)
        if len(hits) != 1:
            what = "no input" if not hits else f"several inputs ({', '.join(hits)})"
            raise ValueError(
                f"the model has {what} for BERT's {role} (names tried: {', '.join(aliases)}); its inputs are "
                f"{', '.join(names) or 'none'}. Pass input_names={{'input_ids': ..., 'input_mask': ..., "
                "'segment_ids': ...} to the dataset"
            )
        found[role] = hits[0]
    return found


def onnx_input_names(model: Path) -> list[str]:
    """The graph inputs of an ONNX file that are not initializers (weights), in graph order."""
    import onnx

    try:
        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError depending on the damage
        from pytest_mlperf.errors import ModelError

        raise ModelError(f"{model} cannot be read as an ONNX model: {exc}") from None
    weights = {init.name for init in graph.initializer}
    return [i.name for i in graph.input if i.name not in weights]


class SquadDataset(PreloadedSamples):
    """A LoadGen QSL over SQuAD v1.1 features: three int64 tensors per sample, named as the model names them."""

    synthetic_inputs = False

    def __init__(
        self,
        data: Path | str,
        vocab: Path | str,
        cache_dir: Path | str,
        *,
        input_names: Mapping[str, str] | None = None,
        params: SquadParams = SquadParams(),
        name: str = SQUAD_DEV,
        performance_count: int | None = None,
    ) -> None:
        from pytest_mlperf.fileio import ensure_built

        self.name = name
        self.params = params
        self.data_path, self.vocab_path = Path(data), Path(vocab)
        self.input_names = dict(input_names or {role: role for role in INPUT_ALIASES})
        unknown = set(self.input_names) - set(INPUT_ALIASES)
        if unknown or len(self.input_names) != len(INPUT_ALIASES):
            raise ValueError(
                f"input_names must map each of {', '.join(INPUT_ALIASES)} to a model input name, got {self.input_names}"
            )
        questions = read_squad(self.data_path)
        vocab_tokens = read_vocab(self.vocab_path)
        key = features_key(self.data_path, self.vocab_path, params)

        def build() -> bytes:
            arrays = build_features(questions, vocab_tokens, params)
            out = io.BytesIO()
            np.savez(out, **arrays)  # type: ignore[arg-type]
            return out.getvalue()

        self.cache_file = ensure_built(
            Path(cache_dir), f"preprocessed/squad-{key}.npz", build, what=f"SQuAD features of {self.data_path}"
        )
        with np.load(self.cache_file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        self.squad = SquadFeatures(
            questions=questions,
            vocab=vocab_tokens,
            tokenizer=bert_tokenizer(vocab_tokens),
            **arrays,
        )
        self.total_count = len(self.squad)
        if self.total_count == 0:
            raise SquadError(f"SQuAD file {self.data_path} gives no features: every context is empty")
        self.performance_count = min(performance_count or self.total_count, self.total_count)
        self.task = QuestionAnswering()
        length = params.max_seq_length
        self._init_block(
            {name: (length,) for name in self.input_names.values()},
            {name: np.int64 for name in self.input_names.values()},
        )

    @cached_property
    def digest(self) -> str:
        """sha256 of the three input tensors and the gold answers: the data a run feeds and is scored on."""
        answers = np.array([[q.qas_id, *q.answers] for q in self.squad.questions], dtype=object)
        features = {k: getattr(self.squad, k) for k in ("input_ids", "input_mask", "segment_ids", "example_index")}
        return array_digest({**features, "answers": answers})

    @property
    def question_count(self) -> int:
        return len(self.squad.questions)

    def load(self, indices: Sequence[int]) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        names = self.input_names
        self.store(
            idx,
            {
                names["input_ids"]: self.squad.input_ids[idx].astype(np.int64),
                names["input_mask"]: self.squad.input_mask[idx].astype(np.int64),
                names["segment_ids"]: self.squad.segment_ids[idx].astype(np.int64),
            },
        )

    def describe(self) -> dict[str, Any]:
        return {"questions": self.question_count, "features": self.total_count, **asdict(self.params)}


def synthetic_squad(
    count: int = 64,
    *,
    input_names: Mapping[str, str] | None = None,
    vocab: Sequence[str] | None = None,
    params: SquadParams = SquadParams(),
    seed: int = 0,
) -> ArrayDataset:
    """Token inputs of BERT's shape for performance runs without SQuAD: random ids, real-looking masks.

    Each sample is ``[CLS]`` + a 16-token question + ``[SEP]`` + context + ``[SEP]``, filling 60 % to 100 % of the
    sequence, then padding, as SQuAD's features do; accuracy on it would mean nothing (``synthetic_inputs``). Ids
    come from *vocab* when given (they must fit the model's embedding), else from the MLPerf model's 30,522 tokens.
    """
    names = dict(input_names or {role: role for role in INPUT_ALIASES})
    if vocab is None:
        size, cls_id, sep_id = 30522, 101, 102
    else:
        size, cls_id, sep_id = len(vocab), vocab.index("[CLS]"), vocab.index("[SEP]")
    rng = np.random.default_rng(seed)
    length = params.max_seq_length
    ids = rng.integers(min(1000, size // 2), size, size=(count, length), dtype=np.int64)
    real = rng.integers(int(0.6 * length), length + 1, size=count)
    positions = np.arange(length)
    mask = (positions[None, :] < real[:, None]).astype(np.int64)
    segments = ((positions[None, :] >= 18) & (mask == 1)).astype(np.int64)
    ids[:, 0] = cls_id
    ids[:, 17] = sep_id
    ids[np.arange(count), real - 1] = sep_id
    ids *= mask
    return ArrayDataset(
        {names["input_ids"]: ids, names["input_mask"]: mask, names["segment_ids"]: segments},
        name="squad-synthetic",
        task=QuestionAnswering(),
        synthetic_inputs=True,
    )
