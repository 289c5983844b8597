"""Run mode: benchmarks the head, compares it as asked, and reports through outputs, summary, annotations, comment."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from action.abrun import AbError, git, load_results, merge_results, run_ab, run_session, write_json
from action.github_io import GitHubIO, PullRequest, pull_request
from action.inputs import AUTO_ROUNDS, InputError, Inputs, pytest_argv
from action.summary import Report, render_comment, render_summary, text, verdict_of

META_VERSION = 1
# Fixed names inside the results dir: the reporter reads these from an artifact and never follows a path it names.
RESULTS = "results.json"
BASE = "base.json"
COMPARISON = "comparison.json"
SUMMARY = "summary.md"
META = "report-meta.json"
#: The plugin option that makes a session reuse each case's Server/Offline load from a results JSON, without
#: comparing against it; ``ab`` mode pins every session to the load its first session calibrated.
LOAD_FLAG = "--mlperf-reuse-load"

_EXIT_HINTS = {
    2: "the session was interrupted or collection failed; see the pytest output above",
    3: "pytest hit an internal error; see the traceback above",
    4: "pytest rejected its command line; check the `suites`, `keyword` and `pytest-args` inputs",
    5: "no test was collected; check the `suites` path and the `keyword` expression",
}


class RunError(RuntimeError):
    """The run could not produce results or a comparison; the message says what to check."""


@dataclass(frozen=True)
class Commands:
    """The command prefixes for a pytest session and for ``pytest-mlperf compare``."""

    pytest: tuple[str, ...]
    compare: tuple[str, ...]


def default_commands() -> Commands:
    """pytest and the compare CLI of the interpreter running this Action (its private virtualenv)."""
    python = sys.executable
    script = shutil.which("pytest-mlperf", path=str(Path(python).parent)) or shutil.which("pytest-mlperf")
    compare = (script, "compare") if script else (python, "-m", "pytest_mlperf.cli", "compare")
    return Commands((python, "-m", "pytest"), compare)


def compare_argv(inputs: Inputs, base: Path, head: Path, out: Path, look: int | None = None) -> list[str]:
    """The compare CLI's arguments; ``look`` makes it round ``look`` of adaptive rounds."""
    argv = [str(base), str(head), "--alpha", repr(inputs.alpha), "--floor", repr(inputs.floor), "--json", str(out)]
    if inputs.force_compare:
        argv.append("--force")
    if look is not None:
        argv += ["--round", str(look)]
    return argv


