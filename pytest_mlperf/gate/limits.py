"""The bounds of a plausible measurement: a value outside them is a damaged or forged file, never compared."""

from __future__ import annotations

#: No query takes a week.
MAX_LATENCY_NS = 7 * 24 * 3600 * 1e9
#: No system serves a trillion samples per second.
MAX_QPS = 1e12
