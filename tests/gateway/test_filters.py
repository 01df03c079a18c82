"""Gateway reading filters: each rule on a synthetic clock, the LRU bound, counting that adds
up for any input (hypothesis), the ``[filters]`` config and its errors, the driver-side
channel, and a real gateway whose drops show in its health while the kept readings reach
the core."""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.errors import InvalidInput
from cloud.fleet.store import check_document
from cloud.pki import client_ssl_context
from drivers.base import DriverHealth, Sample
from drivers.ble.scan_config import ScanConfig
from gateway.app import Gateway
from gateway.config import load_config, write_config
from gateway.errors import ConfigError
from gateway.filter_send import filtered_channel
from gateway.filters import (
    DENIED,
    MAX_NAMES,
    NOT_ALLOWED,
    RATE,
    REASONS,
    UNCHANGED,
    FilterConfig,
    FilterRule,
    Policy,
    Receipt,
    SampleFilter,
    parse_filters,
    without_receipts,
)
from gateway.health import health_readings
from gateway.remote_config import RemoteConfigError, validate
from protocol.events import Reading
from tests.gateway.test_health import wait_for_gateway_report
from tests.support import RunningCore

S = 1_000_000_000  # one second in ns


def temp(value: float, device: str = "thermo-1") -> Sample:
    return Sample(device, (Reading("temperature", "Cel", value),))


def run(
    f: SampleFilter, offers: Sequence[tuple[float, Sample]], driver: str = "d"
) -> list[str | None]:
    return [f.offer(driver, sample, int(t * S)) for t, sample in offers]


# --- allow and deny ---------------------------------------------------------------------------


def test_deny_and_allow_by_id_and_pattern_with_ble_device_ids() -> None:
    tag = ScanConfig.device_id("A4:C1:38:00:11:22")  # how the BLE driver names devices
    phone = ScanConfig.device_id("5E:00:00:00:00:01")
    policy = Policy(allow_devices=("ble-a4c138*", "gps-1"), deny_devices=("ble-a4c1380011ff",))
    f = SampleFilter(FilterConfig(policy))
    offers = [temp(1, tag), temp(1, phone), temp(1, "gps-1"), temp(1, "ble-a4c1380011ff")]
    assert run(f, [(0, s) for s in offers]) == [None, NOT_ALLOWED, None, DENIED]
    assert f.report()["dropped"] == {NOT_ALLOWED: 1, DENIED: 1}


# --- only on change, heartbeat, deadband ------------------------------------------------------


def test_unchanged_readings_are_dropped_until_the_heartbeat() -> None:
    f = SampleFilter(FilterConfig(Policy(only_on_change=True, heartbeat_s=10)))
    offers = [(0, temp(20)), (1, temp(20)), (2, temp(21)), (9, temp(21)), (12, temp(21))]
    # 12 s is 10 s after the last forward (at 2 s): the heartbeat sends it again.
    assert run(f, offers) == [None, UNCHANGED, None, UNCHANGED, None]
    assert run(f, [(21.9, temp(21)), (22, temp(21))]) == [UNCHANGED, None]


def test_a_new_name_or_a_change_of_unit_or_value_type_is_a_change() -> None:
    f = SampleFilter(FilterConfig(Policy(only_on_change=True)))
    one = Sample("n-1", (Reading("on", "", 1),))
    offers = [
        one,
        one,
        Sample("n-1", (Reading("on", "", 1.0),)),  # the same number
        Sample("n-1", (Reading("on", "", True),)),  # vb true is not v 1
        Sample("n-1", (Reading("on", "%", True),)),
        Sample("n-1", (Reading("on", "%", True), Reading("x", "", "a"))),
        Sample("n-1", (Reading("on", "%", True), Reading("x", "", "a"))),
    ]
    assert run(f, [(0, s) for s in offers]) == [
        None,
        UNCHANGED,
        UNCHANGED,
        None,
        None,
        None,
        UNCHANGED,
    ]


