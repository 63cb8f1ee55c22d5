"""Import BCC's Python binding from Debian's python3-bpfcc into any Python 3.

Debian installs the binding (pure Python over ctypes to libbcc.so) in
``/usr/lib/python3/dist-packages/bcc``, which a virtualenv or another Python
does not see; adding that whole directory to ``sys.path`` would shadow our own
pinned packages with Debian's. So only the ``bcc`` package is loaded, from its
directory, under its own name. Every failure becomes a message, never an
exception at import time of our modules.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

SEARCH_DIRS: tuple[str, ...] = (
    "/usr/lib/python3/dist-packages",
    "/usr/share/bcc/python",
    "/usr/lib/python3/site-packages",
)

_cached: tuple[ModuleType | None, str] | None = None


def find_package_dir(dirs: tuple[str, ...] = SEARCH_DIRS) -> str:
    """The directory holding BCC's ``bcc/__init__.py`` ('' when none)."""
    override = os.environ.get("STELLA_BCC_PYTHON_DIR")  # when set, the only place looked at
    for d in (override,) if override else dirs:
        if os.path.isfile(os.path.join(d, "bcc", "__init__.py")):
            return os.path.join(d, "bcc")
    return ""


def load_bcc() -> tuple[ModuleType | None, str]:
    """(the bcc module, '') or (None, why it cannot be used). Cached for the process."""
    global _cached
    if _cached is not None:
        return _cached
    _cached = _load()
    return _cached


def _load() -> tuple[ModuleType | None, str]:
    if not os.environ.get("STELLA_BCC_PYTHON_DIR"):
        try:
            return importlib.import_module("bcc"), ""
        except ImportError:
            pass
        except OSError as e:  # libbcc.so missing or of a foreign ABI
            return None, f"bcc is installed but libbcc cannot be loaded: {e}"
    pkg = find_package_dir()
    if not pkg:
        where = os.environ.get("STELLA_BCC_PYTHON_DIR") or ", ".join(SEARCH_DIRS)
        return None, (
            f"BCC's Python binding (bcc/__init__.py) is not in {where} "
            "(Debian: apt-get install python3-bpfcc; "
            "it brings libbpfcc)"
        )
    spec = importlib.util.spec_from_file_location(
        "bcc", os.path.join(pkg, "__init__.py"), submodule_search_locations=[pkg]
    )
    if spec is None or spec.loader is None:
        return None, f"cannot load BCC's Python binding from {pkg}"
    module = importlib.util.module_from_spec(spec)
    sys.modules["bcc"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # libbcc.so missing, symbol mismatch, ...
        sys.modules.pop("bcc", None)
        return None, f"BCC's Python binding in {pkg} failed to load: {type(e).__name__}: {e}"
    return module, ""
