"""Build ``assetbook-gateway_<version>_all.deb``: the gateway for Debian and Raspberry Pi OS.

``python -m deploy.build_deb [--out DIR] [--arch x86_64 --arch aarch64 ...]``

What the package holds:

* ``/opt/assetbook/wheels``: the project's own wheel plus binary wheels of the gateway's
  dependencies (trio, websockets, cbor2, cryptography, pyserial, tomli-w and what they
  need) for each ``--arch``, downloaded from PyPI at build time. The core's dependencies
  (FastAPI, Hypercorn, ...) are left out: a gateway does not run the core.
* ``/opt/assetbook/requirements.txt``: those requirements with the version ranges of
  ``pyproject.toml``; the project's wheel is installed after them without its declared
  dependencies (which include the core's).
* ``/opt/assetbook/install-version`` and ``/opt/assetbook/package-version``: the script that
  makes the packaged version a version of the install root, and that version.
* ``/lib/systemd/system/assetbook-gateway.service`` (``deploy/systemd``) and the maintainer
  scripts of ``deploy/debian``. ``postinst`` creates the ``assetbook`` user, ``/etc/assetbook``
  (0750) and ``/var/lib/assetbook`` (0700), and runs ``install-version``, which lays out
  ``/opt/assetbook`` as the install root of :mod:`gateway.update`
  (:func:`install_root_layout`): ``versions/<version>/venv`` built from the wheels with
  ``--no-index`` (installing needs no network, which a gateway may not have), and the
  ``current`` and ``launcher`` links. The unit runs ``gateway launch`` from ``launcher``, so
  signed over-the-air updates and their rollback work on a packaged gateway.

The package is ``Architecture: all`` because pip picks, on the target, the wheels that fit
it; an architecture whose wheels were not bundled fails in ``postinst`` with pip's message.
This module needs ``dpkg-deb`` and network access to PyPI; it installs nothing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
PACKAGE: Final = "assetbook-gateway"
PREFIX: Final = Path("opt/assetbook")
#: The install root on the target (:class:`gateway.update.InstallRoot`).
INSTALL_ROOT: Final = Path("/") / PREFIX
UNIT: Final = ROOT / "deploy/systemd/assetbook-gateway.service"
#: Entry of a packaged version, the same as an update bundle's default.
ENTRY: Final = "bin/assetbook-gateway"
#: Distribution names of the runtime dependencies the gateway imports.
GATEWAY_REQUIREMENTS: Final = frozenset(
    {"trio", "websockets", "cbor2", "cryptography", "pyserial", "tomli-w"}
)
#: The Python of Debian 12 and Raspberry Pi OS 12 (bookworm).
TARGET_PYTHON: Final = "3.11"
#: pip platform tags per machine architecture (manylinux: PEP 600).
PLATFORMS: Final = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "aarch64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
    "armv7l": ("manylinux_2_31_armv7l", "manylinux_2_17_armv7l", "manylinux2014_armv7l"),
}
DEFAULT_ARCHES: Final = ("x86_64", "aarch64")
_NOT_SOURCE: Final = (".venv", ".git", "dist", "build", "*.egg-info", "__pycache__", "demo-home")


class BuildError(Exception):
    """A step of the build failed; the message says which and why."""


def project_metadata(pyproject: Path = ROOT / "pyproject.toml") -> tuple[str, list[str]]:
    """The project's version and the gateway's requirements, from ``pyproject.toml``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    wanted = [
        spec for spec in project["dependencies"] if _distribution(spec) in GATEWAY_REQUIREMENTS
    ]
    missing = GATEWAY_REQUIREMENTS - {_distribution(s) for s in wanted}
    if missing:
        raise BuildError(f"pyproject.toml does not list {sorted(missing)}")
    return str(project["version"]), wanted


