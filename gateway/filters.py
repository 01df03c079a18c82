"""Per-gateway reading filters: which samples go on from the drivers to the outbox.

A :class:`SampleFilter` decides, one sample at a time, whether a driver's sample is forwarded
or dropped, and counts every drop by reason and by driver. Rules (``[filters]`` in
``gateway.toml``, parsed by :func:`parse_filters`):

* ``allow_devices`` / ``deny_devices``: device ids or ``fnmatch`` patterns (``"ble-a4c138*"``;
  BLE device ids are ``ble-`` plus the address in lower-case hex without colons). A device
  outside a set allowlist is dropped as ``filtered_not_allowed``, one on the denylist as
  ``filtered_denied`` (the denylist wins).
* ``only_on_change``: the last *forwarded* value of each reading name is kept per device, and
  a sample is dropped as ``filtered_unchanged`` when every reading in it equals its name's
  last forwarded value (same unit, same value) and ``heartbeat_s`` has not passed since that
  name was forwarded. Kept per name, not per sample, because some devices send one reading
  per sample (a BLE GATT sensor notifies temperature, humidity and battery separately); a
  sample carrying a name not forwarded before is a change, one carrying fewer names than
  the last is not. ``deadband`` (reading name → number) counts a numeric change within the
  band as no change; the band is measured from the last forwarded value, so a slow drift is
  forwarded once it adds up. When a sample is forwarded, only the names in it are updated.
* ``max_rate_per_s`` with ``burst``: a token bucket per device; a sample finding it empty is
  dropped as ``filtered_rate``. Only samples that passed the other rules take a token.

The top-level keys apply to every driver and device; each ``[[filters.rules]]`` table narrows
to one ``driver`` (a sensor name) and/or ``devices`` patterns and overrides, key by key, what
it names. Rules are applied in file order, so a later rule wins. Service allowlisting stays in
the BLE driver (``allow_services``), the only part that sees an advert's services.

Per-device state (the resolved rules, last forwarded value per reading name, token bucket) is
kept for at most ``max_devices`` devices, least recently seen evicted first and counted, and
for at most :data:`MAX_NAMES` reading names per device, the first seen forgotten first: an
evicted device or name starts afresh, so eviction errs on the side of forwarding, never of
dropping.

This module is sans-IO and clock-free: the caller passes monotonic nanoseconds. It does not
decide where drops are reported (``gateway.app`` puts them in the health report under
``filters``; they are not losses, because a filtered sample never became an event). A dropped
sample whose driver waits to hear it was stored travels on as a :class:`Receipt`, so that it
is acknowledged in order, after everything the driver sent before it is committed.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections import OrderedDict
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from drivers.base import Sample

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from protocol.events import Reading, Value

DENIED: Final = "filtered_denied"
NOT_ALLOWED: Final = "filtered_not_allowed"
UNCHANGED: Final = "filtered_unchanged"
RATE: Final = "filtered_rate"
REASONS: Final = (DENIED, NOT_ALLOWED, UNCHANGED, RATE)
#: Devices whose state is kept by default; each costs a few hundred bytes.
MAX_DEVICES: Final = 10_000
MAX_DEVICES_LIMIT: Final = 1_000_000
#: Reading names whose last forwarded value is kept per device. Drivers send a handful; the
#: bound only stops a device that invents names from growing the gateway without limit.
MAX_NAMES: Final = 64

_POLICY_KEYS: Final = frozenset(
    {"allow_devices", "deny_devices", "only_on_change", "heartbeat_s", "deadband",
     "max_rate_per_s", "burst"}
)  # fmt: skip
_TOP_KEYS: Final = _POLICY_KEYS | {"max_devices", "rules"}
_RULE_KEYS: Final = _POLICY_KEYS | {"driver", "devices"}
_EMPTY: Final[Mapping[str, float]] = MappingProxyType({})


class FilterConfigError(ValueError):
    """A ``[filters]`` key is wrong; ``gateway.config`` turns it into a ``ConfigError``.

    Attributes:
        key: the key at fault, relative to ``[filters]`` (``"rules[0].burst"``).
        problem: what is wrong.
        hint: what to do about it.
    """

    def __init__(self, key: str, problem: str, hint: str) -> None:
        super().__init__(f"{key}: {problem} ({hint})")
        self.key = key
        self.problem = problem
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules one device's samples are held to (``None`` / empty: no such rule)."""

    allow_devices: tuple[str, ...] | None = None
    deny_devices: tuple[str, ...] = ()
    only_on_change: bool = False
    heartbeat_s: float | None = None
    deadband: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    max_rate_per_s: float | None = None
    burst: float = 1.0


