"""pytest wiring only: the ``mlperf`` option group, the marker, parametrization hooks, fixtures and reporting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mlperf.config import (
    OPTIONS,
    ListValue,
    OptionSpec,
    UsageProblem,
    build_run_config,
    check_outputs,
    convert_ini,
    thresholds_from_marker,
)
from pytest_mlperf.rules import SCENARIOS
from pytest_mlperf.session import (
    COMPARISON_PROPERTY,
    RUN_PROPERTY,
    SKIPPED_PROPERTY,
    MLPerfSession,
    gate_reasons,
    reported_properties,
)

if TYPE_CHECKING:  # the harness pulls in numpy and LoadGen: imported only when a benchmark asks for it
    from pytest_mlperf.provisioning.assets import MLPerfAssets
    from pytest_mlperf.runner import CaseRunner

SESSION_KEY = pytest.StashKey[MLPerfSession]()
#: The SIGTERM handler to restore at unconfigure (SIGTERM is an orderly interrupt while the plugin runs).
SIGTERM_KEY = pytest.StashKey[Any]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_mlperf import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


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
        try:
            raw = config.getini(spec.ini)
        except (TypeError, ValueError) as exc:  # pytest's native [tool.pytest] table checks types itself
            raise UsageProblem(
                f"{exc}; pytest-mlperf's ini options are strings there: write {spec.ini} = \"...\" (a list "
                "option as one comma-separated string), or put it under [tool.pytest.ini_options]"
            ) from None
        return None if raw is None else convert_ini(spec, raw)

    return get


def _given(config: pytest.Config, name: str) -> bool:
    spec = next(spec for spec in OPTIONS if spec.name == name)
    return config.getoption(spec.dest) is not None or bool(config.getini(spec.ini))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mlperf(accuracy=None, latency_ms=None, min_qps=None, model_name=None): thresholds of a pytest-mlperf "
        "benchmark; each value may be a number or a dict keyed by scenario.",
    )
    from pytest_mlperf import backends

    # The built-in engines are the default implementation of the backend hook; a plugin's own runs first.
    if not config.pluginmanager.is_registered(backends):
        config.pluginmanager.register(backends, "mlperf-backends")
    names = [name for names in config.hook.pytest_mlperf_backend_names(config=config) for name in names]
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    try:
        run_config = build_run_config(_option_getter(config), Path(str(config.rootpath)), backend_names=names)
        if not (config.option.help or config.option.version):
            # Paths given on purpose are checked now; the defaults once a benchmark is collected (below), so a
            # project without benchmarks never probes them.
            given = {name for name in ("results", "log-dir") if _given(config, name)}
            check_outputs(run_config, Path(str(config.rootpath)), workerinput is None and "results" in given,
                          "log-dir" in given)
    except UsageProblem as exc:
        raise pytest.UsageError(str(exc)) from None
    numprocesses = getattr(config.option, "numprocesses", None)
    if "performance" in run_config.modes and workerinput is None and isinstance(numprocesses, int) and numprocesses > 1:
        from pytest_mlperf.provenance import usable_cpus

        cores = len(usable_cpus())
        if numprocesses > cores:
            raise pytest.UsageError(
                f"-n {numprocesses} starts more xdist workers than the {cores} usable cores, so performance runs "
                f"would share cores and report contended numbers. Use -n {cores} or fewer (each worker is pinned to "
                "its own cores), -n 0, or --mlperf-mode=accuracy."
            )
    session = MLPerfSession(
        run_config, Path(str(config.rootpath)), writes_results=workerinput is None, pytestconfig=config
    )
    session.make_backend = lambda name, model, options: config.hook.pytest_mlperf_make_backend(
        config=config, name=name, model=model, options=options
    )
    if workerinput is not None:
        session.worker = (int(str(workerinput["workerid"]).lstrip("gw") or 0), int(workerinput["workercount"]))
    config.stash[SESSION_KEY] = session
    if session.writes_results:
        config.pluginmanager.register(session, "mlperf-session")
        from pytest_mlperf import signals

        config.stash[SIGTERM_KEY] = signals.install_sigterm()


def _marker_kwargs(item: pytest.Item) -> dict[str, Any]:
    """Suite-level defaults (a module's or class's ``pytestmark``) merged with the test's own marker, key by key,
    the closest marker winning."""
    merged: dict[str, Any] = {}
    for marker in reversed(list(item.iter_markers("mlperf"))):
        merged.update(marker.kwargs)
    return merged


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    benchmarks = [item for item in session.items if "mlperf" in getattr(item, "fixturenames", ())]
    try:
        # Marker thresholds are checked for every scenario now, so a bad one stops the session before any case.
        for item in benchmarks:
            for scenario in SCENARIOS:
                thresholds_from_marker(_marker_kwargs(item), scenario, item.nodeid)
        if benchmarks and not config.option.collectonly:
            check_outputs(config.stash[SESSION_KEY].config, Path(str(config.rootpath)),
                          getattr(config, "workerinput", None) is None)
    except UsageProblem as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(tryfirst=True)  # release GPU memory before other plugins' teardown runs
def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()
    if SIGTERM_KEY in config.stash:
        from pytest_mlperf import signals

        signals.restore_sigterm(config.stash[SIGTERM_KEY])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.skipped and "mlperf" in getattr(item, "fixturenames", ()):
        report.user_properties.append((SKIPPED_PROPERTY, True))  # read by the summary, also across xdist
    # The call report carries whole runs to the results writer (also across xdist); --junitxml reads teardown's.
    if call.when == "teardown" and report.user_properties:
        report.user_properties = reported_properties(report.user_properties)
    return report


def _parametrized_by_test(metafunc: pytest.Metafunc, name: str) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        names = [n.strip() for n in argnames.split(",")] if isinstance(argnames, str) else list(argnames)
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    run_config = metafunc.config.stash[SESSION_KEY].config
    # First, so that ids read engine-scenario-mode; `mlperf` asks for mlperf_backend, so every benchmark gets it.
    backends = run_config.backends
    if backends and "mlperf_backend" in metafunc.fixturenames and not _parametrized_by_test(metafunc, "mlperf_backend"):
        metafunc.parametrize("mlperf_backend", backends, ids=list(backends))
    if "mlperf_scenario" in metafunc.fixturenames and not _parametrized_by_test(metafunc, "mlperf_scenario"):
        metafunc.parametrize("mlperf_scenario", run_config.scenarios, ids=list(run_config.scenarios))
    if "mlperf_mode" in metafunc.fixturenames and not _parametrized_by_test(metafunc, "mlperf_mode"):
        metafunc.parametrize("mlperf_mode", run_config.modes, ids=list(run_config.modes))
    # Last, so that ids read engine-scenario-mode-configuration.
    if run_config.sweep and "mlperf_sweep" in metafunc.fixturenames:
        from pytest_mlperf.sweep import configurations, label

        swept = configurations(run_config.sweep)
        metafunc.parametrize("mlperf_sweep", swept, ids=[label(c) for c in swept])


@pytest.fixture(scope="session")
def mlperf_cache_dir(pytestconfig: pytest.Config) -> Path:
    """The directory where models, datasets and built artefacts are cached (``--mlperf-cache-dir``), created
    with its ``CACHEDIR.TAG`` on first use."""
    from pytest_mlperf.errors import ProvisioningError
    from pytest_mlperf.provisioning.cache import ensure_cache_dir

    try:
        return ensure_cache_dir(pytestconfig.stash[SESSION_KEY].config.cache_dir)
    except ProvisioningError as exc:
        pytest.fail(f"pytest-mlperf: {exc}", pytrace=False)


@pytest.fixture
def mlperf_backend(pytestconfig: pytest.Config) -> str:
    """The inference engine this case runs on: ``--mlperf-backend``, or this case's one of ``--mlperf-backends``."""
    return pytestconfig.stash[SESSION_KEY].config.backend


