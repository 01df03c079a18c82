"""A private D-Bus daemon for the BLE simulator and its tests.

:func:`start_private_bus` runs ``dbus-daemon`` (the Debian package of that name) with a
minimal configuration that listens on one Unix socket in a directory the caller owns, lets
every peer own any name and talk to any peer, and prints nothing else. Clients reach it by
setting ``DBUS_SYSTEM_BUS_ADDRESS`` to :attr:`PrivateBus.address`: BlueZ clients (bleak, the
mock BlueZ) use the *system* bus, and both libsystemd and dbus-fast honour that variable.

It does not touch the host's real system or session bus and needs no privileges. The daemon
is a child process: :meth:`PrivateBus.close` (or leaving the ``with`` block) terminates it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Self

if TYPE_CHECKING:
    from pathlib import Path

# The D-Bus specification's "Message Bus Configuration" section describes these elements;
# the policy is wide open because only this user's test processes can reach the socket.
_CONFIG: Final = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


class BusUnavailable(RuntimeError):
    """``dbus-daemon`` is missing or did not come up."""


@dataclass(slots=True)
class PrivateBus:
    """A running private ``dbus-daemon``; ``address`` is its D-Bus address string."""

    address: str
    process: subprocess.Popen[bytes]

    def close(self) -> None:
        """Stop the daemon (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_private_bus(directory: Path, *, program: str = "dbus-daemon") -> PrivateBus:
    """Start a private bus whose socket and configuration live in ``directory``.

    Raises:
        BusUnavailable: ``dbus-daemon`` is not installed or exited before printing its address.
    """
    path = shutil.which(program)
    if path is None:
        raise BusUnavailable(f"{program} is not installed (Debian package dbus-daemon)")
    socket = directory / "bus"
    config = directory / "bus.conf"
    config.write_text(_CONFIG.format(socket=socket), encoding="utf-8")
    process = subprocess.Popen(  # noqa: S603 - fixed program found on PATH, fixed arguments
        [path, f"--config-file={config}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    # dbus-daemon prints its address once it is listening, so reading the line is the wait.
    line = process.stdout.readline().decode().strip()
    if not line:
        process.wait(timeout=5)
        raise BusUnavailable(f"{program} exited with status {process.returncode}")
    return PrivateBus(address=line, process=process)
