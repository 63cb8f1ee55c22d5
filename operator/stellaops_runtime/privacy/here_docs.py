"""Passwords written in a here-document for a program that reads its password on standard input.

A script run with ``sh -c`` may hand a password over as the lines of a here-document
(bash(1), "Here Documents"): ``cat <<EOF | chpasswd`` then ``root:X``, ``mysql -u root -p <<SQL``
then ``X`` (mysql reads the password it prompts for from standard input when no terminal is
there), ``docker login --password-stdin reg <<EOF``, ``sudo -S cmd <<EOF``. No key or flag stands
before the password, so the key rules (patterns.py) see nothing; and a delimiter is a word of the
script's own choosing, which one regex of the combined pass cannot refer back to. So this is a
function: for each ``<<`` (not ``<<<``, a here-string: stdin_secrets.py) whose opening line names
such a reader, the document's lines, up to the line holding its delimiter (or to the end of a cut
text), are the secret; so are they when the opening line writes them to a file that a reader
reads on a later line (``cat > /tmp/pw <<EOF`` ... ``chpasswd < /tmp/pw``, ``cat F |
chpasswd``). A here-document for any other program (``cat <<EOF > app.conf``, ``psql <<EOF``)
keeps its lines. The same readers take what a process substitution prints onto their
standard input (``sudo -S cmd < <(echo X)``, ``kinit bob < <(echo X)``): the command before the
``<`` is read for them the same way (stdin_secrets.py has the password-file options).

Pure: text in, spans out (``engine.replace_spans`` replaces them, counted under ``password``).
"""

from __future__ import annotations

import bisect
import re

from stellaops_runtime.privacy.base import REDACTED
from stellaops_runtime.privacy.stdin_secrets import PROC_PRINTS

__all__ = ["heredoc_spans", "stdin_substitution_spans"]

# ``<<`` or ``<<-``, then the delimiter word, quoted or not (``<<'EOF'``, ``<<\"EOF\"`` inside a
# double-quoted ``sh -c`` script, ``<<\EOF``); any word (``<<!``, ``<<$$``), and a quoted one may
# hold spaces (``<<'END OF PW'``).
_OPEN = re.compile(
    r"(?<!<)<<(?!<)-?[ \t]*\\*(?P<quote>['\"])?"
    r"(?P<tag>(?(quote)[^'\"\n\\]{1,64}|[^\s'\"<>|;&()\\]{1,64}))"
)

# Programs that read a password (or a secret) on standard input, named on the opening line
# (each as in stdin_secrets.py; mysql with a bare ``-p`` or ``--password``, psql with ``-W``; ftp(1) reads its
# ``user NAME PASSWORD`` command there). Bounded: the line is cut to _LINE_WINDOW around ``<<``.
_READER = re.compile(
    # the programs, not the file /etc/passwd nor an ftp:// URL
    r"(?<![\w.-])(?:/\S*/)?(?<!/etc/)(?:chpasswd|passwd|smbpasswd|kinit|cryptsetup|vncpasswd|mkpasswd|htpasswd"
    r"|ftp|lftp)(?![\w-]|://)"
    r"|--pass(?:word)?-stdin(?![\w-])|--passphrase-fd[ =]0(?![0-9])|\s-stdin(?![\w-])"
    r"|(?<![\w.-])(?:/\S*/)?sudo(?:\s+[^\s|;&<]+){0,32}?\s+(?:-[A-Za-z]*S[A-Za-z]*|--stdin)(?![\w-])"
    r"|(?<![\w.-])(?:/\S*/)?(?:mysql|mariadb|mysqladmin|mysqldump)(?![\w-])[^|;&\n]{0,512}?"
    r"\s(?:-p|--password)(?=[\s\"'<]|\Z)"
    r"|(?<![\w.-])(?:/\S*/)?psql(?![\w-])[^|;&\n]{0,512}?\s(?:-W|--password)(?![\w=-])"
    r"|--data-file[= ]-(?![^\s\"'])|\ssecret\s+(?:create|set)\s"
    # ``cat`` printing the document into a process substitution for a credential option
    # (``initdb --pwfile=<(cat <<EOF``; stdin_secrets.py takes ``<(echo X)``)
    r"|(?i:pass|pw|secret|token|key|cred)[\w.-]{0,64}(?:=|\s+)(?:file:)?<\(\s*cat(?![\w-])"
)
_LINE_WINDOW = 1024
# A file the opening line writes the document to (``cat > /tmp/pw <<EOF``, ``>>``, ``| tee -a F``),
# its name quoted or not (``> '/tmp/pw'``, ``> "$PWFILE"``, ``\\"$F\\"`` inside a ``sh -c`` script)...
_QUOTE = r"""(?:\\*["'])?"""
_WRITES_FILE = re.compile(
    r"(?:(?<![<>&0-9])>>?|(?<![\w-])tee(?:\s+-a)?)[ \t]*" + _QUOTE + r"(?P<file>[^\s|;&<>()'\"`\\]{1,256})"
)
# ... that a reader then reads: ``chpasswd < F``, ``cat F | chpasswd`` (a command within _FEED_WINDOW
# characters after the document: each document costs a bounded look, however many there are).
_FEED_WINDOW = 4096


