"""The gateway process does not import the heavy packages it does not need.

Memory is the gateway's scarcest resource (docs/performance.md: ``gateway ≤ 35 MB``), and a
module-level import is paid by every process that imports the module. Each test runs a fresh
interpreter, imports what ``assetbook gateway run`` imports (the CLI, the gateway, every
driver kind), optionally exercises a feature, and reports which heavy modules are loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Final

from drivers.ble.bthome import encode_bthome
from drivers.registry import DRIVER_MODULES

#: Packages (and cloud modules) that only first boot, updates, encrypted BLE devices or the
#: core need: cryptography ~7-9 MiB, PyJWT ~3 MiB more, httpx ~2-8 MiB, the web stack more.
HEAVY: Final = (
    "cryptography",
    "jwt",
    "httpx",
    "click",
    "rich",
    "fastapi",
    "pydantic",
    "starlette",
    "jinja2",
    "hypercorn",
    "cloud.rest",
    "cloud.app",
    "cloud.pki",
    "cloud.fleet.dpop",
)

#: What the ``gateway run`` command imports before it starts the gateway.
GATEWAY_RUN: Final = (
    "assetbook.cli",
    "gateway.app",
    "gateway.config",
    "gateway.enrol",
    "gateway.update",
    "gateway.device_key",
    "drivers.ble.bthome",
    *DRIVER_MODULES.values(),
)


#: Modules that only other commands than ``gateway run`` need: the command line builds only
#: the parser of the command it runs.
OTHER_COMMANDS: Final = ("cloud.mqtt.cli", "cloud.modules.cli")


def _heavy_loaded(
    modules: tuple[str, ...], then: str = "", heavy: tuple[str, ...] = HEAVY
) -> list[str]:
    code = "\n".join(
        [
            "import contextlib, importlib, io, json, sys",
            f"for name in {list(modules)!r}:",
            "    importlib.import_module(name)",
            "import assetbook.cli",
            # The parser as `assetbook gateway run` builds it (--help stops before running).
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):",
            "    assetbook.cli.main(['gateway', 'run', '--help'])",
            then,
            f"heavy = {list(heavy)!r}",
            "print(json.dumps(sorted(h for h in heavy if h in sys.modules)))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_gateway_run_imports_no_heavy_package() -> None:
    assert _heavy_loaded(GATEWAY_RUN) == []


def test_the_probe_sees_a_feature_that_needs_cryptography() -> None:
    # Loading a device key (an enrolled gateway) must pull cryptography in: the probe above
    # would otherwise pass for the wrong reason.
    then = (
        "import pathlib, tempfile\n"
        "from gateway.device_key import FileKeyStore\n"
        "FileKeyStore(pathlib.Path(tempfile.mkdtemp()) / 'key.pem').load_or_create()"
    )
    assert "cryptography" in _heavy_loaded(GATEWAY_RUN, then)


def test_bthome_loads_cryptography_only_to_decrypt() -> None:
    mac, key = bytes(range(6)), bytes(range(16))
    # 0x02 is temperature in 0.01 °C steps: 2150 is 21.5 °C.
    plain = encode_bthome(((0x02, 2150),), mac=mac)
    sealed = encode_bthome(((0x02, 2150),), key=key, mac=mac, counter=1)
    then = (
        "from drivers.ble.bthome import decode_bthome\n"
        f"decode_bthome({plain!r}, mac={mac!r})\n"
        "assert 'cryptography' not in sys.modules, 'a plain packet loaded cryptography'\n"
        f"decode_bthome({sealed!r}, mac={mac!r}, key={key!r})"
    )
    assert _heavy_loaded(GATEWAY_RUN, then) == ["cryptography"]


def test_managed_gateway_imports_no_heavy_package() -> None:
    assert _heavy_loaded(("gateway.remote_config",)) == []


def test_gateway_run_builds_only_its_own_command() -> None:
    assert _heavy_loaded(GATEWAY_RUN, heavy=OTHER_COMMANDS) == []


def test_the_probe_sees_the_other_commands() -> None:
    then = "assetbook.cli.build_parser()"  # every command, as `assetbook --help` needs
    assert _heavy_loaded(GATEWAY_RUN, then, OTHER_COMMANDS) == sorted(OTHER_COMMANDS)


def test_a_serial_gateway_runs_without_asyncio() -> None:
    # asyncio (about 1.5 MiB resident) comes with the BLE drivers (bleak) and pymodbus; the
    # command line must not bring it to a gateway that has neither.
    serial = ("gateway.remote_config", "drivers.gps", "drivers.node.driver")
    assert _heavy_loaded(serial, heavy=("asyncio",)) == []
