"""A private, real containerd for the lifecycle tests, and a tiny image built in the test.

``Containerd`` starts ``/usr/bin/containerd`` (Debian's, installed by
``scripts/setup.sh --server``) as root with its own root, state and socket in
a temporary directory and the CRI plugin disabled, so it never touches the
host's containerd. It can be killed and started again on the same (or another)
socket with the same root and state, as a node's containerd restarts; running
containers survive that in their shims. ``teardown`` kills and removes every
container it ran, the shims it started (found by its state directory in their
command line), unmounts what is left under its directory and removes it.

``build_image`` compiles a statically linked C program (``gcc -static``,
cached under ``.cache/lifecycle/``) and writes it as the one layer of an OCI
image layout tar, which ``ctr images import`` loads; the manifest digest is
computed here, so tests compare the runtime's digest with one they know.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "lifecycle"
SETUP_HINT = (
    "containerd, ctr and runc are needed (run scripts/setup.sh --server) and the tests must run as root"
)

# The program in the image: "sleep N" sleeps, "exit N" exits N, "eat" allocates until killed.
PROGRAM = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "sleep") == 0) { sleep(atoi(argv[2])); return 0; }
    if (argc > 2 && strcmp(argv[1], "exit") == 0) return atoi(argv[2]);
    if (argc > 1 && strcmp(argv[1], "eat") == 0) {
        for (;;) { char *p = malloc(1 << 20); if (p) memset(p, 1, 1 << 20); }
    }
    return 0;
}
"""


def available() -> bool:
    return os.geteuid() == 0 and all(shutil.which(b) for b in ("containerd", "ctr", "runc", "gcc"))


def static_program() -> Path:
    """The image's program, compiled once (keyed by its source) into .cache/lifecycle/."""
    key = hashlib.sha256(PROGRAM.encode()).hexdigest()[:16]
    out = CACHE / f"prog-{key}"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        src = CACHE / f"prog-{key}.c"
        src.write_text(PROGRAM)
        tmp = out.with_suffix(".tmp")
        subprocess.run(["gcc", "-static", "-O2", "-o", str(tmp), str(src)], check=True)
        tmp.rename(out)
    return out


@dataclass(frozen=True)
class Image:
    tar: Path
    ref: str
    manifest_digest: str


