"""First boot: enrol with a one-time code from the boot folder, then hold key-bound credentials.

Boot folder layout (written by ``assetbook gateway prepare-boot``)::

    <boot>/assetbook/enrol.json   tenant, gateway id, one-time code, expiry, core URLs,
                                  the release public key
    <boot>/assetbook/ca.pem       the CA that signed the core's certificate

:func:`enrol` turns a boot folder plus an empty data folder into a ready gateway folder::

    <data>/device-key.pem   Ed25519 device key, 0600, made here and never sent anywhere
    <data>/gateway.token    link token bound to that key (cnf.jkt), 0600
    <data>/enrolment.json   core REST URL, release public key
    <data>/ca.pem, <data>/gateway.toml

It proves possession of the device key with a DPoP proof on ``POST /api/v1/enrol``. After
success it removes the spent code from the boot folder (best effort: a read-only boot
partition keeps a code that no longer works). A data folder that already holds
``gateway.toml`` is used as it is: enrolment happens once.

:class:`BoundCredentials` supplies the link handshake headers (``Authorization: DPoP`` and a
fresh proof per attempt) and stores renewed tokens atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gateway.config import write_config
from gateway.device_key import FileKeyStore, open_key_store
from gateway.errors import GatewayError
from gateway.tls import client_ssl_context

if TYPE_CHECKING:
    from pathlib import Path

    from cloud.fleet.dpop import Signer
    from gateway.config import DeviceKeyConfig

BOOT_DIR: Final = "assetbook"
ENROL_FILE: Final = "enrol.json"
CONFIG_FILE: Final = "gateway.toml"
TOKEN_FILE: Final = "gateway.token"  # noqa: S105 - a file name
KEY_FILE: Final = "device-key.pem"
ENROLMENT_FILE: Final = "enrolment.json"


class EnrolmentError(GatewayError):
    """Enrolment failed; the message says what to do."""


def write_boot_folder(boot: Path, info: dict[str, Any], ca_pem: bytes) -> Path:
    """Write what a board needs on first boot into the mounted boot folder ``boot``."""
    folder = boot / BOOT_DIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / "ca.pem").write_bytes(ca_pem)
    _write_private(folder / ENROL_FILE, json.dumps(info, indent=2, sort_keys=True).encode())
    return folder


async def enrol(boot: Path, data: Path, device_key: DeviceKeyConfig | None = None) -> Path:
    """Enrol once; returns the gateway.toml to run (it keeps ``device_key``).

    Raises: EnrolmentError, DeviceKeyError.
    """
    config = data / CONFIG_FILE
    if _exists(config):
        return config
    # Imported here: enrolment happens once, and a running gateway should not hold httpx
    # (nor click and rich, which its package imports where they are installed) or PyJWT.
    import httpx

    from cloud.fleet.dpop import make_proof

    info, signer = _prepare(boot, data, device_key)
    url = f"{info['rest_url']}/api/v1/enrol"
    proof = make_proof(
        signer, method="POST", url=url, now=int(time.time()), jti=secrets.token_urlsafe(16)
    )
    async with httpx.AsyncClient(verify=client_ssl_context(data / "ca.pem")) as client:
        try:
            response = await client.post(url, json={"code": info["code"]}, headers={"DPoP": proof})
        except httpx.HTTPError as exc:
            raise EnrolmentError(f"cannot reach the core at {url}: {exc}") from exc
    if response.status_code != 200:
        raise EnrolmentError(
            f"the core refused enrolment: HTTP {response.status_code} {response.text[:200]}; "
            "ask the operator for a new boot folder"
        )
    _finish(boot, data, info, response.json(), device_key)
    return config


def _exists(path: Path) -> bool:
    return path.exists()


def _prepare(
    boot: Path, data: Path, device_key: DeviceKeyConfig | None
) -> tuple[dict[str, Any], Signer]:
    info = _read_boot(boot)
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer = open_key_store(device_key, data / KEY_FILE).load_or_create()
    shutil.copyfile(boot / BOOT_DIR / "ca.pem", data / "ca.pem")
    return info, signer


def _finish(
    boot: Path,
    data: Path,
    info: dict[str, Any],
    granted: dict[str, Any],
    device_key: DeviceKeyConfig | None,
) -> None:
    _write_private(data / TOKEN_FILE, str(granted["token"]).encode())
    enrolment = {"rest_url": info["rest_url"], "release_key": info["release_key"]}
    _write_private(data / ENROLMENT_FILE, json.dumps(enrolment, indent=2).encode())
    write_config(
        data / CONFIG_FILE,
        gateway_id=granted["gateway_id"],
        tenant=granted["tenant"],
        url=granted["link_url"],
        ca_file="ca.pem",
        token_file=TOKEN_FILE,
        data_dir="./data",
        device_key=device_key,
    )
    # A read-only boot partition keeps the spent code, which no longer works anyway.
    with contextlib.suppress(OSError):
        (boot / BOOT_DIR / ENROL_FILE).unlink()


def _read_boot(boot: Path) -> dict[str, Any]:
    path = boot / BOOT_DIR / ENROL_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EnrolmentError(
            f"no usable {path}: prepare the boot folder with `assetbook gateway prepare-boot`"
        ) from exc
    required = ("tenant", "gateway_id", "code", "rest_url", "link_url", "release_key")
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in required):
        raise EnrolmentError(f"{path} is incomplete; prepare the boot folder again")
    return info


@dataclass
class BoundCredentials:
    """The key-bound link token of an enrolled gateway, and its proofs."""

    folder: Path
    signer: Signer
    link_url: str

    @classmethod
    def of(
        cls, folder: Path, link_url: str, device_key: DeviceKeyConfig | None = None
    ) -> BoundCredentials | None:
        """The credentials of ``folder`` if it was enrolled (holds a device key), else None.

        With a PKCS#11 ``device_key`` the folder counts as enrolled once it holds a token.
        """
        if device_key is not None and device_key.backend == "pkcs11":
            if not (folder / TOKEN_FILE).exists():
                return None
            return cls(
                folder, open_key_store(device_key, folder / KEY_FILE).load_or_create(), link_url
            )
        if not (folder / KEY_FILE).exists():
            return None
        return cls(folder, FileKeyStore(folder / KEY_FILE).load_or_create(), link_url)

    def token(self) -> str:
        return (self.folder / TOKEN_FILE).read_text().strip()

    def headers(self) -> dict[str, str]:
        """Handshake headers: the token as a DPoP-bound credential and a fresh proof."""
        return self.proof_headers("GET", self.link_url)

    def proof_headers(self, method: str, url: str) -> dict[str, str]:
        # Only enrolled gateways sign proofs; the others never load PyJWT.
        from cloud.fleet.dpop import make_proof

        token = self.token()
        proof = make_proof(
            self.signer,
            method=method,
            url=url,
            now=int(time.time()),
            jti=secrets.token_urlsafe(16),
            token=token,
        )
        return {"Authorization": f"DPoP {token}", "DPoP": proof}

    def store_token(self, token: str) -> None:
        """Replace the token file atomically (a renewal from the core)."""
        _write_private(self.folder / TOKEN_FILE, token.encode())


def read_enrolment(folder: Path) -> dict[str, Any] | None:
    path = folder / ENROLMENT_FILE
    if not path.exists():
        return None
    info: dict[str, Any] = json.loads(path.read_text())
    return info


def _write_private(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
