"""Software updates: side-by-side install, atomic switch, trial start, automatic rollback.

Install root layout (``/opt/assetbook`` on a board)::

    versions/<version>/        one folder per installed version, each complete
    versions/.<v>.partial-*    an install in progress (removed on the next start)
    current -> versions/<v>    the version to start; switched by renaming a new symlink
    trial.json                 {"from", "to", "started"}: a new version on trial
    state.json                 last update outcome, reported to the core

Guarantees:

* :func:`install` verifies the bundle (:mod:`cloud.fleet.bundle`) into a partial folder,
  renames it into place, writes ``trial.json`` and only then switches ``current``. A kill at
  any moment leaves ``current`` pointing at a complete version: either the old one, or the
  new one with a trial marker that makes the launcher roll back if it never comes up.
* Versions never go backwards unless ``force`` is given.
* :func:`launch` is the small, stable supervisor that starts ``current/<entry>``. A version on
  trial must call :func:`confirm` (the gateway does once its uplink is online) within
  ``trial_s``; if it exits or stays silent, the launcher kills it, switches ``current`` back
  and records why. A version that was started on trial before and never confirmed (the
  launcher itself was killed) is rolled back at the next start.
* A gateway that installed an update exits with :data:`RESTART_EXIT`; the launcher then
  starts the new ``current``.
* Under systemd, the child gets the launcher's environment without a ``$WATCHDOG_PID`` that
  names the launcher, so the gateway's own ``READY=1``/``WATCHDOG=1`` count (the unit needs
  ``NotifyAccess=all``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from gateway.errors import GatewayError

# cloud.fleet.bundle (and with it cryptography, about 8 MiB resident) is imported by the
# functions that verify a bundle, not here: the launcher and a gateway with no update to
# install never need it.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from cloud.fleet.bundle import Manifest

log = logging.getLogger(__name__)

#: Exit status of a gateway that wants the launcher to start ``current`` again (EX_TEMPFAIL).
RESTART_EXIT: Final = 75
DEFAULT_TRIAL_S: Final = 120.0


class UpdateError(GatewayError):
    """An update was refused or failed; ``str(exc)`` is what the core is told."""


@dataclass(frozen=True, slots=True)
class InstallRoot:
    path: Path

    @property
    def versions(self) -> Path:
        return self.path / "versions"

    @property
    def current(self) -> Path:
        return self.path / "current"

    @property
    def trial(self) -> Path:
        return self.path / "trial.json"

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    def current_version(self) -> str | None:
        try:
            return Path(os.readlink(self.current)).name
        except OSError:
            return None

    def read_json(self, path: Path) -> dict[str, Any]:
        try:
            value: dict[str, Any] = json.loads(path.read_text())
            return value
        except (OSError, ValueError):
            return {}

    def write_json(self, path: Path, value: dict[str, Any]) -> None:
        _atomic_write(path, json.dumps(value, sort_keys=True).encode())

    def record(self, **state: Any) -> None:
        self.write_json(self.state, {**self.read_json(self.state), **state})


def install(
    root: InstallRoot, bundle: Path, key: ed25519.Ed25519PublicKey, *, force: bool = False
) -> Manifest:
    """Verify ``bundle`` and make it ``current`` on trial (see the module docstring).

    Raises:
        UpdateError: bad signature or contents, or an older/equal version without ``force``.
    """
    from cloud.fleet.bundle import BundleError, read_manifest, verify_and_extract

    try:
        manifest = read_manifest(bundle, key)
    except BundleError as exc:
        raise UpdateError(f"bundle refused: {exc}") from exc
    running = root.current_version()
    if running is not None and not force and not _newer(manifest.version, running):
        raise UpdateError(f"version {manifest.version} is not newer than {running}; force it")
    root.versions.mkdir(parents=True, exist_ok=True)
    target = root.versions / manifest.version
    if not target.is_dir():
        partial = Path(tempfile.mkdtemp(dir=root.versions, prefix=f".{manifest.version}.partial-"))
        partial.rmdir()  # verify_and_extract creates it itself
        try:
            verify_and_extract(bundle, key, partial)
        except BundleError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise UpdateError(f"bundle refused: {exc}") from exc
        described = {"version": manifest.version, "entry": manifest.entry}
        _atomic_write(partial / ".manifest.json", json.dumps(described).encode())
        _fsync_dir(root.versions)
        os.rename(partial, target)
        _fsync_dir(root.versions)
    if running is not None:
        root.write_json(root.trial, {"from": running, "to": manifest.version, "started": False})
    _switch(root, manifest.version)
    root.record(update_version=manifest.version, update_state="installed", update_error="")
    return manifest


def confirm(root: InstallRoot) -> bool:
    """Called by a running gateway once it is healthy: ends the trial of its version."""
    trial = root.read_json(root.trial)
    if not trial or trial.get("to") != root.current_version():
        return False
    root.trial.unlink(missing_ok=True)
    root.record(update_state="running", update_version=trial["to"], update_error="")
    return True


def rollback(root: InstallRoot, reason: str) -> str | None:
    """Switch ``current`` back to the trial's ``from`` version; returns it (None: no trial)."""
    trial = root.read_json(root.trial)
    if not trial:
        return None
    previous = str(trial["from"])
    _switch(root, previous)
    root.trial.unlink(missing_ok=True)
    root.record(
        update_state="rolled_back",
        update_failed_version=trial["to"],
        update_error=reason,
        update_version=trial["to"],
    )
    log.warning("rolled back from %s to %s: %s", trial["to"], previous, reason)
    return previous


