"""The object behind the ``mlperf_assets`` fixture: manifest assets as local paths, skipped or failed when missing."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from pytest_mlperf.provisioning.manifest import Asset
    from pytest_mlperf.provisioning.provision import AssetUnavailable, Provisioned, Provisioner


class TerminalStream:
    """Where download progress goes: past pytest's capture, onto the terminal, so CI logs show one line per file."""

    def __init__(self, config: pytest.Config) -> None:
        self._capman = config.pluginmanager.getplugin("capturemanager")
        self._reporter = config.pluginmanager.getplugin("terminalreporter")

    def _uncaptured(self) -> Any:
        return self._capman.global_and_fixture_disabled() if self._capman is not None else contextlib.nullcontext()

    def isatty(self) -> bool:
        if self._reporter is not None:
            return bool(self._reporter.isatty)
        with self._uncaptured():
            return sys.stderr.isatty()

    def write(self, text: str) -> int:
        with self._uncaptured():
            if self._reporter is not None:
                self._reporter.ensure_newline()  # never draw over pytest's "path/test_x.py ..." line
                self._reporter.write_raw(text, flush=True)
            else:
                sys.stderr.write(text)
                sys.stderr.flush()
        return len(text)

    def flush(self) -> None:
        pass


class MLPerfAssets:
    """The ``mlperf_assets`` fixture: models and datasets from the manifests as local paths.

    An asset that cannot be had here (offline, not cached, no public download) skips the case with a reason that
    says how to provide it, or fails it under ``--mlperf-strict-assets``; any other provisioning error (404,
    checksum mismatch, full disk, bad local path) fails it with the asset, the URL and the remedy. Outcomes are
    kept per name, so a session asks the network at most once per asset.
    """

    def __init__(self, provisioner: Provisioner, strict: bool) -> None:
        self.provisioner = provisioner
        self.strict = strict
        self._outcomes: dict[str, Provisioned | Exception] = {}

    def _outcome(self, name: str) -> Provisioned | Exception:
        from pytest_mlperf.errors import ProvisioningError

        if name not in self._outcomes:
            try:
                self._outcomes[name] = self.provisioner.provision(name)
            except ProvisioningError as exc:
                self._outcomes[name] = exc
        return self._outcomes[name]

    def provision(self, name: str) -> Provisioned:
        """The asset with its digests and origin; skips (or fails, in strict mode) when it cannot be had."""
        from pytest_mlperf.provisioning.provision import AssetUnavailable

        got = self._outcome(name)
        if isinstance(got, AssetUnavailable):
            self.unavailable(self._reason(got))
        if isinstance(got, Exception):
            pytest.fail(str(got), pytrace=False)
        return got

    def get(self, name: str) -> Path:
        """The asset's local path: a file, or a directory for archives and user-supplied directories."""
        return self.provision(name).path

    def optional(self, name: str) -> Provisioned | None:
        """Like :meth:`provision`, but None instead of a skip when the asset cannot be had (other errors fail)."""
        from pytest_mlperf.provisioning.provision import AssetUnavailable

        got = self._outcome(name)
        if isinstance(got, AssetUnavailable):
            return None
        if isinstance(got, Exception):
            pytest.fail(str(got), pytrace=False)
        return got

    def why_unavailable(self, name: str) -> str | None:
        """After :meth:`optional` returned None: why, and how to provide the asset."""
        from pytest_mlperf.provisioning.provision import AssetUnavailable

        got = self._outcomes.get(name)
        return self._reason(got) if isinstance(got, AssetUnavailable) else None

    def _reason(self, exc: AssetUnavailable) -> str:
        """The skip reason; after a failed download it also says that the cache did not hold the asset."""
        text = str(exc)
        asset = self.provisioner.catalog.get(exc.asset)
        if asset is not None:
            subject = f"{asset.kind} {exc.asset!r}"
            failed = f"{subject} could not be downloaded"
            if text.startswith(failed):
                cache = self.provisioner.cache_dir
                text = f"{subject} is not in the cache ({cache}) and could not be downloaded{text[len(failed):]}"
        return text

    def asset(self, name: str) -> Asset:
        """The manifest entry (URL, checksums, layout details)."""
        from pytest_mlperf.errors import ProvisioningError

        try:
            return self.provisioner.asset(name)
        except ProvisioningError as exc:
            pytest.fail(str(exc), pytrace=False)

    def unavailable(self, reason: str) -> NoReturn:
        """Skip the case for want of an asset, or fail it under --mlperf-strict-assets."""
        if self.strict:
            pytest.fail(f"{reason}\n(--mlperf-strict-assets turns this skip into a failure)", pytrace=False)
        pytest.skip(reason)