def test_deadband_is_measured_from_the_last_forwarded_value() -> None:
    policy = Policy(only_on_change=True, deadband={"temperature": 0.5})
    f = SampleFilter(FilterConfig(policy))
    values = [20.0, 20.3, 20.5, 20.7, 19.4, 19.6]
    # 20.7 is 0.7 from the forwarded 20.0 although each step was small; 19.6 is 0.1 from 19.4.
    assert run(f, [(i, temp(v)) for i, v in enumerate(values)]) == [
        None,
        UNCHANGED,
        UNCHANGED,
        None,
        None,
        UNCHANGED,
    ]


def test_deadband_applies_only_to_the_readings_it_names_and_only_to_numbers() -> None:
    policy = Policy(only_on_change=True, deadband={"temperature": 1.0, "state": 1.0})
    f = SampleFilter(FilterConfig(policy))

    def sample(t: float, h: float, state: str) -> Sample:
        r = (Reading("temperature", "Cel", t), Reading("humidity", "%RH", h))
        return Sample("t-1", (*r, Reading("state", "", state)))

    offers = [
        sample(20, 50, "a"),
        sample(20.5, 50, "a"),
        sample(20.5, 50.1, "a"),
        sample(20, 50.1, "b"),
    ]
    assert run(f, [(0, s) for s in offers]) == [None, UNCHANGED, None, None]


def one(name: str, value: float, device: str = "gatt-1") -> Sample:
    return Sample(device, (Reading(name, "", value),))


def test_each_reading_name_is_compared_with_its_own_last_forward() -> None:
    # A BLE GATT sensor notifies one reading per sample, the names taking turns: compared
    # as whole samples, each would differ from the one before and nothing would be dropped.
    f = SampleFilter(FilterConfig(Policy(only_on_change=True)))
    turns = [one("temperature", 21.5), one("humidity", 40), one("battery", 90)] * 3
    assert run(f, [(i, s) for i, s in enumerate(turns)]) == [None] * 3 + [UNCHANGED] * 6
    # A change in one name is forwarded and becomes that name's reference; the others stay.
    offers = [one("humidity", 41), one("temperature", 21.5), one("humidity", 41)]
    assert run(f, [(10, s) for s in offers]) == [None, UNCHANGED, UNCHANGED]


def test_deadband_and_heartbeat_are_kept_per_reading_name() -> None:
    policy = Policy(only_on_change=True, heartbeat_s=10, deadband={"temperature": 0.5})
    f = SampleFilter(FilterConfig(policy))
    offers = [
        (0, one("temperature", 20.0)),
        (5, one("humidity", 40)),
        (6, one("temperature", 20.4)),  # within the band of the 20.0 forwarded at 0
        (9, one("humidity", 40)),
        (10, one("temperature", 20.4)),  # 10 s since temperature was forwarded: heartbeat
        (14, one("humidity", 40)),  # humidity was forwarded at 5 only 9 s ago
        (15, one("humidity", 40)),  # now 10 s
    ]
    assert run(f, offers) == [None, None, UNCHANGED, UNCHANGED, None, UNCHANGED, None]
    # The heartbeat forward moved temperature's reference to 20.4: 20.8 is within the band.
    assert run(f, [(16, one("temperature", 20.8)), (16, one("temperature", 21.0))]) == [
        UNCHANGED,
        None,
    ]


def test_a_sample_is_unchanged_only_if_every_reading_in_it_is() -> None:
    f = SampleFilter(FilterConfig(Policy(only_on_change=True)))
    both = Sample("t-1", (Reading("temperature", "Cel", 20), Reading("humidity", "%RH", 40)))
    moved = Sample("t-1", (Reading("temperature", "Cel", 20), Reading("humidity", "%RH", 41)))
    fewer = Sample("t-1", (Reading("humidity", "%RH", 41),))
    # Forwarding `moved` updated both names; a sample with fewer names is judged on its own.
    assert run(f, [(0, both), (1, both), (2, moved), (3, fewer), (4, both)]) == [
        None,
        UNCHANGED,
        None,
        UNCHANGED,
        None,
    ]
    assert run(f, [(5, Sample("t-1", ()))]) == [None]  # nothing to compare: forwarded


