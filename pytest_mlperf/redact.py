"""Remove credentials from URLs and free text before anything is printed, logged or raised."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# scheme://user[:password]@host — the userinfo part is everything between "//" and the last "@" before the host
# ends; "/", "?" and "#" cannot occur inside userinfo, whitespace ends a URL in free text. Bounded, and a scheme
# starts only where a word starts: hostile text (a megabyte of letters) is scanned in linear time.
_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,31}://)"
    r"(?P<userinfo>[^/?#@\s]{0,4096}(?:@[^/?#@\s]{0,4096}){0,8})@"
)

# Query parameters whose value is a secret by name (signed URLs, tokens passed as ?token=...).
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&](?:access_token|token|auth|password|passwd|pwd|key|api_key|apikey|secret|signature|sig|"
    r"X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|X-Goog-Signature|X-Goog-Credential)=)"
    r"(?P<value>[^&#\s]+)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``url`` with its user name, password and secret query values replaced by ``***``.

    Safe on any string: a value that is not a URL comes back unchanged except for the same substitutions.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.username is None and parts.password is None:
        return _SECRET_QUERY.sub(lambda m: m.group("key") + REDACTED, url)
    host = parts.netloc.rpartition("@")[2]
    cleaned = urlunsplit((parts.scheme, f"{REDACTED}@{host}", parts.path, parts.query, parts.fragment))
    return _SECRET_QUERY.sub(lambda m: m.group("key") + REDACTED, cleaned)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL inside it replaced by ``***`` (messages, logs, tracebacks)."""
    text = _USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
    return _SECRET_QUERY.sub(lambda m: m.group("key") + REDACTED, text)
