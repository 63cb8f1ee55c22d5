"""``stella-runtime probes run``'s summary and warning when part of the run was not watched.

The engine's spans (native/session.py, seen with real BCC in
tests/integration/test_native_session_unwatched.py) reach the user: in the
JSON summary, and as a warning line on stderr in either mode; a run watched
whole prints no warning.
"""

from __future__ import annotations

import argparse

import orjson
import pytest

from stellaops_runtime.cli import probes
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native import session
from stellaops_runtime.native.detect import Report


def _args(json_out: bool) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    probes.register(p.add_subparsers())
    return p.parse_args(["probes", "run", "--seconds", "1", *(["--json"] if json_out else [])])


@pytest.mark.parametrize("json_out", [True, False], ids=["json", "text"])
@pytest.mark.parametrize("spans", [[(1_000_000_000, 3_500_000_000), (3_000_000_000, 4_000_000_000)], []])
def test_the_unwatched_spans_are_in_the_summary_and_warned_of(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], json_out: bool, spans: list
) -> None:
    rep = Report(kernel="6.18", machine="x86_64", posture=Posture.EBPF_DEEP)
    monkeypatch.setattr(probes, "_report", lambda args: rep)

    async def fake(cfg, *, seconds, report, on_event):  # type: ignore[no-untyped-def]
        return session.SessionResult(report=report, former=0, unwatched=list(spans))

    monkeypatch.setattr(session, "run_session", fake)
    assert probes.run_probes(_args(json_out)) == 0
    out, err = capsys.readouterr()
    summary = (
        orjson.loads(out)["summary"] if json_out else orjson.loads(err[err.index("{") : err.rindex("}") + 1])
    )
    assert summary["unwatched"] == [{"startNs": a, "endNs": b} for a, b in spans]
    if not spans:
        assert summary["unwatchedSeconds"] == 0 and "warning" not in err
        return
    assert summary["unwatchedSeconds"] == 3.0  # 1-3.5 and 3-4: overlaps counted once
    assert "warning: for 3.000 s of this run (2 span(s)" in err and "may be missing" in err
