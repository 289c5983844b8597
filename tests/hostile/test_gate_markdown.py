"""`pytest-mlperf compare --format md` escapes every string from the results files, as the PR comment does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_mlperf.cli import main
from pytest_mlperf.gate.markdown import md_code, md_text
from tests.markdown_check import live_constructs

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"
HOSTILE = ("<img src=https://evil.example/p.png onerror=alert(1)> @octocat https://evil.example/x "
           "www.evil.example `tick` [l](https://evil.example) #12 | cell")


def hostile(name: str, **machine: str) -> dict[str, Any]:
    """A real results file whose case ids all carry HTML, a mention, links and an issue reference."""
    doc: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
    for run in doc["runs"]:
        run["id"] = run["id"].replace("test_digits[", f"test_digits[{HOSTILE}-")
    doc["machine"].update(machine)
    return doc


def markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str], base: dict[str, Any], head: dict[str, Any],
             *extra: str) -> tuple[int, str]:
    paths = []
    for side, doc in (("base", base), ("head", head)):
        paths.append(tmp_path / f"{side}.json")
        paths[-1].write_text(json.dumps(doc), encoding="utf-8")
    code = main(["compare", *map(str, paths), "--format", "md", *extra])
    return code, capsys.readouterr().out


def test_case_ids_cannot_inject_html_links_or_mentions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, md = markdown(tmp_path, capsys, hostile("base"), hostile("head_slow"))
    assert code == 1  # head_slow regresses: the ids reach the table and the notable changes
    assert "🔴" in md or ":red_circle:" in md
    assert live_constructs(md) == []
    # Still readable: the id is there, in a code span, with its tick replaced and its pipe escaped.
    assert "'tick'" in md and "\\| cell" in md


@pytest.mark.parametrize("force", [False, True])
def test_fingerprint_strings_in_a_refusal_or_a_warning_cannot_inject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], force: bool
) -> None:
    code, md = markdown(tmp_path, capsys, hostile("base"), hostile("head_same", cpu=HOSTILE),
                        *(["--force"] if force else []))
    assert code == (0 if force else 2)
    assert ("Compared with --force despite" if force else "**Refused:**") in md
    assert live_constructs(md) == []


def test_the_comment_and_the_cli_share_one_escaper() -> None:
    from action import summary

    assert summary.text is md_text and summary.code is md_code


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.example", "HTTPS://EVIL.EXAMPLE", "see www.evil.example", "ftp://x.example/y",
        "@octocat", "mail me: a@b.example", "#1234", "org/repo#12", "GH-77", "<https://evil.example>",
        "https&#58;//evil.example", "&#64;octocat", "h\u200bttps://evil.example", "@\u200e\u200boctocat",
        "![x](https://evil.example/p.png)", "<script>alert(1)</script>", "$\\href{https://evil.example}{x}$",
    ],
)
def test_md_text_and_md_code_leave_nothing_live(value: str) -> None:
    for rendered in (md_text(value), md_code(value), f"| {md_code(value)} | {md_text(value)} |"):
        assert live_constructs(rendered) == [], rendered


def test_escaping_follows_truncation_so_a_cut_never_opens_a_construct() -> None:
    value = "x" * 290 + "<img src=https://evil.example>@octocat"
    for limit in range(280, 330):
        assert live_constructs(md_text(value, limit)) == []
        assert live_constructs(md_code(value, limit)) == []
        assert md_code(value, limit).endswith("`")


def test_credentials_in_urls_are_redacted_before_rendering() -> None:
    assert "s3cret" not in md_text("mirror https://bob:s3cret@mirror.example/m.onnx failed")
    assert "s3cret" not in md_code("https://bob:s3cret@mirror.example/m.onnx")
