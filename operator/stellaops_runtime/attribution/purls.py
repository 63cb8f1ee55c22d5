"""Package URLs for every ecosystem the attributor knows, built with packageurl-python.

One function per ecosystem, so each PURL form (type, namespace rule,
qualifiers) is written down once; packageurl-python renders them (it sorts
qualifiers and percent-encodes what the spec asks, e.g. ``%40`` for an npm
scope and ``%2B`` for ``+incompatible``). :func:`identity` reduces a PURL to
what names one package version, for matching an SBOM's components against
what the image's own databases say.
"""

from __future__ import annotations

import re

from packageurl import PackageURL, normalize

from stellaops_runtime.attribution.model import Package

_PEP503 = re.compile(r"[-_.]+")


# Control characters and lone surrogates (undecodable bytes of a database read with
# "surrogateescape") have no place in a PURL: packageurl-python would raise UnicodeEncodeError
# on the latter, and silently drop a trailing newline or an all-blank version.
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _render(
    *,
    type: str,
    name: str,
    namespace: str | None = None,
    version: str | None = None,
    **qualifiers: str | None,
) -> str:
    """The PURL text; ``ValueError`` for parts no PURL can carry faithfully.

    Package databases inside an image are attacker-controlled, so every part is
    checked: no control characters or undecodable bytes, a non-empty name
    without ``/`` (it would silently become a namespace), and a version that
    survives the round trip (``" "`` would silently vanish). Callers skip and
    count the one package; the rest of its database still answers.
    """
    quals = {k: v for k, v in qualifiers.items() if v}
    for part in (name, namespace, version, *quals.values()):
        if part and _BAD_CHARS.search(part):
            raise ValueError(
                f"{type} package {name!r}: {part!r} holds a control character or undecodable byte"
            )
    if not name.strip() or "/" in name:
        raise ValueError(f"{type} package name {name!r} is empty or holds '/'")
    try:
        text = PackageURL(
            type=type,
            namespace=namespace or None,
            name=name,
            version=version or None,
            qualifiers=quals or None,
        ).to_string()
        parsed = PackageURL.from_string(text)
    except (TypeError, ValueError, UnicodeError) as e:
        raise ValueError(f"{type} package {name!r}: not a valid package URL: {e}") from None
    if (parsed.version or None) != (version or None):
        raise ValueError(f"{type} package {name!r}: version {version!r} does not survive as a PURL")
    return text


def deb(*, namespace: str, name: str, version: str, arch: str | None, distro: str | None) -> Package:
    """``pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12`` (epoch kept in the version)."""
    return Package(
        _render(type="deb", namespace=namespace, name=name, version=version, arch=arch, distro=distro),
        name,
        version,
    )


def apk(*, namespace: str, name: str, version: str, arch: str | None, distro: str | None) -> Package:
    """``pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1``."""
    return Package(
        _render(type="apk", namespace=namespace, name=name, version=version, arch=arch, distro=distro),
        name,
        version,
    )


def rpm(
    *,
    namespace: str | None,
    name: str,
    version: str,
    release: str,
    epoch: int | None,
    arch: str | None,
    distro: str | None,
) -> Package:
    """``pkg:rpm/fedora/curl@7.50.3-1.fc25?arch=x86_64&distro=fedora-25&epoch=1`` (epoch only when set)."""
    evr = f"{version}-{release}" if release else version
    return Package(
        _render(
            type="rpm",
            namespace=namespace,
            name=name,
            version=evr,
            arch=arch,
            epoch=str(epoch) if epoch is not None else None,
            distro=distro,
        ),
        name,
        evr,
    )


def pypi(*, name: str, version: str) -> Package:
    """``pkg:pypi/packaging@24.0``; packageurl lower-cases the name and turns ``_`` into ``-``."""
    return Package(_render(type="pypi", name=name, version=version), name, version)


def npm(*, name: str, version: str) -> Package:
    """``pkg:npm/left-pad@1.3.0``, ``pkg:npm/%40types/node@20.1.0`` (the scope is the namespace)."""
    namespace, _, bare = name.rpartition("/") if name.startswith("@") else ("", "", name)
    return Package(
        _render(type="npm", namespace=namespace or None, name=bare, version=version), name, version
    )


