"""Command line of the Action: ``python -m action [setup|run|report]``, run mode being the default."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from action.github_io import Context, GitHubIO
from action.inputs import InputError, env_name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m action",
        description="The pytest-mlperf GitHub Action. Inputs come from INPUT_* environment variables (see action.yml).",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("setup", help="create or reuse the private virtualenv; outputs `python`")
    run = sub.add_parser("run", help="benchmark, compare, write outputs, job summary and annotations (default)")
    # Test seams, not Action inputs: replace the command prefixes for pytest and for `pytest-mlperf compare`.
    run.add_argument("--pytest-command", help=argparse.SUPPRESS)
    run.add_argument("--compare-command", help=argparse.SUPPRESS)
    report = sub.add_parser("report", help="workflow_run reporter: comment on the PR from downloaded artifacts")
    report.add_argument("--artifacts", help="folder the artifacts were downloaded to (default: input `artifacts`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand and returns the step's exit code: 0 pass, 1 fail, 2 bad input."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and not args_list[0]:
        # action.yml passes the `command` input verbatim; an empty one means the default.
        args_list[0] = "run"
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "run")
    args = _parser().parse_args(args_list)
    io = GitHubIO(Context.from_env())
    environ = os.environ
    try:
        if args.command == "setup":
            from action.install import setup_main

            return setup_main(io, environ, Path(__file__).resolve().parent.parent)
        if args.command == "report":
            from action.report import execute_report

            artifacts = args.artifacts or environ.get(env_name("artifacts"), "") or "pytest-mlperf-artifacts"
            from action.inputs import comment_author

            token = environ.get(env_name("github-token"), "")
            return execute_report(io, io.context.workspace / artifacts, token, author=comment_author(environ))

        from action.inputs import read_inputs
        from action.run import Commands, default_commands, run_main

        commands = default_commands()
        commands = Commands(
            pytest=tuple(shlex.split(args.pytest_command)) if args.pytest_command else commands.pytest,
            compare=tuple(shlex.split(args.compare_command)) if args.compare_command else commands.compare,
        )
        return run_main(io, read_inputs(environ), commands)
    except InputError as exc:
        io.error(str(exc), title="pytest-mlperf: bad input")
        return 2


if __name__ == "__main__":
    sys.exit(main())
