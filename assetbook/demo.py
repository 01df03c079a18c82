"""``assetbook demo``: a whole system on this machine, the way an operator would run it.

It runs the same commands a user would type (``assetbook core init``, ``core run``,
``tenant create``, ``gateway create``, ``token create``, ``sim site``, ``gateway run``, and,
when Mosquitto is installed, ``mqtt setup``, ``mqtt broker``, ``mqtt credential create`` and
``mqtt bridge``), each
as its own process with its log in ``<dir>/logs/``, prints where to look, reports progress
every few seconds, and on Ctrl-C stops the gateway first (so its outbox is flushed), then the
simulators, then the core. A second run reuses the same folder and its stored events.

The simulated site comes from a scenario file (``simulators/scenarios/site.toml`` unless
``--scenario`` names another): ``sim site`` starts every simulator it lists and writes the
gateway's sensors to match. Kinds whose program is missing are skipped with a printed reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from pathlib import Path

TENANT: Final = "demo"
GATEWAY: Final = "gw-demo"
PROGRESS_INTERVAL_S: Final = 5.0
READY_TIMEOUT_S: Final = 30.0


@dataclass
class _Child:
    name: str
    process: trio.Process
    log: Path


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _assetbook(*args: str) -> list[str]:
    return [sys.executable, "-m", "assetbook", *args]


def _run(args: list[str], log: Path) -> None:
    """Run a setup command to completion; its output goes to ``log``."""
    with log.open("ab") as out:
        result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False)  # noqa: S603
    if result.returncode != 0:
        raise SystemExit(f"demo: `{' '.join(args[2:])}` failed; see {log}")


def _setup(root: Path) -> tuple[Path, Path, Path]:
    """Create (or reuse) the core home, tenant, gateway config and an API token."""
    home = root / "core"
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    setup_log = logs / "setup.log"
    gateway_dir = root / GATEWAY
    api_token = root / "api.token"
    if not (home / "config.toml").exists():
        link_port = 8444 if _port_free(8444) else _free_port()
        rest_port = 8443 if _port_free(8443) else _free_port()
        http_port = 8080 if _port_free(8080) else _free_port()
        print(f"creating the core home in {home}")
        _run(
            _assetbook(
                "core", "init", "--home", str(home),
                "--link-port", str(link_port), "--rest-port", str(rest_port),
                "--http-port", str(http_port),
            ),
            setup_log,
        )  # fmt: skip
        _run(_assetbook("tenant", "create", TENANT, "--home", str(home)), setup_log)
        _run(
            _assetbook(
                "gateway", "create", "--home", str(home), "--tenant", TENANT,
                "--id", GATEWAY, "--out", str(gateway_dir),
            ),
            setup_log,
        )  # fmt: skip
        _run(
            _assetbook(
                "token", "create", "--home", str(home), "--tenant", TENANT, "--name", "demo",
                "--scope", "events:read", "--out", str(api_token),
            ),
            setup_log,
        )  # fmt: skip
    if shutil.which("mosquitto") and not (home / "mqtt" / "mosquitto.conf").exists():
        tls_port = 8883 if _port_free(8883) else _free_port()
        wss_port = 8884 if _port_free(8884) else _free_port()
        _run(
            _assetbook(
                "mqtt", "setup", "--home", str(home),
                "--tls-port", str(tls_port), "--wss-port", str(wss_port),
            ),
            setup_log,
        )  # fmt: skip
    return home, gateway_dir / "gateway.toml", api_token


async def _start_mqtt(root: Path, home: Path, children: list[_Child]) -> str | None:
    """Start the broker and the bridge; returns how to connect, or None without Mosquitto."""
    if not (home / "mqtt" / "mosquitto.conf").exists():
        return None
    logs = root / "logs"
    settings = (home / "mqtt" / "mqtt.toml").read_text()
    tls_port = int(next(v for k, v in _toml_pairs(settings) if k == "tls_port"))
    broker = await _start("mosquitto", _assetbook("mqtt", "broker", "--home", str(home)), logs)
    children.append(broker)
    await _wait_for_port(broker, tls_port)
    token = root / "mqtt-demo.token"
    if not token.exists():
        _run(
            _assetbook(
                "mqtt", "credential", "create", "--home", str(home), "--tenant", TENANT,
                "--name", "demo", "--publish", "up/+", "--subscribe", "ev/#",
                "--subscribe", "rejected/#", "--out", str(token),
            ),
            logs / "setup.log",
        )  # fmt: skip
    bridge = await _start(
        "mqtt-bridge", _assetbook("mqtt", "bridge", "--home", str(home), "--tenant", TENANT), logs
    )
    children.append(bridge)
    await _wait_for_line(bridge, "subscribed to core events")
    ca = home / "tls" / "ca.pem"
    auth = f'--cafile {ca} -V mqttv5 -u {TENANT}.demo -P "$(cat {token})"'
    return (
        f"MQTT over TLS on localhost:{tls_port} (the bridge joins it to the core):\n"
        f"  mosquitto_sub -h localhost -p {tls_port} {auth} -t 't/{TENANT}/ev/#' -v\n"
        f"  mosquitto_pub -h localhost -p {tls_port} {auth} -t t/{TENANT}/up/probe-1 \\\n"
        f'       -m \'[{{"n":"temperature","u":"Cel","v":21.5}}]\'\n'
    )


def _toml_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            pairs.append((key.strip(), value.strip().strip('"')))
    return pairs


async def _wait_for_port(child: _Child, port: int) -> None:
    """Wait until something accepts connections on ``port`` (the broker has no ready line)."""
    with trio.fail_after(READY_TIMEOUT_S):
        while True:
            if child.process.returncode is not None:
                raise SystemExit(f"demo: {child.name} exited; see {child.log}")
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.1)
                continue
            await stream.aclose()
            return


async def _start(
    name: str, args: list[str], logs: Path, env: dict[str, str] | None = None
) -> _Child:
    log = logs / f"{name}.log"
    out = log.open("ab")
    process = await trio.lowlevel.open_process(
        args,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    out.close()
    return _Child(name, process, log)


async def _wait_for_line(child: _Child, text: str) -> None:
    """Wait until ``child``'s log holds ``text`` (it is another process: poll its file)."""
    with trio.fail_after(READY_TIMEOUT_S):
        while text not in child.log.read_text(errors="replace"):
            if child.process.returncode is not None:
                raise SystemExit(f"demo: {child.name} exited; see {child.log}")
            await trio.sleep(0.1)


