"""The operator's lifecycle commands: prepare-boot, config, release build/publish/rollout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assetbook.cli import main
from cloud.fleet.store import FleetStore
from cloud.home import CoreHome
from tests.lifecycle.bundles import version_source
from tests.support import TENANT


def test_prepare_boot_writes_a_code_but_no_token(
    core_home: CoreHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot = tmp_path / "boot"
    args = ["--home", str(core_home.root), "--tenant", TENANT, "--id", "gw-7", "--boot", str(boot)]
    assert main(["gateway", "prepare-boot", *args]) == 0
    info = json.loads((boot / "assetbook" / "enrol.json").read_text())
    assert info["gateway_id"] == "gw-7"
    assert len(info["code"]) >= 20
    assert "token" not in info
    assert info["code"] not in capsys.readouterr().out  # the code goes to the card only
    assert (boot / "assetbook" / "ca.pem").read_bytes() == core_home.ca_cert.read_bytes()


def test_config_set_and_show(
    core_home: CoreHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(core_home.root)]
    main(
        [
            "gateway",
            "prepare-boot",
            *home,
            "--tenant",
            TENANT,
            "--id",
            "gw-7",
            "--boot",
            str(tmp_path / "boot"),
        ]
    )
    document = tmp_path / "config.json"
    document.write_text(json.dumps({"log_level": "debug"}))
    assert (
        main(["gateway", "config", "set", *home, "--tenant", TENANT, "--id", "gw-7", str(document)])
        == 0
    )
    capsys.readouterr()
    assert main(["gateway", "config", "show", *home, "--tenant", TENANT]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["gateway"] == "gw-7"
    assert shown["desired_version"] == 1
    document.write_text(json.dumps({"colour": "red"}))
    code = main(
        ["gateway", "config", "set", *home, "--tenant", TENANT, "--id", "gw-7", str(document)]
    )
    assert code == 2
    assert "colour" in capsys.readouterr().err


def test_release_build_publish_rollout(core_home: CoreHome, tmp_path: Path) -> None:
    home = ["--home", str(core_home.root)]
    source = version_source(tmp_path, "2.0", "pass")
    bundle = tmp_path / "2.0.tar"
    assert (
        main(
            [
                "release",
                "build",
                *home,
                "--version",
                "2.0",
                "--source",
                str(source),
                "--out",
                str(bundle),
            ]
        )
        == 0
    )
    assert main(["release", "publish", *home, str(bundle)]) == 0
    assert (
        main(
            ["release", "rollout", *home, "--tenant", TENANT, "--version", "2.0", "--percent", "10"]
        )
        == 0
    )
    with FleetStore(core_home.db_path) as store:
        rollout = store.rollout(TENANT)
    assert rollout is not None
    assert (rollout.version, rollout.percent, rollout.force) == ("2.0", 10, False)
    # An unpublished version cannot be rolled out.
    assert (
        main(
            ["release", "rollout", *home, "--tenant", TENANT, "--version", "3.0", "--percent", "10"]
        )
        == 2
    )