@dataclass(frozen=True, slots=True)
class FilterRule:
    """Overrides for samples from ``driver`` (``None``: any) whose device matches ``devices``
    (empty: any). ``overrides`` holds :class:`Policy` field values."""

    driver: str | None = None
    devices: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def applies(self, driver: str, device: str) -> bool:
        if self.driver is not None and self.driver != driver:
            return False
        return not self.devices or _matches(device, self.devices)


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """The whole ``[filters]`` section: a gateway-wide policy and narrower rules."""

    default: Policy = Policy()
    rules: tuple[FilterRule, ...] = ()
    max_devices: int = MAX_DEVICES

    @property
    def enabled(self) -> bool:
        """False when no rule can drop anything, so the gateway can skip filtering."""
        return self.default != Policy() or any(rule.overrides for rule in self.rules)

    def policy_for(self, driver: str, device: str) -> Policy:
        policy = self.default
        for rule in self.rules:
            if rule.overrides and rule.applies(driver, device):
                policy = dataclasses.replace(policy, **rule.overrides)
        return policy


@dataclass(frozen=True, slots=True)
class Receipt(Sample):
    """Takes a dropped sample's place on the way to the outbox, which skips it.

    Some drivers acknowledge a reading to the device only once the gateway stored it
    (``Sample.mark_stored``), and the gateway stores samples in order. A dropped sample is
    therefore marked stored only after the samples its driver sent before it have been.
    """

    dropped: Sample | None = None

    def mark_stored(self) -> None:
        if self.dropped is not None:
            self.dropped.mark_stored()


def needs_receipt(sample: Sample) -> bool:
    """Whether ``sample``'s driver waits to hear that it was stored."""
    return type(sample).mark_stored is not Sample.mark_stored


def without_receipts(samples: list[Sample]) -> list[Sample]:
    """``samples`` minus the :class:`Receipt` stand-ins (the list itself if there are none)."""
    if not any(type(s) is Receipt for s in samples):
        return samples
    return [s for s in samples if type(s) is not Receipt]


@dataclass(slots=True)
class _DeviceState:
    policy: Policy
    verdict: str | None  # the allow/deny outcome, fixed for the device
    # Reading name -> (unit, value, monotonic ns) as last forwarded; only with only_on_change.
    last: dict[str, tuple[str, Value, int]] = field(default_factory=dict)
    tokens: float = 0.0
    refill_ns: int = 0


class SampleFilter:
    """Decides per sample and counts; one instance per gateway."""

    def __init__(self, config: FilterConfig) -> None:
        self.config = config
        self.offered = 0
        self.forwarded = 0
        self.evicted = 0
        self.dropped: dict[str, int] = {}
        self.dropped_by_driver: dict[str, dict[str, int]] = {}
        # Keyed by (driver, device): device ids are unique within a gateway, but two BLE
        # scanners may both hear one device, and each driver's rules are its own.
        self._devices: OrderedDict[tuple[str, str], _DeviceState] = OrderedDict()

    def offer(self, driver: str, sample: Sample, now_ns: int) -> str | None:
        """Decide on ``sample`` from ``driver`` at monotonic time ``now_ns``.

        Returns:
            ``None`` to forward it, or the reason it is dropped (one of :data:`REASONS`).
        """
        key = (driver, sample.device)
        state = self._devices.get(key)
        if state is None:
            state = self._admit(key, now_ns)
        else:
            self._devices.move_to_end(key)
        reason = _decide(state, sample.readings, now_ns)
        self.offered += 1
        if reason is None:
            self.forwarded += 1
        else:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            per_driver = self.dropped_by_driver.setdefault(driver, {})
            per_driver[reason] = per_driver.get(reason, 0) + 1
        return reason

    def report(self) -> dict[str, Any]:
        """Counters for the health report (every count only grows while the gateway runs)."""
        return {
            "offered": self.offered,
            "forwarded": self.forwarded,
            "dropped": dict(self.dropped),
            "dropped_by_driver": {d: dict(r) for d, r in self.dropped_by_driver.items()},
            "devices": len(self._devices),
            "evicted": self.evicted,
        }

    def _admit(self, key: tuple[str, str], now_ns: int) -> _DeviceState:
        if len(self._devices) >= self.config.max_devices:
            self._devices.popitem(last=False)
            self.evicted += 1
        policy = self.config.policy_for(*key)
        device = key[1]
        verdict = None
        if policy.deny_devices and _matches(device, policy.deny_devices):
            verdict = DENIED
        elif policy.allow_devices is not None and not _matches(device, policy.allow_devices):
            verdict = NOT_ALLOWED
        state = _DeviceState(policy, verdict, tokens=policy.burst, refill_ns=now_ns)
        self._devices[key] = state
        return state


