"""The container image of `make image`, imported into a real containerd and run with runc (issue 16).

``scripts/image/build.sh`` builds the OCI archive (cached under .cache/image/ by
a hash of its inputs: a few seconds when nothing changed, some minutes cold).
A private containerd (its own root, state and socket in a temporary
directory) imports it with ``ctr -n k8s.io images import``, and runc runs:

- ``stella-runtime --help`` and the demo (scripts/demo.sh, shipped under
  /opt/stellaops/demo) in a container with only a loopback interface;
- the operator entry point as the Deployment runs it: uid 65532, with
  ``$POD_NAME``, against the kmock API server on the host's network, once
  with the image's passwd entry for 65532 and once with an /etc/passwd that
  has none (as in the image of the issue's report);
- the agent's capabilities, as the DaemonSet runs it (root, every capability
  dropped but ``SYS_PTRACE``, the host's PID namespace): reading another
  process's ``/proc/<pid>/maps`` works with ``SYS_PTRACE`` and fails without;
  and, on a host whose bounding set lacks ``SYS_RESOURCE`` (as the node of
  the report), asking for it makes runc refuse the container.

The Containerfile cannot be built here (no registry); it is parsed and
compared with what the offline build produced.

Marked ``image``: ``pytest -m image`` selects these tests. Needs root,
mmdebstrap, containerd and runc (scripts/setup.sh --server).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.image import ENTRYPOINT, IMAGE, USER_ID, VENV
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, wait_for

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = ROOT / ".cache" / "image" / "stellaops-runtime.oci.tar"
CTR = shutil.which("ctr")
CONTAINERD = shutil.which("containerd")
ROOT_REF = "localhost/stellaops-runtime-root:test"  # the same layer, default user root (the agent)

pytestmark = [
    pytest.mark.image,
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or not (CTR and CONTAINERD and shutil.which("mmdebstrap")),
        reason="needs root, mmdebstrap, containerd and ctr (scripts/setup.sh --server)",
    ),
]

sys.path.insert(0, str(ROOT / "scripts" / "image"))
import oci  # noqa: E402


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    """Build (or reuse) the archive; its summary (scripts/image/oci.py ``write_archive``)."""
    start = time.monotonic()
    proc = subprocess.run(["scripts/image/build.sh"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads((ROOT / ".cache" / "image" / "image.json").read_text())
    summary["build_seconds"] = time.monotonic() - start
    return summary


def _read_archive(path: Path) -> tuple[dict, dict, dict, dict]:
    """index.json, the manifest, the config and oci-layout of an OCI archive."""
    with tarfile.open(path) as tar:

        def member(name: str) -> dict:
            f = tar.extractfile(name)
            assert f is not None, name
            return json.loads(f.read())  # type: ignore[no-any-return]

        index = member("index.json")
        (desc,) = index["manifests"]
        manifest = member(f"blobs/sha256/{desc['digest'].split(':', 1)[1]}")
        config = member(f"blobs/sha256/{manifest['config']['digest'].split(':', 1)[1]}")
        return index, manifest, config, member("oci-layout")


def _file_in_layer(name: str) -> str:
    with tarfile.open(_layer_dir() / "layer.tar.gz") as layer:
        f = layer.extractfile(name)
        assert f is not None, name
        return f.read().decode()


def test_archive_is_an_oci_layout_with_the_documented_config(image: dict[str, Any]) -> None:
    index, manifest, config, layout = _read_archive(ARCHIVE)
    assert layout == {"imageLayoutVersion": "1.0.0"}
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == IMAGE
    cfg = config["config"]
    assert cfg["Entrypoint"] == [ENTRYPOINT] and cfg["User"] == f"{USER_ID}:{USER_ID}"
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == IMAGE.rsplit(":", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.source"].startswith("https://")
    # the layer's digests are what the manifest and config say
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert config["rootfs"]["diff_ids"] == [json.loads((_layer_dir() / "layer.json").read_text())["diff_id"]]
    # the size target of issue 16 (uncompressed, in bytes)
    assert image["uncompressed_bytes"] < 250 * 1000 * 1000, image


def _layer_dir() -> Path:
    (d,) = [p for p in (ROOT / ".cache" / "image" / "layers").iterdir() if p.is_dir()]
    return d


def _containerfile() -> dict[str, Any]:
    """The Containerfile's runtime stage: apt packages, user, entry point, env, label keys."""
    text = (ROOT / "Containerfile").read_text().replace("\\\n", " ")
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    runtime = stages[-1]
    (apt,) = re.findall(r"apt-get install -y --no-install-recommends ([^&]+)&&", runtime)
    (user,) = re.findall(r"^USER (\S+)", runtime, flags=re.M)
    (entry,) = re.findall(r"^ENTRYPOINT (.+)$", runtime, flags=re.M)
    (env,) = re.findall(r"^ENV (.+)$", runtime, flags=re.M)
    (labels,) = re.findall(r"^LABEL (.+)$", runtime, flags=re.M)
    return {
        "base": [line.split()[0] for line in stages],
        "packages": sorted(apt.split()),
        "user": user,
        "entrypoint": json.loads(entry),
        "env": sorted(shlex.split(env)),
        "labels": sorted(k for k, _ in (item.split("=", 1) for item in shlex.split(labels))),
        "passwd": re.findall(r"echo '(nonroot:[^']*)' >> /etc/passwd", runtime),
        "prune": "prune.sh /opt/stellaops/venv" in stages[0],
        "demo": sorted(re.findall(r"^COPY (\S+) /opt/stellaops/demo/", stages[0], flags=re.M)),
    }


