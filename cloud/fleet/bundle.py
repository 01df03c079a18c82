"""Signed software update bundles: build on the core, verify and unpack on the gateway.

A bundle is an uncompressed tar file holding::

    manifest.json     {"format": 1, "product", "version", "entry", "files": [...]}
    manifest.sig      Ed25519 signature over the exact bytes of manifest.json (64 bytes)
    payload/<path>    every file the manifest lists, with its size, SHA-256 and mode

The release key is an Ed25519 key kept in the core home (``keys/release.pem``); gateways get
its public half when they enrol. :func:`verify_and_extract` checks the signature *before*
trusting anything in the manifest, then refuses any member the manifest does not list, any
link, device or path that leaves the target, and any size or hash mismatch, hashing while it
copies. It writes only below the target folder it is given; installing (switching the
``current`` link, health checks, rollback) is :mod:`gateway.update`'s business.

Versions are dotted integers (``1.4.2``) so that ordering is exact and never guessed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud.errors import CloudError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from cloud.home import CoreHome

FORMAT: Final = 1
PRODUCT: Final = "assetbook-gateway"
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.sig"
PAYLOAD: Final = "payload/"
MAX_MANIFEST_BYTES: Final = 1_048_576
MAX_FILES: Final = 10_000
_VERSION_RE: Final = re.compile(r"(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}")
_CHUNK: Final = 1 << 16


class BundleError(CloudError):
    """The bundle is malformed, tampered with or signed by another key."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    mode: int


@dataclass(frozen=True, slots=True)
class Manifest:
    version: str
    entry: str
    files: tuple[FileEntry, ...]


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.4.2"`` → ``(1, 4, 2)``. Raises: BundleError."""
    if not isinstance(text, str) or not _VERSION_RE.fullmatch(text):
        raise BundleError(f"version {text!r} is not dotted integers such as 1.4.2")
    return tuple(int(part) for part in text.split("."))


# --- the release key ------------------------------------------------------------------------


def release_key_path(home: CoreHome) -> Path:
    return home.keys_dir / "release.pem"


def load_or_create_release_key(home: CoreHome) -> ed25519.Ed25519PrivateKey:
    """The core's release key, created (0600, never overwritten) on first use."""
    path = release_key_path(home)
    if not path.exists():
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created meanwhile by another process: use that one
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 key")
    return key


def public_key_text(key: ed25519.Ed25519PublicKey) -> str:
    """The raw public key, base64: what gateways keep to verify bundles."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def public_key_from_text(text: str) -> ed25519.Ed25519PublicKey:
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError as exc:
        raise BundleError("the release public key is not a base64 Ed25519 key") from exc


# --- building ---------------------------------------------------------------------------------


def build_bundle(
    out: Path,
    key: ed25519.Ed25519PrivateKey,
    *,
    version: str,
    source: Path,
    entry: str,
) -> Manifest:
    """Pack every regular file below ``source`` into a signed bundle at ``out``.

    Raises:
        BundleError: bad version, missing entry point, or nothing to pack.
    """
    parse_version(version)
    files = tuple(_entries(source, sorted(p for p in source.rglob("*") if p.is_file())))
    if entry not in {f.path for f in files}:
        raise BundleError(f"the entry point {entry} is not among the files of {source}")
    manifest = Manifest(version, entry, files)
    data = manifest_bytes(manifest)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, MANIFEST, data)
        _add_bytes(tar, SIGNATURE, key.sign(data))
        for item in files:
            tar.add(source / item.path, arcname=PAYLOAD + item.path, recursive=False)
    return manifest


def manifest_bytes(manifest: Manifest) -> bytes:
    doc = {
        "format": FORMAT,
        "product": PRODUCT,
        "version": manifest.version,
        "entry": manifest.entry,
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "mode": f.mode}
            for f in manifest.files
        ],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _entries(source: Path, paths: Iterable[Path]) -> Iterable[FileEntry]:
    for path in paths:
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
        mode = 0o755 if os.access(path, os.X_OK) else 0o644
        relative = path.relative_to(source).as_posix()
        yield FileEntry(relative, path.stat().st_size, digest.hexdigest(), mode)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# --- verifying --------------------------------------------------------------------------------


def read_manifest(bundle: Path, key: ed25519.Ed25519PublicKey) -> Manifest:
    """The bundle's manifest, after checking its signature. Raises: BundleError."""
    with _open(bundle) as tar, _tar_errors():
        return _verified_manifest(tar, key)