def clean(root: InstallRoot) -> None:
    """Remove what an interrupted install left behind (never a complete version)."""
    if root.versions.is_dir():
        for leftover in root.versions.glob(".*.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    for link in root.path.glob(".current-*"):
        link.unlink(missing_ok=True)


def launch(root: InstallRoot, args: list[str], *, trial_s: float = DEFAULT_TRIAL_S) -> int:
    """Run ``current/<entry> args`` and supervise trials until it exits for good."""
    while True:
        clean(root)
        trial = root.read_json(root.trial)
        if trial and trial.get("to") != root.current_version():
            root.trial.unlink()  # killed before the switch: the old version never left
            continue
        if trial.get("started"):
            rollback(root, f"version {trial['to']} was started before and never became healthy")
            continue
        if trial:
            root.write_json(root.trial, {**trial, "started": True})
        entry = _entry(root)
        command = [str(entry), *args]
        with subprocess.Popen(command, env=_child_environment()) as child:  # noqa: S603 - ours
            code = _supervise(root, child, trial_s) if trial else child.wait()
        if code is None:
            continue  # rolled back: start the previous version
        if code != RESTART_EXIT:
            return code


def _child_environment() -> dict[str, str]:
    # Under systemd the launcher is the main process, so $WATCHDOG_PID names it; the gateway
    # (its child) sends the pings and ignores a watchdog addressed to another pid. Without
    # $WATCHDOG_PID any process of the unit pings (sd_watchdog_enabled(3), NotifyAccess=all).
    env = dict(os.environ)
    if env.get("WATCHDOG_PID") == str(os.getpid()):
        del env["WATCHDOG_PID"]
    return env


def _supervise(root: InstallRoot, child: subprocess.Popen[bytes], trial_s: float) -> int | None:
    deadline = time.monotonic() + trial_s
    while root.trial.exists():
        # Polling another process's file and exit status; the trial is minutes long.
        code = child.poll()
        if code is not None:
            if code == RESTART_EXIT and not root.trial.exists():
                return code
            rollback(root, f"new version exited with status {code} before it was healthy")
            return None
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            rollback(root, f"new version not healthy within {trial_s:g} s")
            return None
        time.sleep(0.1)
    return child.wait()


def _entry(root: InstallRoot) -> Path:
    version = root.current_version()
    if version is None:
        raise UpdateError(f"{root.current} does not name an installed version")
    manifest = root.read_json(root.versions / version / ".manifest.json")
    return root.versions / version / str(manifest.get("entry", "bin/assetbook-gateway"))


def _switch(root: InstallRoot, version: str) -> None:
    # A new symlink renamed over the old one: rename(2) is atomic, so `current` always
    # names a complete version.
    temporary = root.path / f".current-{os.getpid()}"
    temporary.unlink(missing_ok=True)
    os.symlink(Path("versions") / version, temporary)
    os.replace(temporary, root.current)
    _fsync_dir(root.path)


def _newer(candidate: str, running: str) -> bool:
    from cloud.fleet.bundle import BundleError, parse_version

    try:
        return parse_version(candidate) > parse_version(running)
    except BundleError:
        return True


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


async def download_and_install(
    root: InstallRoot,
    key: ed25519.Ed25519PublicKey,
    *,
    url: str,
    sha256: str,
    headers: dict[str, str],
    ca_file: Path,
    force: bool,
) -> Manifest:
    """Fetch a bundle over HTTPS, check its hash, then :func:`install` it.

    Raises:
        UpdateError: download failed, hash mismatch, or :func:`install` refused it.
    """
    import hashlib

    import httpx
    import trio

    from gateway.tls import client_ssl_context

    downloads = trio.Path(root.path / "downloads")
    await downloads.mkdir(parents=True, exist_ok=True)
    target = root.path / "downloads" / "bundle.tar"
    digest = hashlib.sha256()
    async with httpx.AsyncClient(verify=client_ssl_context(ca_file), timeout=60) as client:
        try:
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    raise UpdateError(f"download refused: HTTP {response.status_code}")
                async with await trio.open_file(target, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        digest.update(chunk)
                        await out.write(chunk)
        except httpx.HTTPError as exc:
            raise UpdateError(f"download failed: {exc}") from exc
    if digest.hexdigest() != sha256:
        raise UpdateError("the downloaded bundle does not match the published SHA-256")
    return await trio.to_thread.run_sync(lambda: install(root, target, key, force=force))