def test_reading_names_per_device_are_bounded_first_seen_first_forgotten() -> None:
    f = SampleFilter(FilterConfig(Policy(only_on_change=True)))
    names = [f"n{i}" for i in range(MAX_NAMES + 1)]
    assert run(f, [(0, one(n, 1)) for n in names]) == [None] * len(names)
    # n0 was forgotten to make room for the last name: forwarded again, not dropped.
    assert run(f, [(1, one("n0", 1)), (1, one(names[-1], 1))]) == [None, UNCHANGED]


# --- rate cap ---------------------------------------------------------------------------------


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    f = SampleFilter(FilterConfig(Policy(max_rate_per_s=2, burst=3)))
    at_once = run(f, [(0, temp(i)) for i in range(5)])
    assert at_once == [None, None, None, RATE, RATE]
    # Refills at 2 per second: one token every 0.5 s.
    assert run(f, [(0.25, temp(5)), (0.5, temp(6)), (0.75, temp(7)), (1.0, temp(8))]) == [
        RATE,
        None,
        RATE,
        None,
    ]
    # A long quiet spell refills only up to the burst.
    assert run(f, [(100, temp(i)) for i in range(4)]) == [None, None, None, RATE]


def test_rate_is_per_device_and_unchanged_samples_take_no_token() -> None:
    policy = Policy(only_on_change=True, max_rate_per_s=1, burst=1)
    f = SampleFilter(FilterConfig(policy))
    offers = [(0, temp(1)), (0, temp(1, "other")), (0.5, temp(1)), (1.0, temp(2)), (1.1, temp(3))]
    assert run(f, offers) == [None, None, UNCHANGED, None, RATE]


# --- rules ------------------------------------------------------------------------------------


def test_rules_narrow_by_driver_and_device_and_later_rules_win() -> None:
    config = parse_filters(
        {
            "max_rate_per_s": 100.0,
            "burst": 1,
            "rules": [
                {"driver": "ble-1", "only_on_change": True},
                {"devices": ["ble-a4*"], "deny_devices": ["ble-a4*"]},
                {"driver": "ble-1", "devices": ["ble-a4c1*"], "deny_devices": []},
            ],
        },
        ["ble-1", "gps"],
    )
    f = SampleFilter(config)
    assert run(f, [(0, temp(1, "ble-a4c1")), (1, temp(1, "ble-a4c1"))], "ble-1") == [
        None,
        UNCHANGED,
    ]
    assert run(f, [(0, temp(1, "ble-a4ff"))], "ble-1") == [DENIED]
    assert run(f, [(0, temp(1, "ble-a4c1"))], "gps") == [DENIED]  # rule 3 is ble-1's only
    assert run(f, [(0, temp(1, "x")), (0, temp(1, "x"))], "gps") == [None, RATE]
    assert f.report()["dropped_by_driver"] == {
        "ble-1": {UNCHANGED: 1, DENIED: 1},
        "gps": {DENIED: 1, RATE: 1},
    }


def test_nothing_configured_means_filtering_is_off() -> None:
    assert not parse_filters({}).enabled
    assert not FilterConfig(rules=(FilterRule(driver="x"),)).enabled
    assert parse_filters({"deny_devices": ["x"]}).enabled


# --- bounded memory ---------------------------------------------------------------------------


def test_state_is_bounded_least_recently_seen_first_and_evictions_are_counted() -> None:
    f = SampleFilter(FilterConfig(Policy(only_on_change=True), max_devices=3))
    assert run(f, [(0, temp(1, d)) for d in "abc"]) == [None] * 3
    assert run(f, [(1, temp(1, "a"))]) == [UNCHANGED]  # a is now the most recent
    assert run(f, [(2, temp(1, "d"))]) == [None]  # evicts b
    assert f.report()["devices"] == 3
    assert f.report()["evicted"] == 1
    # b starts afresh (forwarded again); a kept its state.
    assert run(f, [(3, temp(1, "b")), (3, temp(1, "a"))]) == [None, UNCHANGED]
    assert f.report()["evicted"] == 2


