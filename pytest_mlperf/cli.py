"""The ``pytest-mlperf`` console command: ``compare`` two sets of results, ``export`` them to other tools, show how
to ``reproduce`` a run, build an MLPerf ``submission`` tree, keep results in a ``history`` and draw it as a
static ``report`` site.

Exit codes: 0 no regression, 1 regression, 2 refused comparison or bad input (the message names the file).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from pytest_mlperf.config import UsageProblem, parse_alpha, parse_fraction
from pytest_mlperf.export import FORMATS, export
from pytest_mlperf.gate.compare import (
    ComparisonInputError,
    Source,
    check_document,
    compare_documents,
    dumps,
    exit_code,
)
from pytest_mlperf.gate.render import render_markdown, render_text
from pytest_mlperf.gate.statistics import GatePolicy, Look
from pytest_mlperf.redact import redact
from pytest_mlperf.results import DEFAULT_MAX_BYTES, ResultsFileError, read_document
from pytest_mlperf.rules import AUTO_ROUNDS, DEFAULT_ACCURACY_TOLERANCE, DEFAULT_ALPHA, DEFAULT_FLOOR

EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2


class _InputError(Exception):
    """Bad command-line input; becomes exit code 2 with the message on stderr."""


def _fraction(text: str) -> float:
    """``0.05`` or ``5%`` -> 0.05, by the plugin's own rule for --mlperf-floor."""
    try:
        return parse_fraction(text)
    except UsageProblem as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _alpha(text: str) -> float:
    try:
        return parse_alpha(text)
    except UsageProblem as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _assignment(text: str) -> tuple[str, float]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=FRACTION (e.g. qps=0.03 or p99_latency=10%)")
    return name, _fraction(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytest-mlperf", description="Compare, export and reproduce pytest-mlperf results; build submissions."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    comp = sub.add_parser(
        "compare",
        help="compare head results against base results; exit 1 on a regression, 2 when refused",
        description="Compare head results against base results case by case. "
        "Either BASE HEAD positionally, or --base/--head (repeatable; runs with the same id are pooled).",
    )
    comp.add_argument("files", nargs="*", metavar="FILE", help="BASE.json HEAD.json")
    comp.add_argument("--base", action="append", default=[], metavar="PATH", help="a base results file (repeatable)")
    comp.add_argument("--head", action="append", default=[], metavar="PATH", help="a head results file (repeatable)")
    comp.add_argument("--format", choices=("text", "md"), default="text", help="report format on stdout")
    comp.add_argument("--json", type=Path, metavar="OUT", help="also write the comparison JSON to OUT")
    comp.add_argument(
        "--alpha", type=_alpha, default=DEFAULT_ALPHA, help=f"significance level (default {DEFAULT_ALPHA})"
    )
    comp.add_argument(
        "--floor",
        type=_fraction,
        default=DEFAULT_FLOOR,
        help=f"smallest relative change that counts, as 0.05 or 5%% (default {DEFAULT_FLOOR})",
    )
    comp.add_argument(
        "--metric-floor",
        type=_assignment,
        action="append",
        default=[],
        metavar="METRIC=FLOOR",
        help="floor for one metric, e.g. qps=0.03 (repeatable)",
    )
    comp.add_argument(
        "--case-floor",
        type=_assignment,
        action="append",
        default=[],
        metavar="CASE_ID=FLOOR",
        help="floor for one case id (repeatable)",
    )
    comp.add_argument(
        "--accuracy-tolerance",
        type=_fraction,
        default=DEFAULT_ACCURACY_TOLERANCE,
        help=f"largest accepted accuracy drop, as 0.01 or 1%% (default {DEFAULT_ACCURACY_TOLERANCE})",
    )
    comp.add_argument("--force", action="store_true", help="compare even when the fingerprints differ")
    comp.add_argument(
        "--max-file-mb",
        type=_megabytes,
        default=DEFAULT_MAX_BYTES,
        metavar="MIB",
        help=f"refuse results files larger than this (default {DEFAULT_MAX_BYTES // 2**20} MiB)",
    )
    comp.add_argument(
        "--round",
        type=int,
        metavar="K",
        help=f"compare as round K ({AUTO_ROUNDS[0]}-{AUTO_ROUNDS[1]}) of adaptive rounds (repeat: auto): tested at "
        "that round's share of alpha; the JSON's sequential.decided says whether to run another round",
    )

    exp = sub.add_parser("export", help="convert a results file to another tool's format")
    exp.add_argument("--format", choices=FORMATS, required=True, help="target format")
    exp.add_argument("results", type=Path, metavar="RESULTS.json")
    exp.add_argument("-o", "--output", type=Path, metavar="OUT", help="write to OUT instead of stdout")

    hist = sub.add_parser("history", help="keep results in an SQLite history and show each case's trend")
    hist_sub = hist.add_subparsers(dest="history_command", required=True)
    hist_add = hist_sub.add_parser(
        "add", help="append results files to the history (the same session twice is added once)"
    )
    hist_add.add_argument("results", type=Path, nargs="+", metavar="RESULTS.json")
    hist_add.add_argument("--db", type=Path, required=True, metavar="DB", help="the history database (created)")
    hist_show = hist_sub.add_parser("show", help="list the cases in the history and their trend")
    hist_show.add_argument("--db", type=Path, required=True, metavar="DB", help="the history database")
    hist_show.add_argument("--case", metavar="TEXT", help="only cases whose id contains TEXT")
    hist_show.add_argument(
        "--last", type=_positive, default=20, metavar="N", help="sessions in the trend line (default 20)"
    )

    dash = sub.add_parser("report", help="write a static HTML dashboard (works from file://, no network)")
    source = dash.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", type=Path, metavar="DB", help="a history database (pytest-mlperf history add)")
    source.add_argument("--results", type=Path, nargs="+", metavar="RESULTS.json", help="results files")
    dash.add_argument("--out", type=Path, required=True, metavar="DIR", help="the site's directory (created)")
    dash.add_argument("--base", type=Path, metavar="BASE.json", help="with --head: chart head against base, as compare")
    dash.add_argument("--head", type=Path, metavar="HEAD.json", help="with --base: the head side of the comparison")

    rep = sub.add_parser("reproduce", help="print the pip line, user.conf and pytest command that rerun a run")
    rep.add_argument("results", type=Path, metavar="RESULTS.json")
    rep.add_argument("--case", metavar="ID", help="only this case (its node id, or the part after ::)")

    from pytest_mlperf.submission.cli import add_parser as add_submission

    add_submission(sub)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


