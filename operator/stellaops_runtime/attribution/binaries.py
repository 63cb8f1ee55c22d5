"""Package metadata embedded in the files themselves: Go build info, cargo-auditable, JAR poms.

An edge module: it reads one open file. ELF headers and sections are read
with the canonicalizer's bounded readers (canonical/elflayout.py,
canonical/symtab.py: every size checked against the file, a parse budget of
bytes and time, see canonical/limits.py), not pyelftools, whose name lookups
are unbounded on hostile files (``.go.buildinfo``; ``.dep-v0``); a Go binary
stripped of section headers is searched like ``go version`` does, in the
first 64 KiB of the first writable, non-executable ``PT_LOAD`` segment. JARs
are read with :mod:`zipfile`. Every read is bounded; damage is reported per
format in :class:`BinaryInfo` (``go_error``, ``cargo_error``,
``maven_error``) so the other formats of the same file still count; a file
over its budget is ``refused="budget_exceeded"``.
"""

from __future__ import annotations

import lzma
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from stellaops_runtime.attribution import cargo_auditable, gobuildinfo, maven
from stellaops_runtime.attribution.cargo_auditable import Crate
from stellaops_runtime.attribution.gobuildinfo import GoBuildInfo
from stellaops_runtime.attribution.maven import MavenArtifact
from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout, read_layout
from stellaops_runtime.canonical.limits import BUDGET_EXCEEDED, DEFAULT_LIMITS, Budget, pread_exact
from stellaops_runtime.canonical.symtab import SHF_COMPRESSED, SectionInfo, read_section_table

ELF_MAGIC = b"\x7fELF"
ZIP_MAGIC = b"PK\x03\x04"
JAR_SUFFIXES = (".jar", ".war", ".ear")
MAX_SECTION_BYTES = 4 << 20
# The sysroot's crates only libtest (the #[test] harness) links: getopts, and unicode-width in
# toolchains before 1.8x. Never std's: a binary without libtest holds only the listed copy.
LIBTEST_PACKAGES = frozenset({"getopts", "unicode-width"})
# A libtest symbol: legacy ``_ZN4test...``, v0 crate root ``Cs<hash>_4test`` / ``C4test``. Matched
# generously (a ``ABC4test`` ident also matches): a false match keeps the answer unknown.
_LIBTEST_SYMBOL = re.compile(rb"_ZN4test|C(?:s[0-9A-Za-z]*_)?4test")
# A Rust function of those crates (``_ZN7getopts``, ``_$LT$getopts..``, ``Cs<hash>_7getopts``): a
# table naming none of them was stripped of the crates' local symbols (``strip -K main``, LTO with
# ``--discard-all``), libtest's with them, and says nothing of libtest (RAT2 s41).
_LIBTEST_CRATE_SYMBOL = re.compile(
    rb"(?:_ZN|C(?:s[0-9A-Za-z]*_)?)(?:7getopts|13unicode_width)|\$LT\$(?:getopts|unicode_width)\.\."
)
STRTAB_CHUNK = 1 << 20
GO_SCAN_BYTES = 64 << 10
MAX_POM_BYTES = 64 << 10
MAX_POMS = 4096
MANIFEST = "META-INF/MANIFEST.MF"
MAX_MANIFEST_BYTES = 64 << 10  # its main section comes first; a signed JAR's per-entry digests follow
PF_X, PF_W = 0x1, 0x2
ZIP_ERRORS = (
    zipfile.BadZipFile,
    ValueError,
    OSError,
    EOFError,
    RuntimeError,  # an encrypted member; NotImplementedError: an unknown compression method
    zlib.error,  # damaged deflate data
    lzma.LZMAError,
)


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
    refused: str | None = None  # "not_regular", "budget_exceeded": the file was not read
    # Whether the symbol table names libtest's code (a test binary): only asked when ``crates``
    # lists a crate only libtest brings into the sysroot (LIBTEST_PACKAGES); None: not known.
    libtest: bool | None = None

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


def _section(
    f: BinaryIO, layout: ElfLayout, sections: list[SectionInfo], name: str, budget: Budget
) -> bytes | None:
    sec = next((s for s in sections if s.name == name), None)
    if sec is None or sec.type == "SHT_NOBITS":
        return None
    if sec.flags & SHF_COMPRESSED:
        raise ValueError(f"section {name} is compressed (not written by any toolchain we know)")
    if sec.size > MAX_SECTION_BYTES:
        raise ValueError(f"section {name} is {sec.size} bytes, more than {MAX_SECTION_BYTES}")
    return pread_exact(f.fileno(), sec.offset, sec.size, file_size=layout.size, budget=budget, what=name)


