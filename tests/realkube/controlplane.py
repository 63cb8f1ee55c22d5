"""A real Kubernetes v1.20 control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

The binaries: kube-apiserver and kube-controller-manager built from Debian's
``kubernetes`` source package by ``scripts/kube/build.sh`` (``make kube``),
etcd from Debian's ``etcd-server`` (installed by the same script).

- etcd listens on loopback ports, data in a temporary directory.
- kube-apiserver serves HTTPS on a loopback port with certificates made here
  by ``openssl`` (a throwaway CA, a serving certificate for 127.0.0.1, an admin
  client certificate in ``system:masters``), authorizes with Node + RBAC,
  signs ServiceAccount tokens (TokenRequest) with a key made here, and writes
  an audit log (JSON lines) to a file: every request at Metadata level,
  requests for our own kinds (``stellaops.io``) at Request level (with the body).
- kube-controller-manager runs the controllers the tests need: the
  ServiceAccount (``default`` SAs, which pod admission waits for) and token
  controllers, the garbage collector and the namespace controller.

``Client`` is a small synchronous JSON client for the tests (admin or any bearer token).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "kube" / "build.sh"
SETUP_HINT = (
    "kube-apiserver/kube-controller-manager v1.20 are not built, or etcd is missing: "
    "run `make kube` (scripts/kube/build.sh builds them from Debian's kubernetes source "
    "package into .cache/kube/, about 10 minutes once; then cached)"
)

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        # Our own kinds with the request body, so a test can tell what a write carried
        # (tests/realkube/test_status_subresource.py: status only through /status).
        {"level": "Request", "resources": [{"group": "stellaops.io"}]},
        {"level": "Metadata"},
    ],
}


class SetupError(RuntimeError):
    pass


def find_binaries() -> tuple[Path, Path]:
    """(kube bin dir, etcd), or SetupError naming the make target."""
    bindir = os.environ.get("STELLAOPS_KUBE_BIN")
    if not bindir:
        done = subprocess.run([str(BUILD_SCRIPT), "--print"], capture_output=True, text=True, check=False)
        bindir = done.stdout.strip() if done.returncode == 0 else ""
    etcd = shutil.which("etcd")
    if not bindir or etcd is None:
        raise SetupError(SETUP_HINT)
    path = Path(bindir)
    for name in ("kube-apiserver", "kube-controller-manager"):
        if not os.access(path / name, os.X_OK):
            raise SetupError(SETUP_HINT)
    return path, Path(etcd)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """CA, serving cert (127.0.0.1/localhost), admin client cert (system:masters), SA signing key."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=stellaops-realkube-ca",
        cwd=d,
    )
    (d / "serving.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    (d / "client.ext").write_text(
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
    )
    for name, subj, ext in (
        ("serving", "/CN=kube-apiserver", "serving.ext"),
        ("admin", "/O=system:masters/CN=stellaops-realkube-admin", "client.ext"),
    ):
        _openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj, cwd=d)
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            f"{name}.crt",
            cwd=d,
        )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


class ApiError(Exception):
    def __init__(self, status: int, body: Any, what: str) -> None:
        super().__init__(f"{what}: {status} {body}")
        self.status = status
        self.body = body