async def _stop(child: _Child) -> None:
    if child.process.returncode is None:
        child.process.send_signal(signal.SIGTERM)
    with trio.move_on_after(10):
        await child.process.wait()
    if child.process.returncode is None:
        child.process.kill()
        await child.process.wait()


def _progress(gateway_dir: Path) -> str:
    try:
        health = json.loads((gateway_dir / "data" / "health.json").read_text())
    except (OSError, ValueError):
        return "gateway starting…"
    drivers: dict[str, dict[str, int]] = health["drivers"]
    samples = sum(d.get("samples", 0) for d in drivers.values())
    bad = sum(d.get("bad_frames", 0) for d in drivers.values())
    each = ", ".join(f"{name} {d.get('samples', 0)}" for name, d in drivers.items())
    return (
        f"samples {samples} ({each}), bad frames {bad} | "
        f"outbox depth {health['outbox']['depth']} | link {health['uplink']['state']}, "
        f"stored up to seq {health['uplink']['acked_seq']}"
    )


async def _start_site(
    root: Path, gateway_config: Path, scenario: Path | None, rate: float | None
) -> _Child:
    """Start ``assetbook sim site``; once ready, its ``site.json`` lists the devices, the
    skipped kinds and the environment the gateway needs."""
    site_dir = root / "site"
    args = ["sim", "site", "--dir", str(site_dir), "--gateway-config", str(gateway_config)]
    if scenario is not None:
        args += ["--scenario", str(scenario)]
    if rate is not None:
        args += ["--gps-rate", str(rate)]
    (site_dir / "site.json").unlink(missing_ok=True)
    return await _start("site", _assetbook(*args), root / "logs")


