"""agent/unprobed.py hands a fact over once per build, and loses none a replace supersedes.

A node's file upgraded in place while the agent runs gives its tail's fact again under the new
build-id (agent/tetragon_facts.py reads it again); the store keeps each build (store/fact_builds.py).
Before, a fact was "sent" by its (image, path, tail) alone: the new build's fact was never handed
over, and an old build's fact not drained yet was dropped by the replace that brought the new one.
"""

from __future__ import annotations

from stellaops_runtime.agent.unprobed import UnprobedTails

KEY = ("host:node-1", "/usr/bin/app", "split_fn.part.0")
OTHER = ("host:node-1", "/usr/bin/app", "crc32.isra.0")


def _drain(u: UnprobedTails) -> list[tuple[str, str]]:
    return sorted(
        (d.key.function_name, d.build_id) for d in u.deltas(node_name="n", now_ns=0, window_seconds=60)
    )


def test_a_new_build_of_a_sent_fact_is_handed_over_again_once() -> None:
    """Seen failing before the fix: the second drain gave nothing."""
    u = UnprobedTails()
    u.replace({KEY: ("aa", ""), OTHER: ("aa", "")})
    assert _drain(u) == [("crc32.isra.0", "aa"), ("split_fn.part.0", "aa")]
    u.replace({KEY: ("bb", ""), OTHER: ("aa", "")})
    assert _drain(u) == [("split_fn.part.0", "bb")]
    assert _drain(u) == []
    u.replace({KEY: ("bb", ""), OTHER: ("aa", "")})  # read again, nothing changed: nothing again
    assert _drain(u) == []


def test_a_build_replaced_before_any_drain_is_still_handed_over() -> None:
    """Two upgrades before a drain: every build's fact is handed over. Seen failing before the fix:
    only the last build's was."""
    u = UnprobedTails()
    u.replace({KEY: ("aa", "")})
    u.replace({KEY: ("bb", "")})
    u.replace({KEY: ("cc", "")})
    assert _drain(u) == [("split_fn.part.0", b) for b in ("aa", "bb", "cc")]
    u.replace({KEY: ("cc", "")})
    assert _drain(u) == []
    assert u._earlier == {}  # the superseded builds are not kept once handed over


def test_the_node_s_own_facts_are_handed_over_again_once_a_day_an_image_s_are_not() -> None:
    """The store prunes a node's builds once retention left it no window (store/fact_builds.py); an
    image's facts it never prunes, and a month-long outage would hold a row of each a day."""
    from stellaops_runtime.agent.unprobed import RESEND_NS

    image = ("sha256:" + "ab" * 32, "/usr/lib/libz.so.1", "crc32.part.0")
    u = UnprobedTails()
    u.replace({KEY: ("aa", ""), image: ("cc", "pkg:deb/debian/zlib1g@1.2.13")})
    first = u.deltas(node_name="n", now_ns=10, window_seconds=60)
    assert len(first) == 2
    assert u.deltas(node_name="n", now_ns=RESEND_NS, window_seconds=60) == []  # not a day yet
    again = u.deltas(node_name="n", now_ns=10 + RESEND_NS, window_seconds=60)
    assert [(d.key.image_digest, d.build_id) for d in again] == [("host:node-1", "aa")]
    assert u.deltas(node_name="n", now_ns=20 + RESEND_NS, window_seconds=60) == []
    assert u.deltas(node_name="n", now_ns=5, window_seconds=60) == []  # a clock stepped back: no resend