#: Files at least this big get a progress line on stderr: reading one takes seconds.
_PROGRESS_BYTES = 32 * 2**20


def _load(path: Path, max_bytes: int = DEFAULT_MAX_BYTES, *, compact: bool = False) -> Source:
    size = path.stat().st_size if path.is_file() else 0
    started = time.monotonic()
    if size >= _PROGRESS_BYTES:
        print(f"pytest-mlperf: reading {path} ({size / 2**20:.0f} MiB)...", file=sys.stderr, flush=True)
    try:
        document = read_document(path, max_bytes=max_bytes, follow_symlinks=True, compact_samples=compact)
    except ResultsFileError as exc:
        raise _InputError(str(exc)) from None
    if size >= _PROGRESS_BYTES:
        print(f"pytest-mlperf: read {path}: {len(document['runs'])} runs in {time.monotonic() - started:.1f} s",
              file=sys.stderr, flush=True)
    notes = document.get("notes")
    for note in notes if isinstance(notes, list) else []:
        print(f"pytest-mlperf: note: {redact(str(note))}", file=sys.stderr)
    return Source(str(path), document)


def _megabytes(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in MiB > 0 (e.g. 1024)")
    return int(value * 2**20)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _InputError(f"{path}: cannot write ({exc.strerror})") from None


def _compare(args: argparse.Namespace, out: TextIO) -> int:
    if args.files and (args.base or args.head):
        raise _InputError("give either BASE HEAD positionally or --base/--head, not both")
    if args.files:
        if len(args.files) != 2:
            raise _InputError(f"expected BASE HEAD, got {len(args.files)} file(s); use --base/--head for more")
        base_paths, head_paths = [Path(args.files[0])], [Path(args.files[1])]
    else:
        base_paths, head_paths = [Path(p) for p in args.base], [Path(p) for p in args.head]
    if not base_paths or not head_paths:
        raise _InputError("need at least one base and one head results file")
    policy = GatePolicy(
        alpha=args.alpha,
        floor=args.floor,
        metric_floors=dict(args.metric_floor),
        case_floors=dict(args.case_floor),
        accuracy_tolerance=args.accuracy_tolerance,
    )
    look = Look(args.round) if args.round is not None else None
    # Compacted per-query latencies: a big file's samples are float64 arrays, not Python ints (a fifth of the memory).
    base = [_load(p, args.max_file_mb, compact=True) for p in base_paths]
    head = [_load(p, args.max_file_mb, compact=True) for p in head_paths]
    comparison = compare_documents(base, head, policy, force=args.force, look=look)
    if args.json is not None:
        # Every output is redacted: a model URL or a message may carry a mirror's user name and password.
        _write(args.json, redact(dumps(comparison)))
    out.write(render_markdown(comparison) if args.format == "md" else render_text(comparison))
    return exit_code(comparison)


def _export(args: argparse.Namespace, out: TextIO) -> int:
    source = _load(args.results)
    # The gate's checks: a wrong-typed field or an impossible value (NaN accuracy, zero samples/s) is refused
    # here too, never published to a dashboard as a measurement.
    check_document(source.name, source.document)
    try:
        exported: Any = export(source.document, args.format)
    except (KeyError, TypeError) as exc:
        raise _InputError(f"{args.results}: a run lacks a field the export needs ({exc})") from None
    text = redact(json.dumps(exported, indent=2)) + "\n"
    if args.output is not None:
        _write(args.output, text)
    else:
        out.write(text)
    return EXIT_OK


def _history(args: argparse.Namespace, out: TextIO) -> int:
    from pytest_mlperf import history

    if args.history_command == "add":
        for path in args.results:
            source = _load(path)
            added = history.add(args.db, source.document, str(path))
            out.write(f"{path}: {added.action} ({added.cases} case(s), session {added.session_key[:12]})\n")
        return EXIT_OK
    data = history.series(args.db, args.case)
    if not data:
        out.write(f"{args.db}: no case{' matching ' + repr(args.case) if args.case else ''} in the history\n")
        return EXIT_OK
    out.write("\n".join(history.trend_table(data, args.last)) + "\n")
    return EXIT_OK


def _report(args: argparse.Namespace, out: TextIO) -> int:
    from pytest_mlperf import history
    from pytest_mlperf.report import write_site

    if (args.base is None) != (args.head is None):
        raise _InputError("give --base and --head together (the comparison to chart), or neither")
    documents = (
        history.sessions(args.db) if args.db is not None else [_load(path).document for path in args.results]
    )
    comparison = None
    if args.base is not None:
        # The same decision `pytest-mlperf compare BASE HEAD` prints, with its default policy.
        comparison = compare_documents([_load(args.base, compact=True)], [_load(args.head, compact=True)])
    written = write_site(documents, args.out, comparison)
    out.write(f"{args.out / 'index.html'}: {len(documents)} session(s), {sum(p.stat().st_size for p in written):,} "
              "bytes in all\n")
    return EXIT_OK


def _reproduce(args: argparse.Namespace, out: TextIO) -> int:
    from pytest_mlperf.submission.reproduce import reproduce, select_runs

    source = _load(args.results)
    runs = select_runs(source.document, args.case)
    if not runs:
        raise _InputError(f"{args.results}: the file has no runs to reproduce")
    for number, run in enumerate(runs):
        head = f"# {run.get('id')} (repeat {run.get('repeat', 0)}): {run.get('scenario')} {run.get('mode')}"
        out.write(("\n" if number else "") + head + "\n")
        out.write(reproduce(source.document, run, str(args.results)).render())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code instead of exiting (so tests and ``python -m`` can call it)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        if args.command == "compare":
            return _compare(args, sys.stdout)
        if args.command == "history":
            return _history(args, sys.stdout)
        if args.command == "report":
            return _report(args, sys.stdout)
        if args.command == "reproduce":
            return _reproduce(args, sys.stdout)
        if args.command == "submission":
            from pytest_mlperf.submission.cli import run as submission

            return submission(args, sys.stdout, _load(args.results).document)
        return _export(args, sys.stdout)
    except (_InputError, ComparisonInputError, ValueError) as exc:
        print(f"pytest-mlperf {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