def build_image(directory: Path, ref: str = "test.local/lifecycle:1", env: tuple[str, ...] = ()) -> Image:
    """An OCI image layout tar holding the static program as ``/prog`` (entrypoint) in one layer."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest, len(data)

    layer = io.BytesIO()
    program = static_program().read_bytes()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("prog")
        info.size, info.mode, info.mtime = len(program), 0o755, 0
        t.addfile(info, io.BytesIO(program))
    layer_digest, layer_size = blob(layer.getvalue())
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/prog"], "Cmd": ["sleep", "600"], "Env": ["PATH=/", *env]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config_digest, config_size = blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    manifest_digest, manifest_size = blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    tar_path = directory / f"{ref.replace('/', '_').replace(':', '_')}.tar"
    with tarfile.open(tar_path, "w") as t:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add(f"blobs/sha256/{digest.split(':', 1)[1]}", data)
    return Image(tar=tar_path, ref=ref, manifest_digest=manifest_digest)


class Containerd:
    """One private containerd process (see the module docstring)."""

    def __init__(self, namespace: str = "k8s.io") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="stellaops-ctd-"))
        self.root = self.dir / "root"
        self.state = self.dir / "state"
        # The socket in a directory of its own, as a node's /run/containerd: the agent refuses a socket
        # whose directory holds containerd's root (agent/runtime_target.py), as this one does.
        (self.dir / "run").mkdir()
        self.socket = str(self.dir / "run" / "containerd.sock")
        self.namespace = namespace
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "containerd.log"
        self.address = self.socket

    def _config(self, address: str) -> Path:
        path = self.dir / "config.toml"
        path.write_text(
            "version = 2\n"
            f'root = "{self.root}"\n'
            f'state = "{self.state}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            "[grpc]\n"
            f'  address = "{address}"\n'
            "[ttrpc]\n"
            f'  address = "{address}.ttrpc"\n'
        )
        return path

    def start(self, address: str | None = None, timeout: float = 20.0) -> None:
        """Start containerd serving on ``address`` (default: its own socket) and wait until it answers."""
        self.address = address or self.socket
        cfg = self._config(self.address)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"containerd exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            r = subprocess.run(["ctr", "-a", self.address, "version"], capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"containerd did not answer within {timeout}s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL containerd (its socket goes away; shims and containers keep running)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)

    def ctr(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(
            ["ctr", "-a", self.address, "-n", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def ctr_status(self, *args: str) -> int:
        """Run ctr and return its exit status (``task exec`` exits with the process's status)."""
        return subprocess.run(
            ["ctr", "-a", self.address, "-n", self.namespace, *args], capture_output=True, timeout=60
        ).returncode

    def import_image(self, image: Image) -> None:
        self.ctr("images", "import", str(image.tar))

    def task_pid(self, container_id: str) -> int:
        for line in self.ctr("task", "ls").splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == container_id:
                return int(fields[1])
        raise KeyError(container_id)

    def remove_all(self) -> None:
        """Kill and remove every task and container in the namespace."""
        for line in self.ctr("task", "ls", check=False).splitlines()[1:]:
            cid = line.split()[0]
            self.ctr("task", "kill", "-s", "9", cid, check=False)
        for line in self.ctr("task", "ls", check=False).splitlines()[1:]:
            self.ctr("task", "rm", "-f", line.split()[0], check=False)
        for cid in self.ctr("container", "ls", "-q", check=False).split():
            self.ctr("container", "rm", cid, check=False)

    def _own_processes(self) -> list[int]:
        """Pids of shims (and their children) whose command line names our directory."""
        mine = []
        marker = str(self.dir).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                if _names_dir(Path(f"/proc/{entry}/cmdline").read_bytes(), marker):
                    mine.append(int(entry))
        return mine

    def teardown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.remove_all()
        self.kill()
        for pid in self._own_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        mounts = []
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                point = line.split()[4]
                if point.startswith(str(self.dir)):
                    mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class Watcher:
    """Runs a ContainerdObserver on its own event loop thread and collects its events.

    Tests drive containerd with ``ctr`` from the test thread and wait here for
    the events that must follow; ``query`` runs a function on the observer's
    loop (so registry reads never race its updates).
    """

    def __init__(self, observer: Any) -> None:
        self.observer = observer
        self.events: list[Any] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lifecycle-watcher", daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        self.wait_synced()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            async for ev in self.observer.events(self._stop):
                with self._cond:
                    self.events.append(ev)
                    self._cond.notify_all()

        try:
            self._loop.run_until_complete(main())
        except BaseException as e:  # surfaced by wait_for / close
            self._error = e
        finally:
            with self._cond:
                self._cond.notify_all()

    def query(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout)

    def unread_ooms(self) -> int:
        """New cgroups the observer's OOM watch found gone before it could open them."""
        return int(self.query(lambda: self.observer.oom_watch.counts().unread))

    def assert_oom_killed(self, die: Any, unread_before: int) -> int:
        """``die`` (of a container the kernel OOM-killed) says so, or, when its cgroup was gone before
        the observer could open its counter (counted in ``unread``), says it is not known: never
        "not OOM-killed". Returns the unread count now, for the next container."""
        unread = self.unread_ooms()
        known = die.oom_killed is True and unread == unread_before
        unknown = die.oom_killed is None and unread == unread_before + 1
        assert die.exit_code == 137 and (known or unknown), (
            die.exit_code,
            die.oom_killed,
            unread_before,
            unread,
        )
        return unread

    def wait_record(
        self, container_id: str, field: str, want: Any, timeout: float = 10.0, namespace: str = ""
    ) -> None:
        """Wait until the registry's record of the container has ``field`` equal to ``want``."""
        deadline = time.monotonic() + timeout
        registry = self.observer.registry
        while (got := self.query(lambda: getattr(registry.get(namespace, container_id), field))) != want:
            if time.monotonic() > deadline:
                raise AssertionError(f"{container_id[:12]}: registry {field} is {got!r}, not {want!r}")
            time.sleep(0.05)

    def wait_synced(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.query(self.observer.synced.is_set):
            if time.monotonic() > deadline:
                raise AssertionError(f"observer not synced within {timeout}s: {self.observer.stats}")
            time.sleep(0.05)

    def wait_for(self, pred: Callable[[Any], bool], timeout: float = 20.0) -> Any:
        """The first collected event matching ``pred`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                if self._error is not None:
                    raise AssertionError(f"observer failed: {self._error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event within {timeout}s; got {self.events}")
                self._cond.wait(left)

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "observer did not stop"
        self._loop.close()
        if self._error is not None:
            raise self._error


def running() -> Iterator[Containerd]:
    """A started private containerd for a module's tests (``yield from running()`` in a fixture);
    fails with the setup hint where the machine cannot run one."""
    if not available():
        import pytest

        pytest.fail(SETUP_HINT, pytrace=False)
    c = Containerd()
    try:
        c.start()
        yield c
    finally:
        c.teardown()


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether ``check()`` becomes true within ``seconds`` (a runtime's late report had time to land)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _names_dir(cmdline: bytes, directory: bytes) -> bool:
    """An argument is ``directory`` or a path under it: ``/tmp/x/t1`` must not match ``/tmp/x/t10``
    (another test's harness, whose processes are not ours to kill)."""
    return directory + b"\0" in cmdline or directory + b"/" in cmdline
