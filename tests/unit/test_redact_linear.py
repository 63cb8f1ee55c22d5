"""The message redaction's userinfo rule costs time linear in the text (contracts/redact_userinfo.py).

Every log message, exception text and CLI error goes through ``contracts/redact``.
Its userinfo rule was one regular expression that, on a run of ``"name":`` (a
JSON error body) or ``x://u:`` without an ``@``, scanned the rest of the run
from every position: 20 Ki characters took 0.45 s, 1 MiB minutes. It is now
found by a linear scan; the former expression is kept here as the reference
its output must equal on random texts.
"""

from __future__ import annotations

import random
import re
import time

import pytest

from stellaops_runtime.contracts.redact import MASK, redact
from stellaops_runtime.contracts.redact_userinfo import TOKEN_START, sub_userinfo

# The expression contracts/redact.py used before (commit 5dcf84b), as the reference; its scheme is
# any run of scheme characters since session 40 (``\x1b[2Jpostgresql://``, test_redact.py).
_FORMER = re.compile(
    rf"""
    (?P<a>(?<![A-Za-z0-9+.\-])[A-Za-z0-9+.\-]*://[^\s:/@?#'"]*:)
    (?:
        \S*@
      | (?!\d{{1,5}}(?:[/?#\s'",;)\]]|$))
        (?:(?!://)[^\n@])*@(?:\S*@)?
    )
  |
    (?<![^{TOKEN_START}])
    (?!pkg:[A-Za-z][A-Za-z0-9.+\-]*/)
    (?P<b>[^{TOKEN_START}:/@]*:)
    (?!//|:)
    \S*@
    (?![A-Za-z][A-Za-z0-9+.\-]*:[0-9a-fA-F]{{32,}})
    (?!@)
    """,
    re.VERBOSE,
)


def _former(text: str) -> str:
    return _FORMER.sub(lambda m: f"{m['a'] or m['b']}{MASK}@", text)


def _linear(text: str) -> str:
    return sub_userinfo(text, lambda prefix: f"{prefix}{MASK}")


_PIECES = [
    "postgres://", "u", "app", ":", "@", "s3cret", " ", "\n", "/", "db", "5432", "?", "#", "'", '"',
    "=", ",", ";", "(", "[", "{", "<", "`", "pkg:", "npm/", "::", "sha256", "a" * 32, "x://", "-", ".",
    "@@", "\t", "1", ")", "]",
]  # fmt: skip


def test_the_linear_scan_masks_exactly_what_the_former_expression_masked() -> None:
    rng = random.Random(20261205)
    for _ in range(20_000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 14)))
        assert _linear(text) == _former(text), text


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://u:pwone fragtwo@db/x",
        "postgresql://u:pwone@fragtwo:fragthree@db:5432/x",
        "postgresql://u@db:5432/x u:p@h",
        "user:s3cret@db/x and x://a:b\nc@d",
        "img repo:tag@sha256:" + "ab" * 32,
        "pkg:npm/left-pad@1.3.0 ns::f@GLIBC_2.2.5 a:b@@c",
        "postgresql://u:s3cret@[::1]:5432/x",
        "http://h:8080/x a@b",
    ],
)
def test_known_shapes_agree_with_the_former_expression(text: str) -> None:
    assert _linear(text) == _former(text)


@pytest.mark.parametrize(
    "unit",
    ['"name":', "x://u:", 'x://u:"a":', "a:" + "b" * 7, '"name":@sha256:' + "a" * 32 + " "],
)
def test_a_mebibyte_of_near_userinfo_takes_no_more_than_seconds(unit: str) -> None:
    # Generous: the scan takes tens of milliseconds; the former expression took minutes (20 Ki: 0.45 s,
    # growing with the square of the length). CPU time of this process, so other load does not count.
    text = unit * (1024 * 1024 // len(unit)) + "\nend@"
    start = time.process_time()
    out = redact(text)
    assert time.process_time() - start < 10.0
    assert out.endswith("\nend@")