def _distribution(spec: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", spec)
    assert match is not None, spec
    return match.group(0).lower().replace("_", "-")


def control_file(version: str) -> str:
    """The ``DEBIAN/control`` text (deb-control(5))."""
    return (
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        "Architecture: all\n"
        "Maintainer: AssetBook developers <assetbook@users.noreply.github.com>\n"
        "Section: net\n"
        "Priority: optional\n"
        "Depends: python3 (>= 3.11), python3-venv, passwd\n"
        "Description: AssetBook IoT gateway\n"
        " Reads sensors over serial and BLE, keeps every reading in a durable on-disk\n"
        " outbox and sends it to an AssetBook core over an authenticated WebSocket.\n"
        " Runs as the assetbook user under a hardened systemd unit with a watchdog.\n"
    )


def _run(*args: str | Path) -> None:
    # A fixed argument list (no shell): the program and paths come from this module.
    argv = [str(a) for a in args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BuildError(f"{' '.join(map(str, args[:4]))} ... failed:\n{result.stderr[-2000:]}")


def collect_wheels(wheels: Path, requirements: list[str], arches: list[str]) -> None:
    """The project's wheel (built here) and binary wheels of ``requirements`` per arch."""
    pip = (sys.executable, "-m", "pip")
    with tempfile.TemporaryDirectory(prefix="assetbook-src-") as tmp:
        # Built from a copy, so the build leaves no build/ or egg-info in the work tree.
        source = Path(tmp) / "src"
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
        _run(*pip, "wheel", "--quiet", "--no-deps", "-w", wheels, source)
    for arch in arches:
        tags = [arg for tag in PLATFORMS[arch] for arg in ("--platform", tag)]
        _run(
            *pip, "download", "--quiet", "--only-binary=:all:", "--dest", wheels,
            "--python-version", TARGET_PYTHON, "--implementation", "cp", *tags,
            *requirements,
        )  # fmt: skip


def install_root_layout(version: str) -> dict[str, str]:
    """What ``install-version`` leaves in the install root: relative path -> link target.

    ``versions/<version>/.manifest.json`` (``{"entry", "version"}``) and the venv are there too.
    """
    folder = f"versions/{version}"
    return {
        "current": folder,
        "launcher": folder,
        f"{folder}/{ENTRY}": "../venv/bin/assetbook",
    }


def stage_payload(root: Path, version: str, requirements: list[str]) -> None:
    """Everything but the wheels under ``root``: scripts, version, unit, command link."""
    prefix = root / PREFIX
    (prefix / "wheels").mkdir(parents=True)
    (prefix / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    (prefix / "package-version").write_text(version + "\n", encoding="utf-8")
    shutil.copy(ROOT / "deploy/debian/install-version", prefix)
    (prefix / "install-version").chmod(0o755)
    unit_dir = root / "lib/systemd/system"
    unit_dir.mkdir(parents=True)
    shutil.copy(UNIT, unit_dir)
    bin_dir = root / "usr/bin"
    bin_dir.mkdir(parents=True)
    # The packaged version's command (updates move `current`, never `launcher`). Dangles
    # until postinst has built the version; removed with the package.
    (bin_dir / "assetbook").symlink_to(INSTALL_ROOT / "launcher/venv/bin/assetbook")


def stage(root: Path, version: str, requirements: list[str], arches: list[str]) -> None:
    """Lay out the package's files under ``root``."""
    stage_payload(root, version, requirements)
    collect_wheels(root / PREFIX / "wheels", requirements, arches)
    debian = root / "DEBIAN"
    debian.mkdir()
    (debian / "control").write_text(control_file(version), encoding="utf-8")
    for script in ("postinst", "prerm", "postrm"):
        target = debian / script
        shutil.copy(ROOT / "deploy/debian" / script, target)
        target.chmod(0o755)


def build(out_dir: Path, arches: list[str]) -> Path:
    """Build the package into ``out_dir`` and return its path."""
    version, requirements = project_metadata()
    out_dir.mkdir(parents=True, exist_ok=True)
    deb = out_dir / f"{PACKAGE}_{version}_all.deb"
    with tempfile.TemporaryDirectory(prefix="assetbook-deb-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir(mode=0o755)
        stage(root, version, requirements, arches)
        # --root-owner-group: every file belongs to root in the package, whoever built it.
        _run("dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, deb)
    return deb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.build_deb", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument(
        "--arch",
        action="append",
        choices=sorted(PLATFORMS),
        help=f"bundle wheels for this machine (repeatable; default {' '.join(DEFAULT_ARCHES)})",
    )
    args = parser.parse_args(argv)
    try:
        deb = build(args.out, args.arch or list(DEFAULT_ARCHES))
    except BuildError as exc:
        print(f"build_deb: {exc}", file=sys.stderr)
        return 1
    print(deb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
