"""Fixtures for the Action's tests: runner files in tmp, git repositories, and a fake GitHub API on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

DATA = Path(__file__).with_name("data")
FAKE_SESSION = Path(__file__).with_name("fake_session.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "acme/vision"


def load(name: str) -> dict[str, Any]:
    """A hand-made document from tests/action/data."""
    doc: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return doc


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env)
    return out.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, content in files.items():
        (repo / name).write_text(content, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def bench(**values: Any) -> str:
    return json.dumps({"latency_ms": 1.0, "qps": 2000.0, **values})


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[list[dict[str, str]]], tuple[Path, list[str]]]:
    """A real git repository with one commit per dict of files; returns it and the commit shas."""

    def make(commits: list[dict[str, str]]) -> tuple[Path, list[str]]:
        repo = tmp_path / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        shas = [commit(repo, files, f"commit {i}") for i, files in enumerate(commits)]
        return repo, shas

    return make


def read_outputs(path: Path) -> dict[str, str]:
    """Parses GITHUB_OUTPUT the way the runner does (``name<<DELIMITER`` blocks)."""
    outputs: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        name, _, delimiter = lines[i].partition("<<")
        end = lines.index(delimiter, i + 1)
        outputs[name] = "\n".join(lines[i + 1 : end])
        i = end + 1
    return outputs


@dataclass
class Runner:
    """The files and variables a GitHub runner gives a step, all in tmp."""

    root: Path
    monkeypatch: pytest.MonkeyPatch
    output: Path = field(init=False)
    summary: Path = field(init=False)
    event: Path = field(init=False)

    def __post_init__(self) -> None:
        self.output = self.root / "github_output"
        self.summary = self.root / "step_summary.md"
        self.event = self.root / "event.json"

    def inputs(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv("INPUT_" + name.upper(), value)

    def set_event(self, doc: dict[str, Any], name: str = "pull_request") -> None:
        self.event.write_text(json.dumps(doc), encoding="utf-8")
        self.monkeypatch.setenv("GITHUB_EVENT_PATH", str(self.event))
        self.monkeypatch.setenv("GITHUB_EVENT_NAME", name)

    def outputs(self) -> dict[str, str]:
        return read_outputs(self.output)

    def summary_text(self) -> str:
        return self.summary.read_text(encoding="utf-8") if self.summary.exists() else ""


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runner:
    """A clean step environment: no INPUT_* or GITHUB_* left over from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith(("INPUT_", "GITHUB_", "RUNNER_")):
            monkeypatch.delenv(name)
    root = tmp_path / "runner"
    (root / "temp").mkdir(parents=True)
    r = Runner(root, monkeypatch)
    monkeypatch.setenv("GITHUB_OUTPUT", str(r.output))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(r.summary))
    monkeypatch.setenv("GITHUB_REPOSITORY", REPOSITORY)
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("RUNNER_TEMP", str(root / "temp"))
    # The compare CLI runs as a child process from the test repository; it must import this checkout.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    return r


def action_commands() -> list[str]:
    """argv options that make run mode use the fake session and the real compare CLI of this checkout."""
    return [
        "--pytest-command", f"{sys.executable} {FAKE_SESSION}",
        "--compare-command", f"{sys.executable} -m pytest_mlperf.cli compare",
    ]