class Client:
    """Synchronous JSON client for https://127.0.0.1:<port>: admin (client cert) or a bearer token."""

    def __init__(self, port: int, pki: Path, *, token: str | None = None) -> None:
        self.port = port
        self.token = token
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self._plural_cache: dict[tuple[str, str], tuple[str, bool]] = {}
        if token is None:
            self.ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        headers = {"Accept": "application/json", "User-Agent": "stellaops-realkube-test"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        url = path + ("?" + urlencode(params) if params else "")
        try:
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        if resp.status >= 400:
            raise ApiError(resp.status, parsed, f"{method} {path}")
        return parsed

    # -- objects ---------------------------------------------------------------------------

    def _plural(self, api_version: str, kind: str) -> tuple[str, bool]:
        key = (api_version, kind)
        if key not in self._plural_cache:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            for res in self.request("GET", base)["resources"]:
                if res["kind"] == kind and "/" not in res["name"]:
                    self._plural_cache[key] = (res["name"], res["namespaced"])
                    break
            else:
                raise KeyError(f"{kind} not served by {api_version}")
        return self._plural_cache[key]

    def path(self, api_version: str, kind: str, name: str | None = None, namespace: str | None = None) -> str:
        plural, namespaced = self._plural(api_version, kind)
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced:
            base += f"/namespaces/{namespace or 'default'}"
        return f"{base}/{plural}" + (f"/{quote(name)}" if name else "")

    def create(self, obj: dict[str, Any]) -> Any:
        meta = obj["metadata"]
        return self.request(
            "POST", self.path(obj["apiVersion"], obj["kind"], None, meta.get("namespace")), obj
        )

    def apply(self, obj: dict[str, Any]) -> Any:
        """Create, or replace the spec/data of an existing object (kubectl-apply-like enough for tests)."""
        try:
            return self.create(obj)
        except ApiError as e:
            if e.status != 409:
                raise
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        patch = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        try:
            return self.request("GET", self.path(api_version, kind, name, namespace))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None, **params: str) -> list[Any]:
        plural, namespaced = self._plural(api_version, kind)
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced and namespace:
            base += f"/namespaces/{namespace}"
        return list(self.request("GET", f"{base}/{plural}", params=params or None)["items"])

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str = "",
    ) -> Any:
        path = self.path(api_version, kind, name, namespace) + (f"/{subresource}" if subresource else "")
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
    ) -> bool:
        try:
            self.request(
                "DELETE",
                self.path(api_version, kind, name, namespace),
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
            )
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        return True


def wait_for(check: Callable[[], Any], *, what: str, timeout: float = 60.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def for_1_20(doc: Any) -> Any:
    """A CRD as Kubernetes 1.20 accepts it, for the test setup only.

    - no ``x-kubernetes-validations`` (CEL): 1.20 knows none (the operator's own
      validation of the same rules is tested elsewhere);
    - no ``default: ""``: 1.20 reads an empty-string default as null and refuses
      it ("must be of type string"); Tetragon's CRDs have twelve.
    """
    if isinstance(doc, dict):
        return {
            k: for_1_20(v)
            for k, v in doc.items()
            if k != "x-kubernetes-validations" and not (k == "default" and v == "")
        }
    if isinstance(doc, list):
        return [for_1_20(v) for v in doc]
    return doc


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in ``tmp``, stopped by ``stop()``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bindir, self.etcd = find_binaries()
        self.pki = tmp / "pki"
        self.audit_log = tmp / "audit.log"
        self.port = 0
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.admin: Client | None = None

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        logfile = self.tmp / f"{name}.log"
        with logfile.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append((name, proc, logfile))
        return proc

    def _check_alive(self) -> None:
        for name, proc, logfile in self.procs:
            if proc.poll() is not None:
                tail = logfile.read_text(errors="replace")[-3000:]
                raise SetupError(f"{name} exited with {proc.returncode}:\n{tail}")

    def start(self, crds: Sequence[Path] = ()) -> None:
        """Start etcd and kube-apiserver, install ``crds``, then start kube-controller-manager.

        The CRDs go in first: the garbage collector discovers the kinds it watches when it starts
        and then only every 30 s (v1.20), so an owner of a kind installed after it is not seen
        deleted until that resync (a garbage-collection test waited it out, ~25 s).
        """
        make_pki(self.pki)
        etcd_port, peer_port, self.port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(self.etcd),
                "--name=realkube",
                f"--data-dir={self.tmp / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=realkube=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        (self.tmp / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                str(self.bindir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                "--insecure-port=0",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--endpoint-reconciler-type=none",  # a loopback address is no valid Endpoints address
                f"--audit-policy-file={self.tmp / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--watch-cache=true",
                "--v=1",
            ],
        )
        self.admin = Client(self.port, pki)
        wait_for(self._ready, what="kube-apiserver /readyz", timeout=60)
        if crds:
            self.install_crds(list(crds))
        kubeconfig = self.write_kubeconfig(self.tmp / "admin.kubeconfig", token=None)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bindir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--port=0",
                "--secure-port=0",
                "--controllers=serviceaccount,serviceaccount-token,garbagecollector,namespace",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--concurrent-gc-syncs=5",
                "--v=1",
            ],
        )

    def _ready(self) -> bool:
        self._check_alive()
        assert self.admin is not None
        try:
            self.admin.request("GET", "/readyz")
        except (OSError, ApiError):
            return False
        return True

    def stop(self) -> None:
        for _name, proc, _log in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _name, proc, _log in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    # -- credentials -------------------------------------------------------------------------

    def write_kubeconfig(self, path: Path, *, token: str | None) -> Path:
        user: dict[str, str] = (
            {"token": token}
            if token
            else {
                "client-certificate": str(self.pki / "admin.crt"),
                "client-key": str(self.pki / "admin.key"),
            }
        )
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "realkube",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.port}",
                        "certificate-authority": str(self.pki / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "realkube", "context": {"cluster": "realkube", "user": "user"}}],
            "current-context": "realkube",
        }
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        return path

    def service_account_token(self, namespace: str, name: str, *, seconds: int = 3600) -> str:
        """A bound token of the ServiceAccount, from the TokenRequest API."""
        assert self.admin is not None
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        }
        out = self.admin.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body)
        return str(out["status"]["token"])

    # -- installation ------------------------------------------------------------------------

    def install_crds(self, paths: list[Path]) -> None:
        assert self.admin is not None
        names = []
        for path in paths:
            for doc in load_yaml(path):
                self.admin.apply(for_1_20(doc))
                names.append(doc["metadata"]["name"])
        for name in names:
            wait_for(functools.partial(self._established, name), what=f"CRD {name} Established")

    def _established(self, name: str) -> bool:
        assert self.admin is not None
        crd = self.admin.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        conds = (crd or {}).get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    # -- audit -------------------------------------------------------------------------------

    def audit_offset(self) -> int:
        """Where the audit log ends now: ``audit_events(since=...)`` reads what comes after."""
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def audit_events(self, *, since: int = 0) -> list[dict[str, Any]]:
        if not self.audit_log.exists():
            return []
        with self.audit_log.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


