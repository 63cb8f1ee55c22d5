"""The filter's cache of clean fields never hands a plain field's verdict to an exec's arguments.

Why this exists: ``PrivacyFilter.filter_field`` remembers short fields in which nothing was redacted,
so the next event of the same process costs one lookup. An exec's arguments are redacted with the
executed client's rules (``tool``) and the argv reading, a plain field (a traced write) without them,
so the same text can be clean as one and hold a secret as the other. The cache once keyed an exec by
``tool NUL flag NUL text`` and a plain field by its bare text: a plain field holding that string was
cached as clean, and the exec that followed came out unfiltered.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter

# (executed client, its arguments): the secret is found only by the client's own rules, read from the
# start of the arguments to their end (in a plain field, a client word's command ends at ``;`` or a line).
_CASES = [
    ("mysql", "-e select 1; -pS3cretXyz"),
    ("mysql", "x\n-pS3cretXyz"),
    ("redis-cli", "x\n-a S3cretXyz"),
    ("sshpass", "a; -p S3cretXyz ssh h"),
]


@pytest.mark.parametrize(("tool", "arguments"), _CASES)
def test_a_clean_plain_field_spelling_an_execs_cache_key_leaves_the_exec_filtered(
    tool: str, arguments: str
) -> None:
    f = PrivacyFilter(PrivacyConfig())
    for spelled in (f"{tool}\x00a\x00{arguments}", f"{tool}\x00\x00{arguments}"):
        assert f.filter_field(spelled) == spelled  # clean as a plain field, so cached
    out = f.filter_field(arguments, tool=tool, argv=True)
    assert "S3cretXyz" not in out
    assert out == PrivacyFilter(PrivacyConfig()).filter_field(arguments, tool=tool, argv=True)


def test_the_same_arguments_cached_clean_for_one_tool_are_filtered_for_a_client() -> None:
    # Each reading keeps its own entry (the tool and the argv flag are part of the key).
    f = PrivacyFilter(PrivacyConfig())
    text = "x\n-pS3cretXyz"
    assert f.filter_field(text, tool="ls", argv=True) == text  # no client rules for ls
    assert f.filter_field(text, tool="mysql", argv=True) == "x\n-p[REDACTED]"
    assert f.filter_field(text, tool="ls", argv=True) == text  # served from the cache, unchanged