def run_compare(
    io: GitHubIO, commands: Commands, inputs: Inputs, base: Path, head: Path, out: Path, look: int | None = None
) -> dict[str, Any]:
    """Runs the gate's two-sample comparison; its exit code is ignored, the JSON it writes is the answer."""
    out.unlink(missing_ok=True)
    code = run_session(
        io=io, title="pytest-mlperf compare", command=commands.compare,
        args=compare_argv(inputs, base, head, out, look), cwd=io.context.workspace,
    )
    if not out.is_file():
        raise RunError(f"`pytest-mlperf compare` exited with {code} and wrote no {out}; see its log group above")
    try:
        doc = json.loads(out.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunError(f"comparison {out} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("verdict") not in ("regression", "improvement", "no-change", "refused"):
        raise RunError(f"comparison {out} has no valid `verdict`; is pytest-mlperf older than this Action?")
    return doc


def _head_sha(io: GitHubIO) -> str:
    try:
        return git(io.context.workspace, "rev-parse", "HEAD")
    except AbError:
        return io.context.sha


def _load_flag(io: GitHubIO, commands: Commands, inputs: Inputs) -> str | None:
    """LOAD_FLAG when the installed plugin has it (asked through ``pytest --help``), else None and a warning when
    a Server case may run: without it each session calibrates its own Server load, and the gate refuses to
    compare runs made under different loads."""
    ws = io.context.workspace
    try:
        proc = subprocess.run(
            [*commands.pytest, "--help"], cwd=ws, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, check=False, timeout=300,
        )
        supported = LOAD_FLAG in proc.stdout
    except (OSError, subprocess.TimeoutExpired):
        supported = False
    if supported:
        return LOAD_FLAG
    if not inputs.scenarios or "Server" in inputs.scenarios:
        io.warning(
            f"The installed pytest-mlperf has no {LOAD_FLAG}, so each session calibrates its own Server load "
            "and Server cases will be refused as not comparable. Upgrade pytest-mlperf, or leave Server out of "
            "the `scenarios` input.",
            title="pytest-mlperf load",
        )
    return None


def _decided_after(io: GitHubIO, commands: Commands, inputs: Inputs, out: Path) -> Callable[..., bool]:
    """For ``repeat: auto``: after each round from the minimum on, whether the comparison so far is decided."""

    def decided(rnd: int, base: list[Path], head: list[Path]) -> bool:
        if rnd < AUTO_ROUNDS[0]:
            return False
        if not base:
            return True  # the base commit has no benchmark yet: nothing to decide, more rounds change nothing
        paths = {side: out / f"look-{side}.json" for side in ("base", "head")}
        for side, runs in (("base", base), ("head", head)):
            write_json(paths[side], merge_results(runs))
        comparison = run_compare(io, commands, inputs, paths["base"], paths["head"], out / "look.json", rnd)
        sequential = comparison.get("sequential")
        return not isinstance(sequential, dict) or bool(sequential.get("decided", True))

    return decided


def _measure_ab(
    io: GitHubIO, commands: Commands, inputs: Inputs, pr: PullRequest | None, out: Path
) -> tuple[int, str, str, list[str], int]:
    base_ref = inputs.base_ref or (pr.base_sha if pr else "")
    if not base_ref:
        raise InputError(
            "input `base-ref` is empty and this event is not a pull request, so `compare: ab` has no base; "
            "set `base-ref` (e.g. `${{ github.event.before }}` on push) or use `compare: none`"
        )
    ws = io.context.workspace
    load_flag = _load_flag(io, commands, inputs)
    ab = run_ab(
        io=io,
        workspace=ws,
        base_ref=base_ref,
        rounds=AUTO_ROUNDS[1] if inputs.repeat == "auto" else inputs.repeat,
        command=commands.pytest,
        argv_for=lambda results, logs: pytest_argv(inputs, results, logs, workspace=ws),
        out_dir=out / "ab",
        temp_dir=io.context.temp_dir,
        load_flag=load_flag,
        decided=_decided_after(io, commands, inputs, out / "ab") if inputs.repeat == "auto" else None,
    )
    shutil.copyfile(ab.head_results, out / RESULTS)
    notes: list[str] = []
    if ab.base_results is None:
        codes = ", ".join(map(str, ab.exit_codes("base")))
        notes.append(
            f"The base commit {ab.base_sha[:10]} produced no results (pytest exit codes {codes}), so nothing was "
            "compared; this is expected when the PR adds the first benchmark."
        )
    else:
        shutil.copyfile(ab.base_results, out / BASE)
    return max(ab.exit_codes("head")), ab.base_sha, ab.head_sha, notes, ab.rounds


def _measure_once(io: GitHubIO, commands: Commands, inputs: Inputs, out: Path, baseline: Path | None) -> int:
    """One session; with a baseline, under the baseline's loads (when the plugin can), so that they compare."""
    results = out / RESULTS
    results.unlink(missing_ok=True)
    repeat = inputs.repeat if inputs.compare == "baseline-file" else None
    args = pytest_argv(inputs, results, out / "logs", workspace=io.context.workspace, repeat=repeat)
    load_flag = _load_flag(io, commands, inputs) if baseline is not None else None
    if load_flag and baseline is not None:
        args = [f"{load_flag}={baseline.resolve()}", *args]
    code = run_session(io=io, title="pytest-mlperf", command=commands.pytest, args=args, cwd=io.context.workspace)
    if not results.is_file():
        hint = _EXIT_HINTS.get(code, "see the pytest output above")
        raise RunError(f"pytest exited with {code} and wrote no results to {results}: {hint}")
    return code


def _comment(io: GitHubIO, inputs: Inputs, pr: PullRequest, report: Report) -> None:
    from action.comment import CommentForbidden, GitHubAPIError, GitHubClient, upsert_comment

    try:
        client = GitHubClient(io.context.api_url, inputs.github_token, io.context.repository)
        done = upsert_comment(client, pr.number, render_comment([report]), author=inputs.comment_author or None)
    except CommentForbidden:
        why = " (a pull request from a fork)" if pr.is_fork else ""
        io.notice(
            f"No PR comment from this job: its token is read-only{why}. The comment will come from the "
            "workflow_run reporter job, if the repository has one (see the README's 'Use in CI'). "
            "The full report is in this job's summary.",
            title="pytest-mlperf comment",
        )
    except GitHubAPIError as exc:
        io.warning(f"PR comment not posted: {exc}. The full report is in this job's summary.")
    else:
        io.log(f"PR #{pr.number} comment {done.action}: {done.url}")


def execute(io: GitHubIO, inputs: Inputs, commands: Commands) -> int:
    """Everything of run mode after the inputs are read; returns the step's exit code."""
    ctx = io.context
    if ctx.event_name == "pull_request_target":
        raise InputError(
            "refusing to benchmark under `pull_request_target`: that event runs with the repository's secrets and "
            "a write token, and benchmarking means running the PR's code. Trigger the benchmark on `pull_request` "
            "and let a `workflow_run` job post the comment (`command: report`, see the README's 'Use in CI')"
        )
    out = (ctx.workspace / inputs.results_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in (BASE, COMPARISON):
        (out / stale).unlink(missing_ok=True)
    pr = pull_request(io.event())
    io.set_output("results-dir", str(out))

    base_sha = ""
    notes: list[str] = []
    rounds = 0
    if inputs.compare == "ab":
        head_exit, base_sha, head_sha, notes, rounds = _measure_ab(io, commands, inputs, pr, out)
    else:
        baseline = ctx.workspace / inputs.baseline_file if inputs.compare == "baseline-file" else None
        head_exit = _measure_once(io, commands, inputs, out, baseline if baseline and baseline.is_file() else None)
        head_sha = _head_sha(io)
        if baseline is not None:
            if baseline.is_file():
                # The document as read (a partial file's appended runs included), not the file: a copy would
                # lose the runs file next to it.
                (out / BASE).write_text(json.dumps(load_results(baseline), indent=1), encoding="utf-8")
            else:
                notes.append(f"The baseline file {inputs.baseline_file} does not exist, so nothing was compared.")
                io.warning(
                    f"input `baseline-file`: {baseline} does not exist; nothing was compared. "
                    "Restore the baseline before this step, or use `compare: none` when there is none yet"
                )

    comparison = None
    if (out / BASE).is_file():
        # Adaptive A/B rounds: the final verdict is the one of the look that stopped them, at that look's level.
        look = rounds if inputs.compare == "ab" and inputs.repeat == "auto" else None
        comparison = run_compare(io, commands, inputs, out / BASE, out / RESULTS, out / COMPARISON, look)
    head_doc = load_results(out / RESULTS)
    base_doc = load_results(out / BASE) if (out / BASE).is_file() else None

    report = Report(
        comparison=comparison, head=head_doc, base=base_doc, label=inputs.label, compare=inputs.compare,
        base_sha=base_sha, head_sha=head_sha,
        rounds=rounds, run_url=ctx.run_url, notes=tuple(notes),
    )
    markdown = render_summary(report)
    (out / SUMMARY).write_text(markdown, encoding="utf-8")
    io.append_summary(markdown)
    meta = {
        "version": META_VERSION, "label": inputs.label, "compare": inputs.compare, "base_sha": base_sha,
        "head_sha": report.head_sha, "rounds": report.rounds, "run_url": ctx.run_url, "notes": notes,
        "pull_request": {"number": pr.number, "head_sha": pr.head_sha} if pr else None,
    }
    (out / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")

    verdict = verdict_of(report)
    counts = comparison.get("counts", {}) if comparison else {}
    io.set_output("verdict", verdict)
    io.set_output("results", str(out / RESULTS))
    io.set_output("comparison", str(out / COMPARISON) if comparison else "")
    io.set_output("summary", str(out / SUMMARY))
    io.set_output("regressions", str(counts.get("regressions", 0)))
    io.set_output("improvements", str(counts.get("improvements", 0)))

    for case in comparison.get("cases", []) if comparison else []:
        name = f"{str(case.get('id', '')).rsplit('::', 1)[-1]} {case.get('metric', '')}"
        if case.get("verdict") == "regression":
            io.error(str(case.get("message", "")), title=f"Regression: {name}")
        elif case.get("verdict") == "improvement":
            io.notice(str(case.get("message", "")), title=f"Improvement: {name}")
    if verdict == "refused" and comparison:
        io.warning(f"Comparison refused: {comparison.get('refused_reason')}", title="pytest-mlperf")

    if inputs.comment and pr and inputs.github_token and ctx.repository:
        _comment(io, inputs, pr, report)

    failed = False
    if head_exit != 0:
        io.error(
            f"pytest exited with {head_exit} on the head: some benchmarks missed their own thresholds "
            "(see 'Head runs' in the job summary)",
            title="pytest-mlperf",
        )
        failed = True
    if verdict == "regression":
        if inputs.fail_on_regression:
            failed = True
        else:
            io.warning("Regressions found, but `fail-on-regression` is false, so the check stays green")
    return 1 if failed else 0


def run_main(io: GitHubIO, inputs: Inputs, commands: Commands) -> int:
    """``execute`` with the failures that stop a run turned into an annotation, a summary line and exit 1."""
    try:
        return execute(io, inputs, commands)
    except (AbError, RunError) as exc:
        io.error(str(exc), title="pytest-mlperf could not finish")
        io.append_summary(f"## ❌ pytest-mlperf could not finish\n\n{text(str(exc), 2000)}\n")
        io.set_output("verdict", "error")
        return 1