def test_containerfile_builds_what_make_image_builds(image: dict[str, Any]) -> None:
    cf = _containerfile()
    _, _, config, _ = _read_archive(ARCHIVE)
    cfg = config["config"]
    packages = [
        line.strip()
        for line in (ROOT / "scripts" / "image" / "packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert cf["base"] == ["docker.io/library/debian:bookworm-slim"] * 2
    assert cf["packages"] == sorted(packages)
    assert (cf["user"], cf["entrypoint"]) == (cfg["User"], cfg["Entrypoint"])
    assert cf["env"] == sorted(cfg["Env"]) and f"PATH={VENV}/bin:" in " ".join(cfg["Env"])
    assert cf["labels"] == sorted(k for k in cfg["Labels"] if k != "org.opencontainers.image.created")
    assert cf["prune"]
    assert cf["demo"] == sorted(
        [
            "scripts/demo.sh",
            "examples/agent-config.yaml",
            "tests/fixtures/tetragon/synthetic/stream-a.jsonl.gz",
        ]
    )
    # the passwd entry of the offline build is the Containerfile's
    passwd = _file_in_layer("etc/passwd")
    assert [line for line in passwd.splitlines() if line.startswith("nonroot:")] == cf["passwd"]


# -- containerd ------------------------------------------------------------------------------


class Containerd:
    """A private containerd: its own root, state and socket; the CRI plugin off (no CNI needed)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.socket = tmp / "containerd.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = self.tmp / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.tmp / "root"}"\nstate = "{self.tmp / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
        )
        log = (self.tmp / "containerd.log").open("wb")
        self.proc = subprocess.Popen([str(CONTAINERD), "--config", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while self.ctr("version", check=False).returncode != 0:
            assert self.proc.poll() is None, (self.tmp / "containerd.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "containerd did not start"
            time.sleep(0.2)

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(CTR), "-a", str(self.socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert proc.returncode == 0, f"ctr {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        return proc

    def run(self, ref: str, name: str, *args: str, opts: tuple[str, ...] = (), timeout: float = 300) -> Any:
        return self.ctr("run", "--rm", *opts, ref, name, *args, check=False, timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # containerd leaves its snapshots' mounts and the shims' sockets behind
        subprocess.run(["umount", "-R", str(self.tmp / "root")], capture_output=True)


@pytest.fixture(scope="module")
def containerd(image: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    tmp = Path(f"/tmp/stella-ctrd-{os.getpid()}")  # short: the socket path must fit sockaddr_un
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    c = Containerd(tmp)
    c.start()
    try:
        c.ctr("images", "import", str(ARCHIVE))
        root_archive = tmp_path_factory.mktemp("img") / "root.oci.tar"
        oci.write_archive(_layer_dir(), root_archive, revision="test", ref=ROOT_REF, user="0:0")
        c.ctr("images", "import", str(root_archive))
        yield c
    finally:
        c.stop()
        # Removing the unpacked layer after a container used it as its overlay's lower dir takes
        # 20-30 s of waiting (0.4 s of CPU; 3 s when no container ran), so it is left to an rm in
        # the background: nothing here reads the tree again, and the next start of this fixture
        # (same pid, same path) removes it first. --one-file-system: never into a mount left behind.
        subprocess.run(
            ["sh", "-c", 'rm -rf --one-file-system -- "$1" >/dev/null 2>&1 &', "sh", str(tmp)], check=True
        )


def _is_extension_module(m: tarfile.TarInfo) -> bool:
    """A wheel's extension module in the layer (scripts/image/prune.sh strips them), not *.libs/."""
    return m.isfile() and "/site-packages/" in m.name and m.name.endswith(".so") and ".libs/" not in m.name


def _extension_modules() -> list[str]:
    with tarfile.open(_layer_dir() / "layer.tar.gz") as layer:
        return sorted(m.name for m in layer.getmembers() if _is_extension_module(m))


def test_extension_modules_are_stripped_to_their_dynamic_symbols() -> None:
    from elftools.elf.elffile import ELFFile

    names = []
    # One pass over the gzip stream in archive order (reading members by name in another order
    # seeks back, and a gzip stream seeks back by decompressing again from its start).
    with tarfile.open(_layer_dir() / "layer.tar.gz") as layer:
        for member in layer:
            if not _is_extension_module(member):
                continue
            name = member.name
            names.append(name)
            f = layer.extractfile(member)
            assert f is not None, name
            elf = ELFFile(io.BytesIO(f.read()))
            sections = {s.name for s in elf.iter_sections()}
            assert ".symtab" not in sections and not any(s.startswith(".debug_") for s in sections), name
            init = "PyInit_" + Path(name).name.split(".", 1)[0]
            dynsym = elf.get_section_by_name(".dynsym")
            assert dynsym is not None and dynsym.get_symbol_by_name(init), (name, init)
    assert len(names) > 20, names  # grpc, cryptography, sqlalchemy, aiohttp, yaml, ...
    # the package's own (setup.py), built in the image's build: the symbolizer's native index and
    # the kernel symbol table's native load (_kallsyms.c and _kallsyms_table.c: one module, with
    # zlib; without zlib.h in the build it would be skipped silently)
    for own in ("_symindex", "_kallsyms"):
        assert any(f"/stellaops_runtime/canonical/{own}." in n for n in names), (own, names)
    assert not any("/stellaops_runtime/canonical/_kallsyms_table." in n for n in names), names


def test_stripped_extension_modules_import_inside_the_image(containerd: Containerd) -> None:
    modules = [
        name.split("/site-packages/", 1)[1].split(".", 1)[0].replace("/", ".")
        for name in _extension_modules()
    ]
    script = (
        "import importlib, sys\n"
        "import psycopg  # psycopg_binary refuses to be imported first\n"
        "for m in sys.argv[1:]:\n"
        "    importlib.import_module(m)\n"
        "from stellaops_runtime.canonical import symnative\n"
        "print('imported', len(sys.argv) - 1, 'native index', symnative.loaded(),\n"
        "      'native kallsyms', symnative.kallsyms() is not None)"
    )
    res = containerd.run(IMAGE, "stella-ext", f"{VENV}/bin/python", "-c", script, *modules)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    # the agent indexes symbol tables and loads the kernel's natively (libz.so.1 found in the image)
    assert f"imported {len(modules)} native index True native kallsyms True" in res.stdout


def test_imported_image_runs_help(containerd: Containerd) -> None:
    listed = containerd.ctr("images", "ls", "-q").stdout.split()
    assert IMAGE in listed
    res = containerd.run(IMAGE, "stella-help")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for command in ("agent", "operator", "query", "tetragon-replay"):
        assert command in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_demo_runs_inside_the_image(containerd: Containerd) -> None:
    res = containerd.run(
        IMAGE,
        "stella-demo",
        "/opt/stellaops/demo/scripts/demo.sh",
        opts=("--env", "STELLA_DEMO_DB=/tmp/demo.db"),
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert re.search(r"demo: OK: \d+ hot functions with a package URL", out), out[-4000:]
    assert "crc32" in out and "Traceback" not in out
    # the agent re-executed itself under the image's jemalloc (agent/jemalloc.py)
    assert "memory allocator: jemalloc (/usr/lib/" in out, out[-4000:]


async def _operator_in_image(containerd: Containerd, cluster: Cluster, name: str, *opts: str) -> tuple:
    kubeconfig = cluster.kubeconfig
    os.chmod(kubeconfig.parent, 0o755)
    os.chmod(kubeconfig, 0o644)
    args = [
        str(CTR), "-a", str(containerd.socket), "-n", "k8s.io", "run", "--rm", "--net-host",
        "--env", f"POD_NAME={name}", "--env", "KUBECONFIG=/kube/config",
        "--mount", f"type=bind,src={kubeconfig},dst=/kube/config,options=rbind:ro",
        *opts, IMAGE, name,
        "stella-runtime", "--log-level", "INFO", "operator", "--all-namespaces",
        "--peering=stellaops-runtime", "--coalesce-seconds", "0.05",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        peering = await wait_for(
            lambda: (
                name
                in ((cluster.stored(r.CLUSTER_KOPF_PEERINGS, "stellaops-runtime") or {}).get("status") or {})
            ),
            limit_s=90,
            what=f"the keep-alive of {name} in the peering object",
        )
        assert proc.returncode is None  # still running
    finally:
        containerd.ctr("task", "kill", "-s", "SIGTERM", name, check=False)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    return peering, proc.returncode, (out + err).decode()


@pytest_asyncio.fixture(loop_scope="function")
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path) as c:
        yield c


async def test_operator_starts_in_the_image_as_uid_65532(containerd: Containerd, cluster: Cluster) -> None:
    _, code, out = await _operator_in_image(containerd, cluster, "operator-a")
    assert code == 0 and "getpwuid" not in out and "Traceback" not in out, out[-3000:]


async def test_operator_starts_without_a_passwd_entry(
    containerd: Containerd, cluster: Cluster, tmp_path: Path
) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\n")  # no entry for 65532
    passwd.chmod(0o644)
    mount = ("--mount", f"type=bind,src={passwd},dst=/etc/passwd,options=rbind:ro")
    check = containerd.run(
        IMAGE, "no-passwd", "python3", "-c", "import getpass; getpass.getuser()", opts=mount
    )
    assert check.returncode != 0 and f"uid not found: {USER_ID}" in check.stderr  # the report's condition
    _, code, out = await _operator_in_image(containerd, cluster, "operator-b", *mount)
    assert code == 0 and "getpwuid" not in out and "Traceback" not in out, out[-3000:]


# -- capabilities -------------------------------------------------------------------------------

# containerd's default set, dropped one by one (ctr 1.6 has no "drop ALL").
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)  # fmt: skip
READ_MAPS = (
    "import sys\n"
    "try:\n"
    "    data = open(f'/proc/{sys.argv[1]}/maps').read()\n"
    "    import os; os.listdir(f'/proc/{sys.argv[1]}/root/')\n"
    "except PermissionError as e:\n"
    "    print('refused', e); sys.exit(3)\n"
    "print('read', len(data.splitlines()), 'mappings')\n"
)


def _agent_caps(*add: str) -> tuple[str, ...]:
    # the host's PID namespace, as hostPID: true (this process's; /proc/1 may be unreadable in a sandbox)
    opts: list[str] = ["--with-ns", f"pid:/proc/{os.getpid()}/ns/pid"]
    for cap in DEFAULT_CAPS:
        opts += ["--cap-drop", cap]
    for cap in add:
        opts += ["--cap-add", cap]
    return tuple(opts)


def test_sys_ptrace_is_what_reading_other_processes_needs(containerd: Containerd) -> None:
    """As the DaemonSet runs the agent with Tetragon as its source: root, hostPID, only SYS_PTRACE."""
    assert containerd.proc is not None
    target = str(containerd.proc.pid)  # a root process holding every capability, outside the container
    granted = containerd.run(ROOT_REF, "caps-ptrace", "python3", "-c", READ_MAPS, target,
                             opts=_agent_caps("CAP_SYS_PTRACE"))  # fmt: skip
    assert granted.returncode == 0 and granted.stdout.startswith("read "), granted.stdout + granted.stderr
    refused = containerd.run(ROOT_REF, "caps-none", "python3", "-c", READ_MAPS, target, opts=_agent_caps())
    assert refused.returncode == 3 and "refused" in refused.stdout, refused.stdout + refused.stderr


def _bounding_set() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapBnd in /proc/self/status")


CAP_SYS_RESOURCE = 24


def test_a_capability_the_node_lacks_keeps_the_container_from_starting(containerd: Containerd) -> None:
    if _bounding_set() & (1 << CAP_SYS_RESOURCE):
        pytest.skip("this host's bounding set has SYS_RESOURCE: runc can grant it")
    res = containerd.run(
        ROOT_REF, "caps-resource", "true", opts=_agent_caps("CAP_SYS_PTRACE", "CAP_SYS_RESOURCE")
    )
    assert res.returncode != 0
    assert "apply caps" in res.stderr, res.stderr  # runc's words, which the kubelet reports
    ok = containerd.run(ROOT_REF, "caps-default", "true", opts=_agent_caps("CAP_SYS_PTRACE"))
    assert ok.returncode == 0, ok.stderr


def test_tool_caches_in_the_source_tree_do_not_change_the_image_key(tmp_path: Path) -> None:
    """`make test` runs ruff after `make image`: its .ruff_cache (and __pycache__) must not rebuild it."""
    root = tmp_path / "repo"
    for f in oci.INPUT_FILES:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(f)
    pkg = root / oci.INPUT_TREES[0]
    (pkg / "wire").mkdir(parents=True)
    (pkg / "wire" / "m.py").write_text("x = 1\n")
    before = oci.inputs_key(root)
    (pkg / "wire" / ".ruff_cache" / "0.1").mkdir(parents=True)
    (pkg / "wire" / ".ruff_cache" / "0.1" / "cache").write_bytes(b"\0" * 10)
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    assert oci.inputs_key(root) == before
    (pkg / "wire" / "m.py").write_text("x = 2\n")
    assert oci.inputs_key(root) != before
