"""The gateway's Debian package, installed into a clean Debian root.

The root is a ``debootstrap --variant=minbase bookworm`` tree with systemd (as on Raspberry
Pi OS: the package's unit gets enabled, and ``systemd-analyze verify --root`` can resolve the
unit's targets and ``ExecStart``) and the package's dependencies, python3 and python3-venv.
Making it downloads from Debian's mirrors and takes about a minute, so it is made once and
kept as a tarball at :data:`CACHE`; every run unpacks a fresh copy. The package is installed
with ``dpkg -i``, which refuses it if a dependency it declares is missing.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.build_deb import PLATFORMS, build
from tests.support import require_program

pytestmark = pytest.mark.slow

#: What the root has besides minbase.
BASE_PACKAGES = ("systemd", "python3", "python3-venv")
CACHE = Path("/var/cache/assetbook-tests/debootstrap-bookworm-minbase-systemd-python3.tar.gz")
UNIT = "assetbook-gateway.service"


def run(*args: str | Path, timeout: float = 600) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def require_root() -> None:
    if os.geteuid() != 0:
        message = "installing into a Debian root needs root (chroot, file ownership)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def clean_root(where: Path) -> Path:
    """A fresh minbase root at ``where``, from the cached tarball (made on first use)."""
    if not CACHE.exists():
        fresh = where.with_name("debootstrap")
        include = f"--include={','.join(BASE_PACKAGES)}"
        run(require_program("debootstrap"), "--variant=minbase", include, "bookworm", fresh)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        partial = CACHE.with_suffix(".partial")
        run("tar", "-C", fresh, "-czf", partial, ".")
        partial.replace(CACHE)
        shutil.rmtree(fresh)
    where.mkdir()
    run("tar", "-C", where, "-xzf", CACHE)
    shutil.copy("/etc/resolv.conf", where / "etc/resolv.conf")
    return where


def chroot(root: Path, script: str) -> str:
    """Run ``script`` in ``root`` with a clean environment (none of the host's pip settings)."""
    env = ("DEBIAN_FRONTEND=noninteractive", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
    return run("env", "-i", *env, "chroot", root, "/bin/sh", "-ec", script)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_root()
    for program in ("dpkg-deb", "chroot", "systemd-analyze", "debootstrap"):
        require_program(program)
    if platform.machine() not in PLATFORMS:
        pytest.skip(f"no wheels are bundled for {platform.machine()}")
    tmp = tmp_path_factory.mktemp("deb")
    deb = build(tmp / "dist", [platform.machine()])
    assert re.fullmatch(r"assetbook-gateway_\d+\.\d+\.\d+_all\.deb", deb.name)
    root = clean_root(tmp / "root")
    shutil.copy(deb, root / "tmp" / deb.name)
    chroot(root, f"dpkg -i /tmp/{deb.name}")
    yield root
    shutil.rmtree(tmp)  # about 400 MB: not worth keeping among pytest's last runs


def test_the_service_user_exists_without_a_login(installed: Path) -> None:
    entry = chroot(installed, "getent passwd assetbook").strip().split(":")
    assert entry[5] == "/var/lib/assetbook"
    assert entry[6] == "/usr/sbin/nologin"
    assert "dialout" in chroot(installed, "id -nG assetbook").split()


def test_directories_belong_to_the_service_and_are_private(installed: Path) -> None:
    listing = chroot(
        installed,
        "stat -c '%a %U %G %n' /var/lib/assetbook /etc/assetbook /opt/assetbook "
        "/opt/assetbook/versions",
    ).splitlines()
    assert listing == [
        "700 assetbook assetbook /var/lib/assetbook",
        "750 root assetbook /etc/assetbook",
        "775 root assetbook /opt/assetbook",
        "755 assetbook assetbook /opt/assetbook/versions",
    ]
    version = (installed / "opt/assetbook/package-version").read_text().strip()
    assert os.readlink(installed / "opt/assetbook/current") == f"versions/{version}"
    assert os.readlink(installed / "opt/assetbook/launcher") == f"versions/{version}"


def test_the_unit_is_installed_enabled_and_verifies(installed: Path) -> None:
    unit = installed / "lib/systemd/system" / UNIT
    repo_unit = Path(__file__).parents[2] / "deploy/systemd" / UNIT
    assert unit.read_text() == repo_unit.read_text()
    assert (installed / "etc/systemd/system/multi-user.target.wants" / UNIT).is_symlink()
    run("systemd-analyze", "verify", f"--root={installed}", UNIT)


def test_assetbook_runs_inside_the_root_with_only_the_gateway_dependencies(
    installed: Path,
) -> None:
    assert "gateway" in chroot(installed, "assetbook --help")
    assert "run" in chroot(installed, "assetbook gateway --help")
    installed_packages = chroot(
        installed, "/opt/assetbook/launcher/venv/bin/pip list --format=freeze"
    )
    names = {line.split("==")[0].lower() for line in installed_packages.splitlines()}
    assert {"assetbook", "trio", "websockets", "cbor2", "cryptography", "pyserial"} <= names
    assert not names & {"fastapi", "hypercorn", "argon2-cffi"}, "core dependencies leaked in"


def test_configure_again_is_harmless_and_purge_removes_everything(installed: Path) -> None:
    # A reinstall runs the maintainer scripts again over an installed package.
    chroot(installed, "dpkg -i /tmp/assetbook-gateway_*_all.deb")
    assert chroot(installed, "getent passwd | grep -c '^assetbook:'").strip() == "1"
    assert "gateway" in chroot(installed, "assetbook --help")
    chroot(installed, "dpkg --purge assetbook-gateway")
    assert not (installed / "var/lib/assetbook").exists()
    assert not (installed / "opt/assetbook").exists()
    assert "assetbook" not in chroot(installed, "getent passwd | cut -d: -f1").split()
