"""Models that pytest-mlperf builds itself, so the embedded suites run with no network."""