def verify_and_extract(bundle: Path, key: ed25519.Ed25519PublicKey, target: Path) -> Manifest:
    """Verify ``bundle`` and write its payload below ``target`` (which must not exist).

    On any error the partly written ``target`` is left for the caller to remove.

    Raises:
        BundleError: bad signature, unlisted or unsafe member, size or hash mismatch.
    """
    with _open(bundle) as tar, _tar_errors():
        manifest = _verified_manifest(tar, key)
        expected = {PAYLOAD + f.path: f for f in manifest.files}
        target.mkdir(mode=0o755)
        written: set[str] = set()
        for member in tar:
            if member.name in (MANIFEST, SIGNATURE):
                continue
            item = expected.get(member.name)
            if item is None or not member.isfile() or member.name in written:
                raise BundleError(f"member {member.name!r} is not listed in the manifest")
            _copy_checked(tar, member, item, target)
            written.add(member.name)
        missing = set(expected) - written
        if missing:
            raise BundleError(f"{len(missing)} listed files are missing, e.g. {min(missing)}")
    return manifest


@contextlib.contextmanager
def _tar_errors() -> Iterator[None]:
    # A truncated or corrupt archive surfaces while reading members, not when opening.
    try:
        yield
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"the bundle is damaged: {exc}") from exc


def _open(bundle: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(bundle, "r:")
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"not a bundle: {exc}") from exc


def _verified_manifest(tar: tarfile.TarFile, key: ed25519.Ed25519PublicKey) -> Manifest:
    data = _member_bytes(tar, MANIFEST, MAX_MANIFEST_BYTES)
    signature = _member_bytes(tar, SIGNATURE, 64)
    try:
        key.verify(signature, data)
    except InvalidSignature as exc:
        raise BundleError("the manifest signature does not verify with the release key") from exc
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise BundleError("the manifest is not JSON") from exc
    return _manifest(doc)


def _member_bytes(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    try:
        member = tar.getmember(name)
    except KeyError as exc:
        raise BundleError(f"the bundle has no {name}") from exc
    if not member.isfile() or member.size > limit:
        raise BundleError(f"{name} is not a regular file of at most {limit} bytes")
    file = tar.extractfile(member)
    assert file is not None  # a regular file always has content
    return file.read()


def _manifest(doc: Any) -> Manifest:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("product") != PRODUCT:
        raise BundleError(f"not a format {FORMAT} {PRODUCT} manifest")
    version, entry, files = doc.get("version"), doc.get("entry"), doc.get("files")
    if not isinstance(version, str):
        raise BundleError("the manifest has no version")
    parse_version(version)
    if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
        raise BundleError("the manifest lists no files")
    entries = tuple(_file_entry(item) for item in files)
    if not isinstance(entry, str) or entry not in {f.path for f in entries}:
        raise BundleError("the manifest's entry point is not one of its files")
    return Manifest(version, entry, entries)


def _file_entry(item: Any) -> FileEntry:
    if not isinstance(item, dict):
        raise BundleError("a manifest file entry is not an object")
    path, size, sha, mode = (item.get(k) for k in ("path", "size", "sha256", "mode"))
    if not isinstance(path, str) or not _safe_path(path):
        raise BundleError(f"unsafe path {path!r} in the manifest")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BundleError(f"bad size for {path}")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise BundleError(f"bad sha256 for {path}")
    if mode not in (0o644, 0o755):
        raise BundleError(f"mode of {path} must be 644 or 755")
    return FileEntry(path, size, sha, mode)


def _safe_path(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts and "\\" not in path


def _copy_checked(
    tar: tarfile.TarFile, member: tarfile.TarInfo, item: FileEntry, target: Path
) -> None:
    if member.size != item.size:
        raise BundleError(f"{item.path}: size {member.size}, manifest says {item.size}")
    source = tar.extractfile(member)
    assert source is not None
    destination = target / item.path
    destination.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    digest = hashlib.sha256()
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, item.mode)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != item.sha256:
        raise BundleError(f"{item.path}: SHA-256 does not match the manifest")
