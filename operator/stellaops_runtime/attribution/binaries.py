"""Package metadata embedded in the files themselves: Go build info, cargo-auditable, JAR poms.

An edge module: it reads one open file. ELF sections come from pyelftools
(``.go.buildinfo``; ``.dep-v0``); a Go binary stripped of section headers
is searched like ``go version`` does, in the first 64 KiB of the first
writable, non-executable ``PT_LOAD`` segment. JARs are read with
:mod:`zipfile`. Every read is bounded; damage is reported per format in
:class:`BinaryInfo` (``go_error``, ``cargo_error``, ``maven_error``) so
the other formats of the same file still count.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from stellaops_runtime.attribution import cargo_auditable, gobuildinfo, maven
from stellaops_runtime.attribution.cargo_auditable import Crate
from stellaops_runtime.attribution.gobuildinfo import GoBuildInfo
from stellaops_runtime.attribution.maven import MavenArtifact

ELF_MAGIC = b"\x7fELF"
ZIP_MAGIC = b"PK\x03\x04"
JAR_SUFFIXES = (".jar", ".war", ".ear")
MAX_SECTION_BYTES = 4 << 20
GO_SCAN_BYTES = 64 << 10
MAX_POM_BYTES = 64 << 10
MAX_POMS = 4096
PF_X, PF_W = 0x1, 0x2


@dataclass(frozen=True, slots=True)
class BinaryInfo:
    """What a file says about its own packages (all ``None`` for a plain file)."""

    go: GoBuildInfo | None = None
    go_error: str | None = None
    crates: tuple[Crate, ...] | None = None
    cargo_error: str | None = None
    jar: MavenArtifact | None = None
    jar_artifacts: int = 0
    maven_error: str | None = None

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [
            (kind, msg)
            for kind, msg in (
                ("gomod", self.go_error),
                ("cargo", self.cargo_error),
                ("maven", self.maven_error),
            )
            if msg
        ]


PLAIN = BinaryInfo()


def read_binary_info(fd: int, *, name: str) -> BinaryInfo:
    """Inspect an open file (the caller keeps ownership of ``fd``); ``name`` is its path, for messages."""
    with os.fdopen(os.dup(fd), "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic == ELF_MAGIC:
            return _elf(f, name)
        if magic == ZIP_MAGIC and name.lower().endswith(JAR_SUFFIXES):
            return _jar(f, name)
    return PLAIN


def _section(elf: ELFFile, name: str) -> bytes | None:
    sec = elf.get_section_by_name(name)
    if sec is None or sec["sh_type"] == "SHT_NOBITS":
        return None
    if sec["sh_size"] > MAX_SECTION_BYTES:
        raise ValueError(f"section {name} is {sec['sh_size']} bytes, more than {MAX_SECTION_BYTES}")
    return bytes(sec.data())


def _elf(f: BinaryIO, name: str) -> BinaryInfo:
    try:
        elf = ELFFile(f)
    except ELFError as e:
        return BinaryInfo(go_error=f"{name}: not a readable ELF file: {e}")
    go: GoBuildInfo | None = None
    go_error: str | None = None
    crates: tuple[Crate, ...] | None = None
    cargo_error: str | None = None
    try:
        blob = _section(elf, ".go.buildinfo")
        if blob is not None:
            go = gobuildinfo.parse(blob)
        elif elf.num_sections() == 0:
            go = _scan_data_segment(f, elf)
    except (ValueError, ELFError, OSError) as e:
        go_error = f"{name}: Go build info: {e}"
    try:
        dep = _section(elf, ".dep-v0")
        if dep is not None:
            crates = tuple(cargo_auditable.parse_dep_v0(dep))
    except (ValueError, ELFError, OSError) as e:
        cargo_error = f"{name}: .dep-v0: {e}"
    return BinaryInfo(go=go, go_error=go_error, crates=crates, cargo_error=cargo_error)


def _scan_data_segment(f: BinaryIO, elf: ELFFile) -> GoBuildInfo | None:
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & (PF_X | PF_W) == PF_W:
            f.seek(seg["p_offset"])
            data = f.read(min(GO_SCAN_BYTES, seg["p_filesz"]))
            if gobuildinfo.MAGIC not in data:
                return None
            return gobuildinfo.parse(data, base=seg["p_offset"])
    return None


def _jar(f: BinaryIO, name: str) -> BinaryInfo:
    try:
        with zipfile.ZipFile(f) as z:
            members = [i for i in z.infolist() if maven.POM_PROPERTIES.match(i.filename)]
            if len(members) > MAX_POMS:
                return BinaryInfo(maven_error=f"{name}: {len(members)} pom.properties, more than {MAX_POMS}")
            artifacts: list[MavenArtifact] = []
            for info in members:
                if info.file_size > MAX_POM_BYTES:
                    return BinaryInfo(maven_error=f"{name}: {info.filename} is {info.file_size} bytes")
                text = z.read(info).decode("utf-8", "replace")
                artifacts.append(maven.artifact_of(text, member=info.filename))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        return BinaryInfo(maven_error=f"{name}: {e}")
    own = maven.own_artifact(artifacts, file_name=os.path.basename(name))
    return BinaryInfo(jar=own, jar_artifacts=len(artifacts))