async def _wait_for_site(child: _Child, path: Path) -> dict[str, Any]:
    """Wait for the site's ``site.json`` (written once every simulator is ready; the log
    may hold a "site ready" line from an earlier run)."""
    site_file = trio.Path(path)
    with trio.fail_after(READY_TIMEOUT_S):
        while not await site_file.exists():
            if child.process.returncode is not None:
                raise SystemExit(f"demo: {child.name} exited; see {child.log}")
            await trio.sleep(0.1)
    info: dict[str, Any] = json.loads(await site_file.read_text())
    return info


async def _demo(root: Path, rate: float | None, scenario: Path | None) -> None:
    home, gateway_config, api_token = _setup(root)
    logs = root / "logs"
    config_text = (home / "config.toml").read_text()
    rest_url = next(
        line.split("=", 1)[1].strip().strip('"')
        for line in config_text.splitlines()
        if line.strip().startswith("rest_url")
    )
    core = await _start("core", _assetbook("core", "run", "--home", str(home)), logs)
    children = [core]
    try:
        await _wait_for_line(core, "core ready")
        site = await _start_site(root, gateway_config, scenario, rate)
        children.append(site)
        info = await _wait_for_site(site, root / "site" / "site.json")
        for reason in info["skipped"]:
            print(reason, flush=True)
        gateway = await _start(
            "gateway",
            _assetbook("gateway", "run", "--config", str(gateway_config)),
            logs,
            info["env"],  # the private D-Bus of the BLE simulators
        )
        children.append(gateway)
        await _wait_for_line(gateway, "running")
        mqtt = await _start_mqtt(root, home, children)
        devices: list[str] = info["devices"] or ["gps-1"]
        ca = home / "tls" / "ca.pem"
        print(
            f"""
AssetBook demo is running (Ctrl-C stops it).
  core       REST {rest_url}   logs: {logs}/
  gateway    {GATEWAY} in tenant {TENANT}, reading a simulated site of {len(devices)} devices:
{textwrap.fill(", ".join(devices), 92, initial_indent=" " * 13, subsequent_indent=" " * 13)}
  access log {home / "logs" / "access.jsonl"}

Read the stored events:
  assetbook events --url {rest_url} --ca {ca} --token-file {api_token} --limit 5
  curl --cacert {ca} -H "Authorization: Bearer $(cat {api_token})" \\
       "{rest_url}/api/v1/events?device={devices[0]}&limit=5"
API description: {rest_url}/api/v1/openapi.json
Operator console: {rest_url}/console/ (create a user: assetbook user create --help)
""",
            flush=True,
        )
        print(mqtt or "MQTT: install Mosquitto (apt-get install mosquitto) to add the broker.")
        while True:
            await trio.sleep(PROGRESS_INTERVAL_S)
            for child in children:
                if child.process.returncode is not None:
                    raise SystemExit(f"demo: {child.name} exited; see {child.log}")
            print(_progress(gateway_config.parent), flush=True)
    finally:
        with trio.CancelScope(shield=True):
            print(
                "\nstopping, newest first: " + ", ".join(c.name for c in reversed(children)),
                flush=True,
            )
            for child in reversed(children):
                await _stop(child)


def run_demo(root: Path, *, rate: float | None = None, scenario: Path | None = None) -> int:
    """Run the demo until Ctrl-C; returns the exit status.

    ``rate`` overrides every simulated GPS's fixes per second; ``scenario`` replaces the
    shipped site scenario.
    """
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(_demo, root.absolute(), rate, scenario)
    print(f"demo stopped; its files stay in {root} (run `just demo` again to resume)")
    return 0
