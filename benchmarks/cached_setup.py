"""Measure session setup for a cached 100 MB model: stamp check versus a full re-hash (target: under 0.1 s).

Run: ``python benchmarks/cached_setup.py [--mb 100] [--repeat 20]``. It serves a random file from a local HTTP server,
provisions it once (download + verify), then times fresh provisioners resolving it from the cache, as each new pytest
session does. No assertions: it prints the numbers and the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_mlperf.provisioning.provision import Provisioner, file_digests


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=int, default=100, help="size of the model file in MB (default 100)")
    parser.add_argument("--repeat", type=int, default=20, help="timed cache hits (default 20)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mlperf-bench-") as tmp:
        root = Path(tmp)
        served = root / "served"
        served.mkdir()
        model = served / "model.onnx"
        with open(model, "wb") as fh:
            for _ in range(args.mb):
                fh.write(os.urandom(1_000_000))
        sha = hashlib.sha256(model.read_bytes()).hexdigest()

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(served)))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        manifest = root / "bench.yaml"
        url = f"http://127.0.0.1:{httpd.server_address[1]}/model.onnx"
        entry = {"name": "bench-model", "kind": "model", "url": url, "sha256": sha, "size": model.stat().st_size}
        manifest.write_text(yaml.safe_dump({"schema_version": 1, "assets": [entry]}))
        cache = root / "cache"

        def session() -> Provisioner:
            # What a session fixture does: parse packaged + user manifests, then resolve the asset.
            return Provisioner.from_options(cache_dir=cache, manifest_paths=[manifest], env={}, stream=io.StringIO())

        t0 = time.perf_counter()
        first = session().provision("bench-model")
        download_s = time.perf_counter() - t0
        httpd.shutdown()
        httpd.server_close()
        assert first.origin == "download", first

        hits = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            got = session().provision("bench-model")
            hits.append(time.perf_counter() - t0)
            assert got.origin == "cache", got

        # The lookup alone, without manifest parsing: stat + stamp read.
        prov = session()
        lookups = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            prov.provision("bench-model")
            lookups.append(time.perf_counter() - t0)

        rehash = []
        for _ in range(3):
            t0 = time.perf_counter()
            file_digests(first.path)
            rehash.append(time.perf_counter() - t0)

    hit, full = statistics.median(hits), statistics.median(rehash)
    verdict = "met" if hit < 0.1 else "NOT met"
    worst = max(hits) * 1000
    print(f"cached setup, {args.mb} MB model, median of {args.repeat}: {hit * 1000:8.2f} ms (max {worst:.2f} ms)")
    print(f"  of which the cache lookup (stat + stamp), median:        {statistics.median(lookups) * 1000:8.2f} ms")
    print(f"full re-hash of the same file (sha256+md5), median of 3:  {full * 1000:8.1f} ms")
    print(f"first download + verify from 127.0.0.1:                   {download_s * 1000:8.0f} ms")
    print(f"re-hash / cached setup: {full / hit:.0f}x; cached setup under 100 ms: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
