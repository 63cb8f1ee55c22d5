"""End to end: "queries that never lie" (issue 9 §3), through the real CLI.

A store is filled by the real agent (``stella-runtime agent``) from the
synthetic stream replayed by ``stella-runtime tetragon-replay`` over gRPC, and
from a small Tetragon JSON export (``tetragon.exportFile``) holding an image
seen only through exec/exit events and a C++ frame with a mangled name. Then
``stella-runtime query`` is asked: observed (exit 0), not observed while
under observation (exit 1, stating window and posture), unknown (exit 3),
malformed input (exit 2). The coverage it reports is checked exactly against
the stream's ground truth (event times, kinds and images).

The answers are asked through the CLI's own entry point in this process
(tests/cli_run.py ``cli_in_process``: same argv, stdout, stderr and exit
status, without a new interpreter per question); what lives at the process
level keeps a real subprocess: an answer's text on stdout with exit 1, a usage
error on stderr with exit 2, and output closed early (exits 0, 1 and 3).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.store.engine import create_store_engine, migrate, open_store
from stellaops_runtime.store.queries import _as_utc
from stellaops_runtime.store.schema import datetime_to_ns, hot_symbols, observation_windows
from tests.cli_run import cli_in_process
from tests.e2e import harness as h
from tests.node_alive import ALIVE_IMAGE, alive_after

pytestmark = [pytest.mark.e2e]

OBJS = h.stream_objects()
IMAGE = h.EXPECTED["images"][0]["digest"]  # billing-70
IMAGE_NAME = h.EXPECTED["images"][0]["name"]  # registry.example.com/shop/billing-70:1.0
REPO = IMAGE_NAME.rsplit(":", 1)[0]
NEVER_SEEN = "sha256:" + "0" * 63 + "1"
PASSIVE_IMAGE = "sha256:" + "5" * 64
CXX_IMAGE = "sha256:" + "c" * 64
DAY_NS = 86_400 * 1_000_000_000
MANGLED = "_ZN7billing6Ledger4postERKSs"
CXX_NAME = "billing::Ledger::post(std::string const&)"
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
CRC32_INVOKED = h.EXPECTED["uprobe_counts"][f"{IMAGE}|{ZLIB}|crc32"]  # 110

# The posture rank each event evidences (contracts/posture.py): a kernel probe with a user stack
# shows functions (EbpfDeep); without one, and uprobes and USDT, ActiveTracing.
POSTURE_OF = {
    "process_exec": 1,
    "process_exit": 1,
    "process_loader": 1,
    "process_kprobe": 2,
    "process_tracepoint": 2,
    "process_lsm": 2,
    "process_uprobe": 2,
    "process_usdt": 2,
}
STACK_KINDS = ("process_kprobe", "process_tracepoint", "process_lsm")
NAMES = ["None", "Passive", "ActiveTracing", "EbpfDeep", "FullInstrumentation"]


def posture_of(o: dict[str, Any]) -> int:
    kind = next(k for k in o if k.startswith("process_"))
    return 3 if kind in STACK_KINDS and o[kind].get("user_stack_trace") else POSTURE_OF[kind]


def _digest_of(o: dict[str, Any]) -> str:
    kind = next(k for k in o if k.startswith("process_"))
    return o[kind]["process"]["pod"]["container"]["image"]["id"].split("@")[1]


def _time(o: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(o["time"].replace("Z", "+00:00"))


def expected_coverage(objs: list[dict[str, Any]], image: str) -> dict[str, Any]:
    """The coverage the store must report for ``image``: from the events' times, kinds and nodes.

    A window's posture is its weakest container's highest (hotsymbols/window_units.py)."""
    windows: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    containers: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    for o in objs:
        if _digest_of(o) != image:
            continue
        ts = int(_time(o).timestamp())
        key = (o["node_name"], ts - ts % 60)
        windows[key][0] += 1
        body = o[next(k for k in o if k.startswith("process_"))]
        c = containers[key]
        cid = body["process"]["pod"]["container"]["id"]
        c[cid] = max(c.get(cid, 0), posture_of(o))
    for key, c in containers.items():
        windows[key][1] = min(c.values())
    seeing = {k: v for k, v in windows.items() if v[1] >= 3}
    start = min(s for _, s in seeing)
    end = max(s for _, s in seeing) + 60

    def rfc(t: int) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")

    return {
        "start": rfc(start),
        "end": rfc(end),
        "interval": f"{rfc(start)}/{rfc(end)}",
        "windows": len(seeing),
        "nodes": sorted({n for n, _ in seeing}),
        "posture": {
            "lowest": NAMES[min(v[1] for v in seeing.values())],
            "highest": NAMES[max(v[1] for v in seeing.values())],
        },
        "source": "tetragon",
        "event_count": sum(v[0] for v in seeing.values()),
    }


def _retarget(o: dict[str, Any], digest: str) -> dict[str, Any]:
    o = json.loads(json.dumps(o))
    kind = next(k for k in o if k.startswith("process_"))
    image = o[kind]["process"]["pod"]["container"]["image"]
    image["id"] = f"registry.example.com/shop/other@{digest}"
    return o


def export_lines() -> list[dict[str, Any]]:
    """An image seen only through exec/exit, and a kprobe whose user stack has a mangled C++ frame."""
    lifecycle = [o for o in OBJS if "process_exec" in o or "process_exit" in o][:6]
    out = [_retarget(o, PASSIVE_IMAGE) for o in lifecycle]
    k = _retarget(
        next(o for o in OBJS if "process_kprobe" in o and o["process_kprobe"].get("user_stack_trace")),
        CXX_IMAGE,
    )
    k["process_kprobe"]["user_stack_trace"] = [
        {"offset": "4096", "symbol": MANGLED, "module": "/opt/billing/bin/ledger"},
        {"offset": "8192", "symbol": "main", "module": "/opt/billing/bin/ledger"},
    ]
    return [*out, k]


def run_agent(tmp: Path, url: str, *, events: int, **tetragon: Any) -> None:
    """Run the agent until it has received ``events`` events and gone idle, then check it exited 0."""
    cfg, _port = h.write_config(
        tmp,
        tetragon=tetragon,
        store={"url": url},
        symbols={"hostRoot": "/"},
        attribution={"hostRoot": "/"},
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    code, out = h.finish(proc, 120)
    assert code == 0, out
    # Its own final count: a scrape could come after it exited (a loaded machine), or before the last event.
    received = h.stopped_counts(out).get("received")
    assert received == events, f"the agent received {received} of {events} events:\n{out}"


def fill(tmp: Path, url: str) -> None:
    """The real agent, from the replayed stream (gRPC) and then from a JSON export file."""
    log = (tmp / "replay.log").open("w")
    replay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stellaops_runtime.cli.main",
            "tetragon-replay",
            str(h.STREAM),
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=h.ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert replay.stdout is not None
        line = replay.stdout.readline()
        assert line.startswith("listening on "), line
        (tmp / "grpc").mkdir()
        run_agent(tmp / "grpc", url, events=3144, address=line.split()[-1])
    finally:
        replay.terminate()
        replay.wait(timeout=30)
        log.close()
    export = tmp / "export.jsonl"
    export.write_text("".join(json.dumps(o) + "\n" for o in export_lines()))
    (tmp / "export").mkdir()
    run_agent(
        tmp / "export",
        url,
        events=len(export_lines()),
        exportFile=str(export),
        exportFromStart=True,
    )
    # The agents exit after their streams; the point here is the answers over what they watched, not
    # an agent that may be down since: a record of each node the day after (tests/node_alive.py)
    # keeps the stream's day watched whole, not open (store/coverage_open.py).
    # Per node: the agents' own gap rows (node e2e-node) are stamped at today's time.
    with open_store(url) as s, s.engine.connect() as c:
        o = observation_windows.c
        lasts = c.execute(sa.select(o.node_name, sa.func.max(o.window_start)).group_by(o.node_name)).all()
    alive = []
    for node, last in lasts:
        ns = datetime_to_ns(_as_utc(last))
        alive += alive_after(node, ns - ns % DAY_NS + DAY_NS)
    with open_store(url) as s:
        s.write([], alive)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, sqlite_at_head: Callable[[Path], str]) -> str:
    tmp = tmp_path_factory.mktemp("answers")
    url = sqlite_at_head(tmp / "hot.db")  # at head (tests/conftest.py): the answers are tested here
    fill(tmp, url)
    return url


@pytest.fixture(scope="module")
def pg_store(tmp_path_factory: pytest.TempPathFactory, pg: Any) -> Iterator[str]:
    """A PostgreSQL store the real agents filled, once for the tests that only read it (each
    filled its own: a replay and two agents, ~10 s)."""
    if not pg.running:
        pg.start()
    url = pg.migrated_database()
    fill(tmp_path_factory.mktemp("answers_pg"), url)
    yield url
    if pg.running:
        pg.drop_database(url)


def query(url: str, *args: str, real: bool = False) -> subprocess.CompletedProcess[str]:
    """``stella-runtime query <args> --store url``: in this process, or ``real``ly as a subprocess."""
    r = (h.cli if real else cli_in_process)("query", *args, "--store", url)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def answer(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    r = query(url, *args, "--json")
    return r.returncode, json.loads(r.stdout)


# -- the three answers -----------------------------------------------------------


def test_observed_exit_0_with_the_coverage_behind_it(store: str) -> None:
    code, doc = answer(store, "observed", "--image", IMAGE, "--function", "crc32")
    assert code == 0
    assert (doc["answer"], doc["observed"], doc["image"]) == ("observed", True, IMAGE)
    invoked = [r for r in doc["records"] if r["evidence_kind"] == "invoked"]
    assert [r["invocation_count"] for r in invoked] == [CRC32_INVOKED]
    assert doc["coverage"] == expected_coverage(OBJS, IMAGE)


def test_not_observed_exit_1_states_window_and_posture(store: str) -> None:
    cov = expected_coverage(OBJS, IMAGE)
    r = query(store, "observed", "--image", IMAGE, "--function", "inflateBack", real=True)
    assert r.returncode == 1, r.stderr
    n = cov["windows"]
    posture = cov["posture"]["lowest"] + (
        f"..{cov['posture']['highest']}" if cov["posture"]["highest"] != cov["posture"]["lowest"] else ""
    )
    assert r.stdout == (
        f"not observed: inflateBack in {IMAGE}, under observation {cov['interval']} "
        f"({n} window{'s' * (n != 1)} on {len(cov['nodes'])} node{'s' * (len(cov['nodes']) != 1)}, "
        f"posture {posture}, source tetragon, {cov['event_count']} events)\n"
    )
    code, doc = answer(store, "observed", "--image", IMAGE, "--function", "inflateBack")
    assert (code, doc["answer"], doc["observed"], doc["records"]) == (1, "not_observed", False, [])
    assert doc["coverage"] == cov
    assert doc["reason"].startswith(f"image {IMAGE} was under observation {cov['interval']}")


def test_never_seen_image_is_unknown_exit_3(store: str) -> None:
    r = query(store, "observed", "--image", NEVER_SEEN, "--function", "crc32")
    assert r.returncode == 3
    assert r.stdout == f"unknown: crc32 in {NEVER_SEEN}: no observation window for image {NEVER_SEEN}\n"
    code, doc = answer(store, "observed", "--image", NEVER_SEEN, "--function", "crc32")
    assert (code, doc["answer"], doc["observed"], doc["coverage"]) == (3, "unknown", None, None)
    assert doc["reason"] == f"no observation window for image {NEVER_SEEN}"
    assert query(store, "hot", "--image", NEVER_SEEN).returncode == 3
    assert query(store, "functions", "--image", NEVER_SEEN, "--purl", "pkg:deb/debian/zlib1g").returncode == 3


def test_image_seen_only_at_passive_is_unknown_exit_3(store: str) -> None:
    r = query(store, "observed", "--image", PASSIVE_IMAGE, "--function", "crc32")
    assert r.returncode == 3, r.stderr
    assert r.stdout == (
        f"unknown: crc32 in {PASSIVE_IMAGE}: image {PASSIVE_IMAGE} was observed only at posture Passive "
        "(lifecycle events), which cannot see function calls\n"
    )
    code, doc = answer(store, "observed", "--image", PASSIVE_IMAGE, "--function", "crc32")
    assert (code, doc["answer"]) == (3, "unknown")
    assert doc["coverage"]["posture"] == {"lowest": "Passive", "highest": "Passive"}
    assert doc["coverage"]["event_count"] == 6


def test_since_until_narrow_the_question(store: str) -> None:
    cov = expected_coverage(OBJS, IMAGE)
    code, doc = answer(
        store,
        "observed",
        "--image",
        IMAGE,
        "--function",
        "crc32",
        "--since",
        cov["start"],
        "--until",
        cov["end"],
    )
    assert (code, doc["answer"]) == (0, "observed")
    code, doc = answer(
        store,
        "observed",
        "--image",
        IMAGE,
        "--function",
        "crc32",
        "--since",
        "2020-01-01T00:00:00Z",
        "--until",
        "2020-01-02T00:00:00+00:00",
    )
    assert (code, doc["answer"], doc["records"]) == (3, "unknown", [])
    assert doc["reason"] == (
        f"no observation window for image {IMAGE} between 2020-01-01T00:00:00Z and 2020-01-02T00:00:00Z"
    )
    r = query(store, "observed", "--image", IMAGE, "--function", "crc32", "--since", "yesterday", real=True)
    assert r.returncode == 2 and "not an RFC 3339 timestamp" in r.stderr


# -- what users type ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "empty image reference"),
        ("sha256:", "the sha256 digest is empty"),
        ("sha256:abc", "sha256 needs 64 hex digits, got 3"),
        ("sha256:" + "z" * 64, "must be hexadecimal"),
        ("garbage", "has no digest"),
        (f"{REPO}:1.0", "has no digest"),
    ],
)
def test_malformed_images_are_usage_errors(store: str, bad: str, message: str) -> None:
    r = query(store, "observed", "--function", "crc32", "--image", bad)
    assert (r.returncode, r.stdout) == (2, "")
    assert "argument --image" in r.stderr and message in r.stderr, r.stderr


def test_every_query_subcommand_checks_the_image(store: str) -> None:
    for sub in (["hot"], ["functions", "--purl", "pkg:deb/debian/zlib1g"]):
        r = query(store, *sub, "--image", "sha256:abc")
        assert (r.returncode, r.stdout) == (2, "") and "sha256 needs 64 hex digits" in r.stderr


def test_every_reference_spelling_gives_the_same_answer(store: str) -> None:
    hexdigits = IMAGE.split(":", 1)[1]
    spellings = [
        IMAGE,
        hexdigits,
        hexdigits.upper(),
        f"{REPO}@{IMAGE}",
        f"{IMAGE_NAME}@{IMAGE}",
        f"{REPO}@sha256:{hexdigits.upper()}",
    ]
    docs = [answer(store, "observed", "--image", s, "--function", "crc32") for s in spellings]
    assert all(code == 0 for code, _ in docs)
    assert all(doc == docs[0][1] for _, doc in docs)
    hot = {query(store, "hot", "--image", s, "--json").stdout for s in spellings[1::2]}
    assert len(hot) == 1


def _zlib_purl(store: str) -> str:
    code, doc = answer(store, "functions", "--image", IMAGE, "--purl", "pkg:deb/debian/zlib1g")
    assert code == 0, doc
    purls = {f["purl"] for f in doc["functions"]}
    assert len(purls) == 1, purls
    return purls.pop()


def test_purl_without_version_finds_crc32(store: str) -> None:
    code, doc = answer(
        store, "observed", "--image", IMAGE, "--function", "crc32", "--purl", "pkg:deb/debian/zlib1g"
    )
    assert code == 0 and doc["answer"] == "observed"
    assert {r["purl"] for r in doc["records"]} == {_zlib_purl(store)}
    assert [r["invocation_count"] for r in doc["records"] if r["evidence_kind"] == "invoked"] == [
        CRC32_INVOKED
    ]
    # zlib1g-dev is another package, of which no row is stored: the store knows nothing of it (a
    # mistyped purl reads the same), so no "not observed" (test_answer_interpreted.py).
    code, doc = answer(
        store, "observed", "--image", IMAGE, "--function", "crc32", "--purl", "pkg:deb/debian/zlib1g-dev"
    )
    assert (code, doc["answer"], doc["package_not_seen"]) == (3, "unknown", [])


def test_purl_version_and_qualifiers(store: str) -> None:
    stored = _zlib_purl(store)
    assert stored.startswith("pkg:deb/debian/zlib1g@") and "arch=" in stored
    version = stored.split("@", 1)[1].split("?", 1)[0]
    arch = stored.split("arch=", 1)[1].split("&", 1)[0]
    cases = [
        (f"pkg:deb/debian/zlib1g@{version}", 0),
        (f"pkg:deb/debian/zlib1g?arch={arch}", 0),
        (f"pkg:deb/debian/zlib1g@{version}?arch={arch}", 0),
        # Another version or arch than the image holds: no row of it, so unknown (never "not
        # observed" of a package the store knows nothing of), naming the stored purl.
        ("pkg:deb/debian/zlib1g@0.0.1", 3),
        ("pkg:deb/debian/zlib1g?arch=s390x", 3),
    ]
    for purl, want in cases:
        code, doc = answer(store, "observed", "--image", IMAGE, "--function", "crc32", "--purl", purl)
        assert code == want, (purl, doc)
        assert want != 3 or stored in doc["reason"], doc
    code, doc = answer(store, "functions", "--image", IMAGE, "--purl", f"pkg:deb/debian/zlib1g@{version}")
    assert code == 0 and "crc32" in {f["function_name"] for f in doc["functions"]}
    r = query(store, "observed", "--image", IMAGE, "--function", "crc32", "--purl", "zlib1g")
    assert r.returncode == 2 and "malformed package URL" in r.stderr
    r = query(store, "functions", "--image", IMAGE, "--purl", "pkg:")
    assert r.returncode == 2 and "malformed package URL" in r.stderr
    # --prefix stays a raw string prefix.
    code, doc = answer(store, "functions", "--image", IMAGE, "--purl", "pkg:deb/debian/zlib1g@", "--prefix")
    assert code == 0 and doc["functions"]


def test_function_id_from_the_store_at_any_offset(store: str) -> None:
    code, doc = answer(store, "functions", "--image", IMAGE, "--purl", "pkg:deb/debian/zlib1g")
    fid = next(
        f["function_id"] for f in doc["functions"] if f["function_name"] == "crc32" and f["function_id"]
    )
    assert fid.endswith(":crc32+0x0")
    by_name = answer(
        store, "observed", "--image", IMAGE, "--function", "crc32", "--purl", "pkg:deb/debian/zlib1g"
    )[1]
    for text in (fid, fid[: -len("+0x0")] + "+0x1f"):
        code, doc = answer(store, "observed", "--image", IMAGE, "--function", text)
        assert (code, doc["answer"], doc["function"]) == (0, "observed", text)
        assert doc["records"] == by_name["records"]
    # A build-id of no file of the image (another build of zlib, a typo): nothing is known of that
    # code, so unknown, never "not observed" (test_answer_interpreted.py, file_not_seen).
    other = "0" * 40 + ":crc32+0x0"
    code, doc = answer(store, "observed", "--image", IMAGE, "--function", other)
    assert (code, doc["answer"], doc["file_not_seen"]) == (3, "unknown", [])


def test_a_function_id_in_another_spelling_gets_the_same_answer(store: str) -> None:
    """Upper-case hex, ``0X``, leading zeros: the same function, never "not observed" (was exit 1)."""
    code, doc = answer(store, "functions", "--image", IMAGE, "--purl", "pkg:deb/debian/zlib1g")
    fid = next(
        f["function_id"] for f in doc["functions"] if f["function_name"] == "crc32" and f["function_id"]
    )
    bid = fid.split(":", 1)[0]
    by_id = answer(store, "observed", "--image", IMAGE, "--function", fid)[1]
    for text in (f"{bid.upper()}:crc32+0x0", f"{bid}:crc32+0X1F", f"{bid.upper()}:crc32+0x0001f"):
        code, doc = answer(store, "observed", "--image", IMAGE, "--function", text)
        assert (code, doc["answer"]) == (0, "observed"), text
        assert doc["records"] == by_id["records"]
        r = cli_in_process("evidence", "--store", store, "--image", IMAGE, "--purl", "pkg:deb/debian/zlib1g",
                           "--function", text, "--json")  # fmt: skip
        assert (r.returncode, json.loads(r.stdout)["reachability_state"]) == (0, "DynamicReachable"), r.stderr
    for broken in (f"{bid}:crc32+0xZZ", f"{bid}:crc32"):  # an ID that does not read: an error, not a name
        r = query(store, "observed", "--image", IMAGE, "--function", broken)
        assert r.returncode == 2 and "malformed function ID" in r.stderr, r.stderr


def test_mangled_and_canonical_names(store: str) -> None:
    for name in (MANGLED, CXX_NAME):
        code, doc = answer(store, "observed", "--image", CXX_IMAGE, "--function", name)
        assert (code, doc["answer"]) == (0, "observed"), (name, doc)
        assert {r["function_name"] for r in doc["records"]} == {CXX_NAME}


# -- listing, pipes, old stores ------------------------------------------------------


def test_query_images(store: str) -> None:
    code, doc = answer(store, "images")
    assert code == 0
    by_image = {i["image"]: i for i in doc["images"]}
    want = {i["digest"] for i in h.EXPECTED["images"]} | {
        PASSIVE_IMAGE,
        CXX_IMAGE,
        ALIVE_IMAGE,
    }  # fill()'s record
    assert set(by_image) == want
    billing = by_image[IMAGE]
    assert billing["coverage"]["posture"]["highest"] == "EbpfDeep"
    assert billing["coverage"]["event_count"] == sum(1 for o in OBJS if _digest_of(o) == IMAGE)
    assert billing["function_rows"] > 0 and billing["hot_symbol_rows"] > billing["function_rows"]
    assert by_image[PASSIVE_IMAGE]["coverage"]["posture"] == {"lowest": "Passive", "highest": "Passive"}
    r = query(store, "images")
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["IMAGE", "FIRST", "START"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(want)


def test_output_closed_early_is_quiet(store: str) -> None:
    cmd = (
        f"{sys.executable} -m stellaops_runtime.cli.main query hot --image {IMAGE} --store {store} | head -1"
    )
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, cwd=h.ROOT, timeout=60)
    assert r.stdout.split()[0] == "INVOCATIONS" and r.stderr == ""
    # Deterministically: stdout is a pipe whose reader is already gone.
    for args, want in (
        (["hot", "--image", IMAGE], 0),
        (["observed", "--image", IMAGE, "--function", "inflateBack"], 1),
        (["observed", "--image", NEVER_SEEN, "--function", "crc32", "--json"], 3),
        (["images"], 0),
    ):
        read, write = os.pipe()
        os.close(read)
        try:
            p = subprocess.run(
                [sys.executable, "-m", "stellaops_runtime.cli.main", "query", *args, "--store", store],
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                cwd=h.ROOT,
                timeout=60,
            )
        finally:
            os.close(write)
        assert (p.returncode, p.stderr) == (want, ""), args


def test_store_at_migration_0002_answers_with_posture_unknown(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_store_engine(url)
    migrate(engine, revision="0002")
    t = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(observation_windows).values(
                image_digest=IMAGE, node_name="n", window_start=t, event_count=9
            )
        )
        conn.execute(
            sa.insert(hot_symbols).values(
                image_digest=IMAGE,
                module=ZLIB,
                function_name="crc32",
                evidence_kind="invoked",
                invocation_count=3,
                unique_callers=0,
                total_latency_ns=0,
                max_latency_ns=0,
                confidence=1.0,
                first_seen=t,
                last_seen=t,
                updated_at=t,
            )
        )
    engine.dispose()
    code, doc = answer(url, "observed", "--image", IMAGE, "--function", "crc32")
    assert (code, doc["answer"], doc["coverage"]["posture"]) == (
        0,
        "observed",
        {"lowest": "unknown", "highest": "unknown"},
    )
    r = query(url, "observed", "--image", IMAGE, "--function", "inflate")
    assert r.returncode == 3 and "only at an unknown posture" in r.stdout
    code, doc = answer(url, "images")
    assert code == 0 and doc["images"][0]["coverage"]["windows"] == 1
    engine = create_store_engine(url)
    with engine.connect() as conn:  # reading did not migrate
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0002"
    engine.dispose()


# -- PostgreSQL ------------------------------------------------------------------------


@pytest.mark.postgres
def test_three_answers_on_postgres(pg_store: str) -> None:
    pg_url = pg_store
    code, doc = answer(
        pg_url,
        "observed",
        "--image",
        f"{REPO}@{IMAGE}",
        "--function",
        "crc32",
        "--purl",
        "pkg:deb/debian/zlib1g",
    )
    assert (code, doc["answer"]) == (0, "observed")
    assert [r["invocation_count"] for r in doc["records"] if r["evidence_kind"] == "invoked"] == [
        CRC32_INVOKED
    ]
    assert doc["coverage"] == expected_coverage(OBJS, IMAGE)
    code, doc = answer(pg_url, "observed", "--image", IMAGE, "--function", "inflateBack")
    assert (code, doc["answer"], doc["coverage"]) == (1, "not_observed", expected_coverage(OBJS, IMAGE))
    assert answer(pg_url, "observed", "--image", NEVER_SEEN, "--function", "crc32")[0] == 3
    code, doc = answer(pg_url, "observed", "--image", PASSIVE_IMAGE, "--function", "crc32")
    assert (code, doc["answer"]) == (3, "unknown") and "Passive" in doc["reason"]
    code, doc = answer(pg_url, "observed", "--image", CXX_IMAGE, "--function", MANGLED)
    assert (code, doc["answer"]) == (0, "observed")
    assert query(pg_url, "observed", "--image", "sha256:", "--function", "crc32").returncode == 2
    code, doc = answer(pg_url, "images")
    assert code == 0 and len(doc["images"]) == len(h.EXPECTED["images"]) + 3  # + fill()'s ALIVE_IMAGE


@pytest.mark.postgres
def test_evidence_documents_on_a_store_the_agent_filled(pg_store: str) -> None:
    """``stella-runtime evidence`` (docs/evidence.md) on PostgreSQL filled by the real agent."""
    pg_url = pg_store

    def evidence(image: str, function: str) -> tuple[int, dict[str, Any]]:
        r = cli_in_process("evidence", "--store", pg_url, "--image", image, "--purl", "pkg:deb/debian/zlib1g",
                           "--function", function, "--json")  # fmt: skip
        assert "Traceback" not in r.stderr, r.stderr
        return r.returncode, json.loads(r.stdout)

    code, doc = evidence(IMAGE, "crc32")
    on_stack = h.expected_stack_counts(OBJS)[f"{IMAGE}|{ZLIB}|crc32"]
    assert code == 0
    assert (doc["reachability_state"], doc["confidence"]) == ("DynamicReachable", 0.9)
    assert doc["data"]["invocation_count"] == max(CRC32_INVOKED, on_stack)
    assert doc["rts"]["score"] == (1.0 if doc["data"]["max_calls_in_a_day"] > 1000 else 0.8)
    assert doc["data"]["observation_window"] == expected_coverage(OBJS, IMAGE)["interval"]
    assert doc["data"]["purl"].startswith("pkg:deb/debian/zlib1g@")
    assert doc["data"]["function_ids"] and all(f.endswith(":crc32+0x0") for f in doc["data"]["function_ids"])
    code, doc = evidence(IMAGE, "inflateBack")  # zlib is loaded there; inflateBack never ran
    assert (code, doc["reachability_state"], doc["rts"]["score"]) == (1, "PotentiallyReachable", 0.5)
    assert doc["data"]["watched_days"] >= 1 and doc["data"]["invocation_count"] == 0
    for image in (NEVER_SEEN, PASSIVE_IMAGE):  # nothing watched it at a posture that sees calls
        code, doc = evidence(image, "crc32")
        assert (code, doc["reachability_state"], doc["defer_to_static_analysis"]) == (3, None, True)
