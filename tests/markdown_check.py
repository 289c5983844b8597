"""What in a Markdown text GitHub would make live: HTML, links, images, autolinks, @-mentions, issue references.

Parsed with markdown-it-py (CommonMark plus GFM tables), then every text node is searched for the triggers that
GitHub turns into links and notifications after rendering. Code spans and fenced blocks are inert on GitHub.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from markdown_it import MarkdownIt
from markdown_it.token import Token

# The HTML the renderers write themselves; anything else came from a document.
OWN_TAGS = frozenset({"<details>", "</details>", "<summary>", "</summary>", "<sub>", "</sub>",
                      "<!-- pytest-mlperf:report -->"})
TRIGGERS = {
    "autolink": re.compile(r"(?i)(?:[a-z][a-z0-9+.-]*://|www\.)"),
    "mention": re.compile(r"@[A-Za-z0-9]"),
    "issue reference": re.compile(r"(?i)(?:#|\bgh-)\d"),
}
_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.DOTALL)


def _walk(tokens: Iterable[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        if token.children:
            yield from _walk(token.children)


def live_constructs(markdown: str, own_links: Iterable[str] = ()) -> list[str]:
    """One line per construct that a document's text could have made live; empty when the text is inert."""
    links = set(own_links)
    parser = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
    problems: list[str] = []

    def check_text(kind: str, text: str) -> None:
        for link in links:
            text = text.replace(f"]({link})", "]()")
        for name, pattern in TRIGGERS.items():
            for match in pattern.finditer(text):
                problems.append(f"{name} in {kind}: {text[max(0, match.start() - 30): match.end() + 30]!r}")

    for token in _walk(parser.parse(markdown)):
        if token.type in ("html_inline", "html_block"):
            tags = _TAG.findall(token.content)
            problems += [f"HTML {tag!r}" for tag in tags if tag not in OWN_TAGS]
            check_text("HTML", _TAG.sub(" ", token.content))
        elif token.type == "link_open" and token.attrs.get("href") not in links:
            problems.append(f"link to {token.attrs.get('href')!r}")
        elif token.type == "image":
            problems.append(f"image {token.attrs.get('src')!r}")
        elif token.type == "text":
            check_text("text", token.content)
    return problems
