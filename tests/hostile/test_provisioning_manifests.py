"""Hostile manifests: binary, huge, 20,000 levels deep, a key given twice; and bad download-bound options.

Each is refused with the file (or option) named, as a usage error in a real pytest run, never an INTERNALERROR.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pytest_mlperf.errors import ConfigError
from pytest_mlperf.provisioning.manifest import MAX_MANIFEST_BYTES, load_manifest

ENTRY = """schema_version: 1
assets:
  - name: m
    kind: model
    url: https://example.org/m.onnx
    sha256: {sha}
""".format(sha="a" * 64)


def test_a_binary_manifest_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\x04\xff\xfe\x00\x01" * 100)

    with pytest.raises(ConfigError) as info:
        load_manifest(path)

    assert f"manifest {path}: not UTF-8 text" in str(info.value)


def test_a_manifest_with_nul_bytes_is_refused_as_binary(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(ENTRY.encode() + b"\x00\x00")

    with pytest.raises(ConfigError, match="contains NUL bytes"):
        load_manifest(path)


def test_a_20000_deep_manifest_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("schema_version: 1\nassets: " + "[" * 20_000 + "]" * 20_000 + "\n", encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_manifest(path)

    assert f"manifest {path}: nested deeper than 64 levels" in str(info.value)


def test_a_deep_block_mapping_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "deep-block.yaml"
    path.write_text("".join(f"{' ' * i}k{i}:\n" for i in range(200)) + " " * 200 + "v\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
        load_manifest(path)


def test_an_oversized_manifest_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as fh:
        fh.write(ENTRY)
        fh.write("# padding\n" * (MAX_MANIFEST_BYTES // 10 + 1))

    with pytest.raises(ConfigError) as info:
        load_manifest(path)

    assert f"manifest {path}: larger than 4 MiB" in str(info.value)


def test_a_key_given_twice_in_one_entry_is_refused_naming_entry_and_key(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(ENTRY + "    url: https://evil.example.org/m.onnx\n", encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_manifest(path)

    msg = str(info.value)
    assert f"manifest {path}, entry 'm': key 'url' is given twice (lines 5 and 7)" in msg
    assert "remove one" in msg


def test_a_top_level_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup-top.yaml"
    path.write_text(ENTRY + "schema_version: 1\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="key 'schema_version' is given twice"):
        load_manifest(path)


def test_a_clean_manifest_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(ENTRY + "    size: 10\n", encoding="utf-8")

    (asset,) = load_manifest(path)
    assert asset.url == "https://example.org/m.onnx" and asset.size == 10


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"expanded_size": 0}, "field 'expanded_size' must be a positive integer number of bytes"),
        ({"entries": "many", "archive": "tar"}, "field 'entries' must be a positive integer"),
        ({"entries": 10}, "field 'entries' needs an 'archive' format"),
    ],
)
def test_expansion_fields_are_checked(tmp_path: Path, fields: dict[str, object], needle: str) -> None:
    entry = {"name": "m", "kind": "model", "url": "https://example.org/m.tar", "sha256": "a" * 64, **fields}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "assets": [entry]}), encoding="utf-8")

    with pytest.raises(ConfigError, match=needle):
        load_manifest(path)


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile("def test_x():\n    pass\n")
    env_path = os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])
    pytester._monkeypatch.setenv("PYTHONPATH", env_path)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


@pytest.mark.parametrize("kind", ["deep", "binary", "duplicate"])
def test_a_hostile_manifest_is_a_usage_error_in_a_real_run(pytester: pytest.Pytester, kind: str) -> None:
    path = pytester.path / "bad.yaml"
    if kind == "deep":
        path.write_text("assets: " + "[" * 20_000 + "]" * 20_000 + "\n", encoding="utf-8")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    else:
        path.write_text(ENTRY + "    kind: dataset\n", encoding="utf-8")

    result = run_pytest(pytester, f"--mlperf-manifest={path}")

    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "INTERNALERROR" not in text
    assert "Traceback" not in text
    assert str(path) in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mlperf-download-timeout=0"], "--mlperf-download-timeout: 0 is not valid; it must be above 0 to 604800"),
        (["--mlperf-download-timeout=inf"], "--mlperf-download-timeout: inf is not valid"),
        (["--mlperf-download-min-rate=-1"], "--mlperf-download-min-rate: -1 is not valid; it must be from 0 to"),
    ],
)
def test_bad_download_bounds_are_usage_errors(pytester: pytest.Pytester, args: list[str], needle: str) -> None:
    result = run_pytest(pytester, *args)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert needle in result.stderr.str()


def test_download_bounds_and_verify_have_ini_twins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmlperf_download_min_rate = -5\n")

    result = run_pytest(pytester)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--mlperf-download-min-rate: -5 is not valid" in result.stderr.str()

    pytester.makeini(
        "[pytest]\nmlperf_download_timeout = 30\nmlperf_download_min_rate = 0\nmlperf_verify_cache = yes\n"
    )
    assert run_pytest(pytester).ret == pytest.ExitCode.OK
