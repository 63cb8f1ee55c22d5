"""Regenerate (or check) the CRI wire code from ``protos/cri/*.proto``.

The procedure is wire/subset_generate.py's (message code only: lifecycle/cri_client.py calls
each method by its full path); ``--check`` exits 1 listing stale files.

Usage: ``python -m stellaops_runtime.wire.cri.generate [--check]``
"""

from __future__ import annotations

import sys
from pathlib import Path

from stellaops_runtime.wire.subset_generate import PROTO_ROOT, Subset

OUTPUT_DIR = Path(__file__).resolve().parent
SUBSET = Subset("cri", "stellaops_runtime.wire.cri", OUTPUT_DIR, "CRI")
generate, stale_files, main = SUBSET.generate, SUBSET.stale_files, SUBSET.main

__all__ = ["OUTPUT_DIR", "PROTO_ROOT", "SUBSET", "generate", "main", "stale_files"]

if __name__ == "__main__":
    sys.exit(main())
