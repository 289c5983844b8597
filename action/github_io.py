"""The only module that reads or writes the GitHub Actions runner files and prints workflow commands."""

from __future__ import annotations

import json
import os
import shlex
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, TextIO

from pytest_mlperf.redact import redact

Level = Literal["error", "warning", "notice"]


def _opt_path(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name, "")
    return Path(value) if value else None


@dataclass(frozen=True)
class Context:
    """What the runner tells a step through its ``GITHUB_*``/``RUNNER_*`` environment variables."""

    workspace: Path
    output_path: Path | None = None
    summary_path: Path | None = None
    event_path: Path | None = None
    event_name: str = ""
    api_url: str = "https://api.github.com"
    server_url: str = "https://github.com"
    repository: str = ""
    run_id: str = ""
    sha: str = ""
    temp_dir: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Context:
        env = os.environ if environ is None else environ
        return cls(
            workspace=Path(env.get("GITHUB_WORKSPACE") or os.getcwd()),
            output_path=_opt_path(env, "GITHUB_OUTPUT"),
            summary_path=_opt_path(env, "GITHUB_STEP_SUMMARY"),
            event_path=_opt_path(env, "GITHUB_EVENT_PATH"),
            event_name=env.get("GITHUB_EVENT_NAME", ""),
            api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            server_url=(env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/"),
            repository=env.get("GITHUB_REPOSITORY", ""),
            run_id=env.get("GITHUB_RUN_ID", ""),
            sha=env.get("GITHUB_SHA", ""),
            temp_dir=_opt_path(env, "RUNNER_TEMP"),
        )

    @property
    def run_url(self) -> str | None:
        if not (self.repository and self.run_id):
            return None
        return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"


@dataclass(frozen=True)
class PullRequest:
    """The parts of a ``pull_request`` event the Action needs."""

    number: int
    base_sha: str
    head_sha: str
    head_repo: str
    base_repo: str

    @property
    def is_fork(self) -> bool:
        return self.head_repo != self.base_repo


@dataclass(frozen=True)
class WorkflowRun:
    """The parts of a ``workflow_run`` event the reporter needs to trust an artifact."""

    id: int
    head_sha: str
    event: str
    conclusion: str
    pull_numbers: tuple[int, ...]


def pull_request(event: Mapping[str, Any]) -> PullRequest | None:
    """The pull request of a ``pull_request``/``pull_request_target`` event, else None."""
    pr = event.get("pull_request")
    if not isinstance(pr, dict) or not isinstance(pr.get("number"), int):
        return None
    base = pr.get("base") or {}
    head = pr.get("head") or {}
    return PullRequest(
        number=pr["number"],
        base_sha=str(base.get("sha") or ""),
        head_sha=str(head.get("sha") or ""),
        head_repo=str((head.get("repo") or {}).get("full_name") or ""),
        base_repo=str((base.get("repo") or {}).get("full_name") or ""),
    )


def workflow_run(event: Mapping[str, Any]) -> WorkflowRun | None:
    """The triggering run of a ``workflow_run`` event, else None."""
    run = event.get("workflow_run")
    if not isinstance(run, dict):
        return None
    numbers = tuple(
        p["number"] for p in run.get("pull_requests") or [] if isinstance(p, dict) and isinstance(p.get("number"), int)
    )
    return WorkflowRun(
        id=int(run.get("id") or 0),
        head_sha=str(run.get("head_sha") or ""),
        event=str(run.get("event") or ""),
        conclusion=str(run.get("conclusion") or ""),
        pull_numbers=numbers,
    )


def _escape_data(text: str) -> str:
    return redact(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def one_line(text: str) -> str:
    """``text`` as one log line that the runner cannot read as a workflow command, credentials redacted.

    The runner acts on any line that starts (after blanks) with ``::`` or ``##[``; a value with a newline could
    start one. Line breaks are shown as ``\\n``, as in Python's repr, and other control characters as ``?``.
    """
    out = redact(text).replace("\r", "\\r").replace("\n", "\\n")
    return "".join(c if c.isprintable() or c == "\t" else "?" for c in out)


def shell_words(args: Sequence[str]) -> str:
    """A command line as a shell would take it back, on one line: ``$'...'`` quoting for control characters."""
    words = []
    for arg in args:
        arg = redact(arg)
        if any(not c.isprintable() for c in arg):
            escaped = arg.encode("unicode_escape").decode("ascii").replace("'", "\\'")
            words.append(f"$'{escaped}'")
        else:
            words.append(shlex.quote(arg))
    return " ".join(words)


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


class GitHubIO:
    """Step outputs, the job summary, the event payload and workflow commands (annotations, log groups)."""

    def __init__(self, context: Context, stream: TextIO | None = None) -> None:
        self.context = context
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        # Resolved at call time so that a replaced sys.stdout (pytest's capture) is honoured.
        return self._stream if self._stream is not None else sys.stdout

    def _command(self, line: str) -> None:
        """A workflow command this Action means; every value in it was escaped by the caller."""
        print(line, file=self.stream, flush=True)

    def log(self, message: str) -> None:
        """One line of plain text in the job log: never a workflow command, never a credential."""
        print(one_line(message), file=self.stream, flush=True)

    def relay(self, source: IO[bytes]) -> None:
        """A child process's output, line by line to its end, credentials redacted (inside :meth:`commands_off`)."""
        for raw in iter(source.readline, b""):
            self.stream.write(redact(raw.decode("utf-8", "replace")))
            self.stream.flush()

    def annotate(self, level: Level, message: str, title: str | None = None) -> None:
        props = f" title={_escape_property(title)}" if title else ""
        self._command(f"::{level}{props}::{_escape_data(message)}")

    def error(self, message: str, title: str | None = None) -> None:
        self.annotate("error", message, title)

    def warning(self, message: str, title: str | None = None) -> None:
        self.annotate("warning", message, title)

    def notice(self, message: str, title: str | None = None) -> None:
        self.annotate("notice", message, title)

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        """Folds everything printed inside (child processes included) into one collapsible log group."""
        self._command(f"::group::{_escape_data(title)}")
        try:
            yield
        finally:
            self._command("::endgroup::")

    @contextmanager
    def commands_off(self) -> Iterator[None]:
        """Nothing printed inside (a child process included) is read as a workflow command by the runner.

        A pytest session echoes its arguments (a ``-k`` expression with a newline) and runs the PR's code, so a
        line of its output could otherwise be ``::error`` or ``::add-mask``. The token is random, so the output
        cannot end the pause itself.
        """
        token = f"pytest-mlperf-{uuid.uuid4().hex}"
        self._command(f"::stop-commands::{token}")
        try:
            yield
        finally:
            self._command(f"::{token}::")

    def set_output(self, name: str, value: str) -> None:
        path = self.context.output_path
        if path is None:
            # Outside Actions (a local run) the outputs are still worth seeing.
            self.log(f"output {name}={value}")
            return
        value = redact(value)
        delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
        # The heredoc form keeps a value with newlines (or '=') intact.
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")

    def append_summary(self, markdown: str) -> None:
        path = self.context.summary_path
        if path is None:
            return
        markdown = redact(markdown)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(markdown if markdown.endswith("\n") else markdown + "\n")

    def event(self) -> dict[str, Any]:
        """The event payload; an empty dict when there is none (a local run)."""
        path = self.context.event_path
        if path is None or not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"GITHUB_EVENT_PATH {path} is not readable JSON ({exc}); "
                "this file is written by the runner, so rerun the job or unset the variable for a local run"
            ) from exc
        return data if isinstance(data, dict) else {}