@contextlib.contextmanager
def running(tmp: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()


class OperatorProcess:
    """``python -m stellaops_runtime.cli.main operator`` against the control plane, logging to a file."""

    def __init__(
        self,
        cp: ControlPlane,
        kubeconfig: Path,
        *,
        name: str = "operator",
        priority: int = 10,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.log = cp.tmp / f"{name}.log"
        self.argv = [
            str(REPO / ".venv" / "bin" / "python"),
            "-m",
            "stellaops_runtime.cli.main",
            "operator",
            f"--kubeconfig={kubeconfig}",
            f"--priority={priority}",
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env["HOME"] = str(self.log.parent)  # no ~/.kube/config of the machine's
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# -- the operator's own requests, from the audit log --------------------------------------------

OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT = "stellaops-system", "stellaops-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def start_operator_as_service_account(
    cp: ControlPlane, directory: Path, *, name: str, extra: tuple[str, ...] = ()
) -> OperatorProcess:
    """The operator CLI with a TokenRequest token of its ServiceAccount (the manifests' RBAC)."""
    token = cp.service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
    kubeconfig = cp.write_kubeconfig(directory / f"{name}.kubeconfig", token=token)
    return OperatorProcess(cp, kubeconfig, name=name, extra=extra).start()


def is_peering_keepalive(event: dict[str, Any], *, peering: str) -> bool:
    """kopf's keep-alive of the operator's ClusterKopfPeering ``peering``, and nothing else."""
    ref = event.get("objectRef") or {}
    return (
        event.get("verb") == "patch"
        and ref.get("apiGroup") == "kopf.dev"
        and ref.get("resource") == "clusterkopfpeerings"
        and ref.get("name") == peering
        and not ref.get("subresource")
    )


def operator_writes(events: list[dict[str, Any]], *, peering: str) -> list[str]:
    """The operator's write requests in ``events`` except its peering keep-alives, one line each."""
    out = []
    for e in events:
        if (e.get("user") or {}).get("username") != OPERATOR_USER or e.get("verb") not in WRITE_VERBS:
            continue
        if e.get("stage") not in (None, "ResponseComplete") or is_peering_keepalive(e, peering=peering):
            continue
        out.append(f"{e['verb']} {e.get('requestURI')} -> {(e.get('responseStatus') or {}).get('code')}")
    return out
