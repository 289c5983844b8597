"""Credentials in URLs never survive redaction, in a URL alone or inside free text."""

from __future__ import annotations

import pytest

from pytest_mlperf.redact import redact, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:s3cret@mirror.example/a.tgz", "https://***@mirror.example/a.tgz"),
        ("https://token@mirror.example:8443/a", "https://***@mirror.example:8443/a"),
        ("https://u:p@ss@mirror.example/a", "https://***@mirror.example/a"),
        ("https://mirror.example/a?x=1&token=abc#frag", "https://mirror.example/a?x=1&token=***#frag"),
        ("https://mirror.example/a?X-Amz-Signature=f00", "https://mirror.example/a?X-Amz-Signature=***"),
        ("https://mirror.example/plain", "https://mirror.example/plain"),
        ("not a url at all", "not a url at all"),
    ],
)
def test_redact_url_removes_userinfo_and_secret_query(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_removes_every_credential_and_keeps_the_rest() -> None:
    text = "GET https://alice:hunter2@m.example/x failed; retry ftp://bob:pw@h/y or mail a@b.example"
    out = redact(text)
    assert "hunter2" not in out and "alice" not in out and "bob" not in out and ":pw" not in out
    assert out == "GET https://***@m.example/x failed; retry ftp://***@h/y or mail a@b.example"
