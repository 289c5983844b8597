"""``pytest-mlperf submission``: its arguments, and the run that plans, refuses or writes the tree."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from pytest_mlperf.errors import ConfigError, MLPerfError
from pytest_mlperf.submission.tree import CODE_DIRS, Request, SubmissionRefused, plan, write

EXIT_OK, EXIT_REFUSED = 0, 2


def _mapping(text: str) -> tuple[str, str]:
    model, sep, benchmark = text.partition("=")
    if not sep or not model or not benchmark:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL=BENCHMARK (e.g. digits-cnn=resnet)")
    return model, benchmark


def add_parser(sub: Any) -> None:
    """The ``submission`` subcommand on the console command's subparsers."""
    parser = sub.add_parser(
        "submission",
        help="build the MLPerf submission tree {division}/{submitter}/... from a results file",
        description="Build the tree the MLCommons submission checker reads, from an official-profile session's "
        "results and logs; refuse, naming each problem, what the checker would refuse.",
    )
    parser.add_argument("results", type=Path, metavar="RESULTS.json")
    parser.add_argument("--division", choices=("open", "closed"), required=True)
    parser.add_argument("--submitter", required=True, metavar="NAME")
    parser.add_argument("--system", type=Path, required=True, metavar="SYSTEM.yaml",
                        help="system-description fields the machine record cannot tell (status, system_type, ...); "
                        "its file name (without .yaml) names the system")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--version", choices=tuple(CODE_DIRS), default="v6.1",
                        help="the submission checker's version (its seeds, folder names and rules)")
    parser.add_argument("--model-map", type=_mapping, action="append", default=[], metavar="MODEL=BENCHMARK",
                        help="open division: the official benchmark a model of your own stands for (repeatable)")
    parser.add_argument("--allow-short-runs", action="store_true",
                        help="build a trial tree from runs shorter or smaller than the rules' (durations, query "
                        "counts, samples): the checker will refuse it")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")


def _valid_name(text: str, what: str) -> None:
    if not text or text in (".", "..") or "/" in text or "\\" in text or text.startswith("."):
        raise ConfigError(f"{what} {text!r} is not usable as a folder name; use letters, digits, - and _")


def run(args: argparse.Namespace, out: TextIO, document: Mapping[str, Any]) -> int:
    """Plan the tree; print the refusals (exit 2), or the plan (--dry-run) or what was written (exit 0)."""
    try:
        _valid_name(args.submitter, "--submitter")
        _valid_name(args.system.stem, "--system's file name")
        request = Request(results=args.results, division=args.division, submitter=args.submitter,
                          system_yaml=args.system, out=args.out, version=args.version,
                          model_map=dict(args.model_map), allow_short_runs=args.allow_short_runs)
        planned = plan(request, document)
        if args.dry_run:
            out.write(planned.describe())
            return EXIT_OK
        write(planned)
    except SubmissionRefused as refused:
        sys.stderr.write(f"pytest-mlperf submission: refused, {len(refused.problems)} problem(s):\n")
        sys.stderr.write("".join(f"  - {problem}\n" for problem in refused.problems))
        return EXIT_REFUSED
    except MLPerfError as exc:
        sys.stderr.write(f"pytest-mlperf submission: error: {exc}\n")
        return EXIT_REFUSED
    out.write(f"wrote {len(planned.files)} files to {planned.root}\n")
    for missing in planned.missing_fields:
        out.write(f"still to fill in before the checker: {missing}\n")
    for note in planned.notes:
        out.write(f"note: {note}\n")
    return EXIT_OK
