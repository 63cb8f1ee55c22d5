"""Real inputs for the package-attribution tests, made with the real tools.

Every package database, SBOM and binary here is produced the way it is in
the field: a virtualenv by ``python -m venv`` + ``pip install`` of real
wheels, SBOMs by cyclonedx-py and sbom4python, an rpm database by Debian's
``rpmbuild`` + ``rpm --root``, a Go binary by ``go build`` (modules vendored,
one replaced by a local directory: there is no module proxy here), a Rust
binary by ``rustc`` with a cargo-auditable ``.dep-v0`` section added by
``objcopy``, a JAR by ``jar``. The only hand-written database is apk's (no
apk tool is packaged for Debian), written from apk's documented format.
The test modules call these from session-scoped fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# Wheels installed into the test virtualenv (exact versions, so PURLs are exact).
WHEELS = {"six": "1.17.0", "packaging": "26.3", "idna": "3.20"}
OLD_SIX = "1.16.0"  # a second environment with another six: a "stale" SBOM
SITE = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a tool; on failure the test fails with its output (not a bare CalledProcessError)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        pytest.fail(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc


def tool(name: str, *extra_dirs: str) -> str:
    path = shutil.which(name) or next(
        (str(Path(d) / name) for d in extra_dirs if (Path(d) / name).is_file()), None
    )
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/setup.sh installs it)")
    return path


# -- this machine ----------------------------------------------------------------------


def dpkg_field(package: str, field: str) -> str:
    return run(["dpkg-query", "-W", "-f", f"${{{field}}}", package]).stdout.strip()


def os_release(root: Path = Path("/")) -> dict[str, str]:
    out: dict[str, str] = {}
    for loc in ("etc/os-release", "usr/lib/os-release"):
        p = root / loc
        if p.exists():
            for line in p.read_text().splitlines():
                k, sep, v = line.partition("=")
                if sep:
                    out[k] = v.strip().strip('"')
            break
    return out


# -- Python -------------------------------------------------------------------------------


def make_venv(root: Path, rel: str, wheels: dict[str, str]) -> Path:
    """A virtualenv at ``root/rel`` with ``wheels`` pip-installed (no deps); returns its python."""
    venv = root / rel
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    spec = [f"{n}=={v}" for n, v in wheels.items()]
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", *spec])
    return python


def cyclonedx_environment(python: Path, out: Path) -> Path:
    """CycloneDX 1.6 JSON of an environment, by cyclonedx-py (cyclonedx-bom)."""
    run([str(VENV_BIN / "cyclonedx-py"), "environment", "--output-reproducible", "-o", str(out), str(python)])
    return out


def sbom4python(root: Path, python_rel: str, out: Path, *, kind: str) -> Path:
    """sbom4python's SBOM (``kind`` spdx or cyclonedx, JSON) of an environment inside ``root``, with files.

    Run from ``root`` with a relative interpreter path, so the file names it
    records (``./opt/app/venv/...``) are paths inside the root. ``--use-pip``
    makes it ask the environment's own pip (sbom4python's PATH ``pip``);
    ``PYTHONPATH`` lets its importlib.metadata see that environment's files.
    """
    site = root / Path(python_rel).parent.parent / SITE
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}", PYTHONPATH=str(site))
    cmd = [str(VENV_BIN / "sbom4python"), "--system", "--use-pip", "--python", python_rel, "--include-file"]
    run([*cmd, "--sbom", kind, "--format", "json", "-o", str(out)], cwd=root, env=env)
    return out


# -- Go -------------------------------------------------------------------------------------

GO_MAIN = """\
package main

import (
	"fmt"
	"os"

	"example.com/greet"
	"example.com/shout"
	"example.com/util/strs"
)