samples = st.tuples(
    st.sampled_from(["d1", "d2"]),
    st.sampled_from(["a", "b", "c", "ble-1", "ble-2"]),
    # One or more readings, the names taking turns as a GATT sensor's do.
    st.lists(
        st.tuples(st.sampled_from(["v", "w", "x"]), st.sampled_from([0.0, 0.05, 1.0, 2])),
        min_size=1,
        max_size=3,
    ),
    st.integers(min_value=0, max_value=3 * S),
)
policies = st.builds(
    Policy,
    allow_devices=st.one_of(st.none(), st.just(("a", "ble-*"))),
    deny_devices=st.sampled_from([(), ("b",)]),
    only_on_change=st.booleans(),
    heartbeat_s=st.one_of(st.none(), st.floats(0.5, 5)),
    deadband=st.sampled_from([{}, {"v": 0.1}, {"w": 1.5}]),
    max_rate_per_s=st.one_of(st.none(), st.floats(0.1, 10)),
    burst=st.floats(1, 4),
)


@settings(max_examples=200, deadline=None)
@given(policies, st.integers(1, 4), st.lists(samples, max_size=60))
def test_every_offered_sample_is_forwarded_or_counted_once(
    policy: Policy,
    max_devices: int,
    offers: list[tuple[str, str, list[tuple[str, float]], int]],
) -> None:
    f = SampleFilter(FilterConfig(policy, max_devices=max_devices))
    now = 0
    decisions = []
    for driver, device, values, step in offers:
        now += step
        readings = tuple(Reading(name, "", value) for name, value in values)
        decisions.append(f.offer(driver, Sample(device, readings), now))
    report = f.report()
    assert report["offered"] == len(offers)
    assert report["forwarded"] == decisions.count(None)
    assert report["forwarded"] + sum(report["dropped"].values()) == report["offered"]
    per_driver = [n for reasons in report["dropped_by_driver"].values() for n in reasons.values()]
    assert sum(per_driver) == sum(report["dropped"].values())
    assert set(report["dropped"]) <= set(REASONS)
    assert report["devices"] <= max_devices


# --- the driver's channel ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AckedSample(Sample):
    """A sample whose driver waits to hear it was stored, like the node driver's."""

    stored: trio.Event = dataclasses.field(default_factory=trio.Event, compare=False)

    def mark_stored(self) -> None:
        self.stored.set()


async def test_channel_forwards_kept_samples_and_receipts_for_dropped_acked_ones() -> None:
    f = SampleFilter(FilterConfig(Policy(only_on_change=True)))
    send, receive = trio.open_memory_channel[Sample](10)
    channel = filtered_channel(f, "node", send, iter(range(0, 100 * S, S)).__next__)
    first, again = (
        AckedSample("n-1", (Reading("v", "", 1),)),
        AckedSample("n-1", (Reading("v", "", 1),)),
    )
    for sample in (temp(1), temp(1), first, again):
        await channel.send(sample)
    await channel.aclose()
    got = [s async for s in receive]
    assert [type(s) for s in got] == [Sample, AckedSample, Receipt]
    assert got[0] == temp(1)
    assert got[1] is first
    assert without_receipts(got) == got[:2]
    assert not again.stored.is_set()
    for sample in got:  # what the outbox writer does once the batch committed
        sample.mark_stored()
    assert again.stored.is_set()
    assert f.report()["dropped"] == {UNCHANGED: 2}


def test_drivers_use_nothing_but_send_on_the_sample_channel() -> None:
    """gateway.filter_send stands in for the channel and provides send() only."""
    root = Path(__file__).parents[2] / "drivers"
    used: set[str] = set()
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            channels = {
                a.arg
                for a in node.args.args + node.args.kwonlyargs
                if a.annotation is not None
                and "MemorySendChannel[Sample]" in ast.unparse(a.annotation)
            }
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.Attribute)
                    and isinstance(inner.value, ast.Name)
                    and inner.value.id in channels
                ):
                    used.add(inner.attr)
    assert used == {"send"}


# --- configuration ----------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


def document(filters: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-1", "tenant": "acme", "data_dir": "./gw-data"},
        "uplink": {"url": "wss://localhost:8444/link", "token": "t", "ca_file": "ca.pem"},
        "sensors": [{"kind": "nmea-gps", "name": "gps-1", "port": "/dev/null", "device": "g"}],
        "filters": filters,
    }


def load(folder: Path, filters: dict[str, Any]) -> FilterConfig:
    path = folder / "gateway.toml"
    path.write_text(tomli_w.dumps(document(filters)))
    path.chmod(0o600)
    return load_config(path).filters


