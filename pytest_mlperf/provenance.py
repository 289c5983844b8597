"""Provenance of a measurement: the machine, the software versions and the git commit it ran on."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (taskset, cgroups, xdist pinning), sorted; every CPU where the OS cannot
    say (macOS and Windows have no ``sched_getaffinity``)."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        return sorted(getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pin_to(cpus: list[int]) -> bool:
    """Restrict this process to *cpus*; False where the OS offers no affinity call (the caller then reports it)."""
    setaffinity = getattr(os, "sched_setaffinity", None)
    if setaffinity is None:
        return False
    setaffinity(0, cpus)
    return True


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[dict[str, Any]]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            mib = float(parts[2]) if re.fullmatch(r"[\d.]+", parts[2]) else 0.0
            gpus.append({"name": parts[0], "driver": parts[1], "memory_bytes": int(mib * 2**20)})
    return gpus


def _read_khz(path: Path) -> float | None:
    try:
        return int(path.read_text(encoding="ascii").strip()) / 1000
    except (OSError, ValueError):
        return None


def cpu_frequency() -> dict[str, Any]:
    """The first usable CPU's clock in MHz (current, and the cpufreq limits and governor where Linux exposes
    them): a lowered maximum or a powersave governor explains a slow run. Values the OS does not give are None."""
    cpu = usable_cpus()[0]
    base = Path(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq")
    try:
        governor: str | None = (base / "scaling_governor").read_text(encoding="ascii").strip() or None
    except OSError:
        governor = None
    current = _read_khz(base / "scaling_cur_freq")
    if current is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                mhz = [line.split(":", 1)[1] for line in fh if line.startswith("cpu MHz")]
            current = float(mhz[min(cpu, len(mhz) - 1)]) if mhz else None
        except (OSError, ValueError):
            current = None
    return {
        "current_mhz": current,
        "max_mhz": _read_khz(base / "scaling_max_freq"),
        "min_mhz": _read_khz(base / "scaling_min_freq"),
        "governor": governor,
    }


def machine_info() -> dict[str, Any]:
    """The hardware a run measured; cpu, cores and gpus are the baseline fingerprint's, the rest is for people."""
    return {
        "hostname": platform.node(),
        "cpu_frequency": cpu_frequency(),
        "cpu": _cpu_model(),
        "cores": len(usable_cpus()),
        "logical_cpus": os.cpu_count() or 1,
        "memory_bytes": _memory_bytes(),
        "os": platform.platform(),
        "arch": platform.machine(),
        "gpus": _gpus(),
    }


def commit_info(cwd: Path) -> dict[str, Any] | None:
    """The git commit the code was at, or None outside a repository."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        branch, dirty = "", False
    return {"sha": sha, "branch": branch, "dirty": dirty}


def versions() -> dict[str, str]:
    """Versions of everything that can move a measurement."""
    from importlib.metadata import PackageNotFoundError, version

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    return {
        "plugin": v("pytest-mlperf"),
        "loadgen": v("mlcommons-loadgen"),
        "onnxruntime": v("onnxruntime"),
        "numpy": v("numpy"),
        "python": platform.python_version(),
    }


def installed_packages() -> dict[str, str]:
    """Every installed distribution's name and version, sorted: what the environment held when it measured."""
    from importlib.metadata import distributions

    found: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
    return dict(sorted(found.items()))
