"""Issue 11: no message prints a password, whatever shape the URL (or DSN, or error text) holding it has.

Each malformed form goes through :func:`redact`, through the store's
``safe_url``/``normalize_url``/``open_store`` and through config validation;
the secret must never appear and the host must (the message stays useful).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import make_url

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.node_status import build_status
from stellaops_runtime.contracts.config import ConfigError, TetragonConfig, load_config, parse_config
from stellaops_runtime.contracts.redact import MASK, redact, redact_error
from stellaops_runtime.kube.client import Connection
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource, service_address_warning
from stellaops_runtime.sources.tetragon_metrics import TetragonMetricsPoller
from stellaops_runtime.store.engine import StoreConfigError, StoreError, normalize_url, open_store, safe_url


def _pydantic_error(value: str) -> str:
    try:
        TypeAdapter(int).validate_python(value)
    except ValidationError as e:
        return str(e)  # "... [type=int_parsing, input_value='<value>', input_type=str]"
    raise AssertionError("not an int, must not validate")


# (text, fragments of the secret that must all be gone, text that must stay)
MALFORMED: list[tuple[str, tuple[str, ...], str]] = [
    ("postgresq://user:s3cret@db/x", ("s3cret",), "user:***@db/x"),
    ("user:s3cret@db/x", ("s3cret",), "@db/x"),
    (":s3cret@db/x", ("s3cret",), "@db/x"),
    ("postgresql://:s3cret@db/x", ("s3cret",), "@db/x"),
    ("postgresql://u:s3cret@db:notaport/x", ("s3cret",), "@db:notaport/x"),
    ("postgresql://u:s3cret@[::1/x", ("s3cret",), "@[::1/x"),
    ("postgresql://u:s3cret@[::1]:5432/x", ("s3cret",), "@[::1]:5432/x"),
    ("postgresql://u:s3cr%40et%2Fx@db/x", ("s3cr", "%40et"), "@db/x"),
    ("postgresql://u:pwone@fragtwo@db/x", ("pwone", "fragtwo"), "@db/x"),
    ("postgresql://u:pwone/fragtwo@db/x", ("pwone", "fragtwo"), "@db/x"),
    ("postgresql://u:pwone:fragtwo@db/x", ("pwone", "fragtwo"), "@db/x"),
    ("postgresql://u:pwone#fragtwo@db/x", ("pwone", "fragtwo"), "@db/x"),
    ("postgresql://u:pwone@fragtwo:fragthree@db:5432/x", ("pwone", "fragtwo", "fragthree"), "@db:5432/x"),
    ("postgresql://u:pwone fragtwo@db/x", ("pwone", "fragtwo"), "@db/x"),
    ("host=db password=s3cret dbname=x", ("s3cret",), "host=db"),
    ("host=db password = 's3 cr\\'et' dbname=x", ("s3", "cr\\'et"), "host=db"),
    ("host=db sslpassword=s3cret", ("s3cret",), "host=db"),
    ("postgresql://u@db/x?sslmode=require&password=s3cret&app=a", ("s3cret",), "sslmode=require"),
    ("postgresql://u@db/x?password=pwone&fragtwo", ("pwone", "fragtwo"), "u@db/x"),
    ("postgresql://u@db/x?sslpassword=s3cret", ("s3cret",), "u@db/x"),
    ("PGPASSWORD=s3cret psql -h db", ("s3cret",), "-h db"),
    (
        "cannot migrate store postgresql://u:s3cret@db:5432/x: connection to server at db failed",
        ("s3cret",),
        "@db:5432/x: connection to server at db failed",
    ),
    (_pydantic_error("postgresql://u:s3cret@db/x"), ("s3cret",), "input_value='postgresql://u:***@db/x'"),
    (repr({"url": "postgresql://u:s3cret@db/x"}), ("s3cret",), "@db/x'"),
    ("expected HOST:PORT, got 'u:s3cret@tetragon:54321x'", ("s3cret",), "@tetragon:54321x'"),
    ("https://admin:s3cret@kube.example:6443/api", ("s3cret",), "@kube.example:6443/api"),
    ("http://tetragon:2112/metrics?token=s3cret", ("s3cret",), "http://tetragon:2112/metrics?token="),
    ("Authorization: Bearer eyJhbGciOi.s3cret", ("eyJhbGciOi", "s3cret"), "Authorization: Bearer"),
    ("store:\n  password: s3cret\n  host: db", ("s3cret",), "host: db"),
    ('{"password": "s3cret", "host": "db"}', ("s3cret",), '"host": "db"'),
    # a scheme glued to what is before it: a terminal escape sequence (ESC [2J clears the screen,
    # ESC [0m resets colours), a digit, nothing at all
    ("\x1b[2Jpostgresql://u:s3cret@db/x", ("s3cret",), "postgresql://u:***@db/x"),
    ("[2Jpostgresql://u:s3cret@db/x", ("s3cret",), "@db/x"),
    ("\x1b[0mredis://:s3cret@cache:6379", ("s3cret",), "redis://:***@cache:6379"),
    ("9postgresql://u:s3cret@db/x", ("s3cret",), "@db/x"),
    ("://u:s3cret@db/x", ("s3cret",), "@db/x"),
]


@pytest.mark.parametrize(("text", "secrets", "kept"), MALFORMED, ids=[m[0][:60] for m in MALFORMED])
def test_redact_masks_the_secret_and_keeps_the_host(text: str, secrets: tuple[str, ...], kept: str) -> None:
    out = redact(text)
    for s in secrets:
        assert s not in out, out
    assert kept in out, out
    assert MASK in out
    assert redact(out) == out  # idempotent: redacting a message twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://u@db:5432/x",
        "sqlite:////var/lib/stella:ops/a@b.db",
        "unix:///var/run/tetragon/tetragon.sock",
        "localhost:54321",
        "http://127.0.0.1:2112/metrics",
        "expected HOST:PORT or unix:///path, got 'x'",
        "registry.example/app:1.2@sha256:" + "ab" * 32,
        "nginx:1.25@sha256:" + "cd" * 32,
        "pkg:deb/debian/openssl@3.0.15-1?arch=amd64",
        "std::vector<int>::push_back@GLIBC_2.2.5",
        "connection to server at db (10.0.0.1), port 5432 failed: Connection refused",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_redact_takes_any_object_and_exceptions() -> None:
    assert redact(ValueError("postgresql://u:s3cret@db/x")) == "postgresql://u:***@db/x"
    assert redact_error(ValueError("password=s3cret")) == "password=***"
    assert redact_error(TimeoutError()) == "TimeoutError"
    assert redact("") == ""


# -- the store ------------------------------------------------------------------

STORE_URLS = [m for m in MALFORMED if "://" in m[0] and "\n" not in m[0] and " " not in m[0]]


@pytest.mark.parametrize(("url", "secrets", "kept"), STORE_URLS, ids=[m[0][:60] for m in STORE_URLS])
def test_store_messages_never_show_the_password(url: str, secrets: tuple[str, ...], kept: str) -> None:
    shown = safe_url(url)
    assert kept in shown
    messages = [shown]
    try:
        u = normalize_url(url)
    except StoreConfigError as e:
        messages.append(str(e))
    else:
        messages.append(safe_url(u))
    for m in messages:
        for s in secrets:
            assert s not in m, m


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pwone@fragtwo@db/x",  # SQLAlchemy would connect to host "fragtwo@db"
        "postgresql://u:pwone@fragtwo/w#x@db/x",  # ... or to "fragtwo", database "w#x@db/x"
        "postgresql://u:pwone@fragtwo:fragthree@db/x",  # ... or fail on port "fragthree@db"
    ],
)
def test_an_unencoded_at_in_a_password_is_a_config_error_naming_the_fix(url: str) -> None:
    with pytest.raises(StoreConfigError) as e:
        normalize_url(url)
    message = str(e.value)
    assert "pwone" not in message and "fragtwo" not in message and "fragthree" not in message
    assert "@db/x" in message and "%40" in message


def test_a_parsed_url_shows_neither_its_password_nor_a_password_parameter() -> None:
    shown = safe_url(make_url("postgresql://u:s3cret@db/x?sslpassword=k3y&sslmode=require"))
    assert "s3cret" not in shown and "k3y" not in shown
    assert "u:***@db/x" in shown and "sslmode=require" in shown


def test_open_store_of_an_unreachable_server_masks_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as e:  # nothing listens there
        open_store(f"postgresql://u:s3cret@127.0.0.1:{port}/x")
    assert "s3cret" not in str(e.value)
    assert f"u:***@127.0.0.1:{port}/x" in str(e.value)


# -- config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresq://user:s3cret@db/x",
        "user:s3cret@db/x",
        "host=db password=s3cret",
        "mysql://u:pwone@fragtwo/w#x@db/x",
    ],
)
def test_a_bad_store_url_in_the_config_is_not_echoed_with_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"store": {"url": url}})
    message = str(e.value)
    for s in ("s3cret", "pwone", "fragtwo"):
        assert s not in message, message
    assert "store.url: expected an SQLAlchemy URL" in message and "db" in message


def test_a_bad_tetragon_address_is_not_echoed_with_its_password() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"tetragon": {"address": "u:s3cret@tetragon:notaport"}})
    assert "s3cret" not in str(e.value)
    assert "got 'u:***@tetragon:notaport'" in str(e.value)


def test_a_yaml_error_says_where_without_quoting_the_url_line(tmp_path: Path) -> None:
    p = tmp_path / "agent.yaml"
    p.write_text('store:\n  url: "postgresql://u:s3cret@db/x\n  migrate: [\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "s3cret" not in str(e.value)
    assert "not valid YAML: while scanning a quoted scalar (line 2, column 8)" in str(e.value)


@pytest.mark.parametrize(
    "text",
    [
        # PyYAML's snippet of a long line is cut with " ... " around the mark: through the password
        # (its @host gone), and from after the scheme (the password whole, no "postgresql:" before it).
        'store:\n  url: "postgresql://app:Hunter2Secret@db:5432/x" x\n',
        'store: {url: "postgresql://app:Hunter2Secret@db.example.com:5432/shop" x}\n',
        'store:\n  spoolPath: /var/lib/x\n  url: "postgresql://app:Hunter2Secret@db.example.com/shop"x\n',
    ],
)
def test_a_yaml_error_on_a_long_url_line_keeps_no_part_of_its_password(tmp_path: Path, text: str) -> None:
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    message = str(e.value)
    for part in ("Hunter2", "2Secret", "Secret@"):
        assert part not in message, message
    assert "not valid YAML" in message and "(line " in message, message
    with pytest.raises(ConfigError) as cm:
        parse_config({"kind": "ConfigMap", "data": {"agent.yaml": text}})
    assert "Hunter2" not in str(cm.value) and "2Secret" not in str(cm.value), str(cm.value)


# -- Tetragon, the ObservationNode, the API server ----------------------------------


def test_a_service_address_warning_masks_the_password() -> None:
    warning = service_address_warning("u:s3cret@tetragon.kube-system.svc:54321")
    assert warning is not None and "s3cret" not in warning
    assert "u:***@tetragon.kube-system.svc:54321" in warning


async def test_a_tetragon_stream_error_masks_the_password(caplog: pytest.LogCaptureFixture) -> None:
    cfg = TetragonConfig.model_validate(
        {"address": "u:s3cret@127.0.0.1:1", "connectionTimeout": 0.2, "reconnectInitialSeconds": 0.1}
    )
    source = TetragonGrpcSource(cfg, queue=EventQueue(100))
    caplog.set_level(logging.INFO)
    try:
        await source._stream_once(asyncio.Event())
    except ConnectionError as e:
        message = str(e)
    else:
        raise AssertionError("nothing listens there: the stream must fail")
    finally:
        await source._close()
    assert "s3cret" not in message and "u:***@127.0.0.1:1" in message
    ok, detail = await source.health()
    assert not ok and "s3cret" not in detail


async def test_a_failed_metrics_scrape_masks_the_url_token(caplog: pytest.LogCaptureFixture) -> None:
    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=500)

    app = web.Application()
    app.add_routes([web.get("/metrics", fail)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    caplog.set_level(logging.DEBUG, logger="stellaops_runtime.sources.tetragon_metrics")
    try:
        poller = TetragonMetricsPoller(f"http://stella:pa55word@127.0.0.1:{port}/metrics?token=s3cret")
        await poller.scrape_once()
        await poller.scrape_once()  # the second failure: the warning that the time is a gap
    finally:
        await runner.cleanup()
    assert poller.stats.scrape_errors == 2
    assert "500" in poller.stats.last_error and "s3cret" not in poller.stats.last_error
    assert "cannot read Tetragon's metrics" in caplog.text
    assert "s3cret" not in caplog.text and "pa55word" not in caplog.text
    assert f"127.0.0.1:{port}/metrics?token=***" in caplog.text


def test_the_observation_node_status_masks_the_tetragon_address() -> None:
    address = "u:s3cret@127.0.0.1:54321"
    tetragon = TetragonInfo(address=address, error=f"UNAVAILABLE: failed to connect to {address}")
    caps = Capabilities(
        kernel_version="6.1.0",
        btf=True,
        bpf_permitted=True,
        tracepoints=True,
        uprobes=True,
        kprobes=True,
        usdt=True,
        ring_buffer=True,
        tetragon=tetragon,
    )
    status = build_status(
        capabilities=caps,
        tetragon=tetragon,
        source="tetragon",
        policies=None,
        existing_conditions=None,
        now="t",
    )
    text = json.dumps(status)
    assert "s3cret" not in text and "u:***@127.0.0.1:54321" in text


def test_a_kubeconfig_connection_never_shows_its_credentials() -> None:
    conn = Connection(
        server="https://admin:s3cret@kube.example:6443",
        source="kubeconfig x",
        password="pw-s3cret",
        authorization="Bearer tok-s3cret",
    )
    assert "s3cret" not in repr(conn) and "s3cret" not in conn.shown_server
    assert "https://admin:***@kube.example:6443" in repr(conn)