def golang(*, module: str, version: str | None) -> Package:
    """``pkg:golang/github.com/containerd/containerd@v1.7.2``; no version for ``(devel)``/unknown."""
    namespace, _, name = module.rpartition("/")
    return Package(
        _render(type="golang", namespace=namespace or None, name=name, version=version), module, version
    )


GO_STDLIB = "stdlib"


def golang_stdlib(*, go_version: str) -> Package:
    """``pkg:golang/stdlib@1.19.8`` from the toolchain version ``go1.19.8`` (as syft and trivy write it)."""
    version = go_version.split()[0].removeprefix("go") if go_version else ""
    return Package(
        _render(type="golang", name=GO_STDLIB, version=version or None), GO_STDLIB, version or None
    )


def cargo(*, name: str, version: str) -> Package:
    """``pkg:cargo/serde_json@1.0.108`` (the crate's registry name, as Cargo.lock spells it)."""
    return Package(_render(type="cargo", name=name, version=version), name, version)


def maven(*, group_id: str, artifact_id: str, version: str) -> Package:
    """``pkg:maven/org.apache.commons/commons-lang3@3.14.0``."""
    return Package(
        _render(type="maven", namespace=group_id, name=artifact_id, version=version),
        f"{group_id}:{artifact_id}",
        version,
    )


def purl_text(p: PackageURL) -> str:
    """The purl spec's text of ``p``: packageurl-python's, with a ``/`` in the name written ``%2F``.

    The spec percent-encodes the name as one segment and reads what follows the last ``/`` as the
    name; packageurl-python leaves a name's ``/`` as it is (package-url/packageurl-python#154), so
    the name ``a/b`` was written ``pkg:npm/a/b``, which reads back as the package ``b`` of
    namespace ``a`` (tests/integration/test_purl_encoded_slash.py)."""
    text = p.to_string()
    if "/" not in (p.name or ""):
        return text
    kind, ns, name, *_ = normalize(
        p.type, p.namespace, p.name, p.version, p.qualifiers, p.subpath, encode=True
    )
    head = f"pkg:{kind}/{ns}/" if ns else f"pkg:{kind}/"
    quoted = str(name or "")
    if not text.startswith(head + quoted):  # not packageurl-python's layout: no spelling to correct
        raise ValueError(f"package URL {text!r}: cannot encode the '/' of its name {p.name!r}")
    return head + quoted.replace("/", "%2F") + text[len(head) + len(quoted) :]


def canonical(text: str) -> str:
    """A PURL re-rendered by packageurl-python, a name's ``/`` encoded (ValueError: not a PURL)."""
    return purl_text(PackageURL.from_string(text))


Identity = tuple[str, str, str, str]


def identity(purl: str | PackageURL) -> Identity:
    """(type, namespace, name, version) of a PURL, normalized for matching across tools.

    Qualifiers and subpath are left out: two tools describe the same package
    version with different qualifiers (one adds ``distro``, another
    ``repository_url``). Names compare case-insensitively, PyPI names by
    PEP 503 (``Foo_Bar`` = ``foo-bar`` = ``foo.bar``), Go versions with or
    without the leading ``v``.
    """
    p = PackageURL.from_string(purl) if isinstance(purl, str) else purl
    ptype = p.type.lower()
    name = p.name
    namespace = p.namespace or ""
    version = p.version or ""
    if ptype == "pypi":
        name = _PEP503.sub("-", name).lower()
    elif ptype not in ("golang", "maven"):  # Go module paths and Maven coordinates are case-sensitive
        name = name.lower()
    if ptype == "golang" and version and not version.startswith("v") and version[0].isdigit():
        version = "v" + version if name != GO_STDLIB else version
    if ptype in ("deb", "apk", "rpm", "npm"):
        namespace = namespace.lower()
    return (ptype, namespace, name, version)


def qualifier(purl: str | PackageURL, key: str) -> str | None:
    p = PackageURL.from_string(purl) if isinstance(purl, str) else purl
    value = (p.qualifiers or {}).get(key) if isinstance(p.qualifiers, dict) else None
    return value or None
