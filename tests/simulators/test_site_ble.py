"""The site's BLE advertisers send what simulators/site_ble.py documents: their payloads,
decoded by the gateway's own format table, give those values with SenML units."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from drivers.ble.advert import Advert
from drivers.ble.formats import decode_advert
from drivers.errors import DecodeError
from simulators.site_ble import parse_device, site_payload

ADDRESS = "C0:FF:EE:00:00:09"


def decoded(kind: str, n: int, tick: int) -> dict[str, tuple[str, Any]]:
    payload = site_payload(kind, n, tick)
    advert = Advert(
        ADDRESS,
        manufacturer_data=tuple(payload.manufacturer.items()),
        service_data=tuple(payload.service.items()),
    )
    (result,) = decode_advert(advert, {})
    assert not isinstance(result, DecodeError), result
    return {r.name: (r.unit, r.value) for r in result.readings}


@pytest.mark.parametrize("n", [0, 1, 3])
@pytest.mark.parametrize("tick", [0, 1, 2, 3, 6])
def test_each_kind_decodes_to_its_documented_values(n: int, tick: int) -> None:
    bthome = decoded("bthome", n, tick)
    assert bthome["temperature"] == ("Cel", pytest.approx(20 + n + 0.25 * (tick % 4)))
    assert bthome["humidity"] == ("%RH", pytest.approx(40 + n))
    assert bthome["battery"] == ("%EL", 90)
    ruuvi = decoded("ruuvi", n, tick)
    assert ruuvi["temperature"] == ("Cel", pytest.approx(18 + n + 0.5 * (tick % 4)))
    assert ruuvi["humidity"] == ("%RH", 50.0)
    assert ruuvi["pressure"] == ("Pa", 100000 + 100 * n)
    beacon = decoded("ibeacon", n, tick)
    assert (beacon["minor"], beacon["txpower"]) == (("", n + 1), ("dBm", -59))
    eddystone = decoded("eddystone", n, tick)
    if tick % 2 == 0:
        assert eddystone["instance"] == ("", n.to_bytes(6, "big").hex())
    else:
        assert eddystone["voltage"] == ("V", 3.0)
        assert eddystone["temperature"] == ("Cel", 22.0 + n)


def test_device_arguments_name_a_kind_and_an_address() -> None:
    assert parse_device("ruuvi=cb:b8:33:4c:88:4f") == ("ruuvi", "CB:B8:33:4C:88:4F")
    with pytest.raises(argparse.ArgumentTypeError, match="KIND=ADDRESS"):
        parse_device("tile=CB:B8:33:4C:88:4F")
