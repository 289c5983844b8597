"""Checks that a release tag, the built distributions and CHANGELOG.md agree on one version, before publishing.

Usage: ``python scripts/check_release.py TAG DIST_DIR [CHANGELOG]``, for example ``v0.2.0 dist``. The version
is declared once, in pyproject.toml; this reads it back from the built files' names, so what is checked is what
would be uploaded. Exit status 0 when the tag is ``v<version>`` of exactly one sdist and one wheel and the
changelog has a dated ``## [<version>]`` section; 1 otherwise, with one line per problem saying what to fix.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TAG = re.compile(r"v(\d+\.\d+\.\d+)")
SDIST = re.compile(r"pytest_mlperf-(?P<version>[^-]+)\.tar\.gz")
WHEEL = re.compile(r"pytest_mlperf-(?P<version>[^-]+)-py3-none-any\.whl")


def problems(tag: str, dist: Path, changelog: Path) -> list[str]:
    """Everything that keeps ``tag`` from being released from ``dist``; empty when all agree."""
    found: list[str] = []
    match = TAG.fullmatch(tag)
    if match is None:
        return [f"tag {tag!r} is not vMAJOR.MINOR.PATCH; tag the release commit as e.g. v0.2.0"]
    version = match.group(1)
    names = sorted(p.name for p in dist.iterdir()) if dist.is_dir() else []
    sdists = [m["version"] for m in map(SDIST.fullmatch, names) if m]
    wheels = [m["version"] for m in map(WHEEL.fullmatch, names) if m]
    if len(sdists) != 1 or len(wheels) != 1:
        found.append(
            f"{dist}: expected one sdist and one pure-Python wheel, found {names or 'nothing'}; "
            "build into an empty folder with `python -m build`"
        )
    for built in sorted(set(sdists + wheels) - {version}):
        found.append(
            f"{dist}: built version {built} but the tag is {tag}; set `version = \"{version}\"` in "
            "pyproject.toml (the one place it is declared) or tag the commit v" + built
        )
    try:
        text = changelog.read_text(encoding="utf-8")
    except OSError as exc:
        return [*found, f"{changelog}: cannot be read ({exc.strerror}); keep a CHANGELOG.md at the repository root"]
    heading = re.search(rf"^## \[{re.escape(version)}\] - (\d{{4}}-\d{{2}}-\d{{2}})\s*$", text, re.MULTILINE)
    if heading is None:
        found.append(
            f"{changelog}: no `## [{version}] - YYYY-MM-DD` section; move the Unreleased entries under it"
        )
    return found


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: check_release.py TAG DIST_DIR [CHANGELOG]", file=sys.stderr)
        return 2
    changelog = Path(argv[2]) if len(argv) == 3 else Path(__file__).resolve().parent.parent / "CHANGELOG.md"
    found = problems(argv[0], Path(argv[1]), changelog)
    for problem in found:
        print(f"check_release: {problem}", file=sys.stderr)
    if not found:
        print(f"check_release: {argv[0]} matches the built files and CHANGELOG.md")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
