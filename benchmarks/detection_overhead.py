"""What detection's ragged responses cost the harness: Offline samples/s against a bare loop, interleaved.

    python benchmarks/detection_overhead.py            # about a minute on 2 cores
    python benchmarks/detection_overhead.py --rounds 3 --detections 100

The model is the SSD-MobileNet stand-in (pytest_mlperf/models/detector_standin.py) on 300x300 uint8 images that
each carry a payload of ``--detections`` detections, so every sample answers that many rows of 7 float32 values.
The harness (``Harness.run``, Offline, smoke profile, onnxruntime backend, the Detection task, LoadGen) is compared
with a bare loop that runs the same ONNX session on the same batches and the same ``Detection.postprocess`` and
does nothing else (batches as views of consecutive rows), and with the same loop gathering each batch from random
rows as the harness's QSL gathers LoadGen's indices; it also times the post-processing's share of each batch.
The three arms alternate (the order flips every round); it prints the medians and the spread of the per-round
ratios. Nothing here asserts; it prints the ratio against the target of issue 13
(>= 0.95).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from models import bare_session

from pytest_mlperf.config import Overrides, RunConfig
from pytest_mlperf.datasets.base import ArrayDataset
from pytest_mlperf.harness import Case, Harness
from pytest_mlperf.models.detector_standin import INTERFACES, PayloadDetection, build_detector_standin, write_payload
from pytest_mlperf.provenance import usable_cpus
from pytest_mlperf.results import RunResult
from pytest_mlperf.tasks.detection import SSD_MOBILENET

TARGET = 0.95
SAMPLES = 256  # distinct images in the QSL; LoadGen cycles through them


def payload_images(count: int, detections: int, seed: int = 0) -> np.ndarray:
    """*count* 300x300 images whose payload makes the stand-in answer *detections* detections each."""
    spec = INTERFACES["ssd-mobilenet"]
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, spec.size, spec.size, 3), dtype=np.uint8)
    for image in images:
        y, x = rng.uniform(0, 0.5, (2, detections))
        scores = np.sort(rng.uniform(0.05, 1.0, detections))[::-1]
        dets = [PayloadDetection((y[i], x[i], y[i] + 0.3, x[i] + 0.3), float(scores[i]), int(rng.integers(1, 91)))
                for i in range(detections)]  # fmt: skip
        write_payload(image, dets, spec, detections)
    return images


def bare_offline(model: Path, images: np.ndarray, samples: int, batch: int, threads: int, gather: bool) -> float:
    """Samples/s of session.run + Detection.postprocess over *samples* samples in batches of *batch*.

    With *gather*, each batch is gathered from random rows (``take``, as the harness's QSL gathers LoadGen's
    sample indices); without, it is a view of consecutive rows.
    """
    sess = bare_session(model, threads)
    name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    post = SSD_MOBILENET.postprocess
    indices = np.arange(len(images))
    order = np.random.default_rng(samples).permutation(len(images))
    post(dict(zip(names, sess.run(names, {name: images[:batch]}), strict=True)), indices[:batch])  # warm-up
    t0 = time.perf_counter()
    done = 0
    while done < samples:
        n = min(batch, samples - done)
        start = done % (len(images) - batch)
        rows = order[start : start + n]
        block = images.take(rows, axis=0) if gather else images[start : start + n]
        outputs = dict(zip(names, sess.run(names, {name: block}), strict=True))
        answers = post(outputs, indices[start : start + n])
        assert len(answers) == n
        done += n
    return samples / (time.perf_counter() - t0)


def postprocess_share(model: Path, images: np.ndarray, batch: int, threads: int, repeats: int = 50) -> float:
    """Share of Detection.postprocess in session.run + postprocess on one batch, timed back to back."""
    sess = bare_session(model, threads)
    name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    block = images[:batch]
    outputs = dict(zip(names, sess.run(names, {name: block}), strict=True))
    indices = list(range(batch))
    run_s = post_s = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(names, {name: block})
        t1 = time.perf_counter()
        SSD_MOBILENET.postprocess(outputs, indices)
        run_s, post_s = run_s + t1 - t0, post_s + time.perf_counter() - t1
    return post_s / (run_s + post_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--detections", type=int, default=100)
    args = parser.parse_args(argv)
    threads = len(usable_cpus())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = root / "ssd-mobilenet-standin.onnx"
        model.write_bytes(build_detector_standin("ssd-mobilenet", args.detections))
        images = payload_images(SAMPLES, args.detections)
        dataset = ArrayDataset(images, None, name="payload-images", task=SSD_MOBILENET)
        config = RunConfig(profile="smoke", threads=threads, log_dir=root / "logs", overrides=Overrides(),
                           backend="onnxruntime")  # fmt: skip
        harness = Harness(config, root)
        batch = config.batch_size
        ratios, gather_ratios, harness_qps, bare_qps, gather_qps = [], [], [], [], []
        samples = 0
        for rnd in range(args.rounds):
            order = ("harness", "bare", "gather") if rnd % 2 == 0 else ("gather", "bare", "harness")
            for which in order:
                if which == "harness":
                    result: RunResult = harness.run(Case("detect-Offline", model, dataset, "Offline", "performance",
                                                         repeat=rnd), lambda r: None)  # fmt: skip
                    if not result.valid:
                        print(f"  warning: INVALID: {'; '.join(result.validity_reasons)}", file=sys.stderr)
                    samples = int(result.settings["samples_per_query"])
                    harness_qps.append(result.metrics.qps or float("nan"))
                else:
                    qps = bare_offline(model, images, samples or 4096, batch, threads, gather=which == "gather")
                    (gather_qps if which == "gather" else bare_qps).append(qps)
            ratios.append(harness_qps[-1] / bare_qps[-1])
            gather_ratios.append(harness_qps[-1] / gather_qps[-1])
            print(f"round {rnd + 1}: harness {harness_qps[-1]:,.0f}/s, bare {bare_qps[-1]:,.0f}/s "
                  f"(ratio {ratios[-1]:.3f}), bare with gather {gather_qps[-1]:,.0f}/s (ratio "
                  f"{gather_ratios[-1]:.3f}); {samples} samples, {args.detections} detections each")  # fmt: skip
        post_share = postprocess_share(model, images, batch, threads)
        print(f"Offline, {args.detections} detections/image, batch {batch}, {threads} threads:")
        for label, series, base in (("bare loop (views)", ratios, bare_qps), ("bare loop + gather", gather_ratios,
                                                                               gather_qps)):  # fmt: skip
            ratio = statistics.median(series)
            verdict = "PASS" if ratio >= TARGET else "MISS"
            print(f"  harness {statistics.median(harness_qps):,.0f} samples/s over {label} "
                  f"{statistics.median(base):,.0f} samples/s: ratio {ratio:.3f} (min {min(series):.3f}, max "
                  f"{max(series):.3f}), target >= {TARGET}: {verdict}")
        print(f"  Detection.postprocess: {100 * post_share:.1f} % of session.run + postprocess per batch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
