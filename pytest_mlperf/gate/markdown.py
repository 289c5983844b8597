"""Escape untrusted strings for GitHub Markdown: one escaper for PR comments, summaries and ``compare --format md``.

Results and comparison documents can come from PR code (the reporter renders artifacts a fork produced), so every
string in them is hostile: it must not become HTML, a link, an image, an @-mention or an issue reference, break a
table or end a code span. Escaping happens after truncation, on one field at a time, so a cut can never open
a construct that the escaping closed; whole documents are shortened by dropping rows and sections, never bytes.

GitHub turns plain text into live links and notifications after Markdown is rendered (bare ``https://`` and
``www.`` URLs, ``@user``, ``#123``), so backslash escapes do not stop those: a zero-width space (U+200B) inside
the trigger does, and reads the same.
"""

from __future__ import annotations

import html
import re
import unicodedata

from pytest_mlperf.redact import redact

ZWSP = "\u200b"
#: Characters of a field read before escaping, whatever the limit: bounds the work on a hostile megabyte string.
_SCAN = 16_384

# Markdown punctuation that starts or ends a construct in running text (``<``, ``>`` and ``&`` are HTML-escaped).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~$])")
# After '@' (mentions, e-mail autolinks), '#' and 'GH-' (issue references), "://" and "www." (autolinks).
_MENTION = re.compile(r"@(?=\S)")
_ISSUE = re.compile(r"(#|gh-)(?=\d)", re.IGNORECASE)
_SCHEME = re.compile(r":(?=//)")
_WWW = re.compile(r"(www)\.", re.IGNORECASE)


def _plain(value: object, limit: int) -> str:
    """One line of at most ``limit`` characters: credentials redacted, control and format characters dropped."""
    # Redacted whole, before any cut: a cut could leave "https://user:password" without the "@" that marks it.
    s = "" if value is None else redact(str(value))[: max(_SCAN, limit * 4)]
    # Bidi overrides and zero-width characters (category Cf) can disguise text; control characters break lines.
    s = "".join(ch for ch in s if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co"))
    s = " ".join(s.split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def defuse(s: str) -> str:
    """No mention, issue reference or autolink can start in ``s``: a zero-width space breaks each trigger."""
    s = _MENTION.sub("@" + ZWSP, s)
    s = _ISSUE.sub(lambda m: m.group(1) + ZWSP, s)
    s = _SCHEME.sub(":" + ZWSP, s)
    return _WWW.sub(lambda m: m.group(1) + ZWSP + ".", s)


def md_text(value: object, limit: int = 300) -> str:
    """Free text for Markdown running text or a table cell: no HTML, no links, no mentions, no table breaks."""
    s = html.escape(_plain(value, limit), quote=False)
    return defuse(_MD_SPECIAL.sub(r"\\\1", s))


def md_code(value: object, limit: int = 200, *, cell: bool = True) -> str:
    """A code span: Markdown is inert inside, but '`' would end the span and, in a table ``cell``, '|' the cell.

    The span is closed whatever the value (documents are shortened by whole rows, never inside a span), and
    mentions and links are defused inside too, where GitHub would not act on them anyway.
    """
    s = _plain(value, limit).replace("`", "'")
    if cell:
        s = s.replace("|", "\\|")
    s = defuse(s)
    return f"`{s}`" if s else ""
