# AssetBook task runner. Every recipe creates the virtual environment it needs.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"

# List the recipes.
default:
    @just --list

# Create or refresh the virtual environment (editable install with the dev extra).
venv:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x {{py}} ]; then python3 -m venv {{venv}}; fi
    stamp={{venv}}/.installed-$(sha256sum pyproject.toml | cut -c1-16)
    if [ ! -f "$stamp" ]; then
        {{py}} -m pip install --quiet --upgrade pip
        {{py}} -m pip install --quiet -e '.[dev]'
        # MicroPython board stubs, for type-checking firmware/ (tests/firmware reads them here).
        {{py}} -m pip install --quiet --target {{venv}}/mpy-stubs 'micropython-esp32-stubs~=1.29.0'
        rm -f {{venv}}/.installed-*; touch "$stamp"
    fi

# Run the whole test suite (pass extra pytest arguments after the recipe name).
test *args: venv
    {{py}} -m pytest {{args}}

# Only the fast tests (no real-process end-to-end runs).
test-fast *args: venv
    {{py}} -m pytest -m "not slow" {{args}}

# Lint and type-check: ruff and mypy --strict.
lint: venv
    {{venv}}/bin/ruff check .
    {{venv}}/bin/ruff format --check .
    {{venv}}/bin/mypy

# Format the code in place.
fmt: venv
    {{venv}}/bin/ruff format .
    {{venv}}/bin/ruff check --fix .

# Lint, then test: what CI runs.
check: lint test

# Start a whole system on this machine: core, a simulated GPS on a pty and a gateway.
demo *args: venv
    {{py}} -m assetbook demo {{args}}

# Fleet → core throughput beside Mosquitto and the ingredients, in the configuration the
# targets are judged on (60 s per phase, 16 gateways in 2 processes; about 5 minutes; later
# options win, e.g. `just bench --duration 10`); writes docs/performance.md, bench/results/
# and docs/perf/.
bench *args: venv
    {{py}} -m bench.throughput --duration 60 --gateways 16 --processes 2 {{args}}

# One real gateway (driver → outbox → uplink) into one core: durable rate and latency.
bench-ingest *args: venv
    {{py}} -m bench.ingest {{args}}

# A gateway's outbox (1,000,000 readings buffered while the core was down) draining to the core.
bench-drain *args: venv
    {{py}} -m bench.drain {{args}}

# A real gateway process with every driver kind of the simulated site: its memory.
bench-memory *args: venv
    {{py}} -m bench.gateway_memory {{args}}

# Soak: a gateway process → a core process at half the max rate for 30 min; memory over time.
bench-soak *args: venv
    {{py}} -m bench.soak {{args}}

# Build the gateway's Debian package into dist/.
deb *args: venv
    {{py}} -m deploy.build_deb {{args}}

# Hardware-in-the-loop tests, e.g. `just hil --serial-port /dev/ttyUSB0`.
hil *args: venv
    {{py}} -m pytest hil_tests {{args}}
