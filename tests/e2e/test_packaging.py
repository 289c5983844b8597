"""The wheel ships what an installed plugin needs: the suites (run with --pyargs), the manifests, the schemas."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_the_suites_and_the_manifests(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(ROOT), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("pytest_mlperf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for suite in sorted((ROOT / "suites").glob("*.py")):
        assert f"pytest_mlperf/suites/{suite.name}" in names
    for manifest in sorted((ROOT / "fixtures").glob("*.yaml")):
        assert f"pytest_mlperf/manifests/{manifest.name}" in names
    assert "pytest_mlperf/schema/results.schema.json" in names
    assert {n for n in names if n.startswith("pytest_mlperf/tasks/")} >= {
        "pytest_mlperf/tasks/base.py",
        "pytest_mlperf/tasks/classification.py",
    }
    for package in ("gate", "loadgen", "provisioning", "backends", "datasets", "models"):
        assert f"pytest_mlperf/{package}/__init__.py" in names
