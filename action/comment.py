"""Creates or updates the one pytest-mlperf comment on a pull request through the GitHub REST API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import requests

from action.summary import MARKER

_ACCEPT = "application/vnd.github+json"
_API_VERSION = "2022-11-28"


class GitHubAPIError(RuntimeError):
    """A GitHub API call that failed for good; the message names the call, the status and what to do."""


class CommentForbidden(GitHubAPIError):
    """The token may not write comments here (a fork PR's read-only token, or missing ``pull-requests: write``)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying on 5xx, connection errors and rate limits before giving up."""

    attempts: int = 4
    backoff_s: float = 2.0
    max_wait_s: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)


@dataclass(frozen=True)
class Upsert:
    """What ``upsert_comment`` did."""

    action: Literal["created", "updated", "unchanged"]
    comment_id: int
    url: str


def _is_rate_limited(response: requests.Response) -> bool:
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    # A primary limit empties the quota; a secondary one says so in retry-after or the message.
    if response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers:
        return True
    return "rate limit" in response.text.lower()


class GitHubClient:
    """A small REST client for one repository: retries what is worth retrying, explains what is not."""

    def __init__(
        self,
        api_url: str,
        token: str,
        repository: str,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if not repository or "/" not in repository:
            raise GitHubAPIError(
                f"GITHUB_REPOSITORY {repository!r} is not OWNER/NAME; it is set by the runner, so run inside Actions"
            )
        self.api_url = api_url.rstrip("/")
        self.repository = repository
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers.update({"Accept": _ACCEPT, "X-GitHub-Api-Version": _API_VERSION})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _wait_for(self, response: requests.Response, attempt: int) -> float:
        retry_after = response.headers.get("retry-after")
        if retry_after is not None and retry_after.strip().isdigit():
            return float(retry_after)
        reset = response.headers.get("x-ratelimit-reset")
        if reset is not None and reset.strip().isdigit():
            return max(0.0, float(reset) - time.time())
        return self.retry.backoff_s * 2.0**attempt

    def request(self, method: str, url: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One API call with bounded retries; returns the decoded JSON body (None when empty)."""
        return self._send(method, url, json=json, params=params)[0]

    def _send(
        self, method: str, url: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> tuple[Any, requests.Response]:
        if not url.startswith(("http://", "https://")):
            url = f"{self.api_url}{url}"
        what = f"{method} {url}"
        last = ""
        for attempt in range(self.retry.attempts):
            try:
                response = self.session.request(method, url, json=json, params=params, timeout=self.timeout_s)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
                wait = self.retry.backoff_s * 2.0**attempt
            else:
                status = response.status_code
                if status < 300:
                    return (response.json() if response.content else None), response
                body = response.text[:300].strip()
                last = f"HTTP {status} {body}"
                if _is_rate_limited(response):
                    wait = self._wait_for(response, attempt)
                    if wait > self.retry.max_wait_s:
                        raise GitHubAPIError(
                            f"{what}: rate limited by GitHub and the limit resets in {wait:.0f} s, beyond the "
                            f"{self.retry.max_wait_s:.0f} s this Action waits; rerun the job later"
                        )
                elif status >= 500:
                    wait = self.retry.backoff_s * 2.0**attempt
                elif status == 403:
                    raise CommentForbidden(
                        f"{what}: HTTP 403 {body}. The token cannot write here: pull requests from forks get a "
                        "read-only token, and otherwise the job needs `permissions: pull-requests: write`"
                    )
                elif status == 401:
                    raise GitHubAPIError(f"{what}: HTTP 401, the token was refused; pass `github-token`")
                else:
                    raise GitHubAPIError(f"{what}: HTTP {status} {body}")
            if attempt + 1 < self.retry.attempts:
                self.retry.sleep(min(wait, self.retry.max_wait_s))
        raise GitHubAPIError(
            f"{what}: gave up after {self.retry.attempts} attempts, last answer {last}; "
            "GitHub may be having trouble, rerun the job later"
        )

    def paginate(self, path: str) -> Iterator[Any]:
        """Every item of a list endpoint, following the ``Link: rel="next"`` headers."""
        url: str | None = f"{self.api_url}{path}"
        params: dict[str, Any] | None = {"per_page": 100}
        while url:
            page, response = self._send("GET", url, params=params)
            if not isinstance(page, list):
                raise GitHubAPIError(f"GET {url}: expected a JSON list, got {type(page).__name__}")
            yield from page
            url = response.links.get("next", {}).get("url")
            # The next link already carries the query string.
            params = None

    def pull_request(self, number: int) -> dict[str, Any]:
        data = self.request("GET", f"/repos/{self.repository}/pulls/{number}")
        if not isinstance(data, dict):
            raise GitHubAPIError(f"GET pull request #{number} of {self.repository}: unexpected answer")
        return data


#: Who a comment made with a workflow's GITHUB_TOKEN is by (``user.type`` "Bot").
ACTIONS_BOT = "github-actions[bot]"


def token_login(client: GitHubClient) -> str:
    """The login the client's token comments as: ``GET /user`` for a personal token, else the Actions bot.

    GITHUB_TOKEN (an installation token) may not read ``/user`` (HTTP 403 "Resource not accessible by
    integration"); its comments are by ``github-actions[bot]``. A GitHub App's own token is the same case but
    comments as ``<app>[bot]``: name that with the ``comment-author`` input.
    """
    try:
        user = client.request("GET", "/user")
    except GitHubAPIError:
        # 403 for GITHUB_TOKEN; any other refusal leaves the same answer, and a broken API fails the next call.
        return ACTIONS_BOT
    login = user.get("login") if isinstance(user, dict) else None
    return login if isinstance(login, str) and login else ACTIONS_BOT


def _by(comment: dict[str, Any], login: str) -> bool:
    user = comment.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("login"), str):
        return False
    if user["login"].lower() != login.lower():
        return False
    # "[bot]" cannot be part of a person's login; the type confirms it.
    return not login.lower().endswith("[bot]") or user.get("type") == "Bot"


def find_comment(
    client: GitHubClient, pr_number: int, marker: str = MARKER, author: str | Callable[[], str] = ACTIONS_BOT
) -> dict[str, Any] | None:
    """The earliest comment on the PR that ``author`` wrote and whose body starts with the marker.

    Anyone can post a comment that starts with the marker; editing theirs would put the report under their
    name and let them pre-empt it, so comments by anyone else are passed over. ``author`` may be a function,
    called once and only when some comment carries the marker (it may cost an API call).
    """
    login: str | None = author if isinstance(author, str) else None
    for comment in client.paginate(f"/repos/{client.repository}/issues/{pr_number}/comments"):
        body = comment.get("body") if isinstance(comment, dict) else None
        # A quote of the marker starts with '>', so it is not found here.
        if isinstance(body, str) and body.lstrip().startswith(marker):
            if login is None:
                login = author() if callable(author) else author
            if _by(comment, login):
                return dict(comment)
    return None


def upsert_comment(
    client: GitHubClient, pr_number: int, body: str, marker: str = MARKER, author: str | None = None
) -> Upsert:
    """Updates the PR's marked comment that this token wrote, or creates it; never makes a second one.

    ``author`` is the login the token comments as (the ``comment-author`` input); empty, it is asked of GitHub.
    """
    if not body.lstrip().startswith(marker):
        body = f"{marker}\n{body}"
    existing = find_comment(client, pr_number, marker, author or (lambda: token_login(client)))
    if existing is None:
        made = client.request("POST", f"/repos/{client.repository}/issues/{pr_number}/comments", json={"body": body})
        return Upsert("created", int(made["id"]), str(made.get("html_url", "")))
    cid = int(existing["id"])
    if existing.get("body") == body:
        return Upsert("unchanged", cid, str(existing.get("html_url", "")))
    made = client.request("PATCH", f"/repos/{client.repository}/issues/comments/{cid}", json={"body": body})
    return Upsert("updated", cid, str(made.get("html_url", "")))