def _decide(state: _DeviceState, readings: tuple[Reading, ...], now_ns: int) -> str | None:
    if state.verdict is not None:
        return state.verdict
    policy = state.policy
    if policy.only_on_change and _unchanged(state.last, readings, policy, now_ns):
        return UNCHANGED
    rate = policy.max_rate_per_s
    if rate is not None:
        elapsed_ns = max(0, now_ns - state.refill_ns)
        tokens = min(policy.burst, state.tokens + elapsed_ns * rate / 1e9)
        state.refill_ns = now_ns
        if tokens < 1.0:
            state.tokens = tokens
            return RATE
        state.tokens = tokens - 1.0
    if policy.only_on_change:
        _remember(state.last, readings, now_ns)
    return None


def _unchanged(
    last: Mapping[str, tuple[str, Value, int]],
    readings: tuple[Reading, ...],
    policy: Policy,
    now_ns: int,
) -> bool:
    if not readings:
        return False  # nothing to compare: forwarded, as the first sample of a device is
    heartbeat_ns = None if policy.heartbeat_s is None else policy.heartbeat_s * 1e9
    for reading in readings:
        seen = last.get(reading.name)
        if seen is None:
            return False
        unit, value, forwarded_ns = seen
        if unit != reading.unit:
            return False
        if heartbeat_ns is not None and now_ns - forwarded_ns >= heartbeat_ns:
            return False
        numbers = _is_number(value) and _is_number(reading.value)
        # Types matter beyond numbers: in Python True == 1, but a SenML vb is not a v.
        if value == reading.value and (numbers or type(value) is type(reading.value)):
            continue
        band = policy.deadband.get(reading.name)
        if band is None or not numbers:
            return False
        if abs(reading.value - value) > band:  # type: ignore[operator]  # numbers, checked
            return False
    return True


def _remember(
    last: dict[str, tuple[str, Value, int]], readings: tuple[Reading, ...], now_ns: int
) -> None:
    for reading in readings:
        if reading.name not in last and len(last) >= MAX_NAMES:
            del last[next(iter(last))]  # the first name seen: dicts keep insertion order
        last[reading.name] = (reading.unit, reading.value, now_ns)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _matches(device: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(device, pattern) for pattern in patterns)


# -- configuration --------------------------------------------------------------------------


def parse_filters(table: Mapping[str, Any], sensor_names: Sequence[str] = ()) -> FilterConfig:
    """Check a ``[filters]`` table (empty: no filtering).

    Args:
        table: the parsed TOML table.
        sensor_names: the configured sensors, which a rule's ``driver`` must name.

    Raises:
        FilterConfigError: an unknown key, a wrong type, or a value out of range.
    """
    _no_unknown_keys("", table, _TOP_KEYS)
    default = Policy(**_policy_overrides("", table))
    if default.heartbeat_s is not None and not default.only_on_change:
        raise FilterConfigError(
            "heartbeat_s", "applies only with only_on_change", "set only_on_change = true"
        )
    if default.deadband and not default.only_on_change:
        raise FilterConfigError(
            "deadband", "applies only with only_on_change", "set only_on_change = true"
        )
    max_devices = table.get("max_devices", MAX_DEVICES)
    if not _is_int(max_devices) or not 1 <= max_devices <= MAX_DEVICES_LIMIT:
        raise FilterConfigError(
            "max_devices", f"{max_devices!r} is out of range", f"use 1..{MAX_DEVICES_LIMIT}"
        )
    rules = table.get("rules", [])
    if not isinstance(rules, list):
        raise FilterConfigError("rules", "must be an array of tables", "write [[filters.rules]]")
    parsed = tuple(_rule(f"rules[{i}]", rule, sensor_names) for i, rule in enumerate(rules))
    for i, rule in enumerate(parsed):
        _check_change_keys(f"rules[{i}]", rule, default, parsed)
    return FilterConfig(default, parsed, max_devices)


