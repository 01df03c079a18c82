"""Recording a benchmark run: its raw result appended to a JSON file, and a row to its table.

Every benchmark keeps the history of its runs in ``bench/results/<name>.json`` (a list, newest
last) and adds one Markdown row to its table in ``docs/performance.md``, just above the
table's marker comment, so a figure in the docs can always be traced to a run. The row's
first three cells (date, machine, command) are the same for every table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

PERFORMANCE_DOC: Final = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def command_line(module: str) -> str:
    """How this run was started, as a reader would type it: ``python -m <module> <args>``."""
    return " ".join(["python -m", module, *sys.argv[1:]])


def row_head(result: dict[str, Any]) -> str:
    """The cells every results table starts with: date, machine, command."""
    machine = result["machine"]
    return (
        f"| {machine['date'][:10]} | {machine['nproc']} x {machine['cpu_model']} | "
        f"`{result['command']}` | "
    )


def record(
    results: Path, result: dict[str, Any], marker: str, row: str, doc: Path = PERFORMANCE_DOC
) -> None:
    """Append ``result`` to the JSON history ``results`` and ``row`` above ``marker`` in ``doc``.

    The doc is left alone when it lacks the marker (a table that was moved or removed).
    """
    results.parent.mkdir(parents=True, exist_ok=True)
    history = json.loads(results.read_text()) if results.exists() else []
    history.append(result)
    results.write_text(json.dumps(history, indent=2) + "\n")
    if doc.exists():
        text = doc.read_text()
        if marker in text:
            doc.write_text(text.replace(marker, row.rstrip("\n") + "\n" + marker))
