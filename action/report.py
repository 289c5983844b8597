"""Reporter mode: turns downloaded benchmark artifacts into the one PR comment, never running or checking out PR code.

It runs in a ``workflow_run`` job that holds a write token, on artifacts that PR code produced. So it trusts
nothing in them: it reads only fixed file names, caps their size, re-renders the Markdown itself from the JSON
(escaping every string), and comments only on a PR whose current head is the commit the benchmark run measured.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from action.comment import CommentForbidden, GitHubAPIError, GitHubClient, RetryPolicy, upsert_comment
from action.github_io import GitHubIO, workflow_run
from action.run import BASE, COMPARISON, META, RESULTS
from action.summary import Report, render_comment
from pytest_mlperf.results import ResultsFileError, load_json, read_document

MAX_FILE_BYTES = 64 * 1024 * 1024


class ArtifactError(ValueError):
    """An artifact file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Artifact:
    """One downloaded benchmark artifact (one runner of the matrix)."""

    path: Path
    report: Report
    pr_number: int | None


def find_artifacts(root: Path) -> list[Path]:
    """``root`` itself when it holds a report, else its subfolders that do (download-artifact's layout)."""
    if (root / META).is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and (p / META).is_file())


def _load(path: Path, *, required: bool, results: bool = False) -> dict[str, Any] | None:
    """A JSON object from the artifact; ``results`` files go through the plugin's one reader (older versions
    upgraded, a crashed session's appended runs read back from next to it, under the same size cap)."""
    if path.is_symlink():
        raise ArtifactError(f"{path} is a symbolic link; artifacts must hold plain files")
    if not path.is_file():
        if required:
            raise ArtifactError(f"{path} is missing; was the artifact uploaded by the pytest-mlperf Action?")
        return None
    # The plugin's bounded readers: size capped, nesting depth capped, never a traceback.
    try:
        if results:
            return read_document(path, max_bytes=MAX_FILE_BYTES)
        doc = load_json(path, max_bytes=MAX_FILE_BYTES, follow_symlinks=False, what="artifact file")
    except ResultsFileError as exc:
        raise ArtifactError(str(exc)) from None
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path} is not a JSON object")
    return doc


def read_artifact(path: Path) -> Artifact:
    meta = _load(path / META, required=True) or {}
    pr = meta.get("pull_request")
    number = pr.get("number") if isinstance(pr, dict) else None
    report = Report(
        comparison=_load(path / COMPARISON, required=False),
        head=_load(path / RESULTS, required=False, results=True),
        base=_load(path / BASE, required=False, results=True),
        label=str(meta.get("label") or path.name),
        compare=str(meta.get("compare") or "none"),
        base_sha=str(meta.get("base_sha") or ""),
        head_sha=str(meta.get("head_sha") or ""),
        rounds=meta["rounds"] if isinstance(meta.get("rounds"), int) else 0,
        notes=tuple(str(n) for n in meta.get("notes") or [] if isinstance(n, str)),
    )
    return Artifact(path, report, number if isinstance(number, int) and not isinstance(number, bool) else None)


def execute_report(
    io: GitHubIO, artifacts: Path, token: str, retry: RetryPolicy | None = None, author: str = ""
) -> int:
    """Upserts the PR comment from the artifacts under ``artifacts``; returns the step's exit code."""
    ctx = io.context
    run = workflow_run(io.event())
    found = find_artifacts(artifacts)
    if not found:
        io.notice(
            f"No pytest-mlperf artifact under {artifacts}: the benchmark job did not run (for instance a fork PR "
            "still waiting for a maintainer's label) or uploaded nothing. No comment.",
            title="pytest-mlperf report",
        )
        return 0
    try:
        items = [read_artifact(p) for p in found]
    except ArtifactError as exc:
        io.error(str(exc), title="pytest-mlperf report")
        return 1
    numbers = {a.pr_number for a in items if a.pr_number is not None}
    if not numbers:
        io.notice("The benchmark run was not for a pull request; nothing to comment on.", title="pytest-mlperf report")
        return 0
    if len(numbers) > 1:
        io.error(f"The artifacts name several pull requests {sorted(numbers)}; download one run's artifacts only")
        return 1
    number = numbers.pop()
    if run is not None and run.pull_numbers and number not in run.pull_numbers:
        io.error(
            f"The artifact names PR #{number}, but the benchmark run belongs to PR "
            f"{', '.join(f'#{n}' for n in run.pull_numbers)}; refusing to comment"
        )
        return 1

    # The run URL comes from the event, not from the artifact.
    run_url = f"{ctx.server_url}/{ctx.repository}/actions/runs/{run.id}" if run and run.id else None
    reports = [replace(a.report, run_url=run_url) for a in items]
    body = render_comment(reports)
    try:
        client = GitHubClient(ctx.api_url, token, ctx.repository, retry=retry)
        if run is not None and run.head_sha:
            pr = client.pull_request(number)
            current = str((pr.get("head") or {}).get("sha") or "")
            if current != run.head_sha:
                io.notice(
                    f"PR #{number} is now at {current[:10]}, not at {run.head_sha[:10]} which the benchmark "
                    "measured (new commits were pushed, or the artifact names another PR). No comment; the run "
                    "for the newer commit will post it.",
                    title="pytest-mlperf report",
                )
                return 0
        done = upsert_comment(client, number, body, author=author or None)
    except CommentForbidden as exc:
        io.error(f"{exc}. Give the reporter job `permissions: pull-requests: write`.", title="pytest-mlperf report")
        return 1
    except GitHubAPIError as exc:
        io.error(str(exc), title="pytest-mlperf report")
        return 1
    io.log(f"PR #{number} comment {done.action}: {done.url}")
    io.append_summary(body)
    return 0
