"""TensorFlow backend: a SavedModel or a frozen GraphDef (.pb) run in a tf.compat.v1 Session with its own threads.

A v1 Session, not eager ``tf.function`` calls: its thread pools are set per session (TF2's eager thread settings are
process-wide and frozen at first use), and ``Session.run`` may be called from several threads at once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from pytest_mlperf.backends.base import (
    BackendOptions,
    as_feeds,
    fit_batch,
    warm_up,
    whole_option,
)
from pytest_mlperf.backends.options import check_options
from pytest_mlperf.datasets.base import Inputs
from pytest_mlperf.errors import ModelError
from pytest_mlperf.fileio import file_sha256
from pytest_mlperf.provenance import usable_cpus

_SERVE_TAG = "serve"
_DEFAULT_SIGNATURE = "serving_default"


def _names(raw: str | None) -> list[str]:
    return [n.strip() for n in (raw or "").split(",") if n.strip()]


def directory_identity(path: Path) -> str:
    """One sha256 over a model directory: each file's relative path and content digest, in path order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return f"sha256:{digest.hexdigest()}"


class TensorFlowBackend:
    """Wraps a ``tf.compat.v1.Session`` over the model's graph; one session serves every inference thread."""

    name = "tensorflow"
    thread_safe = True  # Session.run may be called concurrently; TF releases the GIL while it runs
    model_identity: str | None = None  # a .pb file: the harness records its sha256; a SavedModel: set below

    def __init__(self, model: Path | str, options: BackendOptions) -> None:
        self.version: str = tf.__version__
        self.options = options
        check_options("tensorflow", options)
        model = Path(model)
        self._model = model
        self.data_format = (options.option("data_format") or "NCHW").upper()
        cores = len(usable_cpus())
        self.threads = whole_option(options, "threads", options.intra_op_threads) or cores
        self.inter_op_threads = whole_option(options, "inter_op_threads", options.inter_op_threads) or cores
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=self.threads,
            inter_op_parallelism_threads=self.inter_op_threads,
        )
        graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=graph, config=config)
        self.signature: str | None = None
        with graph.as_default():
            if model.is_dir():
                self.format = "savedmodel"
                feeds, fetches = self._load_savedmodel(model, options.option("signature") or _DEFAULT_SIGNATURE)
                self.model_identity = directory_identity(model)
            elif model.is_file():
                self.format = "frozen_graph"
                feeds, fetches = self._load_frozen_graph(model, graph, options)
            else:
                raise ModelError(
                    f"model not found: {model} (relative paths start at {Path.cwd()}); give a SavedModel directory "
                    "or a frozen graph .pb, or provision it through the mlperf_assets fixture"
                )
            inputs = [graph.get_tensor_by_name(t) for t in feeds.values()]
            outputs = [graph.get_tensor_by_name(t) for t in fetches.values()]
        self.input_names = tuple(feeds)
        self.output_names = tuple(fetches)
        self._tensors = {**feeds, **fetches}
        # A static batch axis (a graph exported for batch 1, say) is fixed: run() cuts and pads batches to it, and
        # the harness clamps its batch ceiling to it.
        first = inputs[0].shape[0] if inputs and inputs[0].shape.rank else None
        self.max_batch: int | None = int(first) if first is not None and int(first) > 0 else None
        self._call = self._session.make_callable(outputs, feed_list=inputs)

    def _load_savedmodel(self, model: Path, signature: str) -> tuple[dict[str, str], dict[str, str]]:
        if not (model / "saved_model.pb").is_file() and not (model / "saved_model.pbtxt").is_file():
            raise ModelError(
                f"{model} is a directory but not a SavedModel (no saved_model.pb); give a SavedModel directory or a "
                "frozen graph .pb file"
            )
        try:
            meta = tf.compat.v1.saved_model.loader.load(self._session, [_SERVE_TAG], str(model))
        except (RuntimeError, ValueError, OSError, tf.errors.OpError) as exc:
            raise ModelError(
                f"tensorflow could not load the SavedModel {model} with tag {_SERVE_TAG!r}: {exc}. The directory "
                "may be incomplete; delete it and provision or build it again"
            ) from exc
        if signature not in meta.signature_def:
            # TF's own "__saved_model_init_op" is a signature no one calls.
            callable_ones = sorted(s for s in meta.signature_def if not s.startswith("__"))
            raise ModelError(
                f"{model} has no signature {signature!r}; its signatures are {', '.join(callable_ones) or 'none'} "
                "(--mlperf-backend-option signature=NAME)"
            )
        self.signature = signature
        sig = meta.signature_def[signature]
        feeds = {key: sig.inputs[key].name for key in sorted(sig.inputs)}
        fetches = {key: sig.outputs[key].name for key in sorted(sig.outputs)}
        return feeds, fetches

    def _load_frozen_graph(
        self, model: Path, graph: Any, options: BackendOptions
    ) -> tuple[dict[str, str], dict[str, str]]:
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(model.read_bytes())
            tf.compat.v1.import_graph_def(graph_def, name="")
        except Exception as exc:  # protobuf's DecodeError, or TF's ValueError for a graph it cannot import
            raise ModelError(
                f"tensorflow could not load {model} as a frozen GraphDef: {exc}. The file may be truncated or not a "
                "frozen graph; delete it and provision it again"
            ) from exc
        ops = graph.get_operations()
        inputs = _names(options.option("inputs")) or [
            out.name for op in ops if op.type == "Placeholder" for out in op.outputs
        ]
        consumed = {t.name for op in ops for t in op.inputs}
        outputs = _names(options.option("outputs")) or [
            out.name for op in ops if op.type not in ("Placeholder", "Const", "NoOp") for out in op.outputs
            if out.name not in consumed
        ]
        self._check_tensors(model, graph, inputs, "inputs")
        self._check_tensors(model, graph, outputs, "outputs")
        return {n: n for n in inputs}, {n: n for n in outputs}

    @staticmethod
    def _check_tensors(model: Path, graph: Any, names: Sequence[str], key: str) -> None:
        if not names:
            raise ModelError(f"{model}: found no {key} in the graph; name them with --mlperf-backend-option {key}=...")
        for name in names:
            try:
                graph.get_tensor_by_name(name)
            except (KeyError, ValueError) as exc:
                placeholders = [op.name + ":0" for op in graph.get_operations() if op.type == "Placeholder"]
                raise ModelError(
                    f"{model} has no tensor {name!r} (--mlperf-backend-option {key}=...; tensor names end in :N, "
                    f"e.g. ArgMax:0); its placeholders are {', '.join(placeholders) or 'none'}"
                ) from exc

    def run(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        return fit_batch(self._run_batch, inputs, self.max_batch)

    def _run_batch(self, inputs: Inputs) -> Mapping[str, np.ndarray]:
        feeds = as_feeds(inputs, self.input_names, self._model)
        if self.data_format == "NHWC":
            feeds = {name: a.transpose(0, 2, 3, 1) if a.ndim == 4 else a for name, a in feeds.items()}
        try:
            outs = self._call(*(feeds[name] for name in self.input_names))
        except KeyError as exc:
            raise ModelError(
                f"{self._model} takes inputs {', '.join(self.input_names)}; the dataset gave {', '.join(feeds)}"
            ) from exc
        except (ValueError, tf.errors.OpError) as exc:
            shapes = {name: list(np.shape(array)) for name, array in feeds.items()}
            raise ModelError(
                f"{self._model} refused the batch {shapes} ({type(exc).__name__}: {str(exc).splitlines()[0]}); make "
                "the dataset's preprocessing produce what the model takes"
            ) from exc
        return dict(zip(self.output_names, outs, strict=True))

    def warmup(self, sample: Inputs) -> None:
        warm_up(self.run, sample, self.options)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "format": self.format,
            "threads": self.threads,
            "inter_op_threads": self.inter_op_threads,
            # oneDNN kernels (TF's default on x86) round differently from the Eigen ones.
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
            "data_format": self.data_format,
            "inputs": [self._tensors[n] for n in self.input_names],
            "outputs": [self._tensors[n] for n in self.output_names],
            "batch_size": self.options.batch_size,
        }
        if self.signature is not None:
            out["signature"] = self.signature
        if self.options.extra:
            out["options"] = dict(self.options.extra)
        return out

    def close(self) -> None:
        session = self.__dict__.pop("_session", None)
        self.__dict__.pop("_call", None)
        if session is not None:
            session.close()
