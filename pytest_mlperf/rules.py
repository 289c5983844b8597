"""Shared MLPerf names: scenarios, modes, profiles, the percentile each scenario is judged at, gate defaults
and rounds."""

from __future__ import annotations

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
MODES = ("performance", "accuracy")
MODE_CHOICES = ("performance", "accuracy", "both")
PROFILES = ("smoke", "official")

#: The percentile each scenario's latency is judged at (MLPerf Inference rules).
LATENCY_PERCENTILE = {"SingleStream": "p90", "MultiStream": "p99", "Server": "p99", "Offline": None}

#: Smoke-profile minimum query counts: enough for LoadGen's early-stopping estimate at each
#: scenario's percentile (MultiStream needs 662 queries at p99; Server 459 with no over-latency query), no more.
SMOKE_MIN_QUERIES = {"SingleStream": 100, "MultiStream": 662, "Server": 500, "Offline": 1}
SMOKE_MIN_DURATION_MS = 1000

#: The regression gate's defaults, shared by the plugin's options and the console command.
DEFAULT_ALPHA = 0.01
DEFAULT_FLOOR = 0.05
DEFAULT_ACCURACY_TOLERANCE = 0.01

#: Scenarios whose throughput is a measurement of its own (SingleStream's is the inverse of its latency).
QPS_SCENARIOS = frozenset({"Server", "Offline"})

#: Rounds of ``--mlperf-repeat auto`` (``repeat: auto`` in the Action): at least the first, at most the second.
AUTO_ROUNDS = (3, 10)

#: BERT-Large on SQuAD v1.1 (MLPerf Inference rules): the mlperf.conf model key, the two benchmarks' F1 targets
#: (99 % and 99.9 % of the FP32 reference's 90.874), and the Server p99 latency bound in milliseconds.
BERT_MODEL_KEY = "bert"
BERT_F1_TARGETS = {"bert-99": 89.965, "bert-99.9": 90.783}
BERT_SERVER_LATENCY_MS = 130.0
