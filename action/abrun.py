"""Measures the base ref and the head on this runner, interleaved (A/B/A/B), and merges each side's runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from action.github_io import GitHubIO, shell_words

Side = Literal["base", "head"]
# pytest exit codes 0 (all passed) and 1 (some tests failed) still mean the session ran and wrote its results.
_RAN = (0, 1)
_STATUS_RANK = {"complete": 0, "partial": 1, "interrupted": 2}


class AbError(RuntimeError):
    """The A/B measurement could not be made; the message says which step failed and how to fix it."""


@dataclass(frozen=True)
class RunRecord:
    """One pytest session of the A/B sequence."""

    side: Side
    round: int
    exit_code: int
    results: Path | None


@dataclass(frozen=True)
class AbResult:
    """The merged results of each side, and what happened in each session."""

    base_sha: str
    head_sha: str
    base_results: Path | None
    head_results: Path
    records: tuple[RunRecord, ...]

    @property
    def rounds(self) -> int:
        """Rounds actually run (fewer than asked when adaptive rounds stopped early)."""
        return sum(1 for r in self.records if r.side == "head")

    def exit_codes(self, side: Side) -> list[int]:
        return [r.exit_code for r in self.records if r.side == side]


def git(workspace: Path, *args: str) -> str:
    """Runs git in ``workspace``; raises AbError with git's own words on failure."""
    proc = subprocess.run(
        ["git", "-C", str(workspace), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if proc.returncode != 0:
        raise AbError(f"`git {' '.join(args)}` failed in {workspace}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def _rev_parse(workspace: Path, ref: str) -> str | None:
    try:
        return git(workspace, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except AbError:
        return None


def resolve_commit(workspace: Path, ref: str) -> str:
    """The commit of ``ref``, fetching it from ``origin`` when a shallow checkout lacks it."""
    sha = _rev_parse(workspace, ref)
    if sha:
        return sha
    try:
        git(workspace, "fetch", "--no-tags", "--depth=1", "origin", ref)
    except AbError as exc:
        raise AbError(
            f"base ref {ref!r} is not in the checkout at {workspace} and fetching it failed ({exc}). "
            "Check out with `fetch-depth: 0` in actions/checkout, or set `base-ref` to a commit that exists"
        ) from None
    sha = _rev_parse(workspace, "FETCH_HEAD")
    if not sha:
        raise AbError(f"base ref {ref!r} was fetched but is not a commit; set `base-ref` to a commit, branch or tag")
    return sha


def load_results(path: Path) -> dict[str, Any]:
    """A results JSON written by the plugin, read by the plugin's one reader (older versions upgraded)."""
    from pytest_mlperf.results import ResultsFileError, ResultsVersionError, read_document

    try:
        return read_document(path)
    except ResultsVersionError as exc:
        raise AbError(
            f"results file {exc} (the Action runs the pytest-mlperf of its own release: to read a newer file, "
            "use a newer Action release)"
        ) from None
    except ResultsFileError as exc:
        raise AbError(f"results file {exc}; see the pytest output above") from None


def _repeat(run: dict[str, Any]) -> int:
    """A run's repeat number; anything but a whole number >= 0 (a session's code wrote it) counts as 0."""
    value = run.get("repeat")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def merge_results(paths: Sequence[Path]) -> dict[str, Any]:
    """One results document holding every run of ``paths``; ``repeat`` is renumbered so that runs stay distinct."""
    if not paths:
        raise AbError("no results to merge")
    docs = [load_results(p) for p in paths]
    merged = dict(docs[0])
    runs: list[dict[str, Any]] = []
    offset = 0
    for doc in docs:
        repeats = [_repeat(r) for r in doc["runs"] if isinstance(r, dict)]
        for run in doc["runs"]:
            if isinstance(run, dict):
                runs.append({**run, "repeat": offset + _repeat(run)})
        offset += max(repeats, default=-1) + 1
    merged["runs"] = runs
    statuses = [str(d.get("status", "complete")) for d in docs]
    merged["status"] = max(statuses, key=lambda s: _STATUS_RANK.get(s, 2))
    return merged


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Writes ``doc`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(path)


def run_session(
    *, io: GitHubIO, title: str, command: Sequence[str], args: Sequence[str], cwd: Path
) -> int:
    """One pytest session, its output folded into a log group; returns pytest's exit code.

    The output passes through this process, so that credentials in it (a mirror URL the session prints) are
    redacted, and the runner reads none of it as a workflow command. Unbuffered, it still shows up line by line.
    """
    with io.group(title):
        io.log(f"$ (cd {shell_words([str(cwd)])} && {shell_words([*command, *args])})")
        with io.commands_off():
            try:
                proc = subprocess.Popen(
                    [*command, *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            except OSError as exc:
                raise AbError(f"cannot start {command[0]!r} ({exc}); check the `python` input") from None
            assert proc.stdout is not None
            with proc.stdout:
                try:
                    io.relay(proc.stdout)
                finally:
                    # Interrupted (a cancelled job): the session got the signal too. Let it write its summary
                    # and stop on its own rather than block on a pipe that nobody reads.
                    io.relay(proc.stdout)
                    proc.wait()
    return proc.returncode


def _paths(records: Sequence[RunRecord], side: Side) -> list[Path]:
    return [r.results for r in records if r.side == side and r.results is not None]


def run_ab(
    *,
    io: GitHubIO,
    workspace: Path,
    base_ref: str,
    rounds: int,
    command: Sequence[str],
    argv_for: Callable[[Path, Path], list[str]],
    out_dir: Path,
    temp_dir: Path | None = None,
    load_flag: str | None = None,
    decided: Callable[[int, list[Path], list[Path]], bool] | None = None,
) -> AbResult:
    """Runs ``rounds`` pairs base, head, base, head... and writes ``base.json``/``head.json`` under ``out_dir``.

    The base commit is checked out into a temporary git worktree outside the workspace (so that the head's
    pytest never collects it); the head is the workspace itself. ``argv_for(results, log_dir)`` gives pytest's
    arguments for one session. Both sides run with the same interpreter and installed packages, so only the
    repository's own code differs.

    ``load_flag`` (the plugin's option that reuses each case's Server/Offline load from a results JSON) puts every
    session under the load that the first session to run a case calibrated for it: otherwise each session
    calibrates its own Server target QPS, and runs made under different loads are neither comparable nor poolable.
    The loads file (``loads.json``) holds every run so far, earliest first, so a case only the head has (a new
    benchmark) is pinned from its first head run.

    ``decided(rounds_so_far, base_results, head_results)``, when given, is asked after every round; True stops
    the sequence there (adaptive rounds, ``repeat: auto``), so ``rounds`` is then the most rounds.
    """
    head_sha = git(workspace, "rev-parse", "HEAD")
    base_sha = resolve_commit(workspace, base_ref)
    holder = Path(tempfile.mkdtemp(prefix="pytest-mlperf-base-", dir=temp_dir))
    tree = holder / "base"
    records: list[RunRecord] = []
    loads = out_dir / "loads.json"
    loads.unlink(missing_ok=True)
    produced: list[Path] = []
    try:
        git(workspace, "worktree", "add", "--detach", str(tree), base_sha)
        for rnd in range(rounds):
            for side, cwd, sha in (("base", tree, base_sha), ("head", workspace, head_sha)):
                results = out_dir / "runs" / f"{side}-{rnd}.json"
                log_dir = out_dir / "logs" / f"{side}-{rnd}"
                results.unlink(missing_ok=True)
                args = argv_for(results, log_dir)
                if load_flag and produced:
                    # First, so that a user's own flag in `pytest-args` (last) still wins.
                    args = [f"{load_flag}={loads}", *args]
                code = run_session(
                    io=io,
                    title=f"pytest-mlperf ab: round {rnd + 1}/{rounds}, {side} {sha[:10]}",
                    command=command,
                    args=args,
                    cwd=cwd,
                )
                side_t: Side = "base" if side == "base" else "head"
                records.append(RunRecord(side_t, rnd, code, results if results.is_file() else None))
                if load_flag and results.is_file():
                    produced.append(results)
                    write_json(loads, merge_results(produced))
                if side == "head" and (code not in _RAN or not results.is_file()):
                    raise AbError(
                        f"the head run of round {rnd + 1} ended with pytest exit code {code} and "
                        f"{'no results file' if not results.is_file() else 'an error'} ({results}); "
                        "see its log group above"
                    )
            if decided is not None and decided(rnd + 1, _paths(records, "base"), _paths(records, "head")):
                break
    finally:
        # Best effort: a leftover worktree would only cost disk space and is pruned by the next run.
        subprocess.run(
            ["git", "-C", str(workspace), "worktree", "remove", "--force", str(tree)],
            capture_output=True, stdin=subprocess.DEVNULL, check=False,
        )
        subprocess.run(
            ["git", "-C", str(workspace), "worktree", "prune"],
            capture_output=True, stdin=subprocess.DEVNULL, check=False,
        )
        shutil.rmtree(holder, ignore_errors=True)

    head_paths, base_paths = _paths(records, "head"), _paths(records, "base")
    head_out = out_dir / "head.json"
    write_json(head_out, merge_results(head_paths))
    base_out: Path | None = None
    if base_paths:
        base_out = out_dir / "base.json"
        write_json(base_out, merge_results(base_paths))
    return AbResult(base_sha, head_sha, base_out, head_out, tuple(records))
