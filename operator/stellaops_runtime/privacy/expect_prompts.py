"""The answer to an expect(1) prompt that names nothing, in a script that spawns a password reader.

Why this exists: the expect rule (stdin_secrets.py) takes the ``send`` after an ``expect`` whose
pattern names a password (``"password:"``, ``"Retype*"``). Scripts also match any prompt with a
pattern of wildcards (``expect "*:"; send "X\\r"``), and what they send then may be a password or
a login name; nothing in the pattern says which. The program the script spawns does: after
``spawn passwd``, ``spawn su``, ``spawn ssh …``, ``spawn mysql -p``, a prompt ending in ``:`` asks
for a password. So a pattern of only wildcards, blanks and punctuation holding a ``:`` counts as a
password prompt after the script's first ``spawn`` of such a reader (a wrong guess loses a login
name, never a password); one ending in ``$`` or ``#`` (a shell prompt) does not. This needs the
spawn before it, which one alternative of the combined regex cannot look back to: a function, run
only on a text holding ``spawn``.

Pure: text in, spans out (``engine.replace_spans`` replaces them, counted under ``password``).
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.base import REDACTED
from stellaops_runtime.privacy.stdin_secrets import SENT

__all__ = ["nameless_prompt_spans"]

# Programs that prompt for a password on their terminal (each named in its manual page).
_READERS = (
    "passwd|su|sudo|ssh|scp|sftp|rsync|ftp|lftp|telnet|mysql|mariadb|mysqladmin|psql|kinit"
    "|htpasswd|smbpasswd|vncpasswd|ssh-keygen|ssh-add|gpg|openssl|ldappasswd|openconnect|git"
)
# ``spawn`` and its options (``-noecho``), then the program (by path too).
_SPAWN = re.compile(rf"(?<![\w-])spawn\s+(?:-\S+\s+){{0,4}}(?:[^\s;]*/)?(?:{_READERS})(?![\w.-])")


# A pattern of wildcards, blanks and punctuation with a ``:`` (``"*:"``, ``"*: "``, ``{*:}``), quoted
# (also ``\"`` inside a double-quoted ``sh -c`` script) or braced; bounded, so each is read once.
def _nameless(open_: str, close: str, inside: str) -> str:
    return rf"{open_}[^{inside}\w\n:$#]{{0,8}}:[^{inside}\w\n$#]{{0,8}}{close}"


_NAMELESS = (
    "(?:"
    + "|".join([_nameless(r'\\?"', '"', '"'), _nameless("'", "'", "'"), _nameless(r"\{", r"\}", "{}")])
    + ")"
)
_ANSWER = re.compile(
    # ``expect "*:"; send X`` (its options before the pattern), or a pair of an ``expect { … }``
    # block: ``"*:" {send X}``
    rf"(?:(?<![\w-])expect\s+(?:-\S+\s+){{0,4}}{_NAMELESS}(?:[\s;{{]|\\[nr])*+"
    rf"|{_NAMELESS}(?:\s|\\[nr])*+\{{(?:\s|\\[nr])*+){SENT}"
)


def nameless_prompt_spans(text: str) -> list[tuple[int, int, str]]:
    """What each ``send`` after a nameless prompt sends, once a password reader is spawned, as spans."""
    spawn = _SPAWN.search(text)
    if spawn is None:
        return []
    return [
        (m.start("s"), m.end("s"), "password")
        for m in _ANSWER.finditer(text, spawn.end())
        if m.group("s") != REDACTED
    ]
