"""The ``--mlperf-backend-option`` keys of each built-in engine and the values they take, checked without the engine.

One table serves two moments: the plugin checks the options at startup (a bad value is a usage error before any
case runs, not one failure per case), and each engine checks them again when it is made (from the Python API or a
benchmark script, where no plugin ran). What only the engine can tell (is there such a device, does the model have
that output) stays with the engine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_mlperf.errors import ModelError

if TYPE_CHECKING:
    from pytest_mlperf.backends.base import BackendOptions

#: A value check: None when the value is acceptable, else what to give instead.
Check = Callable[[str], str | None]


@dataclass(frozen=True)
class Key:
    """One option of one engine: how it is written (its usage) and what its values must be."""

    name: str
    usage: str
    check: Check | None = None  # None: any text (a name, a path, a target) that only the engine can judge


def choice(*values: str, fold: bool = False, why: str = "") -> Check:
    """One of *values* (compared case-insensitively with *fold*); *why* says what they mean."""
    allowed = {v.lower() if fold else v for v in values}

    def check(value: str) -> str | None:
        if (value.lower() if fold else value) in allowed:
            return None
        return f"use one of {', '.join(values)}" + (f" ({why})" if why else "")

    return check


def whole(low: int, high: int | None, fix: str) -> Check:
    """A whole number from *low* to *high* (no upper end when None); *fix* says what to give."""

    def check(value: str) -> str | None:
        # Not int(): it takes " 7", "7_0" and other digits than 0-9, which no engine documents.
        if re.fullmatch(r"[0-9]{1,9}", value) and low <= int(value) and (high is None or int(value) <= high):
            return None
        return fix

    return check


def number(low: float, high: float) -> Check:
    """A finite decimal number from *low* to *high*."""

    def check(value: str) -> str | None:
        try:
            parsed = float(value)
        except ValueError:
            parsed = math.nan
        if low <= parsed <= high:  # NaN compares false
            return None
        return f"give a number from {low:g} to {high:g}"

    return check


def matching(pattern: str, fix: str) -> Check:
    """Text that matches *pattern* in full."""
    compiled = re.compile(pattern)
    return lambda value: None if compiled.fullmatch(value) else fix


def names(value: str) -> str | None:
    """A comma-separated list of at least one name."""
    return None if any(n.strip() for n in value.split(",")) else "give one name or more, comma-separated"


def litert_delegate(value: str) -> str | None:
    """XNNPACK (LiteRT's default CPU delegate), none (the built-in kernels only), or a delegate library's path."""
    if value in ("xnnpack", "none") or Path(value).is_file():
        return None
    return (
        "not xnnpack or none, and no delegate library exists at that path; give delegate=xnnpack, delegate=none or "
        "the path of a TfLiteDelegate shared library"
    )


THREADS_FIX = "needs a whole number >= 0 (0 = one per usable core)"

#: Every built-in engine's keys, in the order their usage lists them.
ENGINE_KEYS: dict[str, tuple[Key, ...]] = {
    "onnxruntime": (Key("outputs", "outputs=NAME[,NAME...] (the model outputs to fetch)", names),),
    "openvino": (
        Key("device", "device=CPU|GPU|AUTO..."),
        Key("precision", "precision=f32|bf16|f16|default", choice(
            "f32", "bf16", "f16", "default",
            why="f32 for accuracy runs; default keeps the device's own, bf16 on CPUs that have it",
        )),
        Key("hint", "hint=auto|LATENCY|THROUGHPUT", choice(
            "auto", "LATENCY", "THROUGHPUT", fold=True,
            why="auto: LATENCY for single samples, THROUGHPUT with an async infer queue for batches",
        )),
    ),
    "litert": (
        Key("threads", "threads=N (interpreter threads; 0 = one per usable core, the default follows "
            "--mlperf-threads)", whole(0, None, f"the litert backend {THREADS_FIX}")),
        Key("delegate", "delegate=xnnpack|none|PATH (XNNPACK, the default; the built-in kernels only; or an external "
            "delegate library)", litert_delegate),
    ),
    "torch": (
        Key("mode", "mode=eager|scripted|compiled", choice("eager", "scripted", "compiled")),
        Key("threads", "threads=N", whole(1, None, "give a whole number of intra-op threads, 1 or more")),
        Key("device", "device=cpu|cuda[:N]", matching(r"cpu|cuda(:[0-9]{1,4})?", "use cpu, cuda or cuda:N")),
        Key("model_class", "model_class=package.module:Class (a class or factory called without arguments; the "
            "model file then holds its weights)", matching(
                r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*",
                "give it as package.module:Class, e.g. torchvision.models:resnet50",
            )),
        Key("outputs", "outputs=NAME[,NAME...]", names),
    ),
    "tensorflow": (
        Key("threads", "threads=N (intra-op threads; 0 = one per usable core, the default follows --mlperf-threads)",
            whole(0, None, f"the tensorflow backend {THREADS_FIX}")),
        Key("inter_op_threads", "inter_op_threads=N", whole(0, None, f"the tensorflow backend {THREADS_FIX}")),
        Key("signature", "signature=NAME (a SavedModel's signature, default serving_default)"),
        Key("inputs", "inputs=TENSOR[,TENSOR...]", names),
        Key("outputs", "outputs=TENSOR[,TENSOR...] (a frozen graph's tensors, e.g. input_tensor:0 and ArgMax:0; "
            "default: its placeholders, and the tensors no op consumes)", names),
        Key("data_format", "data_format=NCHW|NHWC (the layout the model's image inputs take; NHWC transposes the "
            "datasets' NCHW batches, as the MLPerf ResNet50 .pb needs)", choice(
            "NCHW", "NHWC", fold=True,
            why="NCHW feeds the dataset's batches as they are, NHWC transposes 4-D NCHW batches to NHWC first",
        )),
    ),
    "tvm": (
        Key("target", 'target=llvm|cuda|{"kind": "llvm", ...}'),
        Key("cache", "cache=on|off", choice(
            "on", "off", fold=True, why="on compiles once and reuses the cached library, off compiles in every session"
        )),
    ),
    "tensorrt": (
        Key("precision", "precision=fp32|fp16|int8 (int8 needs a Q/DQ-quantised ONNX: no calibration here)",
            choice("fp32", "fp16", "int8")),
        Key("workspace_mib", "workspace_mib=N (the builder's scratch memory; default: TensorRT's, the whole GPU)",
            whole(1, None, "give a whole number of MiB, 1 or more")),
        Key("device", "device=N (CUDA device index)", whole(0, None, "give a CUDA device index: 0, 1, ...")),
    ),
    "remote": (
        Key("url", "url=kserve-v2+http(s)|grpc(s)://HOST:PORT/models/NAME[/versions/V]"),
        Key("token_env", "token_env=ENV_VAR_NAME", matching(
            r"[A-Za-z_][A-Za-z0-9_]*", "give the name of the environment variable that holds the bearer token"
        )),
        Key("ca_bundle", "ca_bundle=PATH"),
        Key("insecure", "insecure=true (no TLS verification)", choice("false", "true", fold=True)),
        Key("timeout_s", "timeout_s=0.1..600 (default 30)", number(0.1, 600)),
        Key("retries", "retries=0..10 (default 2)", whole(0, 10, "give a whole number from 0 to 10")),
        Key("concurrency", "concurrency=1..1024 (default 16)", whole(1, 1024, "give a whole number from 1 to 1024")),
        Key("binary", "binary=auto|true|false", choice("auto", "true", "false", fold=True)),
        Key("digest", "digest=TEXT (the deployed model's digest)"),
    ),
}


def usage(engine: str) -> str:
    """What *engine* reads, as an error message lists it."""
    return ", ".join(key.usage for key in ENGINE_KEYS[engine])


def problem(engine: str, key: str, value: str, given: str | None = None) -> str | None:
    """Why built-in *engine* refuses ``KEY=VALUE`` (a message naming the option as *given*, and the fix), or None."""
    spec = next((k for k in ENGINE_KEYS[engine] if k.name == key), None)
    if spec is None:
        return (
            f"--mlperf-backend-option {given or key}=...: the {engine} backend has no option {key!r}; it reads: "
            f"{usage(engine)}"
        )
    fix = spec.check(value) if spec.check is not None else None
    return None if fix is None else f"--mlperf-backend-option {engine}.{key}={value}: {fix}"


def check_options(engine: str, options: BackendOptions) -> None:
    """Raise ModelError for the first option built-in *engine* would refuse (unknown key, or bad value)."""
    for key, value in options.extra:
        found = problem(engine, key, value)
        if found:
            raise ModelError(found)


def session_problem(
    pairs: Sequence[tuple[str, str]], running: Sequence[str], known: Sequence[str], flag: str
) -> str | None:
    """Why the options a session was given cannot run, found before any case does, or None.

    *running* are the engines that --mlperf-backend(s) chose, *known* every engine name (plugins' included). Checked:
    every ``ENGINE.KEY`` of a built-in engine (running or not: an ini file may hold options for engines one
    invocation leaves out), a prefix that names no engine, and every unprefixed key against each running built-in
    engine. A plugin's engine checks its own options. A server model URL picks the remote engine per case, so an
    unprefixed key that only remote reads is left to it.
    """
    remote_keys = {k.name for k in ENGINE_KEYS["remote"]}
    for key, value in pairs:
        prefix, dot, rest = key.partition(".")
        found = None
        if dot and prefix in ENGINE_KEYS:
            found = problem(prefix, rest, value, key)
        elif dot and prefix not in known:
            engines = ", ".join(dict.fromkeys((*ENGINE_KEYS, *known)))
            found = (
                f"--mlperf-backend-option {key}={value}: no engine is called {prefix!r}; ENGINE.KEY=VALUE reaches "
                f"one engine ({engines}), KEY=VALUE every engine that runs"
            )
        elif not dot:
            for engine in (e for e in running if e in ENGINE_KEYS):
                if key in remote_keys and not any(k.name == key for k in ENGINE_KEYS[engine]):
                    continue  # remote's alone: left to the cases whose model is a server URL
                found = problem(engine, key, value)
                if found:
                    break
        if found:
            return found.replace("--mlperf-backend-option", flag, 1)
    return None
