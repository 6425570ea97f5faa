"""The README's Models block: ``python -m core info`` run and pasted between its markers.

    python benchmarks/readme_info.py

Rewrites the text between ``<!-- info:start -->`` and ``<!-- info:end -->`` in README.md with the command's
output, so that the parameter counts, MACs and shipped checkpoints shown there are the code's own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from results import update_readme  # the results table's block filler (this folder is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- info:start -->", "<!-- info:end -->"


def main() -> int:
    output = subprocess.run([sys.executable, "-m", "core", "info"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.rstrip()
    update_readme(f"```\n{output}\n```", START, END)
    print(output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