def _elf(f: BinaryIO, name: str) -> BinaryInfo:
    budget = DEFAULT_LIMITS.budget(name)
    try:
        layout = read_layout(f)
        sections = read_section_table(f, layout, budget)
    except ElfError as e:
        if e.reason == BUDGET_EXCEEDED:
            return BinaryInfo(refused=BUDGET_EXCEEDED)
        return BinaryInfo(go_error=f"{name}: not a readable ELF file: {e}")
    go: GoBuildInfo | None = None
    go_error: str | None = None
    crates: tuple[Crate, ...] | None = None
    cargo_error: str | None = None
    try:
        blob = _section(f, layout, sections, ".go.buildinfo", budget)
        if blob is not None:
            go = gobuildinfo.parse(blob)
        elif not sections:
            go = _scan_data_segment(f, layout)
    except (ValueError, ElfError, OSError, IndexError) as e:
        go_error = f"{name}: Go build info: {e}"
    try:
        dep = _section(f, layout, sections, ".dep-v0", budget)
        if dep is not None:
            crates = tuple(cargo_auditable.parse_dep_v0(dep))
    except (ValueError, ElfError, OSError, IndexError) as e:
        cargo_error = f"{name}: .dep-v0: {e}"
    libtest: bool | None = None
    if crates and any(c.name in LIBTEST_PACKAGES for c in crates):
        try:
            libtest = _links_libtest(f, layout, sections, budget)
        except (ElfError, OSError):
            libtest = None  # over the budget or unreadable: not known, the answer stays unknown
    return BinaryInfo(go=go, go_error=go_error, crates=crates, cargo_error=cargo_error, libtest=libtest)


def _links_libtest(
    f: BinaryIO, layout: ElfLayout, sections: list[SectionInfo], budget: Budget
) -> bool | None:
    """Whether the symbol table's names include libtest's; ``None`` without a symbol table (a
    stripped file: its names came from a debug file, and nothing here says libtest is absent), or
    with one that names no function of the crates either (stripped of local symbols, which libtest's
    and the crates' alike are in a linked Rust binary)."""
    symtab = next((s for s in sections if s.type == "SHT_SYMTAB"), None)
    if symtab is None or not 0 < symtab.link < len(sections):
        return None
    strtab = sections[symtab.link]
    if strtab.type != "SHT_STRTAB" or strtab.size == 0:
        return None
    tail = b""
    crate_named = False
    for at in range(0, strtab.size, STRTAB_CHUNK):
        size = min(STRTAB_CHUNK, strtab.size - at)
        chunk = tail + pread_exact(
            f.fileno(), strtab.offset + at, size, file_size=layout.size, budget=budget, what=".strtab"
        )
        if _LIBTEST_SYMBOL.search(chunk):
            return True
        crate_named = crate_named or _LIBTEST_CRATE_SYMBOL.search(chunk) is not None
        tail = chunk[-32:]  # a match cut by the chunk's end
    return False if crate_named else None


def _scan_data_segment(f: BinaryIO, layout: ElfLayout) -> GoBuildInfo | None:
    for seg in sorted(layout.loads, key=lambda s: s.offset):
        if seg.flags & (PF_X | PF_W) == PF_W:
            size = min(GO_SCAN_BYTES, seg.filesz)
            data = pread_exact(
                f.fileno(), seg.offset, size, file_size=layout.size, budget=None, what="segment"
            )
            if gobuildinfo.MAGIC not in data:
                return None
            return gobuildinfo.parse(data, base=seg.offset)
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
                text = z.read(info).decode("utf-8", "surrogateescape")
                artifacts.append(maven.artifact_of(text, member=info.filename))
            manifest = _manifest(z) if len(artifacts) == 1 else None  # it only vouches for one
    except ZIP_ERRORS as e:
        return BinaryInfo(maven_error=f"{name}: {e}")
    own = maven.own_artifact(artifacts, file_name=os.path.basename(name), manifest=manifest)
    return BinaryInfo(jar=own, jar_artifacts=len(artifacts))


def _manifest(z: zipfile.ZipFile) -> dict[str, str] | None:
    """The main section of the JAR's manifest; ``None`` when there is none, several (a hostile
    JAR: which one Java reads is not ours to guess), it cannot be read (then it vouches for
    nothing; the pom named by the file's name still counts) or its main section is not within
    the bound."""
    found = [i for i in z.infolist() if i.filename.upper() == MANIFEST]
    if len(found) != 1:
        return None
    try:
        with z.open(found[0]) as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except ZIP_ERRORS:
        return None
    text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    if len(data) > MAX_MANIFEST_BYTES and "\n\n" not in text:
        return None
    return maven.parse_manifest(text)
