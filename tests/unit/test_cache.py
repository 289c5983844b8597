"""The cache root: one default location, and CACHEDIR.TAG whichever part of pytest-mlperf creates the cache first."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pytest_mlperf.config import RunConfig, build_run_config
from pytest_mlperf.errors import ProvisioningError
from pytest_mlperf.fileio import ensure_built
from pytest_mlperf.provisioning.cache import (
    CACHEDIR_TAG,
    ENV_CACHE,
    cache_file,
    cache_subdir,
    default_cache_dir,
    ensure_cache_dir,
)
from pytest_mlperf.provisioning.manifest import load_catalog
from pytest_mlperf.provisioning.provision import Provisioner

SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"


def tagged(root: Path) -> bool:
    return (root / "CACHEDIR.TAG").is_file() and (root / "CACHEDIR.TAG").read_text().startswith(SIGNATURE)


# -- the default location ---------------------------------------------------------------------------------------


def test_default_cache_dir_follows_the_env_var_then_the_platform_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(Path.home())
    assert default_cache_dir({ENV_CACHE: str(tmp_path / "c"), "XDG_CACHE_HOME": "/x"}) == tmp_path / "c"
    assert default_cache_dir({ENV_CACHE: "~/mine"}) == Path(home) / "mine"
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "pytest-mlperf"
    # The XDG spec: a relative value is invalid and ignored.
    assert default_cache_dir({"XDG_CACHE_HOME": "relative"}) == Path(home) / ".cache" / "pytest-mlperf"
    assert default_cache_dir({}) == Path(home) / ".cache" / "pytest-mlperf"
    monkeypatch.setattr(sys, "platform", "win32")
    local = str(tmp_path / "AppData" / "Local")
    assert default_cache_dir({"LOCALAPPDATA": local}) == Path(local) / "pytest-mlperf" / "Cache"
    assert default_cache_dir({"LOCALAPPDATA": local, ENV_CACHE: str(tmp_path / "c")}) == tmp_path / "c"


def test_plugin_options_and_provisioner_share_the_one_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CACHE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = tmp_path / "xdg" / "pytest-mlperf"
    assert build_run_config(lambda spec: None).cache_dir == expected
    assert RunConfig().cache_dir == expected
    assert Provisioner(manifests={}).cache_dir == expected
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert build_run_config(lambda spec: None).cache_dir == Path.home() / ".cache" / "pytest-mlperf"
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "env"))
    assert build_run_config(lambda spec: None).cache_dir == tmp_path / "env"
    assert Provisioner(manifests={}).cache_dir == tmp_path / "env"
    given = build_run_config(lambda spec: str(tmp_path / "opt") if spec.name == "cache-dir" else None)
    assert given.cache_dir == tmp_path / "opt"


# -- creating it -------------------------------------------------------------------------------------------------


def test_cache_root_is_created_atomically_with_its_tag(tmp_path: Path) -> None:
    root = ensure_cache_dir(tmp_path / "deep" / "cache")
    assert (root / "CACHEDIR.TAG").read_text() == CACHEDIR_TAG
    assert [p.name for p in root.parent.iterdir()] == ["cache"], "the temporary directory must be renamed away"
    umask = os.umask(0)
    os.umask(umask)
    assert root.stat().st_mode & 0o777 == 0o777 & ~umask, "a shared runner's cache must not be private (mkdtemp)"
    assert ensure_cache_dir(root) == root


def test_a_directory_we_did_not_create_is_never_tagged(tmp_path: Path) -> None:
    existing = tmp_path / "users-own-dir"
    existing.mkdir()
    assert ensure_cache_dir(existing) == existing
    cache_subdir(existing, "preprocessed")
    assert not (existing / "CACHEDIR.TAG").exists()


def test_an_uncreatable_cache_names_the_directory_and_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fix = r"point PYTEST_MLPERF_CACHE or --mlperf-cache-dir at a writable directory"
    with pytest.raises(
        ProvisioningError, match=rf"cannot create the pytest-mlperf cache directory {blocker}/c: .*{fix}"
    ):
        ensure_cache_dir(blocker / "c")


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "a\\b", "/etc"])
def test_names_cannot_escape_the_cache(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="is not a plain file or directory name inside the cache"):
        cache_subdir(tmp_path / "cache", "ok", bad)
    with pytest.raises(ValueError, match="is not a plain file or directory name inside the cache"):
        cache_file(tmp_path / "cache", bad)
    assert not (tmp_path / "cache").exists(), "nothing is created before the names are checked"


def test_cache_file_makes_its_directory_not_the_file(tmp_path: Path) -> None:
    path = cache_file(tmp_path / "cache", "locks", "m.lock")
    assert path == tmp_path / "cache" / "locks" / "m.lock"
    assert path.parent.is_dir() and not path.exists()
    assert tagged(tmp_path / "cache")


# -- every writer into the cache tags a fresh one ----------------------------------------------------------------


def build_artefact(cache: Path) -> None:
    ensure_built(cache, "benchmarks/thing.bin", lambda: b"artefact", what="thing")
    assert (cache / "benchmarks" / "thing.bin").read_bytes() == b"artefact"


def provision_override(cache: Path) -> None:
    data = b"weights"
    local = cache.parent / "weights.bin"
    local.write_bytes(data)
    manifest = cache.parent / "m.yaml"
    manifest.write_text(
        "schema_version: 1\nassets:\n  - {name: m, kind: model, url: 'http://127.0.0.1:9/m.bin', "
        f"sha256: '{hashlib.sha256(data).hexdigest()}'}}\n"
    )
    got = Provisioner(cache, overrides={"m": local}, manifests=load_catalog([manifest]), env={}).provision("m")
    assert got.origin == "override"
    assert list((cache / "overrides").glob("*.stamp.json")), "the override's stamp is in the cache"


def preprocess_imagenet(cache: Path) -> None:
    from PIL import Image

    from pytest_mlperf.datasets.imagenet import ImageNetDataset, imagenet_from_dir

    images = cache.parent / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        pixels = rng.integers(0, 256, (260, 300, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"ILSVRC2012_val_{i + 1:08d}.JPEG", quality=90)
    (images / "val_map.txt").write_text("ILSVRC2012_val_00000001.JPEG 1\nILSVRC2012_val_00000002.JPEG 2\n")
    dataset = ImageNetDataset(imagenet_from_dir(images), cache, workers=1)
    dataset.prepare()
    assert dataset.preprocessed == 2
    assert len(list((cache / "preprocessed").rglob("*.npy"))) == 2


@pytest.mark.parametrize("write", [build_artefact, provision_override, preprocess_imagenet])
def test_the_first_writer_into_a_fresh_cache_tags_it(tmp_path: Path, write: Callable[[Path], None]) -> None:
    cache = tmp_path / "fresh-cache"
    write(cache)
    assert tagged(cache)


def test_the_cache_dir_fixture_creates_the_tagged_root(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(
        "def test_cache(mlperf_cache_dir):\n"
        "    assert mlperf_cache_dir.is_dir()\n"
        "    print('CACHE', mlperf_cache_dir)\n"
    )
    cache = tmp_path / "fixture-cache"
    result = pytester.runpytest(f"--mlperf-cache-dir={cache}", "-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*CACHE {cache}"])
    assert tagged(cache)


def test_the_cache_dir_fixture_fails_with_the_fix_when_it_cannot_create_it(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile("def test_cache(mlperf_cache_dir):\n    pass\n")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = pytester.runpytest(f"--mlperf-cache-dir={blocker / 'c'}", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*pytest-mlperf: cannot create the pytest-mlperf cache directory*--mlperf-cache-dir*"])
    assert "Traceback" not in result.stdout.str()
