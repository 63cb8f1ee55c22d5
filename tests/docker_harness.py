"""A private, real Docker Engine for the lifecycle tests, and a registry to pull from.

``Dockerd`` starts Debian's ``dockerd`` (package docker.io) as root with its own
data root, exec root and socket in a temporary directory (it runs its own
containerd there), without a bridge network or iptables changes. ``Registry``
is a minimal read-only registry on 127.0.0.1 serving an image built by
:func:`tests.containerd_harness.build_image`, so ``docker pull`` runs Docker's
real pull path: Docker records a manifest digest only for pulled images.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.containerd_harness import Image, build_image


def image_blobs(image: Image) -> dict[str, bytes]:
    """The blobs of an image layout tar, by digest (``sha256:...``)."""
    out = {}
    with tarfile.open(image.tar) as t:
        for m in t.getmembers():
            if m.name.startswith("blobs/sha256/"):
                f = t.extractfile(m)
                assert f is not None
                out["sha256:" + m.name.rsplit("/", 1)[1]] = f.read()
    return out


class Registry:
    """A minimal read-only OCI distribution registry on 127.0.0.1 serving one image (for ``docker pull``).

    Docker treats registries on 127.0.0.0/8 as insecure (plain HTTP) by default, so a
    pull from it goes through Docker's real pull path and records the manifest digest.
    """

    def __init__(self, image: Image, repo: str = "lifecycle", tag: str = "1") -> None:
        self.blobs = image_blobs(image)
        self.manifest = self.blobs[image.manifest_digest]
        self.digest = image.manifest_digest
        self.repo, self.tag = repo, tag
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def _send(
                self, body: bytes | None, ctype: str = "application/octet-stream", digest: str = ""
            ) -> None:
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                prefix = f"/v2/{registry.repo}/"
                if path in ("/v2/", "/v2"):
                    self._send(b"{}", "application/json")
                elif path in (prefix + "manifests/" + registry.tag, prefix + "manifests/" + registry.digest):
                    self._send(
                        registry.manifest, "application/vnd.oci.image.manifest.v1+json", registry.digest
                    )
                elif path.startswith(prefix + "blobs/"):
                    digest = path.rsplit("/", 1)[1]
                    self._send(registry.blobs.get(digest), digest=digest)
                else:
                    self._send(None)

            do_HEAD = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.ref = f"127.0.0.1:{self.port}/{repo}:{tag}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Dockerd:
    """A private Docker Engine (Debian's docker.io) with its own data root, exec root and socket.

    It runs its own containerd (under its exec root), with no bridge network and no
    iptables changes, so it leaves the host's networking alone; containers run with
    ``--network none``. ``teardown`` removes its containers, processes and directory.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="stellaops-dockerd-"))
        # The socket in a directory of its own: the agent refuses one beside Docker's data root.
        (self.dir / "run").mkdir()
        self.socket = str(self.dir / "run" / "docker.sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "dockerd.log"

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    f"--data-root={self.dir / 'data'}",
                    f"--exec-root={self.dir / 'exec'}",
                    f"--pidfile={self.dir / 'docker.pid'}",
                    f"--host=unix://{self.socket}",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-forward=false",
                    "--ip-masq=false",
                    "--bridge=none",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if (
                subprocess.run(
                    ["docker", "-H", f"unix://{self.socket}", "version"], capture_output=True
                ).returncode
                == 0
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not answer within {timeout}s: {self.log.read_text()[-2000:]}")

    def docker(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(
            ["docker", "-H", f"unix://{self.socket}", *args], capture_output=True, text=True, timeout=120
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout.strip()

    def remove_all(self) -> None:
        ids = self.docker("ps", "-aq", check=False).split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)

    def teardown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.remove_all()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        marker = str(self.dir).encode()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if _names_dir(Path(f"/proc/{entry}/cmdline").read_bytes(), marker):
                        os.kill(int(entry), signal.SIGKILL)
        mounts = []
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                point = line.split()[4]
                if point.startswith(str(self.dir)):
                    mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def docker_available() -> bool:
    return os.geteuid() == 0 and all(shutil.which(b) for b in ("dockerd", "docker", "gcc"))


def running_engine() -> Iterator[tuple[Dockerd, Registry]]:
    """A started private dockerd with the test image pulled from a started registry, for a module fixture
    (``yield from running_engine()``); fails the test where dockerd cannot run here."""
    import pytest

    if not docker_available():
        pytest.fail("dockerd and docker are needed (Debian package docker.io) and root", pytrace=False)
    d = Dockerd()
    reg: Registry | None = None
    try:
        reg = Registry(build_image(d.dir))
        d.start()
        d.docker("pull", reg.ref)
        yield d, reg
    finally:
        d.teardown()
        if reg is not None:
            reg.close()


class SocketProxy:
    """A unix socket forwarding every connection to ``upstream``, that can vanish and come back.

    ``close`` removes the socket and cuts every open connection (as a dying
    daemon does); ``open`` listens again on the same path.
    """

    def __init__(self, path: str, upstream: str) -> None:
        self.path, self.upstream = path, upstream
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.open()

    def open(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                up.connect(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()


def _names_dir(cmdline: bytes, directory: bytes) -> bool:
    """An argument is ``directory`` or a path under it: ``/tmp/x/t1`` must not match ``/tmp/x/t10``
    (another test's harness, whose processes are not ours to kill)."""
    return directory + b"\0" in cmdline or directory + b"/" in cmdline