func main() {
	fmt.Fprintln(os.Stdout, shout.Loud(strs.Twice(greet.Hello(os.Args[0]))))
}
"""
GO_GREET = 'package greet\n\n//go:noinline\nfunc Hello(name string) string { return "hello " + name }\n'
GO_STRS = "package strs\n\n//go:noinline\nfunc Twice(s string) string { return s + s }\n"
GO_SHOUT = (
    'package shout\n\nimport "strings"\n\n'
    "//go:noinline\nfunc Loud(s string) string { return strings.ToUpper(s) }\n"
)


def build_go_app(work: Path) -> Path:
    """``example.com/app`` with example.com/greet v1.2.3 and example.com/util v0.4.0 vendored,
    and example.com/shout replaced by the local directory ../shout."""
    go = tool("go", "/usr/lib/go/bin")
    app, shout = work / "app", work / "shout"
    for d in (
        app / "vendor/example.com/greet",
        app / "vendor/example.com/util/strs",
        app / "vendor/example.com/shout",
        shout,
    ):
        d.mkdir(parents=True, exist_ok=True)
    (app / "go.mod").write_text(
        "module example.com/app\n\ngo 1.19\n\nrequire (\n\texample.com/greet v1.2.3\n"
        "\texample.com/util v0.4.0\n\texample.com/shout v0.0.0\n)\n\nreplace example.com/shout => ../shout\n"
    )
    (app / "vendor/modules.txt").write_text(
        "# example.com/greet v1.2.3\n## explicit\nexample.com/greet\n"
        "# example.com/util v0.4.0\n## explicit\nexample.com/util/strs\n"
        "# example.com/shout v0.0.0 => ../shout\n## explicit\nexample.com/shout\n"
        "# example.com/shout => ../shout\n"
    )
    (app / "main.go").write_text(GO_MAIN)
    (app / "vendor/example.com/greet/greet.go").write_text(GO_GREET)
    (app / "vendor/example.com/util/strs/strs.go").write_text(GO_STRS)
    (app / "vendor/example.com/shout/shout.go").write_text(GO_SHOUT)
    (shout / "go.mod").write_text("module example.com/shout\n\ngo 1.19\n")
    (shout / "shout.go").write_text(GO_SHOUT)
    env = dict(os.environ, GOFLAGS="-mod=vendor", GOPROXY="off", GOTOOLCHAIN="local", CGO_ENABLED="0")
    env.setdefault("GOCACHE", str(work / "gocache"))
    run([go, "build", "-o", str(work / "app.bin"), "."], cwd=app, env=env)
    return work / "app.bin"


@dataclass(frozen=True)
class GoVersionM:
    go_version: str
    path: str
    mod: tuple[str, str] | None
    deps: list[tuple[str, str, tuple[str, str] | None]]  # (path, version, replacement (path, version))


def go_version_m(binary: Path) -> GoVersionM:
    """What ``go version -m`` prints, parsed (the reference our own reader is compared with)."""
    out = run([tool("go", "/usr/lib/go/bin"), "version", "-m", str(binary)]).stdout
    lines = out.splitlines()
    go_version = lines[0].rsplit(": ", 1)[1].strip()
    path, mod = "", None
    deps: list[tuple[str, str, tuple[str, str] | None]] = []
    last = None
    for line in lines[1:]:
        fields = line.strip("\n").split("\t")[1:]
        if not fields:
            continue
        key, rest = fields[0], fields[1:]
        if key == "path":
            path = rest[0]
        elif key == "mod":
            mod, last = (rest[0], rest[1]), "mod"
        elif key == "dep":
            deps.append((rest[0], rest[1], None))
            last = "dep"
        elif key == "=>" and last == "dep":
            p, v, _ = deps[-1]
            deps[-1] = (p, v, (rest[0], rest[1] if len(rest) > 1 else ""))
    return GoVersionM(go_version, path, mod, deps)


# -- Rust ----------------------------------------------------------------------------------

RUST_LIB = """\
#[inline(never)]
pub fn shout(s: &str) -> String { s.to_uppercase() }
pub struct Counter { pub n: u64 }
impl Counter {
    #[inline(never)]
    pub fn bump(&mut self) -> u64 { self.n += 1; self.n }
}
"""
RUST_MAIN = """\
fn main() {
    let mut c = mylib::Counter { n: 0 };
    println!("{} {}", mylib::shout("hi"), c.bump());
}
"""


def dep_v0(packages: list[dict[str, object]]) -> bytes:
    """A cargo-auditable ``.dep-v0`` payload: zlib-compressed ``{"packages": [...]}``."""
    return zlib.compress(json.dumps({"packages": packages}).encode())


def build_rust_app(work: Path) -> Path:
    """``stella_app`` linking the crate ``mylib``; no section added yet."""
    rustc = tool("rustc", "/root/.cargo/bin")
    run([rustc, "--edition", "2021", "--crate-type", "rlib", "--crate-name", "mylib", "-C", "opt-level=1",
         "-o", str(work / "libmylib.rlib"), str(_write(work / "mylib.rs", RUST_LIB))])  # fmt: skip
    run([rustc, "--edition", "2021", "--crate-name", "stella_app", "-C", "opt-level=1",
         "--extern", f"mylib={work / 'libmylib.rlib'}", "-o", str(work / "stella_app"),
         str(_write(work / "main.rs", RUST_MAIN))])  # fmt: skip
    return work / "stella_app"


def cargo_app(
    ws: Path, lib: tuple[str, str, str], main_rs: str, *, dependency: str, v0: bool = False
) -> Path:
    """``stella-app`` 0.1.0 built by ``cargo build --offline`` from ``ws``, depending on one local
    crate ``lib`` = (directory, ``Cargo.toml``, ``src/lib.rs``) through the ``[dependencies]`` line
    ``dependency``; ``v0``: v0 symbol mangling. No ``.dep-v0`` section yet (see :func:`add_dep_v0`)."""
    cargo = shutil.which("cargo") or shutil.which("cargo", path="/root/.cargo/bin")
    if cargo is None:
        pytest.skip("cargo not installed")
    directory, manifest, source = lib
    (ws / directory / "src").mkdir(parents=True)
    (ws / directory / "Cargo.toml").write_text(manifest)
    (ws / directory / "src/lib.rs").write_text(source)
    (ws / "app/src").mkdir(parents=True)
    (ws / "app/Cargo.toml").write_text(
        f'[package]\nname = "stella-app"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\n{dependency}\n'
    )
    (ws / "app/src/main.rs").write_text(main_rs)
    env = {**os.environ, "CARGO_TARGET_DIR": str(ws / "target")}
    if v0:
        env["RUSTFLAGS"] = "-C symbol-mangling-version=v0"
    run([cargo, "build", "--offline", "-q"], cwd=ws / "app", env=env)
    return ws / "target/debug/stella-app"


def add_dep_v0(binary: Path, out: Path, payload: bytes) -> Path:
    section = out.with_suffix(".dep-v0")
    section.write_bytes(payload)
    flags = ["--set-section-flags", ".dep-v0=noload,readonly"]
    run([tool("objcopy"), "--add-section", f".dep-v0={section}", *flags, str(binary), str(out)])
    return out


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- rpm -----------------------------------------------------------------------------------

RPM_SPEC = """\
Name: stella-hello
Version: 1.0.3
Release: 7.fc40
Epoch: 2
Summary: attribution test package
License: Apache-2.0
BuildArch: x86_64
%global debug_package %{nil}
%global __os_install_post %{nil}

