"""Signed update bundles: a good one unpacks exactly; tampered or foreign ones are refused."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud.fleet.bundle import (
    MANIFEST,
    SIGNATURE,
    BundleError,
    parse_version,
    read_manifest,
    verify_and_extract,
)
from tests.lifecycle.bundles import ENTRY, make_bundle, version_source

KEY = ed25519.Ed25519PrivateKey.generate()


def test_a_good_bundle_unpacks_to_the_same_files(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, KEY, "1.2.0", "print('hi')", padding=4096)
    target = tmp_path / "out"
    manifest = verify_and_extract(bundle, KEY.public_key(), target)
    source = tmp_path / "src-1.2.0"
    assert manifest.version == "1.2.0"
    assert manifest.entry == ENTRY
    for item in manifest.files:
        assert (target / item.path).read_bytes() == (source / item.path).read_bytes()
    assert (target / ENTRY).stat().st_mode & 0o777 == 0o755


def test_a_bundle_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, ed25519.Ed25519PrivateKey.generate(), "1.0", "pass")
    with pytest.raises(BundleError, match="signature"):
        read_manifest(bundle, KEY.public_key())


def test_a_changed_payload_byte_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, KEY, "1.0", "print('original')")
    data = bytearray(bundle.read_bytes())
    at = data.index(b"original")
    data[at] ^= 0x01
    bundle.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256"):
        verify_and_extract(bundle, KEY.public_key(), tmp_path / "out")


def test_an_unlisted_member_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, KEY, "1.0", "pass")
    with tarfile.open(bundle, "a") as tar:
        info = tarfile.TarInfo("payload/extra.sh")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"rm "))
    with pytest.raises(BundleError, match="not listed"):
        verify_and_extract(bundle, KEY.public_key(), tmp_path / "out")


def test_a_signed_manifest_with_a_path_outside_the_target_is_refused(tmp_path: Path) -> None:
    manifest = {
        "format": 1,
        "product": "assetbook-gateway",
        "version": "1.0",
        "entry": "../evil",
        "files": [{"path": "../evil", "size": 1, "sha256": "0" * 64, "mode": 0o755}],
    }
    data = json.dumps(manifest).encode()
    bundle = tmp_path / "evil.tar"
    with tarfile.open(bundle, "w") as tar:
        for name, content in ((MANIFEST, data), (SIGNATURE, KEY.sign(data))):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    with pytest.raises(BundleError, match="unsafe path"):
        verify_and_extract(bundle, KEY.public_key(), tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_every_truncation_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, KEY, "1.0", "pass")
    data = bundle.read_bytes()
    # Every 512-byte tar block boundary and a few bytes either side of each.
    cuts = sorted(
        {c for b in range(0, len(data), 512) for c in (b - 1, b, b + 1) if 0 < c < len(data)}
    )
    for index, cut in enumerate(cuts):
        truncated = tmp_path / f"cut-{index}.tar"
        truncated.write_bytes(data[:cut])
        try:
            verify_and_extract(truncated, KEY.public_key(), tmp_path / f"out-{index}")
        except BundleError:
            continue
        # A tar file ends in zero blocks and padding: a cut there loses nothing.
        content_end = -(-len(data.rstrip(b"\0")) // 512) * 512
        assert cut >= content_end, cut


def test_versions_are_dotted_integers_ordered_numerically() -> None:
    assert parse_version("1.10.0") > parse_version("1.9.9")
    for bad in ("1.2.x", "", "01.2", "1..2", "v1"):
        with pytest.raises(BundleError):
            parse_version(bad)


def test_the_entry_point_must_be_packed(tmp_path: Path) -> None:
    from cloud.fleet.bundle import build_bundle

    source = version_source(tmp_path, "1.0", "pass")
    with pytest.raises(BundleError, match="entry point"):
        build_bundle(tmp_path / "b.tar", KEY, version="1.0", source=source, entry="bin/missing")
