"""Go module build info, the blob ``go version -m`` reads from a Go binary.

The Go linker writes a 32-byte header into the ``.go.buildinfo`` section (or,
without section headers, near the start of the writable data segment,
16-byte aligned): the magic ``\\xff Go buildinf:`` (14 bytes), the pointer
size (1 byte), a flags byte. Since Go 1.18 flag bit 2 (0x2) is set and the
header is followed by two strings, each prefixed with its length as an
unsigned LEB128 varint: the toolchain version (``go1.19.8``) and the module
info. Older binaries (bit 2 clear) store two pointers to Go strings instead;
they are reported as unsupported rather than guessed at.

The module info is framed by two 16-byte sentinels (stripped when byte
``len-17`` is a newline) and is text, one tab-separated line each:
``path <main package path>``, ``mod <path> <version> [<sum>]`` for the main
module, ``dep <path> <version> [<sum>]`` per dependency, ``=> <path> <version>
[<sum>]`` replacing the module on the line before, ``build <key>=<value>``.
A binary built in GOPATH mode (Debian builds its Go packages that way) has
``path`` but no ``mod``/``dep`` lines: it names no modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAGIC = b"\xff Go buildinf:"
HEADER_SIZE = 32
ALIGN = 16
FLAG_INLINE_STRINGS = 0x2
DEVEL = "(devel)"
# Modules a binary may name: its answer is cached per image and per build-id, and 4 MB of module
# info could hold 50,000 (12 MB kept per binary). Kubernetes' binaries name a few hundred.
MAX_MODULES = 10_000


@dataclass(frozen=True, slots=True)
class GoModule:
    path: str
    version: str  # "" for a local replacement, "(devel)" for an unversioned main module
    sum: str = ""
    replaced_by: GoModule | None = None

    @property
    def effective(self) -> GoModule:
        """The module whose code was compiled: the replacement when there is one."""
        return self.replaced_by or self

    @property
    def is_local_replacement(self) -> bool:
        rep = self.replaced_by
        return rep is not None and (rep.path.startswith(("./", "../", "/")) or not rep.version)


@dataclass(frozen=True, slots=True)
class GoBuildInfo:
    go_version: str  # "go1.19.8"
    path: str  # main package path ("" if the binary has no module info at all)
    main: GoModule | None
    deps: tuple[GoModule, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()
    _by_path: dict[str, GoModule] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.main is not None:
            self._by_path[self.main.path] = self.main
        for dep in self.deps:
            self._by_path.setdefault(dep.path, dep)

    @property
    def has_modules(self) -> bool:
        return self.main is not None or bool(self.deps)

    def module_for(self, package_path: str) -> GoModule | None:
        """The module whose path is the longest prefix (at a ``/`` boundary) of a package path."""
        by_path = self._by_path
        candidate = package_path
        while candidate:
            hit = by_path.get(candidate)
            if hit is not None:
                return hit
            cut = candidate.rfind("/")
            if cut < 0:
                return None
            candidate = candidate[:cut]
        return None


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while pos < len(data) and shift < 64:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated or overlong varint in Go build info")


def _string(data: bytes, pos: int) -> tuple[str, int]:
    n, pos = _uvarint(data, pos)
    if pos + n > len(data):
        raise ValueError(f"Go build info string of {n} bytes runs past the end of the data")
    return data[pos : pos + n].decode("utf-8", "surrogateescape"), pos + n


def parse_blob(data: bytes, *, base: int = 0) -> tuple[str, str]:
    """(toolchain version, module info text) from bytes that contain the header.

    ``base`` is the file offset of ``data`` (alignment is checked against the
    file/section, as the linker aligned it). ``ValueError`` for a damaged or
    pre-1.18 blob.
    """
    pos = data.find(MAGIC)
    while pos >= 0 and (pos + base) % ALIGN:
        pos = data.find(MAGIC, pos + 1)
    if pos < 0 or len(data) - pos < HEADER_SIZE:
        raise ValueError("no Go build info header")
    flags = data[pos + 15]
    if not flags & FLAG_INLINE_STRINGS:
        raise ValueError("Go build info in the pre-Go 1.18 pointer format is not supported")
    version, nxt = _string(data, pos + HEADER_SIZE)
    modinfo, _ = _string(data, nxt)
    if not version:
        raise ValueError("Go build info without a toolchain version")
    framed = len(modinfo) >= 33 and modinfo[-17] == "\n"
    return version, (modinfo[16:-16] if framed else "")


def _module(fields: list[str], lineno: int) -> GoModule:
    if len(fields) < 2 or not fields[0]:
        raise ValueError(f"Go module info line {lineno}: expected '<path> <version> [<sum>]'")
    return GoModule(path=fields[0], version=fields[1], sum=fields[2] if len(fields) > 2 else "")


def parse_modinfo(go_version: str, text: str) -> GoBuildInfo:
    """The module info text as :class:`GoBuildInfo`; ``ValueError`` on a malformed line."""
    path = ""
    main: GoModule | None = None
    deps: list[GoModule] = []
    settings: list[tuple[str, str]] = []
    last: str | None = None  # "mod" or "dep": what a "=>" line replaces
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        key, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if key == "path":
            path = rest
        elif key == "mod":
            main = _module(fields, lineno)
            last = "mod"
        elif key == "dep":
            if len(deps) >= MAX_MODULES:
                raise ValueError(f"Go module info names more than {MAX_MODULES} modules")
            deps.append(_module(fields, lineno))
            last = "dep"
        elif key == "=>":
            rep = _module(fields, lineno) if fields and fields[0] else None
            if rep is None or last is None:
                raise ValueError(f"Go module info line {lineno}: replacement without a module before it")
            if last == "mod" and main is not None:
                main = GoModule(main.path, main.version, main.sum, rep)
            elif deps:
                d = deps[-1]
                deps[-1] = GoModule(d.path, d.version, d.sum, rep)
            last = None
        elif key == "build":
            k, _, v = rest.partition("=")
            settings.append((k, v))
        else:
            raise ValueError(f"Go module info line {lineno}: unknown key {key!r}")
    return GoBuildInfo(
        go_version=go_version, path=path, main=main, deps=tuple(deps), settings=tuple(settings)
    )


def parse(data: bytes, *, base: int = 0) -> GoBuildInfo:
    version, modinfo = parse_blob(data, base=base)
    return parse_modinfo(version, modinfo)
