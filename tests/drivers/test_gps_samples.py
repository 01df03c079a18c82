"""GpsSampler (NMEA → SenML samples, GPS time) and the driver's config factory."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from drivers.errors import ConfigError, DriverError
from drivers.gps import NmeaGpsDriver, make_driver
from drivers.nmea import FixQuality, Gga, GpsSampler, Rmc, Sentence
from protocol.events import ClockSource, Reading

NOON = 12 * 3600 * 10**9


def gga(time_ns: int | None = NOON, quality: FixQuality = FixQuality.GPS) -> Gga:
    return Gga("GP", time_ns, 48.5, -11.25, quality, 7, 1.2, 545.4, 46.9)


def rmc(time_ns: int | None = NOON, date: dt.date | None = dt.date(2024, 5, 1)) -> Rmc:
    return Rmc("GP", time_ns, True, 48.5, -11.25, 10.0, 90.0, date, None, "A")


def utc_ns(when: dt.datetime) -> int:
    return int(when.replace(tzinfo=dt.UTC).timestamp()) * 10**9


def test_rmc_readings_units_and_time() -> None:
    (sample,) = GpsSampler("gps-1").handle(rmc())
    assert sample.device == "gps-1"
    lat, lon, speed, course = sample.readings
    assert (lat, lon) == (Reading("lat", "lat", 48.5), Reading("lon", "lon", -11.25))
    assert (speed.name, speed.unit) == ("speed", "m/s")
    assert speed.value == pytest.approx(10.0 * 1852 / 3600)  # 10 kn; 1 kn = 1852 m/h
    assert (course.name, course.unit) == ("course", "rad")
    assert course.value == pytest.approx(math.pi / 2)
    assert sample.device_time_ns == utc_ns(dt.datetime(2024, 5, 1, 12))
    assert sample.device_clock is ClockSource.GPS


def test_gga_readings_units() -> None:
    (sample,) = GpsSampler("g").handle(gga())
    assert [(r.name, r.unit, r.value) for r in sample.readings] == [
        ("lat", "lat", 48.5),
        ("lon", "lon", -11.25),
        ("alt", "m", 545.4),
        ("sats", "count", 7),
        ("hdop", "/", 1.2),
        ("fix", "", 1),
    ]


def test_gga_before_any_rmc_has_no_device_time() -> None:
    (sample,) = GpsSampler("g").handle(gga())
    assert sample.device_time_ns is None
    assert sample.device_clock is None


def test_gga_takes_the_date_of_the_last_valid_rmc() -> None:
    sampler = GpsSampler("g")
    sampler.handle(rmc(NOON))
    (sample,) = sampler.handle(gga(NOON + 5 * 10**9))
    assert sample.device_time_ns == utc_ns(dt.datetime(2024, 5, 1, 12, 0, 5))
    assert sample.device_clock is ClockSource.GPS


def test_gga_after_midnight_rolls_the_date_forward() -> None:
    sampler = GpsSampler("g")
    sampler.handle(rmc(86_399 * 10**9))  # 23:59:59 on 1 May
    (sample,) = sampler.handle(gga(10**9))  # 00:00:01, no new RMC yet
    assert sample.device_time_ns == utc_ns(dt.datetime(2024, 5, 2, 0, 0, 1))


def test_invalid_fixes_and_other_sentences_give_no_samples() -> None:
    sampler = GpsSampler("g")
    void = Rmc("GP", NOON, False, None, None, None, None, dt.date(2024, 5, 1), None, "N")
    assert sampler.handle(void) == []
    assert sampler.handle(gga(quality=FixQuality.INVALID)) == []
    assert sampler.handle(gga(quality=FixQuality.SIMULATION)) == []
    assert sampler.handle(Sentence("GP", "GSV", (), b"")) == []
    # A void RMC must not teach the sampler a date.
    (sample,) = sampler.handle(gga())
    assert sample.device_time_ns is None


def test_rmc_without_date_has_no_device_time() -> None:
    (sample,) = GpsSampler("g").handle(rmc(date=None))
    assert sample.device_time_ns is None


GOOD: dict[str, object] = {
    "kind": "nmea-gps",
    "name": "gps-1",
    "device": "gps-1",
    "port": "/dev/ttyUSB0",
}


def test_make_driver_builds_from_table() -> None:
    driver = make_driver({**GOOD, "baudrate": 38400})
    assert isinstance(driver, NmeaGpsDriver)
    assert (driver.name, driver.device, driver.port, driver.baudrate) == (
        "gps-1",
        "gps-1",
        "/dev/ttyUSB0",
        38400,
    )
    assert make_driver(GOOD).baudrate == 9600


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"kind": "modbus"}, "kind"),
        ({"port": ""}, "port"),
        ({"name": 3}, "name"),
        ({"baudrate": "9600"}, "baudrate"),
        ({"baudrate": True}, "baudrate"),
        ({"baudrate": 1234}, "baudrate"),
        ({"parity": "E"}, "parity"),
    ],
)
def test_make_driver_refuses_bad_tables(change: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_driver({**GOOD, **change})
    assert info.value.key == key
    assert isinstance(info.value, DriverError)
    assert isinstance(info.value, ValueError)


def test_make_driver_reports_missing_key() -> None:
    table = dict(GOOD)
    del table["device"]
    with pytest.raises(ConfigError, match="device: missing"):
        make_driver(table)
