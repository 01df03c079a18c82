"""Enrolment end to end: boot folder + fresh gateway folder → connected gateway with a
key-bound credential; codes work once and expire; a copied token without the key is useless."""

from __future__ import annotations

import json
import secrets
import ssl
import stat
import time
from pathlib import Path

import jwt
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ed25519
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

from cloud.fleet.dpop import make_proof, public_jwk
from cloud.pki import client_ssl_context
from gateway.enrol import KEY_FILE, TOKEN_FILE, EnrolmentError, enrol
from gateway.remote_config import ManagedGateway
from protocol import limits
from tests.lifecycle.lifecycle_support import prepare_boot, wait_reported
from tests.support import RunningCore


async def test_a_prepared_boot_folder_and_a_fresh_folder_give_a_connected_gateway(
    core: RunningCore, tmp_path: Path
) -> None:
    boot = tmp_path / "boot"
    prepare_boot(core.home, boot, "gw-1")
    enrol_file = boot / "assetbook" / "enrol.json"
    assert "token" not in json.loads(enrol_file.read_text())  # only a one-time code
    config = await enrol(boot, tmp_path / "gw")
    assert not enrol_file.exists()  # the spent code is removed
    key_mode = stat.S_IMODE((tmp_path / "gw" / KEY_FILE).stat().st_mode)
    assert key_mode == 0o600
    gateway = ManagedGateway(config)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run, stop)
        with trio.fail_after(15):
            await gateway.link_up.wait()
        # The core asked for the gateway's status over the new link.
        await wait_reported(core.home, "gw-1", "config_version", 0)
        stop.set()


async def test_a_code_works_once(core: RunningCore, tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    prepare_boot(core.home, boot, "gw-1")
    copy = (boot / "assetbook" / "enrol.json").read_text()
    await enrol(boot, tmp_path / "first")
    (boot / "assetbook" / "enrol.json").write_text(copy)  # someone kept a copy of the card
    with pytest.raises(EnrolmentError, match="HTTP 401"):
        await enrol(boot, tmp_path / "second")


async def test_an_expired_code_is_refused(core: RunningCore, tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    prepare_boot(core.home, boot, "gw-1", lifetime_s=60, age_s=120)
    with pytest.raises(EnrolmentError, match="HTTP 401"):
        await enrol(boot, tmp_path / "gw")


async def link_status(core: RunningCore, headers: dict[str, str], context: ssl.SSLContext) -> int:
    try:
        async with connect(
            core.link_url,
            ssl=context,
            additional_headers=headers,
            subprotocols=[limits.SUBPROTOCOL],  # type: ignore[list-item]
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_a_copied_token_without_the_device_key_is_refused(
    core: RunningCore, tmp_path: Path
) -> None:
    boot = tmp_path / "boot"
    prepare_boot(core.home, boot, "gw-1")
    await enrol(boot, tmp_path / "gw")
    token = (tmp_path / "gw" / TOKEN_FILE).read_text().strip()
    context = client_ssl_context(core.home.ca_cert)

    class Thief:
        key = ed25519.Ed25519PrivateKey.generate()

        def public_jwk(self) -> dict[str, str]:
            return public_jwk(self.key.public_key())

        def sign(self, data: bytes) -> bytes:
            return self.key.sign(data)

    def proof() -> str:
        return make_proof(
            Thief(),
            method="GET",
            url=core.link_url,
            now=int(time.time()),
            jti=secrets.token_urlsafe(16),
            token=token,
        )

    assert await link_status(core, {"Authorization": f"Bearer {token}"}, context) == 401
    stolen = {"Authorization": f"DPoP {token}", "DPoP": proof()}
    assert await link_status(core, stolen, context) == 401
    # The real key works, once per proof: a replayed proof is refused too.
    from gateway.enrol import BoundCredentials

    credentials = BoundCredentials.of(tmp_path / "gw", core.link_url)
    assert credentials is not None
    headers = credentials.headers()
    assert await link_status(core, headers, context) == 101
    assert await link_status(core, headers, context) == 401


async def test_credentials_are_renewed_over_the_link_before_they_expire(
    core: RunningCore, tmp_path: Path
) -> None:
    from cloud.fleet.dpop import thumbprint
    from cloud.principal import PrincipalKind
    from cloud.registry import Registry
    from cloud.tokens import Audience, TokenIssuer, confirmation_of
    from gateway.enrol import BoundCredentials
    from tests.support import TENANT

    boot = tmp_path / "boot"
    prepare_boot(core.home, boot, "gw-1")
    config = await enrol(boot, tmp_path / "gw")
    credentials = BoundCredentials.of(tmp_path / "gw", core.link_url)
    assert credentials is not None
    jkt = thumbprint(credentials.signer.public_jwk())
    # A bound token that has been in use for 50 of its 60 s: less than a third is left.
    old, claims = TokenIssuer(core.home, now=lambda: time.time() - 50).issue(
        audience=Audience.LINK,
        subject="gw-1",
        tenant=TENANT,
        kind=PrincipalKind.GATEWAY,
        lifetime_s=60,
        publish=["gw/gw-1/#"],
        subscribe=["cmd/gw-1/#"],
        confirmation=jkt,
    )
    with Registry(core.home.db_path) as registry:
        registry.record_claims(claims)
    credentials.store_token(old)
    gateway = ManagedGateway(config)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run, stop)
        await wait_reported(core.home, "gw-1", "config_version", 0)
        with trio.fail_after(15):
            while credentials.token() == old:  # noqa: ASYNC110 - written by the gateway
                await trio.sleep(0.05)
        stop.set()
    new = credentials.token()
    assert confirmation_of(new) == jkt  # still bound to the same device key
    new_jti = jwt.decode(new, options={"verify_signature": False})["jti"]
    with Registry(core.home.db_path) as registry:
        record = registry.get_token(new_jti)
    assert record.expires_at - record.issued_at > 3600  # a full lifetime again
    # The renewed token opens the link (with a proof by the same key).
    status = await link_status(core, credentials.headers(), client_ssl_context(core.home.ca_cert))
    assert status == 101
