"""Bundle the uPlot chart library into the console's static files (a build step, run by hand).

``python -m cloud.console.vendor_uplot`` fetches the pinned uPlot release with ``npm pack``
(the npm registry, through npm's own client), unpacks it in a temporary directory and copies
the minified browser build, its stylesheet and its MIT licence to
``cloud/console/static/vendor/uplot/``. The console serves those files itself, so nothing is
loaded from a CDN at run time; re-run this script (after changing :data:`VERSION`) to update.

Not done here: anything at run time (the core only serves the copied files).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Final

VERSION: Final = "1.6.32"
FILES: Final = ("dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE")
TARGET: Final = Path(__file__).parent / "static" / "vendor" / "uplot"


def vendor(target: Path = TARGET, version: str = VERSION) -> list[str]:
    """Copy uPlot ``version`` into ``target``; returns ``"sha256  name"`` lines."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to fetch uPlot (apt-get install npm)")
    target.mkdir(parents=True, exist_ok=True)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            [npm, "pack", f"uplot@{version}", "--silent"], cwd=tmp, check=True
        )
        archive = next(Path(tmp).glob("uplot-*.tgz"))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        for name in FILES:
            source = Path(tmp) / "package" / name
            data = source.read_bytes()
            (target / source.name).write_bytes(data)
            lines.append(f"{hashlib.sha256(data).hexdigest()}  {source.name}")
    (target / "VERSION").write_text(f"uplot {version} (npm)\n" + "\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    sys.stdout.write("\n".join(vendor()) + "\n")
