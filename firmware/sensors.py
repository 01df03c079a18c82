"""Simulated sensors: deterministic values from the sample index.

Values are multiples of powers of two so float32 carries them exactly and a test can
predict every reading the gateway must store: temperature 20 + (i % 64) / 4 Cel, relative
humidity 40 + (i % 32) / 2 %RH, battery 3 + (i % 16) / 16 V (SenML units, RFC 8428 §12.1).
A board build would replace read() with ADC or I2C reads behind the same signature.
"""


def read(index: int) -> list[tuple[str, str, float]]:
    """[(name, unit, value), ...] for sample number ``index`` (0-based)."""
    return [
        ("temp", "Cel", 20.0 + (index % 64) / 4),
        ("rh", "%RH", 40.0 + (index % 32) / 2),
        ("vbat", "V", 3.0 + (index % 16) / 16),
    ]
