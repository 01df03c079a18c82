"""The ble-gatt driver without a radio: its configuration table, the full-jitter backoff and
how one notification becomes a sample (or a counted refusal)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.ess import BATTERY_LEVEL, HUMIDITY, PRESSURE, TEMPERATURE
from drivers.ble.gatt import make_driver
from drivers.ble.gatt_config import parse_gatt_config
from drivers.ble.gatt_session import Notification, full_jitter
from drivers.ble.scan_config import ScanConfig
from drivers.errors import ConfigError
from drivers.registry import make_driver as make_any_driver

ADDRESS = "C0:FF:EE:00:10:01"


def table(**extra: object) -> dict[str, object]:
    return {"kind": "ble-gatt", "name": "env", "devices": [{"address": ADDRESS}], **extra}


def test_defaults() -> None:
    config = parse_gatt_config(table())
    assert config.adapter == "hci0"
    assert config.max_connections == 4
    assert (config.stall_s, config.connect_timeout_s) == (60.0, 10.0)
    (device,) = config.devices
    assert device.characteristics == ()
    assert all(device.wants(c) for c in (TEMPERATURE, HUMIDITY, PRESSURE, BATTERY_LEVEL))
    assert not device.wants(0x2A1C)


def test_device_ids_match_the_advert_driver() -> None:
    config = parse_gatt_config(table(devices=[{"address": ADDRESS.lower(), "name": "porch"}]))
    (device,) = config.devices
    assert device.address == ADDRESS
    assert device.device_id == ScanConfig.device_id(ADDRESS) == "ble-c0ffee001001"
    assert device.label == f"porch ({ADDRESS})"


def test_characteristics_can_be_chosen() -> None:
    config = parse_gatt_config(
        table(devices=[{"address": ADDRESS, "characteristics": ["2a6e", "0x2A19"]}])
    )
    (device,) = config.devices
    assert device.characteristics == (TEMPERATURE, BATTERY_LEVEL)
    assert device.wants(TEMPERATURE)
    assert not device.wants(HUMIDITY)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"bogus": 1}, "bogus"),
        ({"kind": "ble-adverts"}, "kind"),
        ({"adapter": "usb0"}, "adapter"),
        ({"devices": []}, "devices"),
        ({"devices": [{"address": ADDRESS}, {"address": ADDRESS.lower()}]}, "devices"),
        ({"devices": [{"address": "C0:FF:EE"}]}, "devices.address"),
        ({"devices": [{"address": ADDRESS, "pin": "0000"}]}, "devices.pin"),
        (
            {"devices": [{"address": ADDRESS, "characteristics": ["2a1c"]}]},
            "devices.characteristics",
        ),
        ({"devices": [{"address": ADDRESS, "characteristics": "2a6e"}]}, "devices.characteristics"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": True}, "max_connections"),
        ({"stall_s": -1}, "stall_s"),
        ({"backoff_s": 5, "max_backoff_s": 1}, "max_backoff_s"),
    ],
)
def test_bad_tables_are_refused_with_the_key(extra: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_gatt_config(table(**extra))
    assert refused.value.key == key


def test_registry_knows_the_kind() -> None:
    driver = make_any_driver(table(max_connections=2))
    assert driver.name == "env"
    assert type(driver).__name__ == "BleGattDriver"


@given(
    st.integers(0, 200),
    st.floats(0.01, 10),
    st.floats(0.01, 1000),
    st.floats(0, 1, exclude_max=True),
)
def test_full_jitter_stays_in_its_window(
    attempt: int, base: float, cap: float, draw: float
) -> None:
    delay = full_jitter(attempt, base, cap, draw)
    assert 0 <= delay <= min(cap, base * 2 ** min(attempt, 63))
    assert delay == pytest.approx(draw * min(cap, base * 2 ** min(attempt, 63)))


def test_full_jitter_window_doubles_up_to_the_cap() -> None:
    windows = [full_jitter(n, 0.5, 30, 0.999999) for n in range(10)]
    assert windows[:4] == pytest.approx([0.5, 1, 2, 4], rel=1e-5)
    assert max(windows) == pytest.approx(30, rel=1e-5)


def test_notifications_become_samples_and_refusals_are_counted() -> None:
    driver = make_driver(table())
    (device,) = driver.config.devices
    good = driver.handle(device, Notification(ADDRESS, TEMPERATURE, b"\x6a\x08"))
    assert good is not None
    assert good.device == "ble-c0ffee001001"
    assert [(r.name, r.unit, r.value) for r in good.readings] == [("temperature", "Cel", 21.54)]
    assert driver.handle(device, Notification(ADDRESS, TEMPERATURE, b"\x6a")) is None
    assert driver.handle(device, Notification(ADDRESS, HUMIDITY, b"\xff\xff")) is None
    assert driver.handle(device, Notification(ADDRESS, BATTERY_LEVEL, b"\xc8")) is None
    health = driver.health
    assert (health.frames, health.bad_frames) == (2, 2)
    assert health.errors_by_kind == {"truncated": 1, "unknown_value": 1, "range": 1}
    assert health.last_error is not None
    assert ADDRESS in health.last_error
