"""Tests for the gateway's TOML configuration: a good file loads, every mistake is named
precisely, the token never shows in a repr, and loose permissions are caught."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from gateway.config import GatewayConfig, Secret, load_config, write_config
from gateway.errors import ConfigError

TOKEN = "eyJhbGciOiJFZERTQSJ9.payload-that-is-secret.signature"


def base_doc() -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-1", "tenant": "acme", "data_dir": "./gw-data", "log_level": "info"},
        "uplink": {
            "url": "wss://localhost:8444/link",
            "token_file": "gw-1.token",
            "ca_file": "ca.pem",
            "batch_max_events": 200,
            "batch_max_delay_ms": 20,
            "max_inflight_batches": 4,
            "reconnect_min_s": 1,
            "reconnect_max_s": 10.5,
        },
        "outbox": {"max_events": 1000},
        "sensors": [
            {"kind": "nmea-gps", "name": "gps-1", "port": "/dev/ttyUSB0", "baud": 9600},
            {"kind": "ruuvi", "name": "tag-1"},
        ],
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    token = tmp_path / "gw-1.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


def write(folder: Path, doc: dict[str, Any], mode: int = 0o600) -> Path:
    path = folder / "gateway.toml"
    path.write_text(tomli_w.dumps(doc))
    path.chmod(mode)
    return path


def test_good_config_loads(folder: Path) -> None:
    config = load_config(write(folder, base_doc()))
    assert config.gateway.id == "gw-1"
    assert config.gateway.tenant == "acme"
    assert config.gateway.data_dir == folder / "gw-data"
    assert config.uplink.token.reveal() == TOKEN
    assert config.uplink.token_file == folder / "gw-1.token"
    assert config.uplink.ca_file == folder / "ca.pem"
    assert (config.uplink.batch_max_events, config.uplink.max_inflight_batches) == (200, 4)
    assert (config.uplink.reconnect_min_s, config.uplink.reconnect_max_s) == (1.0, 10.5)
    assert config.outbox.max_events == 1000
    assert [s["name"] for s in config.sensors] == ["gps-1", "tag-1"]
    assert config.sensors[0]["baud"] == 9600
    assert config.warnings == ()


def test_defaults_fill_optional_keys(folder: Path) -> None:
    doc = base_doc()
    doc["uplink"] = {
        "url": "wss://core.example/link",
        "token_file": "gw-1.token",
        "ca_file": "ca.pem",
    }
    del doc["outbox"], doc["sensors"], doc["gateway"]["log_level"]
    config = load_config(write(folder, doc))
    assert config.uplink.batch_max_events == 500
    assert config.uplink.batch_max_delay_ms == 50
    assert config.uplink.reconnect_max_s == 30.0
    assert config.outbox.max_events == 1_000_000
    assert config.gateway.log_level == "info"
    assert config.sensors == ()


def test_sensor_tables_are_read_only(folder: Path) -> None:
    config = load_config(write(folder, base_doc()))
    with pytest.raises(TypeError):
        config.sensors[0]["baud"] = 1  # type: ignore[index]


def test_token_never_appears_in_repr_or_str(folder: Path) -> None:
    config = load_config(write(folder, base_doc()))
    for text in (repr(config), str(config), repr(config.uplink), str(config.uplink.token)):
        assert TOKEN not in text
        assert "payload-that-is-secret" not in text
    assert "Secret('********')" in repr(config.uplink)
    assert repr(Secret("x")) == repr(Secret("y"))


def test_inline_token_is_read_and_redacted(folder: Path) -> None:
    doc = base_doc()
    del doc["uplink"]["token_file"]
    doc["uplink"]["token"] = TOKEN
    config = load_config(write(folder, doc))
    assert config.uplink.token.reveal() == TOKEN
    assert config.uplink.token_file is None
    assert TOKEN not in repr(config)
    assert config.warnings == ()


def test_inline_token_in_readable_config_warns(folder: Path) -> None:
    doc = base_doc()
    del doc["uplink"]["token_file"]
    doc["uplink"]["token"] = TOKEN
    path = write(folder, doc, mode=0o644)
    (warning,) = load_config(path).warnings
    assert str(path) in warning
    assert "chmod 600" in warning


def test_readable_config_without_inline_token_does_not_warn(folder: Path) -> None:
    assert load_config(write(folder, base_doc(), mode=0o644)).warnings == ()


def test_group_readable_token_file_warns(folder: Path) -> None:
    (folder / "gw-1.token").chmod(0o640)
    (warning,) = load_config(write(folder, base_doc())).warnings
    assert "gw-1.token" in warning
    assert TOKEN not in warning


def test_world_readable_token_file_is_refused(folder: Path) -> None:
    (folder / "gw-1.token").chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_config(write(folder, base_doc()))
    assert info.value.key == "uplink.token_file"
    assert "readable by every user" in info.value.problem
    assert "chmod 600" in info.value.hint


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.path == tmp_path / "nope.toml"
    assert info.value.key == ""


def test_invalid_toml_names_the_line(folder: Path) -> None:
    path = folder / "gateway.toml"
    path.write_text('[gateway]\nid = "gw-1"\nid = "again"\n')
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 3"):
        load_config(path)


def _set(section: str, key: str, value: Any) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        doc[section][key] = value

    return mutate


def _delete(section: str, key: str | None = None) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        if key is None:
            del doc[section]
        else:
            del doc[section][key]

    return mutate


def _sensor(index: int, key: str, value: Any) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        doc["sensors"][index][key] = value

    return mutate


def _both_tokens(doc: dict[str, Any]) -> None:
    doc["uplink"]["token"] = TOKEN


def _unknown_section(doc: dict[str, Any]) -> None:
    doc["uplinks"] = {}


def _gateway_not_table(doc: dict[str, Any]) -> None:
    doc["gateway"] = "gw-1"


def _sensors_not_array(doc: dict[str, Any]) -> None:
    doc["sensors"] = {"kind": "x"}


ERROR_CASES = [
    pytest.param(_delete("gateway"), "gateway", "section is missing", id="no-gateway"),
    pytest.param(_gateway_not_table, "gateway", "must be a table", id="gateway-not-table"),
    pytest.param(_delete("uplink"), "uplink", "section is missing", id="no-uplink"),
    pytest.param(_unknown_section, "uplinks", "unknown key", id="unknown-section"),
    pytest.param(_set("gateway", "name", "x"), "gateway.name", "unknown key", id="unknown-key"),
    pytest.param(_delete("gateway", "id"), "gateway.id", "is missing", id="no-id"),
    pytest.param(_set("gateway", "id", "GW_1"), "gateway.id", "not a valid name", id="bad-id"),
    pytest.param(_set("gateway", "id", "a" * 64), "gateway.id", "not a valid name", id="long-id"),
    pytest.param(_set("gateway", "id", 7), "gateway.id", "must be a string", id="id-not-str"),
    pytest.param(_set("gateway", "tenant", "-x"), "gateway.tenant", "not a valid", id="tenant"),
    pytest.param(_set("gateway", "data_dir", " "), "gateway.data_dir", "is empty", id="dir"),
    pytest.param(
        _set("gateway", "log_level", "loud"), "gateway.log_level", "not a log level", id="level"
    ),
    pytest.param(_delete("uplink", "url"), "uplink.url", "is missing", id="no-url"),
    pytest.param(
        _set("uplink", "url", "ws://localhost:8444/link"), "uplink.url", "not a wss://", id="ws"
    ),
    pytest.param(_set("uplink", "url", "wss://"), "uplink.url", "not a wss://", id="bare-wss"),
    pytest.param(_both_tokens, "uplink.token", "exactly one of", id="both-tokens"),
    pytest.param(_delete("uplink", "token_file"), "uplink.token", "exactly one of", id="no-token"),
    pytest.param(
        _set("uplink", "token_file", "missing.token"),
        "uplink.token_file",
        "does not exist",
        id="token-file-missing",
    ),
    pytest.param(_delete("uplink", "ca_file"), "uplink.ca_file", "is missing", id="no-ca"),
    pytest.param(
        _set("uplink", "ca_file", "missing.pem"), "uplink.ca_file", "does not exist", id="ca"
    ),
    pytest.param(
        _set("uplink", "batch_max_events", 0),
        "uplink.batch_max_events",
        "out of range",
        id="batch-zero",
    ),
    pytest.param(
        _set("uplink", "batch_max_events", 2001),
        "uplink.batch_max_events",
        "out of range",
        id="batch-over-protocol-limit",
    ),
    pytest.param(
        _set("uplink", "batch_max_events", True),
        "uplink.batch_max_events",
        "must be an integer",
        id="batch-bool",
    ),
    pytest.param(
        _set("uplink", "batch_max_delay_ms", 1.5),
        "uplink.batch_max_delay_ms",
        "must be an integer",
        id="delay-float",
    ),
    pytest.param(
        _set("uplink", "max_inflight_batches", 0),
        "uplink.max_inflight_batches",
        "out of range",
        id="inflight-zero",
    ),
    pytest.param(
        _set("uplink", "reconnect_min_s", "1s"),
        "uplink.reconnect_min_s",
        "must be a number",
        id="min-str",
    ),
    pytest.param(
        _set("uplink", "reconnect_max_s", 0.5),
        "uplink.reconnect_max_s",
        "out of range",
        id="max-below-min",
    ),
    pytest.param(_set("outbox", "max_events", 0), "outbox.max_events", "out of range", id="ob"),
    pytest.param(_sensors_not_array, "sensors", "array of tables", id="sensors-not-array"),
    pytest.param(_sensor(1, "kind", ""), "sensors[1].kind", "is empty", id="sensor-kind"),
    pytest.param(_sensor(0, "name", "GPS 1"), "sensors[0].name", "not a valid", id="sensor-name"),
    pytest.param(_sensor(1, "name", "gps-1"), "sensors[1].name", "used twice", id="dup-sensor"),
]


@pytest.mark.parametrize(("mutate", "key", "problem"), ERROR_CASES)
def test_each_mistake_names_file_key_and_fix(
    folder: Path, mutate: Any, key: str, problem: str
) -> None:
    doc = base_doc()
    mutate(doc)
    path = write(folder, doc)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert error.path == path
    assert error.key == key
    assert problem in error.problem
    assert error.hint
    assert str(error) == f"{path}: {key}: {error.problem} ({error.hint})"
    assert isinstance(error, ValueError)


def test_write_config_round_trips_with_private_mode(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca")
    path = tmp_path / "gw-7.toml"
    sensors = [{"kind": "nmea-gps", "name": "gps-1", "port": "/dev/ttyS0"}]
    config = write_config(
        path,
        gateway_id="gw-7",
        tenant="acme",
        url="wss://core.example:8444/link",
        token=TOKEN,
        ca_file="ca.pem",
        sensors=sensors,
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert isinstance(config, GatewayConfig)
    assert config == load_config(path)
    assert config.uplink.token.reveal() == TOKEN
    assert config.gateway.data_dir == tmp_path / "gw-7-data"
    assert [dict(s) for s in config.sensors] == sensors
    assert config.warnings == ()
    assert set(os.listdir(tmp_path)) == {"ca.pem", "gw-7.toml"}


def test_write_config_refuses_invalid_values_and_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    (tmp_path / "ca.pem").write_text("ca")
    common: dict[str, Any] = {"gateway_id": "gw-1", "tenant": "acme", "ca_file": "ca.pem"}
    write_config(path, url="wss://a/l", token=TOKEN, **common)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=r"uplink\.url"):
        write_config(path, url="http://a/l", token=TOKEN, **common)
    assert path.read_bytes() == before
    assert set(os.listdir(tmp_path)) == {"ca.pem", "gw.toml"}
