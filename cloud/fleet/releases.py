"""Published releases: signed bundles copied into the core home under ``releases/``.

:func:`publish` checks the bundle's signature against the core's own release key before it
accepts it, copies it to ``releases/<version>.tar`` (write, fsync, rename) and records its
hash in the fleet store. Gateways download it with their link credential
(:mod:`cloud.api.enrolment`) and verify it again themselves.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import TYPE_CHECKING

from cloud.fleet.bundle import load_or_create_release_key, parse_version, read_manifest

if TYPE_CHECKING:
    from pathlib import Path

    from cloud.fleet.store import FleetStore, Release
    from cloud.home import CoreHome


def releases_dir(home: CoreHome) -> Path:
    return home.root / "releases"


def bundle_path(home: CoreHome, version: str) -> Path:
    parse_version(version)  # the version names a file: only dotted integers get here
    return releases_dir(home) / f"{version}.tar"


def publish(home: CoreHome, store: FleetStore, bundle: Path) -> Release:
    """Verify ``bundle`` with the core's release key and make it downloadable.

    Raises:
        BundleError: not a bundle signed by this core's release key.
    """
    key = load_or_create_release_key(home).public_key()
    manifest = read_manifest(bundle, key)
    data = bundle.read_bytes()
    folder = releases_dir(home)
    folder.mkdir(mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".publish-")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, bundle_path(home, manifest.version))
    return store.add_release(manifest.version, hashlib.sha256(data).hexdigest(), len(data))
