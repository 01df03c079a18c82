"""What every ``assetbook`` subcommand module shares: the ``--home`` option and the check
that it names an initialised core home.

Kept apart from ``assetbook.cli`` so that the subcommand modules of the core's parts
(``cloud.mqtt.cli``, ``cloud.modules.cli``, ``cloud.fleet.cli``) can use it without importing
the whole command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.errors import ConfigError

if TYPE_CHECKING:
    import argparse

    from cloud.home import CoreHome


def add_home_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--home`` (default: ``$ASSETBOOK_HOME`` or ``./assetbook-home``)."""
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("ASSETBOOK_HOME", "assetbook-home")),
        help="the core's home directory (default: $ASSETBOOK_HOME or ./assetbook-home)",
    )


def existing_home(path: Path) -> CoreHome:
    """The core home at ``path``.

    Raises:
        ConfigError: ``path`` holds no initialised home; the message says what to do.
    """
    from cloud.home import CoreHome

    home = CoreHome(path)
    if not home.config_path.exists():
        raise ConfigError(
            f"{path} is not a core home: create one with `assetbook core init --home {path}` "
            "or point --home (or $ASSETBOOK_HOME) at an existing one"
        )
    return home
