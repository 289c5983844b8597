"""Sweep configurations and the Pareto front, on figures fixed here."""

from __future__ import annotations

from typing import Any

from pytest_mlperf.config import ListValue, RunConfig
from pytest_mlperf.sweep import apply, configurations, label, parse_sweep, points


def _run(config: str, scenario: str, qps: float, p99_ms: float | None, valid: bool = True) -> dict[str, Any]:
    sweep = dict(item.split("=") for item in config.split("-"))
    latency = {"p99": int(p99_ms * 1e6)} if p99_ms is not None else None
    return {"id": f"t.py::test[{scenario}-{config}]", "scenario": scenario, "mode": "performance", "valid": valid,
            "sweep": sweep, "metrics": {"qps": qps, "latency_ns": latency}}


def test_product_order_and_labels() -> None:
    axes = parse_sweep(ListValue(ini=("threads=1,2",), cli=("batch_size=1,8,32",)))
    made = configurations(axes)
    assert [label(c) for c in made] == [
        "threads=1-batch_size=1", "threads=1-batch_size=8", "threads=1-batch_size=32",
        "threads=2-batch_size=1", "threads=2-batch_size=8", "threads=2-batch_size=32",
    ]
    config = apply(RunConfig(backend_options=(("outputs", "x"),)), (("threads", "2"), ("outputs", "logits")))
    assert config.threads == 2 and config.backend_options == (("outputs", "x"), ("outputs", "logits"))


def test_server_front_trades_throughput_for_latency() -> None:
    runs = [
        _run("a=1", "Server", 100.0, 5.0),   # front: lowest latency
        _run("a=2", "Server", 200.0, 10.0),  # front: more throughput for more latency
        _run("a=3", "Server", 150.0, 12.0),  # beaten by a=2 on both
        _run("a=4", "Server", 200.0, 11.0),  # beaten by a=2: equal throughput, more latency
        _run("a=5", "Server", 900.0, 1.0, valid=False),  # INVALID: never on the front
    ]
    (case,) = points(runs).values()
    assert {p["configuration"]: p["front"] for p in case} == {
        "a=1": True, "a=2": True, "a=3": False, "a=4": False, "a=5": False
    }


def test_offline_front_is_the_best_throughput_and_repeats_pool_by_median() -> None:
    runs = [_run("b=1", "Offline", q, None) for q in (100.0, 130.0, 120.0)] + [_run("b=2", "Offline", 125.0, None)]
    (case,) = points(runs).values()
    by = {p["configuration"]: p for p in case}
    assert by["b=1"]["qps"] == 120.0 and by["b=1"]["runs"] == 3
    assert (by["b=1"]["front"], by["b=2"]["front"]) == (False, True)