@dataclass
class FakeGitHub:
    """A stateful stand-in for the GitHub REST endpoints the Action calls, served by a real HTTP server.

    ``failures`` holds statuses (or (status, headers) pairs) answered, in order, before any real handling;
    ``read_only`` makes every write answer 403 like a fork PR's token does. ``tokens`` maps each accepted token
    to the user it acts as: "test-token" is like a workflow's GITHUB_TOKEN (comments by ``github-actions[bot]``,
    ``GET /user`` refused with 403), "pat-token" like a person's token (``GET /user`` answers its login).
    """

    server: HTTPServer
    comments: list[dict[str, Any]] = field(default_factory=list)
    pulls: dict[int, str] = field(default_factory=dict)
    failures: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    always_fail: int | None = None
    read_only: bool = False
    calls: list[str] = field(default_factory=list)
    next_id: int = 1000
    tokens: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "test-token": {"login": "github-actions[bot]", "type": "Bot", "installation": True},
        "pat-token": {"login": "bench-owner", "type": "User", "installation": False},
    })

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def add_comment(self, body: str, login: str = "someone", user_type: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        kind = user_type or ("Bot" if login.endswith("[bot]") else "User")
        comment = {"id": self.next_id, "body": body, "user": {"login": login, "type": kind},
                   "html_url": f"https://github.com/{REPOSITORY}/pull/17#issuecomment-{self.next_id}"}
        self.comments.append(comment)
        return comment

    def handle(self, request: Request) -> Response:
        query = parse_qs(request.query_string.decode())
        self.calls.append(f"{request.method} {request.path}" + (f"?page={query['page'][0]}" if "page" in query else ""))
        if self.always_fail is not None:
            return Response("server error", status=self.always_fail)
        if self.failures:
            failure = self.failures.pop(0)
            status, headers = failure if isinstance(failure, tuple) else (failure, {})
            return Response(json.dumps({"message": "failure injected by the test"}), status=status, headers=headers)
        if request.method in ("POST", "PATCH") and self.read_only:
            return Response(json.dumps({"message": "Resource not accessible by integration"}), status=403)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        user = self.tokens.get(token)
        if user is None:
            return Response(json.dumps({"message": "Bad credentials"}), status=401)
        path = request.path
        if path == "/user" and request.method == "GET":
            if user["installation"]:
                return Response(json.dumps({"message": "Resource not accessible by integration"}), status=403)
            return self._json({"login": user["login"], "type": user["type"]})
        if m := re.fullmatch(rf"/repos/{REPOSITORY}/pulls/(\d+)", path):
            number = int(m.group(1))
            if number not in self.pulls:
                return Response(json.dumps({"message": "Not Found"}), status=404)
            return self._json({"number": number, "head": {"sha": self.pulls[number]}})
        if re.fullmatch(rf"/repos/{REPOSITORY}/issues/\d+/comments", path):
            if request.method == "POST":
                made = self.add_comment(request.get_json()["body"], login=user["login"], user_type=user["type"])
                return self._json(made, status=201)
            per_page = int(query.get("per_page", ["30"])[0])
            page = int(query.get("page", ["1"])[0])
            items = self.comments[(page - 1) * per_page : page * per_page]
            headers = {}
            if page * per_page < len(self.comments):
                headers["Link"] = f'<{self.url}{path}?per_page={per_page}&page={page + 1}>; rel="next"'
            return self._json(items, headers=headers)
        if (m := re.fullmatch(rf"/repos/{REPOSITORY}/issues/comments/(\d+)", path)) and request.method == "PATCH":
            for comment in self.comments:
                if comment["id"] == int(m.group(1)):
                    comment["body"] = request.get_json()["body"]
                    return self._json(comment)
            return Response(json.dumps({"message": "Not Found"}), status=404)
        return Response(json.dumps({"message": f"no fake for {request.method} {path}"}), status=404)

    @staticmethod
    def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(doc), status=status, headers=headers or {}, content_type="application/json")


@pytest.fixture
def fake_github(httpserver: HTTPServer) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(httpserver)
    httpserver.expect_request(re.compile(r"/.*")).respond_with_handler(fake.handle)
    yield fake


def artifact(root: Path, name: str, comparison: str = "comparison-regression.json", pr: int = 17) -> Path:
    """An artifact folder as download-artifact leaves it, from the hand-made documents."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "comparison.json").write_text(json.dumps(load(comparison)))
    (folder / "results.json").write_text(json.dumps(load("results-head.json")))
    (folder / "base.json").write_text(json.dumps(load("results-base.json")))
    meta = {"version": 1, "label": name, "compare": "ab", "base_sha": "1" * 40, "head_sha": "3" * 40, "rounds": 3,
            "notes": [], "pull_request": {"number": pr, "head_sha": "2" * 40}}
    (folder / "report-meta.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture
def reporter(runner: Runner, fake_github: FakeGitHub, tmp_path: Path) -> Path:
    """A workflow_run job: the event, the token, and an empty download folder."""
    runner.monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    runner.monkeypatch.setenv("GITHUB_API_URL", fake_github.url)
    runner.set_event(load("event-workflow-run.json"), name="workflow_run")
    runner.inputs(github_token="test-token", artifacts="downloads")
    fake_github.pulls[17] = "2" * 40
    return tmp_path / "downloads"
