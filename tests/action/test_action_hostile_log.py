"""Inputs echoed into the job log cannot inject workflow commands, and no credential reaches the log or summary.

The log is read the way the runner reads it: a line that starts (after blanks) with ``::`` is a command, unless
``::stop-commands::TOKEN`` paused them until a line ``::TOKEN::``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from action.__main__ import main
from action.github_io import one_line, shell_words

from .conftest import Runner, action_commands, bench

MakeRepo = Callable[[list[dict[str, str]]], tuple[Path, list[str]]]
_COMMAND = re.compile(r"^::([a-z-]+)(?: [^:]*)?::(.*)$")


def workflow_commands(log: str) -> list[tuple[str, str]]:
    """(name, data) of every line the runner would act on."""
    commands: list[tuple[str, str]] = []
    paused_until: str | None = None
    for line in log.splitlines():
        line = line.lstrip()
        if paused_until is not None:
            if line == f"::{paused_until}::":
                paused_until = None
            continue
        match = _COMMAND.match(line)
        if not match:
            continue
        if match.group(1) == "stop-commands":
            paused_until = match.group(2)
        else:
            commands.append((match.group(1), match.group(2)))
    return commands


@pytest.fixture
def once_repo(make_repo: MakeRepo, runner: Runner) -> Path:
    """One commit, measured once without a comparison (the quickest run mode)."""
    repo, _ = make_repo([{"bench.json": bench(), "README": "v1"}])
    runner.monkeypatch.setenv("GITHUB_WORKSPACE", str(repo))
    runner.inputs(compare="none", repeat="1", comment="false")
    return repo


def test_a_newline_in_keyword_or_pytest_args_injects_no_workflow_command(
    once_repo: Path, runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    runner.inputs(
        keyword="fake\n::error title=pwned::injected by keyword\n::add-mask::x",
        pytest_args="'--label=a\n::error::injected by pytest-args' -q",
    )
    code = main(["run", *action_commands()])
    log = capfd.readouterr().out
    assert code == 0, log[-3000:]
    commands = workflow_commands(log)
    assert not [c for c in commands if "injected" in c[1] or c[0] == "add-mask"], commands
    # The echoed command line is one line a shell would take back, and the session did get the newline.
    assert "-k $'fake\\n::error title=pwned::injected by keyword\\n::add-mask::x'" in log
    assert "selected by -k: fake\n::error title=pwned::injected by keyword" in log


def test_mirror_credentials_never_reach_the_log_outputs_or_summary(
    once_repo: Path, runner: Runner, capfd: pytest.CaptureFixture[str]
) -> None:
    runner.inputs(pytest_args="--mlperf-mirror=https://alice:s3cret@mirror.example/assets -q")
    assert main(["run", *action_commands()]) == 0
    captured = capfd.readouterr()
    everything = captured.out + captured.err + runner.summary_text() + runner.output.read_text(encoding="utf-8")
    assert "s3cret" not in everything and "alice" not in everything
    # Echoed and printed by the session, redacted both times.
    assert "--mlperf-mirror=https://***@mirror.example/assets" in captured.out
    assert "assets from the mirror https://***@mirror.example/assets" in captured.out


def test_annotations_and_plain_lines_are_escaped_and_redacted(capfd: pytest.CaptureFixture[str]) -> None:
    from action.github_io import Context, GitHubIO

    io = GitHubIO(Context(workspace=Path.cwd()))
    io.log("value: a\n::error::from a log line https://u:pw@h.example/")
    io.error("bad\n::warning::inner https://u:pw@h.example/", title="t\n::x")
    log = capfd.readouterr().out
    assert workflow_commands(log) == [("error", "bad%0A::warning::inner https://***@h.example/")]
    assert ":pw@" not in log


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["pytest", "-k", "a and b"], "pytest -k 'a and b'"),
        (["x", "a\nb"], "x $'a\\nb'"),
        (["x", "it's\r\n"], "x $'it\\'s\\r\\n'"),
        (["--m=https://u:p@h/"], "'--m=https://***@h/'"),
    ],
)
def test_shell_words_is_one_line(args: list[str], shown: str) -> None:
    assert shell_words(args) == shown
    assert "\n" not in one_line("a\nb\r") and one_line("a\nb") == "a\\nb"


def test_a_base_ref_that_git_would_read_as_an_option_is_refused(
    once_repo: Path, runner: Runner, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    runner.inputs(compare="ab", base_ref=f"--upload-pack=touch {marker}")
    assert main(["run", *action_commands()]) == 2
    assert "input `base-ref`: '--upload-pack=touch" in capfd.readouterr().out
    assert not marker.exists()
