"""The release process: the tag/version/changelog check, the changelog's shape, the release workflow's permissions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "check_release.py"
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
CHANGELOG = "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2026-12-01\n\n### Added\n- a thing\n"


def check(tag: str, dist: Path, changelog: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), tag, str(dist), str(changelog)], capture_output=True, text=True, check=False
    )


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, Path]:
    """A dist folder with the two files `python -m build` makes for 0.2.0, and a changelog that has 0.2.0."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "pytest_mlperf-0.2.0.tar.gz").write_bytes(b"")
    (dist / "pytest_mlperf-0.2.0-py3-none-any.whl").write_bytes(b"")
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(CHANGELOG, encoding="utf-8")
    return dist, changelog


def test_matching_tag_build_and_changelog_pass(release: tuple[Path, Path]) -> None:
    proc = check("v0.2.0", *release)
    assert proc.returncode == 0, proc.stderr
    assert "v0.2.0 matches" in proc.stdout


def test_a_tag_ahead_of_pyproject_is_refused_with_the_fix(release: tuple[Path, Path]) -> None:
    dist, changelog = release
    changelog.write_text(CHANGELOG.replace("0.2.0", "0.3.0"), encoding="utf-8")
    proc = check("v0.3.0", dist, changelog)
    assert proc.returncode == 1
    assert 'built version 0.2.0 but the tag is v0.3.0; set `version = "0.3.0"` in pyproject.toml' in proc.stderr


def test_a_release_missing_from_the_changelog_is_refused(release: tuple[Path, Path]) -> None:
    dist, changelog = release
    changelog.write_text("# Changelog\n\n## [Unreleased]\n- a thing\n", encoding="utf-8")
    proc = check("v0.2.0", dist, changelog)
    assert proc.returncode == 1
    assert "no `## [0.2.0] - YYYY-MM-DD` section" in proc.stderr


@pytest.mark.parametrize("tag", ["0.2.0", "v0.2", "v0.2.0rc1", "v1"])
def test_only_plain_version_tags_release(release: tuple[Path, Path], tag: str) -> None:
    proc = check(tag, *release)
    assert proc.returncode == 1
    assert "is not vMAJOR.MINOR.PATCH" in proc.stderr


def test_a_stray_file_in_dist_is_refused(release: tuple[Path, Path]) -> None:
    dist, changelog = release
    (dist / "pytest_mlperf-0.1.0-py3-none-any.whl").write_bytes(b"")
    proc = check("v0.2.0", dist, changelog)
    assert proc.returncode == 1
    assert "expected one sdist and one pure-Python wheel" in proc.stderr


def test_the_changelog_has_an_unreleased_section_first() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert headings[0] == "Unreleased"
    for version in headings[1:]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), version


def _workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return doc


def test_only_the_publish_job_may_mint_an_oidc_token() -> None:
    doc = _workflow()
    assert doc["permissions"] == {}
    permissions = {name: job.get("permissions") for name, job in doc["jobs"].items()}
    assert permissions == {
        "build": {"contents": "read"},
        "publish": {"id-token": "write"},
        "major-tag": {"contents": "write"},
    }
    # The major tag moves only after the upload succeeded; the upload only uses what the build job checked.
    assert doc["jobs"]["publish"]["needs"] == "build"
    assert doc["jobs"]["major-tag"]["needs"] == "publish"


def test_every_action_in_the_release_workflow_is_pinned_by_full_sha() -> None:
    uses = [step["uses"] for job in _workflow()["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), ref
