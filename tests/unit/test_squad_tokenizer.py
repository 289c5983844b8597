"""BERT's basic tokenizer and WordPiece through ``tokenizers``: each rule of the reference's tokenizer, by hand.

The expected tokens are written from the rules of BERT's ``BasicTokenizer`` and ``WordpieceTokenizer`` (the ones
MLCommons' reference uses through ``transformers`` and ``tokenization.py``), on a vocabulary written here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tokenizers", reason="SQuAD features need tokenizers: pip install 'pytest-mlperf[language]'")

from pytest_mlperf.datasets.squad import (
    SquadError,
    basic_tokenize,
    bert_tokenizer,
    read_vocab,
    wordpiece,
)

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cafe", "naive", "hello", "world", "un", "##aff", "##able", "中",
    "文", "\U0002b820", "a", "##a", "b", ",", "!", "$", "5", "don", "'", "t", "«", "»", "x", "##y", "οδοσ", "οδος",
    "istanbul",
]  # fmt: skip


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer(vocab_file: Path):  # type: ignore[no-untyped-def]
    return bert_tokenizer(read_vocab(vocab_file))


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        # Lower case, then accents stripped (NFD, marks of category Mn dropped).
        ("Café NAÏVE", ["cafe", "naive"]),
        # NUL, U+FFFD and control/format characters (category C) are removed, joining what they separated.
        ("hel\x00lo\u200b wor\x07ld\ufffd", ["hello", "world"]),
        # Unassigned code points are category Cn: removed too (tokenizers alone would keep U+0378).
        ("x\u0378y", ["x", "##y"]),
        # Tab, no-break space, ideographic space, line separator: white space.
        ("hello\u00a0world\u3000a\tb\u2028x", ["hello", "world", "a", "b", "x"]),
        # CJK ideographs become words of their own, Extension E (U+2B820) included.
        ("中文", ["中", "文"]),
        ("a\U0002b820b", ["a", "\U0002b820", "b"]),
        # Punctuation: every ASCII non-alphanumeric (so "$") and every Unicode category P (« ») splits off.
        ("hello,world!", ["hello", ",", "world", "!"]),
        ("$5", ["$", "5"]),
        ("don't", ["don", "'", "t"]),
        ("«x»", ["«", "x", "»"]),
        # WordPiece: greedy longest match with "##" continuations; a word that cannot be covered is one [UNK].
        ("unaffable", ["un", "##aff", "##able"]),
        ("unaffablez", ["[UNK]"]),
        ("a" * 100, ["a"] + ["##a"] * 99),
        ("a" * 101, ["[UNK]"]),  # more than 100 characters
        # The features lower-case one character at a time (transformers' BertTokenizer): no final-sigma form.
        ("ΟΔΟΣ", ["οδοσ"]),
        # İ lower-cases to i + a combining dot, which accent stripping removes.
        ("İstanbul", ["istanbul"]),
        # transformers keeps a literal special token whole.
        ("a [SEP] b", ["a", "[SEP]", "b"]),
    ],
)
def test_wordpiece_follows_the_reference_rules(tokenizer, text: str, tokens: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert wordpiece(tokenizer, text) == tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Café, NAÏVE!", ["cafe", ",", "naive", "!"]),
        # accuracy-squad.py's BasicTokenizer lower-cases whole words with str.lower: a final sigma is ς.
        ("ΟΔΟΣ", ["οδος"]),
        # ... and leaves its never_split words alone.
        ("a [SEP] b", ["a", "[SEP]", "b"]),
        ('"The Beatles!"', ['"', "the", "beatles", "!", '"']),
    ],
)
def test_basic_tokenize_is_accuracy_squads_basic_tokenizer(tokenizer, text: str, tokens: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert basic_tokenize(tokenizer, text) == tokens


def test_a_vocabulary_without_bert_special_tokens_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("hello\nworld\n[UNK]\n", encoding="utf-8")
    with pytest.raises(SquadError, match=r"vocab.txt lacks \[CLS\], \[SEP\]: it is not a BERT WordPiece vocab.txt"):
        read_vocab(path)


def test_a_token_listed_twice_takes_its_last_line_as_the_reference_does(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nhello\n", encoding="utf-8")
    tokenizer = bert_tokenizer(read_vocab(path))
    assert tokenizer.encode("hello", add_special_tokens=False).ids == [5]
