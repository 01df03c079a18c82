"""Pseudo-terminal pairs for serial simulators.

:func:`open_pty_pair` opens a pty with :func:`os.openpty` and puts the slave in raw mode
(:func:`tty.setraw`: no echo, no line editing, no CR/LF translation) so bytes pass through
unchanged, as on a real serial line. The simulator writes the master; the code under test
opens :attr:`PtyPair.slave_path` like any serial device.

The pair keeps its own slave descriptor open. Without it, writing to the master while no
one has the slave open fails with EIO on Linux; with it, unread output is buffered by the
kernel (a few KiB), after which writes wait. Note that pyserial discards that buffer when
it opens the port, so a reader sees only what is written after it opened.

:func:`link_stable_path` points a fixed path at the slave (as udev does for
``/dev/serial/by-id``), so a configuration can name a path that survives pty renumbering.
"""

from __future__ import annotations

import contextlib
import os
import tty
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PtyPair:
    """An open pty: the device side (``master_fd``) and the path a reader opens."""

    master_fd: int
    slave_fd: int
    slave_path: str

    def close(self) -> None:
        """Close both ends (a reader of the slave then sees a hang-up: EIO or EOF)."""
        for fd in (self.master_fd, self.slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def open_pty_pair() -> PtyPair:
    """Open a pty pair with the slave in raw mode; the caller must :meth:`PtyPair.close` it."""
    master_fd, slave_fd = os.openpty()
    try:
        tty.setraw(slave_fd)
        path = os.ttyname(slave_fd)
    except OSError:
        os.close(master_fd)
        os.close(slave_fd)
        raise
    return PtyPair(master_fd, slave_fd, path)


def link_stable_path(link: str, target: str) -> None:
    """Make ``link`` a symlink to ``target``, atomically replacing an existing link.

    Raises:
        FileExistsError: ``link`` exists and is not a symlink (we never replace real files).
    """
    if os.path.lexists(link) and not os.path.islink(link):
        raise FileExistsError(f"{link} exists and is not a symlink")
    tmp = f"{link}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)  # rename(2) is atomic: a reader never finds the link missing
