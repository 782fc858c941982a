"""What a snippet imports, seen from a fresh interpreter (the layering and lean-import checks)."""

from __future__ import annotations

import json
import subprocess
import sys

_IMPORT_PROBE = """
import json, sys
{body}
found = sorted(m for m in sys.modules if m.split(".")[0] in {names!r})
print(json.dumps(found))
"""


def modules_imported_by(body: str, names: tuple[str, ...]) -> list[str]:
    """Run ``body`` in a fresh interpreter; the loaded modules under the packages ``names``."""
    code = _IMPORT_PROBE.format(body=body, names=names)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
