"""Helpers: version folders whose entry point is a real program, packed into signed bundles."""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud.fleet.bundle import build_bundle

ENTRY = "bin/assetbook-gateway"


def version_source(folder: Path, version: str, body: str, *, padding: int = 0) -> Path:
    """A version tree whose entry point is a Python program with ``body`` as its text."""
    source = folder / f"src-{version}"
    (source / "bin").mkdir(parents=True)
    entry = source / ENTRY
    entry.write_text(f"#!{sys.executable}\n# version {version}\n{body}\n")
    entry.chmod(0o755)
    if padding:
        (source / "lib.bin").write_bytes(bytes(range(256)) * (padding // 256))
    return source


def make_bundle(
    folder: Path, key: ed25519.Ed25519PrivateKey, version: str, body: str, *, padding: int = 0
) -> Path:
    out = folder / f"{version}.tar"
    source = version_source(folder, version, body, padding=padding)
    build_bundle(out, key, version=version, source=source, entry=ENTRY)
    return out
