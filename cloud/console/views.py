"""Pure view helpers: latest readings per device, chart series, and a GPS track as SVG points.

Everything here takes stored events and returns plain values for the templates; no I/O.
Values that end up in HTML go through Jinja2's autoescaping; the SVG points are numbers
formatted here, never text from a device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

    from cloud.storage.base import StoredEvent
    from protocol.events import Reading

HEALTH_DEVICE: Final = "_health"
TRACK_SIZE: Final = 400  # the SVG viewBox is TRACK_SIZE x TRACK_SIZE
TRACK_MARGIN: Final = 10


@dataclass(frozen=True, slots=True)
class DeviceRow:
    gateway: str
    device: str
    time: str
    wall_ns: int
    readings: tuple[tuple[str, str, str], ...]  # (name, value as text, unit)


def when(ns: int) -> str:
    """RFC 3339 UTC to the second, for people."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def shown(reading: Reading) -> tuple[str, str, str]:
    value = reading.value
    if isinstance(value, bytes):
        text = value.hex()
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    return reading.name, text, reading.unit


def latest_by_device(events: Iterable[StoredEvent]) -> list[DeviceRow]:
    """The newest event of each (gateway, device), health reports left out, sorted."""
    latest: dict[tuple[str, str], StoredEvent] = {}
    for stored in events:
        key = (stored.gateway, stored.event.device)
        if stored.event.device == HEALTH_DEVICE:
            continue
        current = latest.get(key)
        if current is None or stored.event.wall_ns >= current.event.wall_ns:
            latest[key] = stored
    return [
        DeviceRow(g, d, when(s.event.wall_ns), s.event.wall_ns, tuple(map(shown, s.event.readings)))
        for (g, d), s in sorted(latest.items())
    ]


def numeric_series(events: Iterable[StoredEvent]) -> dict[str, object]:
    """uPlot's column data: ``{"t": [seconds...], "series": {name: [value or None...]}}``."""
    rows = sorted(events, key=lambda s: s.event.wall_ns)
    names: list[str] = []
    for stored in rows:
        for reading in stored.event.readings:
            value = reading.value
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and reading.name not in names and reading.name not in ("lat", "lon"):
                names.append(reading.name)
    series: dict[str, list[float | None]] = {name: [] for name in names}
    for stored in rows:
        values: dict[str, object] = {r.name: r.value for r in stored.event.readings}
        for name in names:
            cell = values.get(name)
            ok = isinstance(cell, int | float) and not isinstance(cell, bool)
            series[name].append(float(cell) if ok and math.isfinite(cell) else None)  # type: ignore[arg-type]
    return {"t": [s.event.wall_ns / 1e9 for s in rows], "series": series}


def track_points(events: Iterable[StoredEvent]) -> str:
    """A GPS track as SVG polyline points, scaled to its bounding box; "" without fixes.

    x grows with longitude and y with southing (SVG's y axis points down). The box keeps the
    track's aspect ratio with longitude scaled by cos(mean latitude), an equirectangular
    projection that is close enough over the few kilometres a tracker covers.
    """
    fixes = []
    for stored in sorted(events, key=lambda s: s.event.wall_ns):
        values = {r.name: r.value for r in stored.event.readings}
        lat, lon = values.get("lat"), values.get("lon")
        numbers = isinstance(lat, int | float) and isinstance(lon, int | float)
        if numbers and math.isfinite(lat) and math.isfinite(lon):  # type: ignore[arg-type]
            fixes.append((float(lat), float(lon)))  # type: ignore[arg-type]
    if not fixes:
        return ""
    mean_lat = sum(lat for lat, _ in fixes) / len(fixes)
    squeeze = max(math.cos(math.radians(mean_lat)), 1e-6)
    xs = [lon * squeeze for _, lon in fixes]
    ys = [-lat for lat, _ in fixes]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    scale = (TRACK_SIZE - 2 * TRACK_MARGIN) / span
    return " ".join(
        f"{TRACK_MARGIN + (x - min(xs)) * scale:.1f},{TRACK_MARGIN + (y - min(ys)) * scale:.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
