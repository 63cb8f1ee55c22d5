"""How rules are selected per field and how their matches become ``[REDACTED]``.

The filter runs on every event, so no rule runs on a field that cannot hold
what it looks for: every rule has lower-case ``triggers`` (substrings) and/or
a ``gate`` (a cheap regex), and ``TriggerIndex.masks`` turns one field into the
bit masks of the rules that may match it. The default rules selected run each by
its own regex, as their alternation would (``rule_scan``); the library's rules
and the client rules report spans that are merged and replaced once.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence

from stellaops_runtime.contracts.value_lines import value_end
from stellaops_runtime.privacy.base import REDACTED, CompiledPatterns, gate_open
from stellaops_runtime.privacy.cli_options import (
    COMMAND_END,
    TOOL_RULES,
    TOOL_WORD,
    TOOLS,
    client_name,
    names_a_client,
    words,
)
from stellaops_runtime.privacy.cli_pairs import PAIR_WALKERS


class TriggerIndex:
    """Which rules of several lists (each rule a (triggers, gate) pair) may match a text.

    Triggers are checked once for all lists. A trigger with an upper-case
    letter is matched case-sensitively (for case-sensitive patterns such as
    ``AKC...``), any other against the lower-cased text.
    """

    __slots__ = ("_always", "_bits", "_gates", "_lower", "_upper")

    def __init__(self, *lists: Sequence[tuple[tuple[str, ...], str]]) -> None:
        bits: dict[str, list[int]] = {}
        self._always = [0] * len(lists)
        self._gates: list[tuple[tuple[str, int], ...]] = []
        for k, rules in enumerate(lists):
            gates: dict[str, int] = {}
            for i, (triggers, gate) in enumerate(rules):
                bit = 1 << i
                if triggers:
                    for t in triggers:
                        bits.setdefault(t, [0] * len(lists))[k] |= bit
                else:
                    self._always[k] |= bit
                if gate:
                    gates[gate] = gates.get(gate, 0) | bit
            self._gates.append(tuple(gates.items()))
        self._bits = {t: tuple(v) for t, v in bits.items()}
        self._lower = tuple(t for t in bits if t == t.lower())
        self._upper = tuple(t for t in bits if t != t.lower())

    def masks(self, text: str, low: str) -> list[int]:
        """Per list, the bits of the rules whose triggers occur and whose gate ``text`` passes."""
        masks = list(self._always)
        found = [t for t in self._lower if t in low]
        found += [t for t in self._upper if t in text]
        if found:
            n = len(masks)
            for t in found:
                b = self._bits[t]
                for k in range(n):
                    masks[k] |= b[k]
        for k, gates in enumerate(self._gates):
            for gate, bits in gates:
                if masks[k] & bits and not gate_open(gate, text):
                    masks[k] &= ~bits
        return masks


def sub_compiled(
    cp: CompiledPatterns, text: str, *, counts: dict[str, int] | None, pos: int = 0
) -> tuple[str, int]:
    """Replace the secret group of every (validated) match of a compiled pattern set.

    A match its pattern's validator rejects (a Luhn-invalid number, a path after ``--key``)
    takes nothing: the search goes on from the character after its start, so a secret inside
    it (``--credentials /x?token=S3cret``) is still found.
    """
    rx = cp.regex
    m = rx.search(text, pos)
    if m is None:
        return text, 0
    groups = cp.groups
    out: list[str] = []
    last = 0
    hits = 0
    while m is not None:
        group = m.lastgroup
        name, whole, validate = groups[group]  # type: ignore[index]
        start, end = m.span() if whole else m.span(group)  # type: ignore[arg-type]
        nxt = m.end() if m.end() > m.start() else m.end() + 1
        # A span that is exactly "[REDACTED]" was redacted before (log text
        # redacted twice, a tail match on a redacted end): leave it, uncounted.
        if end > start >= last and text[start:end] != REDACTED:
            if validate is not None and not validate(text[start:end]):
                m = rx.search(text, m.start() + 1)
                continue
            end = value_end(text, start, end)  # the lines below a key at its line's start (value_lines.py)
            out.append(text[last:start])
            out.append(REDACTED)
            last = end
            hits += 1
            if counts is not None:
                counts[name] += 1
        m = rx.search(text, nxt) if nxt <= len(text) else None
    if not hits:
        return text, 0
    out.append(text[last:])
    return "".join(out), hits


def replace_spans(
    text: str, spans: Iterable[tuple[int, int, str]], *, counts: dict[str, int] | None
) -> tuple[str, int]:
    """Replace (start, end, rule name) spans with REDACTED; overlaps merge, earlier markers are absorbed."""
    ordered = sorted(spans)
    if not ordered:
        return text, 0
    markers: list[tuple[int, int]] = []
    if REDACTED in text:
        i = text.find(REDACTED)
        while i >= 0:
            markers.append((i, i + len(REDACTED)))
            i = text.find(REDACTED, i + 1)
    # Markers are sorted and disjoint: a span meets only those from the first ending after its start
    # on (found by bisection), so each span costs the markers it meets, not all of the field's.
    marker_ends = [me for _, me in markers]
    marker_set = set(markers)
    merged: list[tuple[int, int, str]] = []
    for start, end, name in ordered:
        j = bisect.bisect_right(marker_ends, start)
        while j < len(markers) and markers[j][0] < end:  # never cut a marker in two
            start, end = min(start, markers[j][0]), max(end, markers[j][1])
            j += 1
        if (start, end) in marker_set:
            continue  # exactly an earlier marker: already redacted
        if merged and start <= merged[-1][1]:
            prev = merged[-1]
            merged[-1] = (prev[0], max(end, prev[1]), prev[2])
            continue
        merged.append((start, end, name))
    if not merged:
        return text, 0
    out: list[str] = []
    last = 0
    for start, end, name in merged:
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
        if counts is not None:
            counts[name] += 1
    out.append(text[last:])
    return "".join(out), len(merged)


# A client's name as the value of an output option is a file's name, not a command: ``gcc -o mongo4
# -pthread`` ran mongo's ``-p`` rule and lost ``thread``, ``go build --output=mongo -p 4`` its ``4``.
# The option right before the word holding the name (a path to it too: ``-o bin/mysql8``; not a
# setting's value, ssh's ``-o "ProxyCommand=sshpass -p X …"``, which runs the client), at most
# _OUTPUT_REACH characters back (each client word costs a bounded look back, however many there are).
_OUTPUT_REACH = 300
_AN_OUTPUT = re.compile(r"""-(?<!\S-)(?:o|-?out(?:put)?)(?:[ \t]++|=)["']?+[^\s;|&(`{="']{0,256}+\Z""")
# xargs's ``-o`` (``--open-tty``) is a switch before the command xargs runs (``xargs -r -o mysql -pX``):
# xargs's name then its options only (one taking a value with it: ``-n 1``) right before the ``-o``,
# read in at most _XARGS_REACH characters.
_XARGS_REACH = 128
_XARGS_OPTIONS = re.compile(
    r"""(?<![^\s;|&(`"'/])xargs(?:[ \t]++-(?:[adEILnPs][ \t]++[^\s-]\S*+|\S++))*+[ \t]++\Z"""
)


def _an_output_file(text: str, word_start: int, tool: str) -> bool:
    """Whether the client word at ``word_start`` is the value of an output option (a file's name)."""
    m = _AN_OUTPUT.search(text, max(0, word_start - _OUTPUT_REACH), word_start)
    if m is None:
        return False
    if not text.startswith("-o", m.start()) or text[m.start() + 2] not in " \t":
        return True
    before = ("xargs " if tool.rsplit("/", 1)[-1] == "xargs" else "") + text[
        max(0, m.start() - _XARGS_REACH) : m.start()
    ]
    return _XARGS_OPTIONS.search(before) is None


# Scans of one client's rules over one command, each from one more of the client's words in it,
# before the rest of the command is taken as the secret (fail closed: see _client_spans).
MAX_CLIENT_SCANS = 16


def cli_spans(text: str, tool: str) -> list[tuple[int, int, str]]:
    """Secret spans of client options: all of ``text`` for the executed ``tool``, after each client word.

    A client word starts a command up to the next shell separator; the rules of the client run
    from each word of it to that command's end, and the spans are the union of those scans,
    computed so that each position is scanned about once (:func:`_client_spans`): a text of
    thousands of client words (``curl curl curl ...``) once cost a scan per word, quadratic time.
    """
    # (client, command end) -> where its scans start (a client word's end; 0 for the executed tool)
    groups: dict[tuple[str, int], list[int]] = {}
    if tool in TOOLS:  # a name without client rules has none to run (filter_field's caller chose it)
        groups[(tool, len(text))] = [0]
    if names_a_client(words(text)):  # (a version after the name is the same client: ``mysql-8.0``)
        stops = [m.start() for m in COMMAND_END.finditer(text)]
        outputs = "-o" in text or "-out" in text
        for w in TOOL_WORD.finditer(text):
            if outputs and _an_output_file(text, w.start(), tool):
                continue  # ``gcc -o mongo4 -pthread``: a file named like a client, no command
            i = bisect.bisect_left(stops, w.end())
            end = stops[i] if i < len(stops) else len(text)
            groups.setdefault((client_name(w.group()), end), []).append(w.end())
    out: list[tuple[int, int, str]] = []
    for (name, end), starts in groups.items():
        out.extend((s, e, "cli_option") for s, e in _client_spans(TOOL_RULES[name], text, starts, end))
        walk = PAIR_WALKERS.get(name)  # a list of settings (cli_pairs.py): once per command
        if walk is not None:
            out.extend((s, e, "cli_option") for s, e in walk(text, starts[0], end))
    return out


def _client_spans(rx: re.Pattern[str], text: str, starts: list[int], end: int) -> list[tuple[int, int]]:
    """Secret spans of ``rx.finditer(text, a, end)`` for every ``a`` in ``starts`` (ascending), the union.

    A scan from ``a`` gives the same matches as an earlier scan from there on when the earlier
    one searched across ``a`` (it looked from a position at or before ``a`` and found its next
    match at or after it, or none): whether a match starts at a position does not depend on
    where the search began. So such a start is skipped, and a new scan stops at a match that
    ends where an earlier scan's match ended (both go on from the same position). After
    MAX_CLIENT_SCANS scans the rest of the command, from the next start, is the secret: text
    that nests a client's commands that often in each other's options is not a command line.
    """
    out: list[tuple[int, int]] = []
    searched = bytearray(end + 1)  # 1 where a start would repeat an earlier scan
    ends: set[int] = set()
    scans = 0
    for a in starts:
        if searched[a]:
            continue
        scans += 1
        if scans > MAX_CLIENT_SCANS:
            out.append((a, end))
            break
        q = a
        for m in rx.finditer(text, a, end):
            searched[q : m.start() + 1] = b"\x01" * (m.start() + 1 - q)
            s, e = m.span(m.lastgroup or 0)
            if e > s:
                out.append((s, e))
            if m.end() in ends or searched[m.end()]:  # an earlier scan went on from here or searched
                break  # across it: the rest is the same
            ends.add(m.end())
            q = m.end()
        else:
            searched[q : end + 1] = b"\x01" * (end + 1 - q)
    return out


def regex_spans(rx: re.Pattern[str], text: str, name: str) -> list[tuple[int, int, str]]:
    """Spans of group ``s`` (or of the whole match) of every match of ``rx``."""
    out = []
    has_s = "s" in rx.groupindex
    for m in rx.finditer(text):
        s, e = m.span("s") if has_s else m.span()
        if e > s:
            out.append((s, e, name))
    return out


class ExtraPattern:
    """One config regex and the group whose text is the secret (0: the whole match)."""

    __slots__ = ("group", "name", "regex")

    def __init__(self, *, name: str, regex: re.Pattern[str]) -> None:
        self.name = name
        self.regex = regex
        if "secret" in regex.groupindex:
            self.group: int | str = "secret"
        elif regex.groups >= 1:
            self.group = 1
        else:
            self.group = 0


def sub_extra(x: ExtraPattern, text: str, *, counts: dict[str, int] | None) -> tuple[str, int]:
    """Replace the secret group (or the whole match) of every match of a config regex."""
    out: list[str] = []
    last = 0
    hits = 0
    for m in x.regex.finditer(text):
        start, end = m.span(x.group)
        if start < 0:  # the secret group did not take part: the whole match is the secret
            start, end = m.span()
        if end <= start or start < last:
            continue
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
        hits += 1
    if not hits:
        return text, 0
    out.append(text[last:])
    if counts is not None:
        counts[x.name] += hits
    return "".join(out), hits