def test_filters_section_loads(folder: Path) -> None:
    config = load(
        folder,
        {
            "deny_devices": ["ble-5e*"],
            "only_on_change": True,
            "heartbeat_s": 300,
            "deadband": {"temperature": 0.1},
            "max_rate_per_s": 1,
            "burst": 5,
            "max_devices": 500,
            "rules": [{"driver": "gps-1", "only_on_change": False}],
        },
    )
    assert config.default == Policy(
        deny_devices=("ble-5e*",),
        only_on_change=True,
        heartbeat_s=300.0,
        deadband={"temperature": 0.1},
        max_rate_per_s=1.0,
        burst=5.0,
    )
    assert config.max_devices == 500
    assert config.rules[0].driver == "gps-1"
    assert dict(config.rules[0].overrides) == {"only_on_change": False}
    assert not load(folder, {}).enabled


@pytest.mark.parametrize(
    ("filters", "key"),
    [
        ({"allow": ["x"]}, "filters.allow"),
        ({"max_rate_per_s": -1}, "filters.max_rate_per_s"),
        ({"max_rate_per_s": 0}, "filters.max_rate_per_s"),
        ({"max_rate_per_s": "fast"}, "filters.max_rate_per_s"),
        ({"burst": 0.5}, "filters.burst"),
        ({"heartbeat_s": 60}, "filters.heartbeat_s"),
        ({"deadband": {"t": 1}}, "filters.deadband"),
        ({"only_on_change": True, "deadband": {"t": -1}}, "filters.deadband.t"),
        ({"only_on_change": "yes"}, "filters.only_on_change"),
        ({"allow_devices": []}, "filters.allow_devices"),
        ({"deny_devices": "ble-*"}, "filters.deny_devices"),
        ({"max_devices": 0}, "filters.max_devices"),
        ({"rules": {"driver": "gps-1"}}, "filters.rules"),
        ({"rules": [{"driver": "nope", "burst": 2}]}, "filters.rules[0].driver"),
        ({"rules": [{"burst": 2}]}, "filters.rules[0]"),
        ({"rules": [{"devices": ["a"], "rate": 2}]}, "filters.rules[0].rate"),
        ({"rules": [{"driver": "gps-1", "heartbeat_s": 60}]}, "filters.rules[0].heartbeat_s"),
        ({"rules": [{"devices": ["a"], "deadband": {"t": 1}}]}, "filters.rules[0].deadband"),
        (
            {
                "only_on_change": True,
                "rules": [{"driver": "gps-1", "only_on_change": False, "heartbeat_s": 60}],
            },
            "filters.rules[0].heartbeat_s",
        ),
    ],
)
def test_filter_mistakes_are_named(folder: Path, filters: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(folder, filters)
    assert caught.value.key == key
    assert caught.value.hint


@pytest.mark.parametrize(
    "filters",
    [
        {"only_on_change": True, "rules": [{"driver": "gps-1", "heartbeat_s": 60}]},
        {"rules": [{"driver": "gps-1", "only_on_change": True, "deadband": {"t": 1}}]},
        {
            "rules": [
                {"driver": "gps-1", "only_on_change": True},
                {"driver": "gps-1", "devices": ["g"], "heartbeat_s": 60},
            ]
        },
        {
            "rules": [
                {"devices": ["g*"], "heartbeat_s": 60},
                {"devices": ["g"], "only_on_change": True},
            ]
        },
    ],
    ids=["from-filters", "own", "earlier-rule", "later-rule"],
)
def test_rule_change_keys_are_accepted_where_only_on_change_can_apply(
    folder: Path, filters: dict[str, Any]
) -> None:
    config = load(folder, filters)
    policy = config.policy_for("gps-1", "g")
    assert policy.only_on_change
    assert policy.heartbeat_s == 60 or policy.deadband == {"t": 1.0}


def test_filters_can_be_set_remotely_and_are_checked_first(folder: Path) -> None:
    base = document({})
    assert not load(folder, {}).enabled  # the local file, without filters
    good = validate(folder / "gateway.toml", base, {"filters": {"deny_devices": ["x"]}})
    assert good.filters.default.deny_devices == ("x",)
    with pytest.raises(RemoteConfigError, match=r"filters\.max_rate_per_s"):
        validate(folder / "gateway.toml", base, {"filters": {"max_rate_per_s": -2}})
    # The core stores a desired configuration with filters after a shape check only.
    assert check_document({"filters": {"deny_devices": ["x"]}}) == {
        "filters": {"deny_devices": ["x"]}
    }
    with pytest.raises(InvalidInput, match="filters"):
        check_document({"filters": ["x"]})


def test_health_readings_carry_filter_counts_only_when_filtering() -> None:
    f = SampleFilter(FilterConfig(Policy(deny_devices=("x",))))
    run(f, [(0, temp(1, "x")), (0, temp(1, "y"))])
    readings = {r.name: r.value for r in health_readings({"filters": f.report()}, 60)}
    assert readings["filter/filtered_denied"] == 1
    assert readings["filter/evicted"] == 0
    assert not any(r.name.startswith("filter/") for r in health_readings({"filters": {}}, 60))


# --- a real gateway ---------------------------------------------------------------------------


class ScriptedDriver:
    """Sends a fixed series, then waits until the gateway has stored every sample."""

    def __init__(self, name: str, samples: list[AckedSample]) -> None:
        self.name = name
        self.health = DriverHealth()
        self.samples = samples
        self.done = trio.Event()

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        for sample in self.samples:
            await send.send(sample)
            self.health.samples += 1
        for sample in self.samples:
            await sample.stored.wait()  # dropped ones too: their receipts follow the kept
        self.done.set()
        await trio.sleep_forever()


async def test_a_gateway_counts_its_drops_and_sends_what_it_keeps(
    core: RunningCore, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "gateway.toml",
        gateway_id="gw-1",
        tenant="acme",
        url=core.link_url,
        ca_file=str(core.home.ca_cert),
        token=core.gateway_token("gw-1"),
    )
    filters = parse_filters(
        {
            "deny_devices": ["noise-*"],
            "only_on_change": True,
            "deadband": {"temperature": 0.1},
        },
        ["thermo"],
    )
    gateway = Gateway(dataclasses.replace(config, filters=filters), report_interval_s=0.1)
    values = [20.0, 20.0, 20.05, 21.0, 21.0, 22.0]
    series = [AckedSample("thermo-1", (Reading("temperature", "Cel", v),)) for v in values]
    series.insert(2, AckedSample("noise-1", (Reading("temperature", "Cel", 0.0),)))
    driver = ScriptedDriver("thermo", series)
    gateway.drivers = [driver]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run, stop)
        with trio.fail_after(10):
            await driver.done.wait()
        body = await wait_for_gateway_report(
            core, lambda b: _reading(b, "filter/filtered_unchanged") == 3
        )
        kept = await _device_events(core, "thermo-1", 3)
        stop.set()
    assert _reading(body, "filter/filtered_denied") == 1
    assert _reading(body, "filter/evicted") == 0
    assert [e["readings"][0]["v"] for e in kept] == [20.0, 21.0, 22.0]
    health = json.loads((config.gateway.data_dir / "health.json").read_text())
    assert health["filters"]["offered"] == len(series)
    assert health["filters"]["forwarded"] == 3
    assert health["filters"]["dropped_by_driver"] == {"thermo": {UNCHANGED: 3, DENIED: 1}}
    assert health["losses"] == {}  # filtered samples never became events: nothing was lost


def _reading(body: dict[str, Any], name: str) -> object:
    return next((r["v"] for r in body["report"] if r["n"] == name), None)


async def _device_events(core: RunningCore, device: str, count: int) -> list[dict[str, Any]]:
    """Poll the REST API until ``count`` events of ``device`` are stored (another component)."""
    headers = {"Authorization": f"Bearer {core.api_token()}"}
    async with httpx.AsyncClient(
        base_url=core.rest_url, verify=client_ssl_context(core.home.ca_cert), headers=headers
    ) as client:
        with trio.fail_after(10):
            while True:
                page = await client.get("/api/v1/events", params={"device": device})
                events: list[dict[str, Any]] = page.json()["events"]
                if len(events) >= count:
                    return events
                await trio.sleep(0.05)
