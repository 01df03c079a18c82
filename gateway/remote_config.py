"""Remote configuration and commands from the core, around a restartable :class:`Gateway`.

:class:`ManagedGateway` runs the gateway described by its ``gateway.toml`` *plus* the
configuration the core pushed last, and answers the core's commands (``status``,
``configure``, ``renew_credentials``, ``update``).

A remote configuration is a JSON object with any of ``log_level``, ``sensors`` (the
``[[sensors]]`` tables), ``filters`` (the ``[filters]`` table), ``uplink`` (``url``,
``batch_max_events``, ``batch_max_delay_ms``, ``reconnect_min_s``, ``reconnect_max_s``) and
``rollback_after_s``. It replaces those parts of ``gateway.toml``; identity, data folder and
credentials stay local.

Applying one (files in ``<data_dir>/remote/``):

1. **Validate** before use: the merged document must load as a gateway config
   (:func:`gateway.config.config_from_document`) and every sensor table must make a driver
   (:func:`drivers.registry.make_driver`). A refusal is answered at once with the reason and
   remembered (``refused_version``, ``refused_reason``).
2. **Write** ``current.json`` (temporary file, fsync, rename), then restart the gateway's
   subsystems with it: drivers stop first and the outbox is drained, so nothing is lost.
3. **Probation.** Until the uplink is online with the new configuration, the last known good
   one (``good.json``) is kept. If the link does not come up within ``rollback_after_s``,
   ``current.json`` is replaced by ``good.json``, the gateway restarts with it, and the
   refusal ("rolled back: ...") is reported when the link returns.

The outcome reaches the core through the ``status`` answer the core asks for on every new
link, so a rollback that happened offline is reported as soon as the link is back.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import tomllib
from typing import TYPE_CHECKING, Any, Final

import trio

from drivers.errors import DriverError
from drivers.registry import make_driver
from gateway.app import Gateway
from gateway.config import config_from_document
from gateway.enrol import BoundCredentials, read_enrolment
from gateway.errors import GatewayError
from gateway.update import RESTART_EXIT, InstallRoot, UpdateError, confirm, download_and_install
from gateway.uplink import LinkState
from protocol import limits

if TYPE_CHECKING:
    from pathlib import Path

    from gateway.config import GatewayConfig
    from protocol.messages import Command, Scalar

log = logging.getLogger(__name__)

DEFAULT_ROLLBACK_AFTER_S: Final = 60.0
#: Time for a command's Result to leave before the gateway restarts its uplink.
REPLY_GRACE_S: Final = 0.3
_UPLINK_REMOTE_KEYS: Final = (
    "url",
    "batch_max_events",
    "batch_max_delay_ms",
    "reconnect_min_s",
    "reconnect_max_s",
)


class RemoteConfigError(GatewayError):
    """A remote configuration was refused; ``str(exc)`` is the reason the core is told."""


def merged_document(base: dict[str, Any], remote: dict[str, Any]) -> dict[str, Any]:
    """``gateway.toml``'s document with the remote configuration's parts replacing its own."""
    unknown = set(remote) - {"log_level", "sensors", "filters", "uplink", "rollback_after_s"}
    if unknown:
        raise RemoteConfigError(f"unknown configuration keys {sorted(unknown)}")
    doc = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    if "log_level" in remote:
        doc.setdefault("gateway", {})["log_level"] = remote["log_level"]
    if "sensors" in remote:
        doc["sensors"] = remote["sensors"]
    if "filters" in remote:
        doc["filters"] = remote["filters"]
    uplink = remote.get("uplink", {})
    if not isinstance(uplink, dict) or set(uplink) - set(_UPLINK_REMOTE_KEYS):
        raise RemoteConfigError(f"uplink may set only {list(_UPLINK_REMOTE_KEYS)}")
    doc.setdefault("uplink", {}).update(uplink)
    return doc


def validate(config_path: Path, base: dict[str, Any], remote: dict[str, Any]) -> GatewayConfig:
    """The gateway config ``remote`` would give, checked like a local one. Raises:
    RemoteConfigError with the reason."""
    try:
        config = config_from_document(config_path, merged_document(base, remote))
        for table in config.sensors:
            make_driver(table)
    except (GatewayError, DriverError) as exc:
        raise RemoteConfigError(str(exc)) from exc
    after = remote.get("rollback_after_s", DEFAULT_ROLLBACK_AFTER_S)
    if isinstance(after, bool) or not isinstance(after, int | float) or not 1 <= after <= 3600:
        raise RemoteConfigError("rollback_after_s must be a number of seconds in 1..3600")
    return config


class ManagedGateway:
    """A gateway that takes configuration, credentials and updates from the core."""

    def __init__(self, config_path: Path, *, install_root: Path | None = None) -> None:
        self.config_path = config_path
        self.base = tomllib.loads(config_path.read_text())
        first = validate(config_path, self.base, {})
        self.remote_dir = first.gateway.data_dir / "remote"
        self.remote_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.credentials = BoundCredentials.of(
            config_path.parent, first.uplink.url, first.device_key
        )
        self.enrolment = read_enrolment(config_path.parent) or {}
        self.root = InstallRoot(install_root) if install_root is not None else None
        self.gateway: Gateway | None = None
        self._restart = trio.Event()
        self.exit_code = 0
        #: Set once the uplink is online with the running configuration (and a new software
        #: version was confirmed); a new event for every restart.
        self.link_up = trio.Event()

    # --- state files ---------------------------------------------------------------------

    def _read(self, name: str) -> dict[str, Any]:
        try:
            value: dict[str, Any] = json.loads((self.remote_dir / name).read_text())
            return value
        except (OSError, ValueError):
            return {}

    def _write(self, name: str, value: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.remote_dir, prefix=f".{name}.")
        with os.fdopen(fd, "w") as out:
            json.dump(value, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.remote_dir / name)

    def _note(self, **fields: Scalar) -> None:
        self._write("state.json", {**self._read("state.json"), **fields})

    def status(self) -> dict[str, Scalar]:
        state = self._read("state.json")
        current = self._read("current.json")
        good = self._read("good.json")
        detail: dict[str, Scalar] = {
            "config_version": int(good.get("version", 0)),
            "config_pending": int(current.get("version", 0))
            if current.get("version") != good.get("version")
            else 0,
            "refused_version": int(state.get("refused_version", 0)),
            "refused_reason": fit(str(state.get("refused_reason", ""))),
        }
        if self.root is not None:
            updates = self.root.read_json(self.root.state)
            detail["software_version"] = self.root.current_version() or ""
            for key in ("update_state", "update_version", "update_error", "update_failed_version"):
                detail[key] = fit(str(updates.get(key, "")))
        return detail

    # --- running ----------------------------------------------------------------------------

    async def run(
        self, stop: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run (and restart on new configuration) until ``stop`` is set."""
        started = False
        while not stop.is_set():
            current = self._read("current.json")
            good = self._read("good.json")
            remote = current.get("config", {})
            try:
                config = validate(self.config_path, self.base, remote)
            except RemoteConfigError as exc:  # e.g. a driver module removed by an update
                self._note(refused_version=current.get("version", 0), refused_reason=str(exc))
                self._write("current.json", good)
                continue
            logging.getLogger().setLevel(config.gateway.log_level.upper())
            self._restart = trio.Event()
            self.link_up = trio.Event()
            inner_stop = trio.Event()
            headers = self.credentials.headers if self.credentials is not None else None
            gateway = Gateway(config, uplink_headers=headers, on_command=self.handle)
            self.gateway = gateway
            async with trio.open_nursery() as nursery:
                await nursery.start(gateway.run, inner_stop)
                if not started:
                    task_status.started()
                    started = True
                watching = trio.CancelScope()
                nursery.start_soon(self._watch_link, watching, gateway, current, good)
                await _first_of(stop, self._restart)
                watching.cancel()
                inner_stop.set()  # the gateway stops in order: nothing produced is lost
            if self.exit_code:
                return

    async def _watch_link(
        self,
        scope: trio.CancelScope,
        gateway: Gateway,
        current: dict[str, Any],
        good: dict[str, Any],
    ) -> None:
        """Probation of a new configuration; confirmation of a new software version."""
        with scope:
            await self._probation(gateway, current, good)

    async def _probation(
        self, gateway: Gateway, current: dict[str, Any], good: dict[str, Any]
    ) -> None:
        on_probation = current.get("version", 0) != good.get("version", 0)
        limit = float(current.get("config", {}).get("rollback_after_s", DEFAULT_ROLLBACK_AFTER_S))
        with trio.move_on_after(limit if on_probation else float("inf")) as waiting:
            # The uplink has no change event; its state is a field read every 50 ms.
            while gateway.uplink is None or gateway.uplink.health.state is not LinkState.ONLINE:  # noqa: ASYNC110
                await trio.sleep(0.05)
        if waiting.cancelled_caught:
            reason = fit(
                f"rolled back: the uplink did not come back within {limit:g} s with version "
                f"{current.get('version')}; running version {good.get('version', 0)} again"
            )
            log.warning("%s", reason)
            self._note(refused_version=current.get("version", 0), refused_reason=reason)
            self._write("current.json", good)
            self._restart.set()
            return
        if on_probation:
            self._write("good.json", current)
            log.info("configuration version %s is now the last known good", current["version"])
        if self.root is not None and confirm(self.root):
            log.info("software version %s confirmed healthy", self.root.current_version())
        self.link_up.set()

    # --- commands -------------------------------------------------------------------------

    async def handle(self, command: Command) -> tuple[bool, dict[str, Scalar]]:
        """Answer one command from the core (the uplink sends the Result)."""
        match command.name:
            case "status":
                return True, self.status()
            case "configure":
                return self._configure(command.args)
            case "renew_credentials":
                return self._renew(command.args)
            case "update":
                return self._update(command.args)
        return False, {"error": f"unknown command {command.name}"}

    def _configure(self, args: dict[str, Scalar]) -> tuple[bool, dict[str, Scalar]]:
        version, data = args.get("version"), _joined_chunks(args)
        if not isinstance(version, int) or data is None:
            return False, {"error": "configure needs an integer version and config.N pieces"}
        try:
            remote = json.loads(data)
            if not isinstance(remote, dict):
                raise RemoteConfigError("the configuration is not a JSON object")
            validate(self.config_path, self.base, remote)
        except (ValueError, RemoteConfigError) as exc:
            reason = fit(f"refused: {exc}")
            self._note(refused_version=version, refused_reason=reason)
            return False, {"error": reason, "version": version}
        self._write("current.json", {"version": version, "config": remote})
        trio.lowlevel.spawn_system_task(self._restart_soon)
        return True, {"config_pending": version}

    async def _restart_soon(self) -> None:
        await trio.sleep(REPLY_GRACE_S)  # let the Result leave on the old uplink first
        self._restart.set()

    def _renew(self, args: dict[str, Scalar]) -> tuple[bool, dict[str, Scalar]]:
        token = args.get("token")
        if self.credentials is None or not isinstance(token, bytes) or not token:
            return False, {"error": "this gateway holds no key-bound credentials"}
        try:
            self.credentials.store_token(token.decode("ascii"))  # used from the next link on
        except UnicodeDecodeError:
            return False, {"error": "the token is not ASCII"}
        return True, {"token_expires_at": args.get("expires_at")}

    def _update(self, args: dict[str, Scalar]) -> tuple[bool, dict[str, Scalar]]:
        if self.root is None or self.credentials is None or "release_key" not in self.enrolment:
            return False, {"update_state": "refused", "update_error": "not an updatable install"}
        url, sha256 = args.get("url"), args.get("sha256")
        if not isinstance(url, str) or not isinstance(sha256, str):
            return False, {"update_state": "refused", "update_error": "update needs url, sha256"}
        version = str(args.get("version", ""))
        self.root.record(update_state="downloading", update_version=version, update_error="")
        trio.lowlevel.spawn_system_task(self._install, url, sha256, bool(args.get("force")))
        return True, {"update_state": "downloading"}

    async def _install(self, url: str, sha256: str, force: bool) -> None:
        # Imported here: bundle checking needs cryptography (about 8 MiB resident), which a
        # gateway that never takes an update should not carry.
        from cloud.fleet.bundle import BundleError, public_key_from_text

        assert self.root is not None
        assert self.credentials is not None
        try:
            key = public_key_from_text(str(self.enrolment["release_key"]))
            manifest = await download_and_install(
                self.root,
                key,
                url=url,
                sha256=sha256,
                headers=self.credentials.proof_headers("GET", url),
                ca_file=self.config_path.parent / "ca.pem",
                force=force,
            )
        except (UpdateError, BundleError, OSError) as exc:
            self.root.record(update_state="refused", update_error=str(exc))
            log.warning("update refused: %s", exc)
            return
        log.info("version %s installed; restarting into it", manifest.version)
        self.exit_code = RESTART_EXIT
        self._restart.set()


def fit(text: str) -> str:
    """``text`` cut to what a text value may carry on the link (``MAX_TEXT_BYTES``)."""
    data = text.encode("utf-8")[: limits.MAX_TEXT_BYTES]
    return data.decode("utf-8", errors="ignore")


def _joined_chunks(args: dict[str, Scalar]) -> bytes | None:
    pieces = []
    for index in range(len(args)):
        piece = args.get(f"config.{index}")
        if piece is None:
            break
        if not isinstance(piece, bytes):
            return None
        pieces.append(piece)
    return b"".join(pieces) if pieces else None


async def _first_of(*events: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        for event in events:

            async def wait(event: trio.Event = event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)