def _check_change_keys(
    key: str, rule: FilterRule, default: Policy, rules: Sequence[FilterRule]
) -> None:
    """Refuse ``heartbeat_s`` or ``deadband`` in a rule under which they can never apply.

    As at the top level, they mean something only with ``only_on_change``. A rule that does
    not set it itself inherits it from ``[filters]`` or from another rule covering some of
    the same samples (the same driver, or a rule for any driver); device patterns are not
    compared, so a rule is refused only when no such source sets it at all.
    """
    own = rule.overrides.get("only_on_change")
    if own is None:
        possible = default.only_on_change or any(
            other.overrides.get("only_on_change") is True
            and (other.driver is None or rule.driver is None or other.driver == rule.driver)
            for other in rules
        )
    else:
        possible = own
    for leaf in ("heartbeat_s", "deadband"):
        if leaf in rule.overrides and not possible:
            raise FilterConfigError(
                f"{key}.{leaf}",
                "applies only with only_on_change",
                "set only_on_change = true in this rule or in [filters]",
            )


def _rule(key: str, table: object, sensor_names: Sequence[str]) -> FilterRule:
    if not isinstance(table, dict):
        raise FilterConfigError(key, "must be a table", "write [[filters.rules]]")
    _no_unknown_keys(key, table, _RULE_KEYS)
    driver = table.get("driver")
    if driver is not None and (not isinstance(driver, str) or driver not in sensor_names):
        raise FilterConfigError(
            f"{key}.driver", f"{driver!r} is not a configured sensor", "use a [[sensors]] name"
        )
    devices = _patterns(f"{key}.devices", table.get("devices", []), allow_empty=True)
    if driver is None and not devices:
        raise FilterConfigError(
            key, "names neither driver nor devices", "put gateway-wide keys in [filters] itself"
        )
    return FilterRule(driver, devices, MappingProxyType(_policy_overrides(key, table)))


def _policy_overrides(prefix: str, table: Mapping[str, Any]) -> dict[str, Any]:
    def dotted(leaf: str) -> str:
        return f"{prefix}.{leaf}" if prefix else leaf

    found: dict[str, Any] = {}
    if "allow_devices" in table:
        found["allow_devices"] = _patterns(dotted("allow_devices"), table["allow_devices"])
    if "deny_devices" in table:
        # Empty is allowed: a rule may clear the gateway-wide denylist for its devices.
        found["deny_devices"] = _patterns(
            dotted("deny_devices"), table["deny_devices"], allow_empty=True
        )
    if "only_on_change" in table:
        if not isinstance(table["only_on_change"], bool):
            raise FilterConfigError(
                dotted("only_on_change"), "must be true or false", "write true or false"
            )
        found["only_on_change"] = table["only_on_change"]
    for leaf, low in (("heartbeat_s", 0.001), ("max_rate_per_s", 1e-6), ("burst", 1.0)):
        if leaf in table:
            found[leaf] = _number(dotted(leaf), table[leaf], low)
    if "deadband" in table:
        found["deadband"] = _deadband(dotted("deadband"), table["deadband"])
    return found


def _deadband(key: str, value: object) -> Mapping[str, float]:
    if not isinstance(value, dict) or not value:
        raise FilterConfigError(key, "must be a non-empty table", "e.g. { temperature = 0.1 }")
    return MappingProxyType(
        {str(name): _number(f"{key}.{name}", v, 0.0) for name, v in value.items()}
    )


def _patterns(key: str, value: object, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise FilterConfigError(key, "must be a list of device ids or patterns", '["ble-*"]')
    if not value and not allow_empty:
        raise FilterConfigError(key, "is empty", "remove the key, or name at least one device")
    return tuple(value)


def _number(key: str, value: object, low: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise FilterConfigError(key, f"must be a number, got {value!r}", "write a number")
    if not value >= low or value == float("inf"):
        raise FilterConfigError(key, f"{value} is out of range", f"use a number of at least {low}")
    return float(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_unknown_keys(prefix: str, table: Mapping[str, Any], known: frozenset[str]) -> None:
    for key in table:
        if key not in known:
            dotted = f"{prefix}.{key}" if prefix else key
            raise FilterConfigError(dotted, "unknown key", f"known keys here: {sorted(known)}")