%description
A tiny package for the attribution tests.

%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/lib/stella
printf '#!/bin/sh\\necho hello\\n' > %{buildroot}/usr/bin/stella-hello
chmod 755 %{buildroot}/usr/bin/stella-hello
printf 'data\\n' > %{buildroot}/usr/lib/stella/data.txt
ln -s ../../bin/stella-hello %{buildroot}/usr/lib/stella/hello-link

%files
/usr/bin/stella-hello
/usr/lib/stella/data.txt
/usr/lib/stella/hello-link
"""


def build_rpm(work: Path) -> Path:
    rpmbuild = tool("rpmbuild")
    (work / "SPECS").mkdir(parents=True, exist_ok=True)
    spec = _write(work / "SPECS" / "stella-hello.spec", RPM_SPEC)
    run([rpmbuild, "--define", f"_topdir {work}", "-bb", str(spec)])
    return next((work / "RPMS").rglob("*.rpm"))


def rpm_install(package: Path, root: Path) -> None:
    """``rpm --root`` into a scratch root, database at the standard /var/lib/rpm (Debian's rpm
    defaults to ~/.rpmdb); the backend is rpm's default here, sqlite."""
    root.mkdir(parents=True, exist_ok=True)
    run([tool("rpm"), "--root", str(root), "--dbpath", "/var/lib/rpm", "--nodeps", "-i", str(package)])


def rpm_query(root: Path, fmt: str) -> str:
    return run([tool("rpm"), "--root", str(root), "--dbpath", "/var/lib/rpm", "-qa", "--qf", fmt]).stdout


# -- Java ----------------------------------------------------------------------------------


def make_jar(work: Path, name: str, poms: list[tuple[str, str, str]]) -> Path:
    """A JAR made by ``jar`` holding one ``pom.properties`` per (groupId, artifactId, version)."""
    jar = tool("jar")
    tree = work / f"{name}.d"
    for g, a, v in poms:
        d = tree / "META-INF" / "maven" / g / a
        d.mkdir(parents=True, exist_ok=True)
        (d / "pom.properties").write_text(f"#Generated by Maven\nartifactId={a}\ngroupId={g}\nversion={v}\n")
    (tree / "README.txt").write_text("attribution test\n")
    run([jar, "cf", str(work / name), "-C", str(tree), "."])
    return work / name
