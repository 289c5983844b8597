"""The results record how pytest was started (what reproduce rebuilds), with URL credentials removed."""

from __future__ import annotations

import json

import pytest


def test_the_invocation_is_recorded_without_credentials(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_tiny(mlperf, mlperf_scenario, mlperf_mode, tiny_model, tiny_dataset):
            mlperf.run(tiny_model, tiny_dataset)
        """
    )
    result = project.runpytest("-p", "no:cacheprovider", "--mlperf-scenarios=Offline", "--mlperf-mode=accuracy",
                               "--mlperf-mirror=https://user:s3cret@127.0.0.1:9/m?token=t0k")
    result.assert_outcomes(passed=1)
    doc = json.loads((project.path / "mlperf-results" / "results.json").read_text())
    invocation = doc["invocation"]
    assert "--mlperf-scenarios=Offline" in invocation["args"]
    assert "s3cret" not in json.dumps(invocation) and "t0k" not in json.dumps(invocation)
    assert "--mlperf-mirror=https://***@127.0.0.1:9/m?token=***" in invocation["args"]
    assert invocation["dir"] == str(project.path) and invocation["rootdir"] == str(project.path)
