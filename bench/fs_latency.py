"""Superseded by bench/latency.py; kept so old commands still work (``--quick`` is latency.py's ``--smoke``).

Run: .venv/bin/python bench/fs_latency.py [--quick] [--calls N] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency

if __name__ == "__main__":
    sys.exit(latency.main(["--smoke" if arg == "--quick" else arg for arg in sys.argv[1:]]))
