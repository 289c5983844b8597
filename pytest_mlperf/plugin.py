"""pytest wiring only: the ``mlperf`` option group, the marker, parametrization hooks, fixtures and reporting."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_mlperf.config import OPTIONS, ListValue, OptionSpec, UsageProblem, build_run_config, convert_ini
from pytest_mlperf.runner import CaseRunner
from pytest_mlperf.session import COMPARISON_PROPERTY, RUN_PROPERTY, MLPerfSession, gate_reasons

if TYPE_CHECKING:
    from pytest_mlperf.manifest import Asset
    from pytest_mlperf.provision import AssetUnavailable, Provisioned, Provisioner

SESSION_KEY = pytest.StashKey[MLPerfSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlperf", "MLPerf LoadGen benchmarks (pytest-mlperf)")
    types: dict[str, Any] = {"int": int, "float": float, "string": str}
    for spec in OPTIONS:
        help_text = f"{spec.help} [ini: {spec.ini}]".replace("%", "%%")  # argparse formats help
        if spec.kind == "bool":
            group.addoption(spec.flag, dest=spec.dest, action="store_true", default=None, help=help_text)
        elif spec.kind == "list":
            group.addoption(spec.flag, dest=spec.dest, action="append", default=None, metavar=spec.metavar,
                            help=help_text)
        else:
            group.addoption(spec.flag, dest=spec.dest, type=types[spec.kind], default=None, metavar=spec.metavar,
                            help=help_text)
        if spec.kind == "list":
            parser.addini(spec.ini, help=f"Default for {spec.flag}, one per line. {spec.help}", type="linelist",
                          default=[])
        else:
            parser.addini(spec.ini, help=f"Default for {spec.flag}. {spec.help}", default=None)


def _option_getter(config: pytest.Config) -> Any:
    def get(spec: OptionSpec) -> Any:
        if spec.kind == "list":
            ini = config.getini(spec.ini) or []
            cli = config.getoption(spec.dest) or []
            return ListValue(tuple(str(v) for v in ini), tuple(str(v) for v in cli)) if ini or cli else None
        value = config.getoption(spec.dest)
        if value is not None:
            return value
        raw = config.getini(spec.ini)
        return convert_ini(spec, raw) if isinstance(raw, str) else None

    return get


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mlperf(accuracy=None, latency_ms=None, min_qps=None, model_name=None): thresholds of a pytest-mlperf "
        "benchmark; each value may be a number or a dict keyed by scenario.",
    )
    try:
        run_config = build_run_config(_option_getter(config), Path(str(config.rootpath)))
    except UsageProblem as exc:
        raise pytest.UsageError(str(exc)) from None
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    numprocesses = getattr(config.option, "numprocesses", None)
    if "performance" in run_config.modes and workerinput is None and isinstance(numprocesses, int) and numprocesses > 1:
        cores = len(os.sched_getaffinity(0))
        if numprocesses > cores:
            raise pytest.UsageError(
                f"-n {numprocesses} starts more xdist workers than the {cores} usable cores, so performance runs "
                f"would share cores and report contended numbers. Use -n {cores} or fewer (each worker is pinned to "
                "its own cores), -n 0, or --mlperf-mode=accuracy."
            )
    session = MLPerfSession(run_config, Path(str(config.rootpath)), writes_results=workerinput is None)
    if workerinput is not None:
        session.worker = (int(str(workerinput["workerid"]).lstrip("gw") or 0), int(workerinput["workercount"]))
    config.stash[SESSION_KEY] = session
    if session.writes_results:
        config.pluginmanager.register(session, "mlperf-session")


def _parametrized_by_test(metafunc: pytest.Metafunc, name: str) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        names = [n.strip() for n in argnames.split(",")] if isinstance(argnames, str) else list(argnames)
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    run_config = metafunc.config.stash[SESSION_KEY].config
    if "mlperf_scenario" in metafunc.fixturenames and not _parametrized_by_test(metafunc, "mlperf_scenario"):
        metafunc.parametrize("mlperf_scenario", run_config.scenarios, ids=list(run_config.scenarios))
    if "mlperf_mode" in metafunc.fixturenames and not _parametrized_by_test(metafunc, "mlperf_mode"):
        metafunc.parametrize("mlperf_mode", run_config.modes, ids=list(run_config.modes))


@pytest.fixture(scope="session")
def mlperf_cache_dir(pytestconfig: pytest.Config) -> Path:
    """The directory where models, datasets and built artefacts are cached (``--mlperf-cache-dir``)."""
    return pytestconfig.stash[SESSION_KEY].config.cache_dir


@pytest.fixture
def mlperf(request: pytest.FixtureRequest) -> CaseRunner:
    """Runs LoadGen benchmarks for this test: ``mlperf.run(model=..., dataset=...)`` returns a RunResult."""
    session = request.config.stash[SESSION_KEY]
    item = request.node
    marker = item.get_closest_marker("mlperf")
    params = getattr(getattr(item, "callspec", None), "params", {})

    def record(run: dict[str, Any]) -> None:
        item.user_properties.append((RUN_PROPERTY, run))

    def gate(case_id: str, runs: list[dict[str, Any]]) -> list[str]:
        comparison = session.compare_case(case_id, runs)
        item.user_properties.append((COMPARISON_PROPERTY, comparison))
        return gate_reasons(comparison)

    return CaseRunner(
        harness=session.harness,
        nodeid=item.nodeid,
        marker_kwargs=dict(marker.kwargs) if marker else {},
        cli_thresholds=session.config.thresholds,
        default_scenario=params.get("mlperf_scenario"),
        default_mode=params.get("mlperf_mode"),
        record=record,
        before_performance_run=session.pin_worker_once,
        repeat=session.config.repeat,
        gate=gate if session.gating else None,
    )


class _TerminalStream:
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
        from pytest_mlperf.provision import AssetUnavailable

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
        from pytest_mlperf.provision import AssetUnavailable

        got = self._outcome(name)
        if isinstance(got, AssetUnavailable):
            return None
        if isinstance(got, Exception):
            pytest.fail(str(got), pytrace=False)
        return got

    def why_unavailable(self, name: str) -> str | None:
        """After :meth:`optional` returned None: why, and how to provide the asset."""
        from pytest_mlperf.provision import AssetUnavailable

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


@pytest.fixture(scope="session")
def mlperf_assets(pytestconfig: pytest.Config) -> Iterator[MLPerfAssets]:
    """Models and datasets declared in the manifests: ``mlperf_assets.get(name) -> Path``, ``.provision(name)``."""
    from pytest_mlperf.errors import ConfigError
    from pytest_mlperf.manifest import load_catalog
    from pytest_mlperf.provision import Provisioner

    cfg = pytestconfig.stash[SESSION_KEY].config
    stream = _TerminalStream(pytestconfig)
    try:
        provisioner = Provisioner(
            cache_dir=cfg.cache_dir,
            mirror=cfg.mirror,
            offline=cfg.offline,
            overrides=dict(cfg.assets),
            manifests=cfg.catalog if cfg.catalog is not None else load_catalog(),
            stream=stream,  # type: ignore[arg-type]  # a write/flush/isatty stream is all it uses
            tty=stream.isatty(),
        )
    except ConfigError as exc:
        pytest.fail(f"pytest-mlperf cannot provision assets: {exc}", pytrace=False)
    try:
        yield MLPerfAssets(provisioner, cfg.strict_assets)
    finally:
        provisioner.close()
