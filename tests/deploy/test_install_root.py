"""The packaged gateway as an install root, and the unit that starts it through the launcher.

Fast checks, no Debian root (``test_debian_package.py`` is the slow, complete one):
``install-version`` run on the package's payload in a temporary folder lays out the install
root ``gateway/update.py`` expects and the real launcher starts the packaged entry from it;
the unit's ``ExecStart`` is one the ``assetbook`` parser accepts; and the launcher hands
systemd's watchdog to the gateway it starts.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import zipfile
from pathlib import Path

import pytest

from assetbook.cli import build_parser
from deploy.build_deb import ENTRY, INSTALL_ROOT, PREFIX, UNIT, install_root_layout, stage_payload
from gateway.update import InstallRoot, launch
from gateway.watchdog import watchdog_interval

#: The stand-in for the project's wheel: its ``assetbook`` command writes its arguments.
PROBE = "import json, os, sys\n\ndef main():\n    print(json.dumps(sys.argv[1:]))\n"


def probe_wheel(wheels: Path) -> None:
    """A minimal ``assetbook`` wheel (PEP 427) whose console script is :data:`PROBE`."""
    info = "assetbook-0.0.0.dist-info"
    files = {
        "assetbook_probe.py": PROBE,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: assetbook\nVersion: 0.0.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\nassetbook = assetbook_probe:main\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheels / "assetbook-0.0.0-py3-none-any.whl", "w") as wheel:
        for name, text in {**files, f"{info}/RECORD": record}.items():
            wheel.writestr(name, text)


def install_version(prefix: Path, version: str) -> None:
    import subprocess

    # python3 is this test's interpreter; pip installs only from the payload's wheels.
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    env = {"PATH": path, "LANG": "C.UTF-8", "HOME": str(prefix)}
    result = subprocess.run(
        ["/bin/sh", str(prefix / "install-version"), str(prefix), version],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def exec_start() -> list[str]:
    lines = [line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1
    return shlex.split(lines[0].removeprefix("ExecStart="))


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.slow
def test_the_packaged_version_is_an_install_root_the_launcher_starts(tmp_path: Path) -> None:
    stage_payload(tmp_path, "0.1.0", [])
    prefix = tmp_path / PREFIX
    probe_wheel(prefix / "wheels")
    (prefix / "venv").mkdir()  # what packages before the install root left behind
    install_version(prefix, (prefix / "package-version").read_text().strip())

    for name, target in install_root_layout("0.1.0").items():
        assert os.readlink(prefix / name) == target, name
    manifest = json.loads((prefix / "versions/0.1.0/.manifest.json").read_text())
    assert manifest == {"entry": ENTRY, "version": "0.1.0"}
    root = InstallRoot(prefix)
    assert root.current_version() == "0.1.0"
    command = tmp_path / "usr/bin/assetbook"
    assert os.readlink(command) == str(INSTALL_ROOT / "launcher/venv/bin/assetbook")

    # The launcher starts current/<entry>, which is the packaged `assetbook` command.
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        saved = os.dup(1)
        os.dup2(stdout.fileno(), 1)
        try:
            code = launch(root, ["gateway", "run", "--install-root", str(prefix)])
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    assert code == 0
    assert json.loads(out.read_text()) == ["gateway", "run", "--install-root", str(prefix)]

    # An upgraded package replaces its previous version and ends an update's trial.
    root.write_json(root.trial, {"from": "0.0.9", "to": "0.1.0", "started": True})
    install_version(prefix, "0.2.0")
    for name, target in install_root_layout("0.2.0").items():
        assert os.readlink(prefix / name) == target, name
    assert sorted(p.name for p in root.versions.iterdir()) == ["0.2.0"]
    assert not root.trial.exists()


def test_the_unit_runs_the_launcher_with_a_command_the_cli_accepts() -> None:
    argv = exec_start()
    assert Path(argv[0]) == INSTALL_ROOT / "launcher" / ENTRY
    parser = build_parser()
    launcher, extra = parser.parse_known_args(argv[1:])
    assert launcher.handler.__name__ == "_launch"
    assert launcher.forwards_options is True
    assert launcher.install_root == INSTALL_ROOT
    assert launcher.trial > 0
    # What assetbook.cli.main and the launcher pass on to current/<entry>.
    gateway = parser.parse_args([a for a in extra if a != "--"])
    assert gateway.handler.__name__ == "_gateway_run"
    assert gateway.install_root == INSTALL_ROOT
    assert gateway.config == Path("/etc/assetbook/gateway.toml")


def test_the_unit_lets_the_launched_gateway_notify_and_update() -> None:
    settings = unit_settings()
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["all"], "READY/WATCHDOG come from the launcher's child"
    assert settings["WatchdogSec"] == ["60"]
    assert str(INSTALL_ROOT) in settings["ReadWritePaths"]


def test_the_launcher_hands_the_watchdog_to_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = tmp_path / "versions/1.0.0"
    (version / "bin").mkdir(parents=True)
    seen = tmp_path / "seen.json"
    entry = version / ENTRY
    entry.write_text(
        f"#!{sys.executable}\nimport json, os\n"
        f"json.dump({{'env': dict(os.environ), 'pid': os.getpid()}}, open({str(seen)!r}, 'w'))\n"
    )
    entry.chmod(0o755)
    (tmp_path / "current").symlink_to("versions/1.0.0")
    # As systemd starts the unit: the watchdog is addressed to the main process, the launcher.
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))

    assert launch(InstallRoot(tmp_path), []) == 0
    child = json.loads(seen.read_text())
    assert watchdog_interval(child["env"], child["pid"]) == 30.0
