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
``<`` is read for them the same way (stdin_secrets.py has the password-file options), and so is
the command before a here-string (``kinit bob <<< X``, ``docker secret create s - <<< X``).

Pure: text in, spans out (``engine.replace_spans`` replaces them, counted under ``password``).
"""

from __future__ import annotations

import bisect
import re

from stellaops_runtime.privacy.base import REDACTED
from stellaops_runtime.privacy.stdin_secrets import PROC_PRINTS

__all__ = ["here_string_spans", "heredoc_spans", "stdin_substitution_spans"]

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
    # a token or a passphrase: ``gh auth login --with-token``, ``vault login -``, openssl's
    # ``-passin stdin``, ``caddy hash-password`` (without ``--plaintext``: it then prompts)
    r"|--with-token(?![\w-])|(?<![\w.-])vault\s+login(?:\s+-[^\s|;&<]+){0,16}?\s+-(?![^\s\"'])"
    r"|\s-pass(?:in)?\s+(?:stdin|fd:0)(?![\w-])|(?<![\w.-])caddy\s+hash-password(?![\w-])(?![^|;&\n]{0,256}?--plaintext)"
    # ``cat`` printing the document into a process substitution for a credential option
    # (``initdb --pwfile=<(cat <<EOF``; stdin_secrets.py takes ``<(echo X)``)
    r"|(?i:pass|pw|secret|token|key|cred)[\w.-]{0,64}(?:=|\s+)(?:file:)?<\(\s*cat(?![\w-])"
    # ``cat`` printing it into a command substitution assigned to a secret's name (``DB_PASSWORD=$(cat
    # <<'EOF'`` then the value's lines: s50 RP), quoted too
    # (its ``$(cat`` already taken by the key rules as the value: ``DB_PASSWORD=[REDACTED] <<'EOF'``)
    r"|(?<![\w.-])(?i:[\w.-]{0,64}?(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|private[_-]?key"
    r"|credentials?)|(?:[\w.-]{0,64}?[_.-])?pass)=[\"']?(?:\$\(\s*cat(?![\w-])|\[REDACTED\][ \t]*<<)"
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
    """The lines of each here-document in ``text`` that a password reader reads, as spans.

    A document written to a file that no reader reads (a script run later: ``cat > setup.sh
    <<'OUTER'``) is read on for openings inside it, a reader's (``chpasswd <<EOF``) or one written
    to a file a reader reads (``cat > /tmp/pw <<EOF`` ... ``chpasswd < /tmp/pw``), however deep.
    Each opening costs a bounded look at its line and two lookups (its delimiter's line in
    ``_Closings``, its file in ``_feeds``): the scan stays linear however many there are.
    """
    out: list[tuple[int, int, str]] = []
    covered = 0  # a document already taken: an opening inside it is part of its lines
    line_end = -1  # the end of the opening line last looked at, and whether it names a reader
    reader = False
    body = -1  # the newline before the next document of that line (-1: none left)
    feeds: dict[str, list[int]] | None = None  # files fed to readers (_feeds), read when first needed
    closings: _Closings | None = None  # delimiter lines (_Closings), indexed when first needed
    written: re.Match[str] | None = None
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
            written = None if reader else _WRITES_FILE.search(line)
            body = line_end
        if (not reader and written is None) or body < 0:
            continue
        # Several openings on one line (``cat <<A > f; chpasswd <<B``): bash reads their documents
        # one after the other, each after the line of the one before's delimiter.
        if closings is None:
            closings = _Closings(text)
        end = closings.after(m.group("tag"), body)
        fed = False
        if end > body + 1 and not reader and written is not None:
            if feeds is None:
                feeds = _feeds(text)
            fed = _fed(feeds, written.group("file"), end)
        if end > body + 1 and (reader or fed):
            out.append((body + 1, end, "password"))
            covered = end
        body = closings.line_end(end)
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


# The longest delimiter word (_OPEN's) and the blanks a delimiter line may hold around it.
_TAG_MAX = 64
_TAG_LOOK = 256
# What may follow a delimiter on its line (after blanks): the end of the script (``EOF"``, ``EOF)``).
_AFTER_TAG = "\"'`)\\"


class _Closings:
    """The lines each delimiter word ends a document on, indexed once per text (bisect lookups).

    A line holding only a word, blanks around (``<<-``), closes a document of that word; so does
    one where the word is followed by what ends the script (``EOF"``, ``EOF)``). Each line is
    read once, up to _TAG_LOOK characters: a lookup per document, not a scan to the delimiter.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._at: dict[str, list[int]] = {}
        nl = text.find("\n")
        while nl >= 0:
            nxt = text.find("\n", nl + 1)
            line = text[nl + 1 : (nxt if nxt >= 0 else len(text))][:_TAG_LOOK].lstrip(" \t")
            for tag in _line_tags(line):
                self._at.setdefault(tag, []).append(nl)
            nl = nxt

    def after(self, tag: str, nl: int) -> int:
        """The ``\\n`` before the first line from ``nl`` on that closes ``tag``; else the text's end."""
        at = self._at.get(tag.rstrip(" \t"), [])
        k = bisect.bisect_left(at, nl)
        return at[k] if k < len(at) else len(self._text)

    def line_end(self, end: int) -> int:
        """The newline ending the delimiter line that starts at ``end`` (-1: none, or no line)."""
        return self._text.find("\n", end + 1) if end < len(self._text) else -1


def _line_tags(line: str) -> list[str]:
    """The delimiter words ``line`` (its leading blanks gone) closes a document of."""
    tags: list[str] = []
    for i, c in enumerate(line):
        if c in _AFTER_TAG or c == "\n":
            tag = line[:i].rstrip(" \t")
            if 0 < len(tag) <= _TAG_MAX:
                tags.append(tag)
            if c not in "`)":  # a quote or a backslash is in no delimiter word: nothing further
                break
        elif i > _TAG_MAX and c not in " \t":
            break
    else:
        tag = line.rstrip(" \t")
        if 0 < len(tag) <= _TAG_MAX:
            tags.append(tag)
    return tags


# ``<<< WORD``: a here-string, the standard input of the command before it (bash(1)); the word
# quoted or not (``\\"…\\"`` inside a double-quoted ``sh -c`` script), not the quote closing it;
# in ANSI-C quotes (``$'pa\\'ss'``) or what a command substitution prints (``$(echo X)``), whole.
_HERE_STRING = re.compile(
    r"""(?<!<)<<<[ \t]*(?P<s>\\"(?:[^"\\\n]|\\(?!")[^\n])*+(?:\\")?|"(?:[^"\\\n]|\\[^\n])*+"?"""
    r"""|\$'(?:[^'\\\n]|\\[^\n])*+'?|\$\([^)\n]{0,1024}+\)?"""
    r"""|'[^'\n]*+'?|(?:[^\s;|&)"'`\\]|\\[^\s"])++)"""
)


def here_string_spans(text: str) -> list[tuple[int, int, str]]:
    """What each ``<<< WORD`` in ``text`` gives a password reader (any of _READER's) on its standard input."""
    return _reader_input_spans(_HERE_STRING, text)


# ``< <(echo X)``: a process substitution's output as the standard input of the command before it.
_ONTO_STDIN = re.compile(r"<[ \t]*" + PROC_PRINTS)


def stdin_substitution_spans(text: str) -> list[tuple[int, int, str]]:
    """What each ``< <(echo …)`` in ``text`` prints onto a password reader's standard input, as spans."""
    return _reader_input_spans(_ONTO_STDIN, text)


def _reader_input_spans(rx: re.Pattern[str], text: str) -> list[tuple[int, int, str]]:
    """The ``s`` group of each ``rx`` match whose command (the text before it) is a reader's, as spans."""
    out: list[tuple[int, int, str]] = []
    seen = 0  # the end of the match before: each character is read for one command only
    for m in rx.finditer(text):
        start, end = m.span("s")
        # the command: from the last ``|``, ``;``, ``&`` or newline before it, bounded
        command = text[max(seen, m.start() - _LINE_WINDOW) : m.start()]
        seen = m.end()
        if text[start:end].strip("'\"\\ ") == REDACTED:  # taken by the combined pass already
            continue
        cut = max(command.rfind(c) for c in "|;&\n") + 1
        if _READER.search(command, cut) is not None:
            out.append((start, end, "password"))
    return out