@pytest.fixture
def mlperf_sweep() -> tuple[tuple[str, str], ...]:
    """This case's ``--mlperf-sweep`` configuration, ((key, value), ...); empty without a sweep."""
    return ()


@pytest.fixture
def mlperf(
    request: pytest.FixtureRequest, mlperf_backend: str, mlperf_sweep: tuple[tuple[str, str], ...]
) -> Iterator[CaseRunner]:
    """Runs LoadGen benchmarks for this test: ``mlperf.run(model=..., dataset=...)`` returns a RunResult."""
    from pytest_mlperf.runner import CaseRunner

    session = request.config.stash[SESSION_KEY]
    item = request.node
    marker_kwargs = _marker_kwargs(item)
    params = getattr(getattr(item, "callspec", None), "params", {})

    def record(run: dict[str, Any]) -> None:
        item.user_properties.append((RUN_PROPERTY, run))

    def gate(case_id: str, runs: list[dict[str, Any]]) -> list[str]:
        comparison = session.compare_case(case_id, runs)
        item.user_properties.append((COMPARISON_PROPERTY, comparison))
        return gate_reasons(comparison)

    yield CaseRunner(
        harness=session.harness_for(mlperf_sweep),
        nodeid=item.nodeid,
        marker_kwargs=marker_kwargs,
        cli_thresholds=session.config.thresholds,
        default_scenario=params.get("mlperf_scenario"),
        default_mode=params.get("mlperf_mode"),
        backend=mlperf_backend,
        record=record,
        before_performance_run=session.pin_worker_once,
        repeat=session.config.repeat,
        gate=gate if session.gating else None,
        decided=session.decided if session.gating and session.config.adaptive else None,
    )
    if session.writes_results:  # after Ctrl-C this test has no report to carry its runs
        session.salvage(item.user_properties)


@pytest.fixture(scope="session")
def mlperf_assets(pytestconfig: pytest.Config) -> Iterator[MLPerfAssets]:
    """Models and datasets declared in the manifests: ``mlperf_assets.get(name) -> Path``, ``.provision(name)``."""
    from pytest_mlperf.errors import ConfigError
    from pytest_mlperf.provisioning.assets import MLPerfAssets, TerminalStream
    from pytest_mlperf.provisioning.manifest import load_catalog
    from pytest_mlperf.provisioning.provision import Provisioner

    cfg = pytestconfig.stash[SESSION_KEY].config
    stream = TerminalStream(pytestconfig)
    try:
        provisioner = Provisioner(
            cache_dir=cfg.cache_dir,
            mirror=cfg.mirror,
            offline=cfg.offline,
            overrides=dict(cfg.assets),
            manifests=cfg.catalog if cfg.catalog is not None else load_catalog(),
            stream=stream,  # type: ignore[arg-type]  # a write/flush/isatty stream is all it uses
            tty=stream.isatty(),
            deadline_s=cfg.download_timeout_s,
            min_rate=cfg.download_min_rate,
            verify=cfg.verify_cache,
        )
    except ConfigError as exc:
        pytest.fail(f"pytest-mlperf cannot provision assets: {exc}", pytrace=False)
    try:
        yield MLPerfAssets(provisioner, cfg.strict_assets)
    finally:
        provisioner.close()
