"""Create-or-update of the one PR comment against a fake GitHub API served on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from action.comment import (
    CommentForbidden,
    GitHubAPIError,
    GitHubClient,
    RetryPolicy,
    find_comment,
    upsert_comment,
)
from action.summary import MARKER

from .conftest import REPOSITORY, FakeGitHub

NO_WAIT = RetryPolicy(attempts=3, backoff_s=0.0)


def client(fake: FakeGitHub, retry: RetryPolicy = NO_WAIT) -> GitHubClient:
    return GitHubClient(fake.url, "test-token", REPOSITORY, retry=retry)


def test_comment_is_created_then_updated_in_place(fake_github: FakeGitHub) -> None:
    gh = client(fake_github)
    first = upsert_comment(gh, 17, f"{MARKER}\nfirst report")
    second = upsert_comment(gh, 17, f"{MARKER}\nsecond report")
    assert (first.action, second.action) == ("created", "updated")
    assert first.comment_id == second.comment_id
    assert [c["body"] for c in fake_github.comments] == [f"{MARKER}\nsecond report"]
    assert fake_github.calls.count(f"PATCH /repos/{REPOSITORY}/issues/comments/{first.comment_id}") == 1


def test_marker_is_added_when_the_body_lacks_it(fake_github: FakeGitHub) -> None:
    upsert_comment(client(fake_github), 17, "report")
    assert fake_github.comments[0]["body"] == f"{MARKER}\nreport"


def test_identical_body_is_not_rewritten(fake_github: FakeGitHub) -> None:
    gh = client(fake_github)
    upsert_comment(gh, 17, f"{MARKER}\nsame")
    assert upsert_comment(gh, 17, f"{MARKER}\nsame").action == "unchanged"
    assert not any(call.startswith("PATCH") for call in fake_github.calls)


def test_earlier_comment_is_found_on_a_later_page(fake_github: FakeGitHub) -> None:
    for i in range(180):
        fake_github.add_comment(f"review comment {i}")
    ours = fake_github.add_comment(f"{MARKER}\nold report", login="github-actions[bot]")
    for i in range(60):
        fake_github.add_comment(f"later comment {i}")
    done = upsert_comment(client(fake_github), 17, f"{MARKER}\nnew report")
    assert (done.action, done.comment_id) == ("updated", ours["id"])
    assert len(fake_github.comments) == 241
    assert f"GET /repos/{REPOSITORY}/issues/17/comments?page=2" in fake_github.calls


def test_a_quoted_marker_is_not_our_comment(fake_github: FakeGitHub) -> None:
    fake_github.add_comment(f"> {MARKER}\n> quoting the bot")
    assert find_comment(client(fake_github), 17) is None
    assert upsert_comment(client(fake_github), 17, "report").action == "created"
    assert len(fake_github.comments) == 2


def test_read_only_token_raises_comment_forbidden_with_the_reason(fake_github: FakeGitHub) -> None:
    fake_github.read_only = True
    with pytest.raises(CommentForbidden) as info:
        upsert_comment(client(fake_github), 17, "report")
    message = str(info.value)
    assert "HTTP 403" in message and "Resource not accessible by integration" in message
    assert "pull requests from forks get a read-only token" in message
    # A permission error is final: no retry.
    assert [c.split()[0] for c in fake_github.calls] == ["GET", "POST"]


def test_server_errors_are_retried_then_succeed(fake_github: FakeGitHub) -> None:
    fake_github.failures = [502, 503]
    assert upsert_comment(client(fake_github), 17, "report").action == "created"
    assert fake_github.calls[:3] == [f"GET /repos/{REPOSITORY}/issues/17/comments"] * 3


def test_persistent_server_errors_give_up_with_a_clear_message(fake_github: FakeGitHub) -> None:
    fake_github.always_fail = 500
    with pytest.raises(GitHubAPIError) as info:
        upsert_comment(client(fake_github), 17, "report")
    assert len(fake_github.calls) == 3
    assert str(info.value) == (
        f"GET {fake_github.url}/repos/{REPOSITORY}/issues/17/comments: gave up after 3 attempts, last answer "
        "HTTP 500 server error; GitHub may be having trouble, rerun the job later"
    )


def test_rate_limit_waits_for_retry_after_then_continues(fake_github: FakeGitHub) -> None:
    waits: list[float] = []
    fake_github.failures = [(403, {"x-ratelimit-remaining": "0", "retry-after": "0"}), (429, {"retry-after": "1"})]
    gh = client(fake_github, RetryPolicy(attempts=3, backoff_s=0.0, sleep=waits.append))
    assert upsert_comment(gh, 17, "report").action == "created"
    assert waits == [0.0, 1.0]


def test_rate_limit_resetting_too_late_fails_at_once(fake_github: FakeGitHub) -> None:
    reset = str(int(time.time()) + 3600)
    fake_github.failures = [(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})]
    with pytest.raises(GitHubAPIError, match=r"rate limited by GitHub and the limit resets in \d+ s, beyond"):
        upsert_comment(client(fake_github), 17, "report")
    assert len(fake_github.calls) == 1


def test_bad_token_and_bad_repository_are_explained(fake_github: FakeGitHub) -> None:
    with pytest.raises(GitHubAPIError, match="HTTP 401, the token was refused; pass `github-token`"):
        upsert_comment(GitHubClient(fake_github.url, "wrong", REPOSITORY, retry=NO_WAIT), 17, "x")
    with pytest.raises(GitHubAPIError, match="GITHUB_REPOSITORY 'vision' is not OWNER/NAME"):
        GitHubClient(fake_github.url, "t", "vision")
