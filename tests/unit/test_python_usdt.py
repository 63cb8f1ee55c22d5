"""Python's USDT function__entry events become the Python function they name (adapter/python_usdt.py).

The pure stage with hostile arguments, then the real Pipeline fed a Tetragon
export line of each kind, so both the stage and where it runs (before the
privacy filter, canonicalizer skipped) are what is checked.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from stellaops_runtime.adapter.python_usdt import ENTRY, RETURN, Outcome, PythonFunctions
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.events import Argument, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.privacy.filter import PrivacyFilter

FILE = "/usr/lib/python3/dist-packages/pkg/__init__.py"


def usdt(name: str, *values: str, types: tuple[str, ...] = ()) -> RuntimeCallEvent:
    args = [
        Argument(label=f"arg{i}", type=(types[i - 1] if types else "string_arg"), value=v)
        for i, v in enumerate(values, start=1)
    ]
    return RuntimeCallEvent(
        kind=EventKind.USDT,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, binary="/usr/bin/python3.11"),
        function_name=name,
        module="/usr/bin/python3.11",
        build_id="ab" * 20,
        function_id="ab" * 20 + ":_PyEval_EvalFrameDefault+0x0",
        arguments=args,
        source="bcc",
    )


def test_entry_becomes_the_function_of_its_file_with_the_line_kept() -> None:
    stage = PythonFunctions()
    ev = usdt(ENTRY, FILE, "target", "12", types=("string_arg", "string_arg", "int_arg"))
    assert stage.apply(ev) is Outcome.FUNCTION
    assert (ev.kind, ev.module, ev.function_name) == (EventKind.USDT, FILE, "target")
    assert (ev.build_id, ev.function_id) == ("", "")  # the interpreter's, not the function's
    assert [a.value for a in ev.arguments] == [FILE, "target", "12"]
    assert stage.stats == {"functions": 1}


def test_return_is_not_a_call_and_other_probes_are_untouched() -> None:
    stage = PythonFunctions()
    assert stage.apply(usdt(RETURN, FILE, "target", "12")) is Outcome.DROP
    gc = usdt("python:gc__start", "0")
    assert stage.apply(gc) is Outcome.OTHER
    assert gc.function_name == "python:gc__start"
    other = usdt("node:http__server__request", FILE, "target")
    assert stage.apply(other) is Outcome.OTHER and other.module == "/usr/bin/python3.11"
    assert stage.stats == {"return_not_counted": 1}


@pytest.mark.parametrize(
    ("values", "types", "reason"),
    [
        ((FILE,), (), "missing_arguments"),
        ((), (), "missing_arguments"),
        (("", "f"), (), "empty"),
        ((FILE, ""), (), "empty"),
        (("/app/a\x00.py", "f"), (), "nul"),
        ((FILE, "fn\x00evil"), (), "nul"),
        (("/app/\ufffd.py", "f"), (), "not_utf8"),  # what invalid UTF-8 bytes decode to
        (("/app/\udcff.py", "f"), (), "not_utf8"),  # surrogate-escaped bytes
        ((FILE, "a\nb"), (), "control_character"),
        (("/" + "a" * 5000, "f"), (), "too_long"),
        ((FILE, "f" * 2000), (), "too_long"),
        ((FILE, "12"), ("string_arg", "int_arg"), "not_text"),
        (("/app/x.py", "password=hunter2secret"), (), "redacted"),
    ],
)
def test_hostile_arguments_are_dropped_and_counted(
    values: tuple[str, ...], types: tuple[str, ...], reason: str
) -> None:
    malformed: dict[str, int] = {}
    from collections import Counter

    counter: Counter[str] = Counter(malformed)
    stage = PythonFunctions(redact=PrivacyFilter(parse_config({}).privacy).redact_text, malformed=counter)
    ev = usdt(ENTRY, *values, types=types)
    assert stage.apply(ev) is Outcome.DROP
    assert ev.function_name == ENTRY  # never stored under a name that is not the function's
    assert stage.stats == {f"dropped_{reason}": 1}
    assert counter == {f"python_usdt_{reason}": 1}


def test_a_value_wrongly_typed_is_dropped_not_raised() -> None:
    stage = PythonFunctions()
    ev = usdt(ENTRY, FILE, "f")
    ev.arguments[0].value = None  # type: ignore[assignment]  # a producer's wrong type
    assert stage.apply(ev) is Outcome.DROP
    assert stage.stats == {"dropped_not_text": 1}


def test_the_privacy_filters_argument_bound_bounds_the_names() -> None:
    stage = PythonFunctions(max_argument_bytes=64)
    assert stage.apply(usdt(ENTRY, "/" + "a" * 70 + ".py", "f")) is Outcome.DROP
    assert stage.stats == {"dropped_too_long": 1}


@pytest.mark.parametrize("file", ["<string>", "<frozen importlib._bootstrap>", "pkg/mod.py", "<stdin>"])
def test_files_that_are_no_path_are_kept_unattributed(file: str) -> None:
    stage = PythonFunctions()
    ev = usdt(ENTRY, file, "_find_and_load")
    assert stage.apply(ev) is Outcome.FUNCTION
    assert (ev.module, ev.function_name) == (file, "_find_and_load")
    assert stage.stats == {"functions": 1, "unattributable_file": 1}


def line(name: str, file: str, function: str, n: int) -> bytes:
    obj = {
        "process_usdt": {
            "process": {
                "exec_id": "ZXhlYzox", "pid": 4242, "uid": 0, "binary": "/usr/bin/python3.11",
                "start_time": "2026-12-03T10:00:00Z",
                "pod": {"namespace": "shop", "name": "web-1", "container": {
                    "id": "containerd://c1", "name": "app",
                    "image": {"id": "docker.io/shop/web@sha256:" + "c" * 64, "name": "shop/web:1"},
                }},
            },
            "path": "/usr/bin/python3.11", "provider": "python", "name": name.partition(":")[2],
            "args": [{"string_arg": file}, {"string_arg": function}, {"int_arg": 3}],
        },
        "node_name": "node-1",
        "time": f"2026-12-03T10:00:{n:02d}Z",
    }  # fmt: skip
    return json.dumps(obj).encode()


@pytest.mark.parametrize("symbol_id_only", [False, True])
def test_tetragon_usdt_lines_are_counted_per_python_function_through_the_pipeline(
    symbol_id_only: bool,
) -> None:
    cfg = parse_config({"privacy": {"symbolIdOnlyMode": symbol_id_only}})
    p = Pipeline(cfg, node_name="node-1")
    items = [(line(ENTRY, FILE, "target", i), 0) for i in range(5)]
    items += [(line(RETURN, FILE, "target", i), 0) for i in range(5)]
    items += [(line(ENTRY, "<frozen importlib._bootstrap>", "_find_and_load", 1), 0)]
    items += [(line(ENTRY, FILE, "token=ghp_" + "A1b2C3d4E5" * 4, 1), 0)]
    p.process_json(items)
    deltas, _ = p.drain()
    got = {(d.key.module, d.key.function_name, d.key.evidence.value): d.invocation_count for d in deltas}
    assert got == {
        (FILE, "target", "invoked"): 5,
        ("<frozen importlib._bootstrap>", "_find_and_load", "invoked"): 1,
    }
    assert p.python_functions.stats["return_not_counted"] == 5
    assert p.adapter_stats.malformed["python_usdt_redacted"] == 1
    assert all(d.function_id == "" and d.build_id == "" for d in deltas)  # no ELF function was resolved
    frozen = next(d for d in deltas if d.key.module.startswith("<frozen"))
    assert frozen.purl == ""  # kept, not attributed (the attribution skips modules that are no path)
    assert p.attribution is not None and p.attribution.outcomes["skipped"] >= 1


@pytest.mark.parametrize("fast_path", [True, False])
def test_python_functions_back_no_not_observed_their_windows_are_passive(fast_path: bool) -> None:
    """CPython 3.11-3.13 fire function__entry only under a trace/profile function (gh-98894):
    the calls seen are proof, the calls not seen prove nothing, so the window stays Passive."""
    p = Pipeline(parse_config({}), node_name="node-1", fast_path=fast_path)
    p.process_json([(line(ENTRY, FILE, "target", i % 3), 0) for i in range(12)])  # repeats too
    deltas, windows = p.drain()
    assert {d.key.function_name: d.invocation_count for d in deltas} == {"target": 12}
    assert windows and all(w.posture is Posture.PASSIVE for w in windows), windows
    # Another USDT probe (not a Python function) is not capped: ActiveTracing, as a uprobe (it shows
    # its own probe's calls, never another function's absence: contracts/posture.py).
    other = line(ENTRY, FILE, "target", 1).replace(b'"provider": "python"', b'"provider": "node"')
    p.process_json([(other, 0)])
    _, windows = p.drain()
    assert [w.posture for w in windows] == [Posture.ACTIVE_TRACING]
