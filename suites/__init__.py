"""The benchmark suites pytest-mlperf ships: ``pytest suites/`` in a checkout, ``pytest --pyargs pytest_mlperf.suites``
from an install."""
