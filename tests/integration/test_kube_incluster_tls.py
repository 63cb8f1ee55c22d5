"""The in-cluster credentials over real TLS, in a fresh interpreter that never loads ``kubernetes``.

A node's agent writes its ObservationNode with kube/client.py, which reads the pod's service
account itself (kube/incluster.py) instead of importing the ``kubernetes`` package (issue 13:
~20 MB of every node's agent). Here an HTTPS server (aiohttp, a certificate for 127.0.0.1
made for the test) plays the API server and accepts only the token the service-account file
holds now. A fresh interpreter, in-cluster by its environment, reads a Node through
``KubeClient``, has its token rotated under it (the server answers 401 to the old one: the
client reads the file again and sends the request once more), and must have verified the
server against the account's CA and loaded neither ``kubernetes`` nor what it imports.
A server whose certificate the CA did not sign is refused. Both transports: aiohttp (the
operator's) and plain asyncio streams (the agent's, which must not load aiohttp either).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp.web
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Imported by the kubernetes package's loaders, never by the in-cluster path.
NEVER = ("kubernetes", "requests", "urllib3", "oauthlib", "websocket", "dateutil", "pydantic")

CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from stellaops_runtime.kube import incluster
    incluster.DIRECTORY = sys.argv[1]  # where the kubelet would mount the account
    from stellaops_runtime.kube.client import KubeClient
    from stellaops_runtime.kube.resources import NODES

    async def main():
        async with await KubeClient.connect(transport=sys.argv[2]) as kube:
            source = kube.connection.source
            first = await kube.get(NODES, name="n1")
            Path(sys.argv[1], "token").write_text("rotated-token")  # the kubelet rotates it
            second = await kube.get(NODES, name="n1")
        names = [first["metadata"]["name"], second["metadata"]["name"]]
        print(json.dumps([source, *names, sorted(sys.modules)]))

    asyncio.run(main())
    """
)


def _certificate(d: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA certificate for 127.0.0.1 and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = d / f"{name}.crt", d / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def _server(cert: Path, key: Path, account: Path, seen: list[str]) -> tuple[aiohttp.web.AppRunner, int]:
    async def node(request: aiohttp.web.Request) -> aiohttp.web.Response:
        header = request.headers.get("Authorization", "")
        seen.append(header)
        if header != f"bearer {(account / 'token').read_text().strip()}":
            return aiohttp.web.json_response({"kind": "Status", "code": 401}, status=401)
        return aiohttp.web.json_response({"kind": "Node", "metadata": {"name": request.match_info["name"]}})

    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/nodes/{name}", node)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def _client(account: Path, port: int, transport: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(port),
        "HOME": str(account.parent / "home"),  # no kubeconfig to fall back to
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        str(account),
        transport,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return subprocess.CompletedProcess(CLIENT, proc.returncode or 0, out.decode(), err.decode())


@pytest.mark.parametrize("transport", ["aiohttp", "streams"])
async def test_in_cluster_client_over_tls_rotates_its_token_without_kubernetes(
    tmp_path: Path, transport: str
) -> None:
    cert, key = _certificate(tmp_path, "apiserver")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("first-token\n")
    (account / "ca.crt").write_bytes(cert.read_bytes())
    seen: list[str] = []
    runner, port = await _server(cert, key, account, seen)
    try:
        done = await _client(account, port, transport)
    finally:
        await runner.cleanup()
    assert done.returncode == 0, done.stderr[-3000:]
    source, first, second, modules = json.loads(done.stdout.splitlines()[-1])
    assert (source, first, second) == ("in-cluster service account", "n1", "n1")
    # The old token once more after the rotation (refused), then the file's new one.
    assert seen == ["bearer first-token", "bearer first-token", "bearer rotated-token"]
    assert sorted(m for m in modules if m.split(".")[0] in NEVER) == []
    if transport == "streams":  # the agent's (kube/transport.py)
        assert sorted(m for m in modules if m.split(".")[0] in ("aiohttp", "yarl", "multidict")) == []


@pytest.mark.parametrize("transport", ["aiohttp", "streams"])
async def test_a_server_the_accounts_ca_did_not_sign_is_refused(tmp_path: Path, transport: str) -> None:
    cert, key = _certificate(tmp_path, "apiserver")
    other, _ = _certificate(tmp_path, "other-ca")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("first-token")
    (account / "ca.crt").write_bytes(other.read_bytes())
    seen: list[str] = []
    runner, port = await _server(cert, key, account, seen)
    try:
        done = await _client(account, port, transport)
    finally:
        await runner.cleanup()
    assert done.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert seen == []  # no request reached the server, so no token either
