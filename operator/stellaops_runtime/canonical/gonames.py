"""Go symbol names: the canonical spelling (ABI suffixes, generic type arguments) and package paths.

Why it exists: Go names are not mangled but still need one spelling per
function (``.abi0`` wrappers, ``[go.shape...]`` instantiations), and package
attribution (issue #4) reads the import path out of them. Split from
canonical/demangle.py, which dispatches here; pure string functions.
"""

from __future__ import annotations

from stellaops_runtime.canonical.namedecor import HEX, strip_symbol_decorations

__all__ = ["canonicalize_go", "go_after_dot", "go_package_path", "is_clone_suffix", "looks_go"]


def canonicalize_go(name: str) -> str:
    """Drop a linker ABI suffix, and replace the type arguments of every generic instantiation by ``[...]``.

    ``crypto/sha256.block.abi0`` -> ``crypto/sha256.block`` (the symbol table's name for an
    assembly body that has an ABIInternal wrapper; ``.gopclntab`` and DWARF call both
    ``crypto/sha256.block``), likewise ``.abiinternal`` (shared-library builds) and any other
    ``.abi<N>``; the suffix is only dropped when a ``pkg.`` qualifier stays (``pkg.abi0`` is a function).
    ``pkg.Map[go.shape.string,go.shape.int]`` -> ``pkg.Map[...]``;
    ``pkg.(*List[go.shape.*uint8]).Push.func1`` -> ``pkg.(*List[...]).Push.func1``.
    Brackets nest (``[go.shape.[]int]``), so they are matched, not searched with a regex.
    """
    if ".abi" in name:
        name = _drop_go_abi_suffix(name)
    start = name.find("[")
    if start < 0:
        return name
    out: list[str] = []
    pos = 0
    while start >= 0:
        depth = 0
        stop = -1
        for i in range(start, len(name)):
            c = name[i]
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
                if depth == 0:
                    stop = i
                    break
        if stop < 0:  # unbalanced: leave the rest as it is
            break
        out.append(name[pos:start])
        out.append("[...]")
        pos = stop + 1
        start = name.find("[", pos)
    out.append(name[pos:])
    return "".join(out)


def _drop_go_abi_suffix(name: str) -> str:
    # the Go linker's mangleABIName: "<name>.abi<version>" (".abi0") or "<name>.abiinternal"
    dot = name.rfind(".abi")
    tail = name[dot + 4 :]
    if dot > 0 and (tail == "internal" or tail.isdigit()):
        slash = name.rfind("/", 0, dot)  # the qualifier's dot is after the import path's last "/"
        if name.find(".", slash + 1, dot) > slash + 1:
            return name[:dot]
    return name


# linker-generated Go symbols (no package: "type" and "go" are keywords) and cgo's C glue
_GO_GENERATED_PREFIXES = ("type:", "type.", "go:", "go.", "gclocals", "_cgo_", "x_cgo_")


def looks_go(name: str) -> bool:
    # a dot that is not a C compiler clone suffix: "pkg.F", "a/b.(*T).M", but not "f.cold", "f.1234"
    dot = name.find(".")
    return dot > 0 and go_after_dot(name, dot)


def go_after_dot(name: str, dot: int) -> bool:
    end = name.find(".", dot + 1)
    word = name[dot + 1 :] if end < 0 else name[dot + 1 : end]
    if word in _CLONE_WORDS or word.isdigit():
        return not is_clone_suffix(name[dot:])
    return True


_CLONE_WORDS = frozenset(
    {"cold", "part", "isra", "constprop", "lto_priv", "localalias", "clone", "hot", "warm"}
)


def is_clone_suffix(suffix: str) -> bool:
    # ".cold", ".part.0", ".isra.0.cold", ".constprop.0.isra.0", ".lto_priv.0", ".1234"
    return all(word in _CLONE_WORDS or word.isdigit() for word in suffix[1:].split("."))


def go_package_path(name: str) -> str:
    """The import path of the package a Go function belongs to; "" when it has none.

    ``github.com/containerd/containerd/v2/core/content.(*Store).Info`` ->
    ``github.com/containerd/containerd/v2/core/content``. The package ends at the first ``.``
    after the last ``/``: the linker escapes dots of the last path element as ``%2e``
    (``gopkg.in/yaml%2ev3.Unmarshal`` -> ``gopkg.in/yaml.v3``), and ``%xx`` escapes are decoded.
    Receivers ``(...)`` and type arguments ``[...]`` may be followed by other paths (a promoted
    unexported method is qualified with its own package: ``k8s.io/x/resource.(*T).gopkg.in/inf%2ev0.quo``),
    so only the text before the first ``(`` or ``[`` is searched. A ``vendor/`` prefix (Go's own
    vendored copies, or GOPATH-era ``.../vendor/...``) is removed: the result is the path of the
    code's real package. Linker-generated names (``type:.eq.*``, ``go:buildid``, ``go.shape.*``),
    cgo glue and C names give "".
    """
    name = strip_symbol_decorations(name)
    if not name or name.startswith(_GO_GENERATED_PREFIXES) or name[:2] in ("_Z", "_R"):
        return ""
    head = name
    for stop in ("(", "["):  # never part of an import path; what follows may contain paths
        cut = head.find(stop)
        if cut >= 0:
            head = head[:cut]
    slash = head.rfind("/")
    dot = head.find(".", slash + 1)
    if dot <= slash + 1:
        return ""
    path = head[:dot]
    if slash < 0 and is_clone_suffix(head[dot:]):
        return ""  # a C clone such as "memcpy.part.0", not a Go package
    if "%" in path:
        path = _unescape_go_path(path)
    if path.startswith("vendor/"):
        path = path[len("vendor/") :]
    vendored = path.rfind("/vendor/")
    if vendored >= 0:
        path = path[vendored + len("/vendor/") :]
    return path


def _unescape_go_path(path: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(path):
        c = path[i]
        if c == "%" and i + 2 < len(path) + 0 and _is_hex2(path[i + 1 : i + 3]):
            out.append(chr(int(path[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _is_hex2(text: str) -> bool:
    return len(text) == 2 and not text.lower().strip(HEX)
