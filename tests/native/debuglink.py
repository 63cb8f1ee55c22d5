"""Build test programs whose symbols live in a separate debug file, the way distributions ship them.

Why this module exists: the separate-debug-file tests (tests/integration/test_debug_files.py)
need a real binary, its ``objcopy --only-keep-debug`` file, a ``strip``-ped
copy carrying a ``.gnu_debuglink`` to it, and hostile variants of the link
(a CRC that does not match, a name that is a path). The GNU recipe is run
with the real tools; outputs are cached under ``.cache/debuglink`` per
source and flags, so a rerun costs nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent.parent / ".cache" / "debuglink"


@dataclass(frozen=True)
class Split:
    """One program built with ``-g`` and split: the original, its debug file, the stripped copy."""

    full: Path  # unstripped, with .symtab and DWARF
    debug: Path  # objcopy --only-keep-debug
    stripped: Path  # strip --strip-all, plus .gnu_debuglink naming ``debug``'s file name


def tools_missing() -> str:
    """The first tool the recipe needs that is not installed, or ""."""
    for tool in ("gcc", "objcopy", "strip", "readelf"):
        if shutil.which(tool) is None:
            return tool
    return ""


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def build_split(name: str, *, flags: tuple[str, ...] = ("-O2", "-g"), source: Path | None = None) -> Split:
    """Compile ``source`` (default: stella_c.c) and split its symbols off; cached per source and flags."""
    src = source or HERE / "stella_c.c"
    key = hashlib.sha256(src.read_bytes() + " ".join(flags).encode()).hexdigest()[:16]
    d = CACHE / f"{name}-{key}"
    split = Split(d / name, d / f"{name}.debug", d / f"{name}.stripped")
    if split.full.exists() and split.debug.exists() and split.stripped.exists():
        return split
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    full, debug, stripped = tmp / name, tmp / f"{name}.debug", tmp / f"{name}.stripped"
    _run("gcc", *flags, "-Wl,--build-id", "-o", str(full), str(src))
    _run("objcopy", "--only-keep-debug", str(full), str(debug))
    _run("strip", "--strip-all", "-o", str(stripped), str(full))
    # Run in the debug file's directory: the link records only the file name (and its CRC).
    subprocess.run(
        ["objcopy", f"--add-gnu-debuglink={debug.name}", str(stripped)],
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return split


def debuglink_section(name: bytes, crc: int) -> bytes:
    """The bytes of a ``.gnu_debuglink`` section: name, NUL, padding to 4, little-endian CRC-32."""
    body = name + b"\0"
    body += b"\0" * (-len(body) % 4)
    return body + struct.pack("<I", crc)


def with_debuglink(stripped_src: Path, dst: Path, link: bytes) -> Path:
    """A copy of a stripped program whose ``.gnu_debuglink`` holds exactly ``link`` (any bytes)."""
    sec = dst.with_suffix(".linksec")
    sec.write_bytes(link)
    _run("objcopy", "--remove-section=.gnu_debuglink", str(stripped_src), str(dst))
    _run("objcopy", f"--add-section=.gnu_debuglink={sec}", str(dst))
    sec.unlink()
    return dst


def crc32_of(path: Path) -> int:
    return zlib.crc32(path.read_bytes())


def readelf_build_id(path: Path) -> str:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:")[1].strip()
    return ""


def split_binary(full: Path, out_dir: Path) -> tuple[Path, Path]:
    """``full``'s debug file and a fully stripped copy linked to it, in ``out_dir`` (the GNU recipe).

    objcopy runs in ``out_dir``: the link records only the debug file's name (and its CRC-32).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    debug, stripped = out_dir / f"{full.name}.debug", out_dir / f"{full.name}.stripped"
    _run("objcopy", "--only-keep-debug", str(full), str(debug))
    _run("strip", "--strip-all", "-o", str(stripped), str(full))
    subprocess.run(
        ["objcopy", f"--add-gnu-debuglink={debug.name}", str(stripped)],
        check=True,
        capture_output=True,
        cwd=out_dir,
    )
    return debug, stripped


def dwarf_only(full: Path, dst: Path) -> Path:
    """A copy of ``full`` without ``.symtab`` but with its DWARF (as distributions never ship, tools meet)."""
    _run("strip", "--strip-all", "--wildcard", "--keep-section=.debug_*", "-o", str(dst), str(full))
    return dst
