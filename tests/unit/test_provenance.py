"""CPU affinity where the OS has no affinity calls (macOS, Windows): every CPU is usable, pinning is refused."""

from __future__ import annotations

import os

import pytest

from pytest_mlperf.provenance import pin_to, usable_cpus


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="this OS has no affinity calls (macOS, Windows)")
def test_usable_cpus_is_this_process_affinity_where_the_os_has_one() -> None:
    assert usable_cpus() == sorted(os.sched_getaffinity(0))


def test_without_affinity_calls_every_cpu_is_usable_and_pinning_says_no(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert usable_cpus() == [0, 1, 2, 3, 4, 5]
    assert pin_to([0, 1]) is False
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "cannot be determined"
    assert usable_cpus() == [0]