def heredoc_spans(text: str) -> list[tuple[int, int, str]]:
    """The lines of each here-document in ``text`` that a password reader reads, as spans."""
    out: list[tuple[int, int, str]] = []
    covered = 0  # a document already taken: an opening inside it is part of its lines
    line_end = -1  # the end of the opening line last looked at, and whether it names a reader
    reader = False
    body = -1  # the newline before the next document of that line (-1: none left)
    feeds: dict[str, list[int]] | None = None  # files fed to readers (_feeds), read when first needed
    written: re.Match[str] | None = None
    # The end of the last document written to a file that no reader is fed: its lines are a file's
    # text (a script run later), read for a reader's openings (``chpasswd <<EOF`` in it) but not for
    # documents written to files again, so each line costs one look.
    written_until = -1
    for m in _OPEN.finditer(text):
        if line_end < m.start() < covered:
            continue
        if m.start() > line_end:  # a new line: read once, however many openings it holds
            line_end = text.find("\n", m.end())
            if line_end < 0:
                break  # no line follows (a cut text): no document to take
            line_start = text.rfind("\n", 0, m.start()) + 1
            line = text[max(line_start, m.start() - _LINE_WINDOW) : min(line_end, m.end() + _LINE_WINDOW)]
            reader = _READER.search(line) is not None
            written = None if reader or m.start() < written_until else _WRITES_FILE.search(line)
            body = line_end
        if (not reader and written is None) or body < 0:
            continue
        # Several openings on one line (``cat <<A > f; chpasswd <<B``): bash reads their documents
        # one after the other, each after the line of the one before's delimiter.
        end = _closing(text, m.group("tag"), body)
        fed = False
        if end > body + 1 and not reader and written is not None:
            if feeds is None:
                feeds = _feeds(text)
            fed = _fed(feeds, written.group("file"), end)
            written_until = end
        if end > body + 1 and (reader or fed):
            out.append((body + 1, end, "password"))
            covered = end
        body = text.find("\n", end + 1) if end < len(text) else -1
    return out


# A command (a pipeline: ``;``, ``&`` and newlines end it) and the files it feeds a reader:
# ``< F`` (not ``<<``), ``cat F |``.
_COMMAND = re.compile(r"[^;&\n]+")
_FED_FILE = re.compile(
    r"(?<!<)<(?![<(])[ \t]*" + _QUOTE + r"(?P<file>[^\s|;&<>()'\"`\\]{1,256})"
    r"|(?<![\w-])cat[ \t]+" + _QUOTE + r"(?P<piped>[^\s|;&<>()'\"`\\]{1,256})" + _QUOTE + r"[ \t]*\|"
)


def _feeds(text: str) -> dict[str, list[int]]:
    """Each file a reader's command reads on its standard input -> where those commands start.

    One pass over the text's commands, each read once: the documents written to files look their
    file up here, however many there are.
    """
    out: dict[str, list[int]] = {}
    for m in _COMMAND.finditer(text):
        cmd = m.group()
        if ("<" in cmd or "|" in cmd) and _READER.search(cmd) is not None:
            for f in _FED_FILE.finditer(cmd):
                out.setdefault(f.group("file") or f.group("piped"), []).append(m.start())
    return out


def _fed(feeds: dict[str, list[int]], file: str, start: int) -> bool:
    """A reader's command within _FEED_WINDOW after ``start`` reads ``file``."""
    at = feeds.get(file, [])
    k = bisect.bisect_left(at, start)
    return k < len(at) and at[k] <= start + _FEED_WINDOW


def _closing(text: str, tag: str, nl: int) -> int:
    """Where the line holding only ``tag`` starts (its ``\\n``), from the newline ``nl`` on; else the end.

    The delimiter line may be indented (``<<-``) and may end the script (``EOF"``, ``EOF)``).
    """
    n = len(text)
    while nl >= 0:
        j = nl + 1
        while j < n and text[j] in " \t":
            j += 1
        if text.startswith(tag, j):
            k = j + len(tag)
            while k < n and text[k] in " \t":
                k += 1
            if k == n or text[k] in "\n\"'`)\\":
                return nl
        nl = text.find("\n", nl + 1)
    return n


# ``< <(echo X)``: a process substitution's output as the standard input of the command before it.
_ONTO_STDIN = re.compile(r"<[ \t]*" + PROC_PRINTS)


def stdin_substitution_spans(text: str) -> list[tuple[int, int, str]]:
    """What each ``< <(echo …)`` in ``text`` prints onto a password reader's standard input, as spans."""
    out: list[tuple[int, int, str]] = []
    seen = 0  # the end of the substitution before: each character is read for one command only
    for m in _ONTO_STDIN.finditer(text):
        start, end = m.span("s")
        # the command: from the last ``|``, ``;``, ``&`` or newline before it, bounded
        command = text[max(seen, m.start() - _LINE_WINDOW) : m.start()]
        seen = m.end()
        if text[start:end].strip("'\" ") == REDACTED:  # taken by the combined pass already
            continue
        cut = max(command.rfind(c) for c in "|;&\n") + 1
        if _READER.search(command, cut) is not None:
            out.append((start, end, "password"))
    return out
