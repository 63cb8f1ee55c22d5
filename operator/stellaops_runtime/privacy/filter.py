"""The privacy filter: every event passes here before it is stored or logged.

Runtime evidence needs to know *what ran*, not the secrets a process was given.
Command lines and traced string arguments carry passwords, tokens and keys, so
this stage (a pure transform, DESIGN.md layer 2) cuts every argument to
``privacy.maxArgumentBytes``, redacts secrets in what is left, drops events from
namespaces outside the allowlist, and in ``symbolIdOnly`` mode strips the event
down to module identity. It runs on every event, so the common case (no
arguments, or a short innocent command line already seen) costs a dict lookup.

What the filter does, in order, in ``PrivacyFilter.apply``:

1. Namespace allowlist. When ``allowed_namespaces`` is non-empty, only events
   whose ``pod.namespace`` is in it pass. Host events and plain containers
   (``event.pod is None``) count as namespace ``""``: they pass only if ``""``
   is in the list. Dropped events return ``None`` and count in ``events_filtered``.
2. ``symbol_id_only``: the event keeps only module identity. Kept:
   ``process.binary`` (the executed module), ``event.module`` (the probed or
   loaded file), every stack frame (``module``, ``symbol``, offsets,
   ``build_id``), ``function_name``, and the process/container/pod identity
   fields (ids, image, namespace, name, labels). Cleared: ``process.arguments``
   (set to ``""``), ``event.arguments`` (emptied: file and path argument values
   go with them) and ``process.cwd`` (set to ``""``). Nothing is redacted or
   truncated because no argument text is left.
3. Otherwise each argument field (``process.arguments``, the one space-separated
   string Tetragon gives, and every ``Argument.value``) is first truncated to
   ``max_argument_bytes`` UTF-8 bytes on a character boundary, with the suffix
   ``…[truncated N bytes]`` (N bytes removed; the suffix itself is not counted
   in the limit), then, when ``redact_arguments`` is on, redacted. With ``default_patterns``: the default
   rules (``patterns``, ``provider_tokens``, ``personal_data`` and the
   option-name rules of ``cli_options``) in one regex pass; the short options
   of the client that runs (the binary's basename) or is named in the text
   (``cli_options``); detect-secrets' rules (``library_rules``); environment
   variable names (``env_names``). Then each of ``extra_patterns``; then, with
   ``entropy_detection``, high-entropy tokens (``entropy``). docs/privacy.md
   says what each covers. Truncating first bounds the regex
   work (a 1 MiB argument costs a scan of ``max_argument_bytes``); a secret cut
   in half by the truncation is still redacted (key=value, bearer and PEM
   patterns match to the end of the text; ``TRUNCATED_TAIL`` catches what a
   cut leaves of formats known by their end or length: a connection string
   before its ``@``, a prefixed token, a JWT, an e-mail address, a card number).

A traced argument whose policy label names a secret (``password``) is redacted
whole, a field holding U+FFFD (a NUL) is redacted again with it read as a
space (``hostile_text``), and a field holding look-alikes of ASCII (fullwidth
``=``, a no-break space, a Cyrillic ``a``) is read with them folded to ASCII
(``lookalike``).

``extra_patterns`` are regexes from the config: when one has a group named
``secret`` only that group is replaced, else group 1 if it has groups, else the
whole match; they are counted as ``extra_<index in the list>``.

Lone surrogates (``surrogateescape``-decoded bytes) and U+FFFD are ordinary
characters here: UTF-8 byte counts use ``surrogatepass``, so no str raises.

There is no logging in this module: a log line is exactly where a secret must
not go. The counters are plain ints read by the metrics exporter.
``filter_env`` filters ``NAME=value`` environment lists (by name, then by value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from stellaops_runtime.adapter.validate import MAX_TEXT_CHARS
from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.privacy import entropy, env_names, lookalike
from stellaops_runtime.privacy.cli_options import TOOLS
from stellaops_runtime.privacy.engine import (
    ExtraPattern,
    TriggerIndex,
    cli_spans,
    regex_spans,
    replace_spans,
    sub_compiled,
    sub_extra,
)
from stellaops_runtime.privacy.hostile_text import REPLACED, SecretLabels, redact_replaced_as_separators
from stellaops_runtime.privacy.library_rules import LibraryRule, library_rules
from stellaops_runtime.privacy.patterns import (
    DEFAULT_PATTERNS,
    REDACTED,
    TRUNCATED_TAIL,
    CompiledPatterns,
    compile_patterns,
)

TRUNCATION_MARKER = "…[truncated {n} bytes]"
LIBRARY_COUNTER_PREFIX = "detect_secrets."

# Innocent fields (nothing redacted, nothing truncated) are remembered so the
# next event of the same process costs one dict lookup. Only innocent text is
# kept (no secret lives in this cache), only short text, and only so many.
_CLEAN_CACHE_MAX_ENTRIES = 4096
_CLEAN_CACHE_MAX_CHARS = 1024
# How far back from the end of a truncated field the tail patterns look.
_TAIL_WINDOW_CHARS = 512
# Distinct trigger combinations compiled before the cache starts over (in
# practice a handful: which secrets appear together in one field).
_MAX_COMPILED_SUBSETS = 256
# One trigger pass for both rule lists: [0] the default patterns, [1] detect-secrets' rules.
# Built with the first filter that uses the default patterns: detect-secrets (and the
# requests library it imports) is loaded only then (issue 13).
_INDEX: list[TriggerIndex] = []


def _trigger_index(rules: tuple[LibraryRule, ...]) -> TriggerIndex:
    if not _INDEX:
        own = [(p.triggers, p.gate) for p in DEFAULT_PATTERNS]
        _INDEX.append(TriggerIndex(own, [(r.triggers, r.gate) for r in rules]))
    return _INDEX[0]


_PROCESS_CACHE_MAX_ENTRIES = 65_536
# (fields redacted, arguments truncated, (pattern name, redactions) ...) of one filtering
_Deltas = tuple[int, int, tuple[tuple[str, int], ...]]


class PrivacyFilter:
    """Applies a PrivacyConfig to events (in place), to log text and to environment lists."""

    def __init__(self, config: PrivacyConfig) -> None:
        self.config = config
        self._allowed: frozenset[str] | None = (
            frozenset(config.allowed_namespaces) if config.allowed_namespaces else None
        )
        self._symbol_id_only = config.symbol_id_only
        self._max_bytes = config.max_argument_bytes
        # Text of at most this many characters is within max_bytes whatever it
        # holds (a character is at most 4 UTF-8 bytes).
        self._safe_chars = config.max_argument_bytes // 4
        self._use_default = config.default_patterns
        # Default patterns compiled per set of triggered patterns (a bit mask):
        # a field only pays for the patterns whose trigger words it contains.
        self._by_mask: dict[int, CompiledPatterns] = {}
        self._tail: CompiledPatterns | None = (
            compile_patterns((TRUNCATED_TAIL,)) if config.default_patterns else None
        )
        self._extras = [
            ExtraPattern(name=f"extra_{i}", regex=re.compile(rx))
            for i, rx in enumerate(config.extra_patterns)
        ]
        self._redact = config.redact_arguments
        self._entropy = config.entropy_detection
        self._entropy_threshold = config.entropy_threshold
        self._entropy_min_length = config.entropy_min_length
        # Environment-variable names: the defaults (with default_patterns) and the config's own.
        env_globs = [
            *(env_names.DEFAULT_ENV_NAME_PATTERNS if config.default_patterns else ()),
            *config.extra_env_name_patterns,
        ]
        self._env_globs = tuple(env_globs)
        self._env_arg_rx = env_names.argument_regex(env_globs) if env_globs else None
        self._env_name_rx = env_names.name_regex(env_globs) if env_globs else None
        self._env_triggers = env_names.literal_triggers(env_globs)
        self._patterns_on = self._use_default or bool(self._extras) or bool(env_globs) or self._entropy
        self._clean: dict[str, None] = {}
        # A traced argument whose policy label names a secret is redacted whole (default rules only).
        self._label_rule = self._redact and self._use_default
        self._labels = SecretLabels()
        # Tetragon repeats a process's arguments on every event of that process:
        # exec_id -> (hash of the raw text, filtered text, counter deltas). Only a
        # hash of the raw text is kept, never the secret itself.
        self._by_process: dict[str, tuple[int, str, _Deltas]] = {}

        self.events_seen = 0
        self.events_filtered = 0
        self.fields_redacted = 0
        self.arguments_truncated = 0
        self.redactions_by_pattern: dict[str, int] = {}
        if self._use_default:
            for p in DEFAULT_PATTERNS:
                self.redactions_by_pattern[p.name] = 0
            self.redactions_by_pattern[TRUNCATED_TAIL.name] = 0
            self.redactions_by_pattern["cli_option"] = 0
            self._library = library_rules()
            self._index = _trigger_index(self._library)
            for r in self._library:
                self.redactions_by_pattern[LIBRARY_COUNTER_PREFIX + r.name] = 0
        if self._env_arg_rx is not None:
            self.redactions_by_pattern["env_name"] = 0
        for x in self._extras:
            self.redactions_by_pattern[x.name] = 0
        if self._entropy:
            self.redactions_by_pattern["high_entropy"] = 0

    # -- events ---------------------------------------------------------------

    def apply(self, event: RuntimeCallEvent) -> RuntimeCallEvent | None:
        """Filter one event in place; ``None`` means drop it (namespace allowlist)."""
        self.events_seen += 1
        if self._allowed is not None:
            pod = event.pod
            if (pod.namespace if pod is not None else "") not in self._allowed:
                self.events_filtered += 1
                return None
        proc = event.process
        if self._symbol_id_only:
            proc.arguments = ""
            proc.cwd = ""
            event.arguments.clear()
            return event
        text = proc.arguments
        if text:
            # The common case inline: this process's arguments were filtered before.
            hit = self._by_process.get(proc.exec_id) if proc.exec_id else None
            if hit is not None and hit[0] == hash(text):
                fields, truncated, patterns = hit[2]
                if fields:  # most processes' arguments hold nothing to redact: no update of 0
                    self.fields_redacted += fields
                if truncated:
                    self.arguments_truncated += truncated
                for name, n in patterns:
                    self.redactions_by_pattern[name] += n
                proc.arguments = hit[1]
            else:
                proc.arguments = self._filter_process_arguments(proc.exec_id, text, proc.binary)
        for arg in event.arguments:
            if arg.value:
                family = self._labels.family(arg.label) if arg.label and self._label_rule else ""
                if family and arg.value != REDACTED:
                    arg.value = REDACTED
                    self.fields_redacted += 1
                    self.redactions_by_pattern[family] += 1
                elif not family:
                    arg.value = self.filter_field(arg.value)
        return event

    def _filter_process_arguments(self, exec_id: str, text: str, binary: str) -> str:
        if not exec_id:
            return self.filter_field(text, tool=_tool(binary))
        h = hash(text)
        hit = self._by_process.get(exec_id)
        if hit is not None and hit[0] == h:
            fields, truncated, patterns = hit[2]
            self.fields_redacted += fields
            self.arguments_truncated += truncated
            for name, n in patterns:
                self.redactions_by_pattern[name] += n
            return hit[1]
        before = (self.fields_redacted, self.arguments_truncated, dict(self.redactions_by_pattern))
        out = self.filter_field(text, tool=_tool(binary))
        deltas: _Deltas = (
            self.fields_redacted - before[0],
            self.arguments_truncated - before[1],
            tuple(
                (k, v - before[2].get(k, 0))
                for k, v in self.redactions_by_pattern.items()
                if v != before[2].get(k, 0)
            ),
        )
        if len(self._by_process) >= _PROCESS_CACHE_MAX_ENTRIES:
            self._by_process.clear()
        self._by_process[exec_id] = (h, out, deltas)
        return out

    def filter_field(self, text: str, *, tool: str = "") -> str:
        """Truncate then redact one argument field, counting what happened.

        ``tool``: the basename of the executed binary when ``text`` is its
        argument list (its short credential options then count from the start).
        """
        clean = self._clean
        key = f"{tool}\x00{text}" if tool else text
        if key in clean:
            return text
        cut, removed = self._truncate(text)
        out = cut
        hits = 0
        if self._redact and self._patterns_on:
            out, hits = self._redact_text(
                cut,
                counts=self.redactions_by_pattern,
                truncated=removed > 0 or len(text) >= MAX_TEXT_CHARS,
                tool=tool,
            )
        if removed:
            self.arguments_truncated += 1
            out += TRUNCATION_MARKER.format(n=removed)
        elif not hits and len(text) <= _CLEAN_CACHE_MAX_CHARS:
            if len(clean) >= _CLEAN_CACHE_MAX_ENTRIES:
                clean.clear()
            clean[key] = None
        if hits:
            self.fields_redacted += 1
        return out

    # -- logs and environment lists -------------------------------------------------

    def redact_text(self, text: str, *, tool: str = "") -> str:
        """Redact secrets in text the agent is about to log.

        Applies the configured rules whatever ``redact_arguments`` says: logs
        are never evidence. No truncation and no counters.
        """
        if not self._patterns_on or not text:
            return text
        out, _ = self._redact_text(text, counts=None, truncated=False, tool=tool)
        return out

    def filter_env(self, entries: Iterable[str]) -> list[str]:
        """Filter ``NAME=value`` environment entries: secret names lose their value, others are redacted.

        Uses the default environment-name rules (with ``default_patterns``) and
        ``extra_env_name_patterns``; values of other names go through the
        argument rules (as ``redact_text``). Counts one redacted field per
        entry changed and ``env_name`` per value dropped by name.
        """
        given = list(entries)
        out = env_names.filter_env(given, name_patterns=self._env_globs, redact_value=self.redact_text)
        for before, after in zip(given, out, strict=True):
            if before != after:
                self.fields_redacted += 1
                name, eq, _ = before.partition("=")
                if eq and self._env_name_rx is not None and env_names.name_matches(self._env_name_rx, name):
                    self.redactions_by_pattern["env_name"] += 1
        return out

    # -- internals ------------------------------------------------------------

    def _truncate(self, text: str) -> tuple[str, int]:
        """Cut text to max_bytes UTF-8 bytes on a character boundary: (text, bytes removed)."""
        if len(text) <= self._safe_chars:
            return text, 0
        limit = self._max_bytes
        if text.isascii():
            if len(text) <= limit:
                return text, 0
            return text[:limit], len(text) - limit
        raw = text.encode("utf-8", "surrogatepass")
        if len(raw) <= limit:
            return text, 0
        end = limit
        while end > 0 and (raw[end] & 0xC0) == 0x80:  # raw[end] is a continuation byte
            end -= 1
        return raw[:end].decode("utf-8", "surrogatepass"), len(raw) - end

    def _default_for(self, mask: int) -> CompiledPatterns | None:
        """The default patterns of ``mask`` (their triggers and gates passed), compiled; None if none."""
        if not mask:
            return None
        cp = self._by_mask.get(mask)
        if cp is None:
            if len(self._by_mask) >= _MAX_COMPILED_SUBSETS:
                self._by_mask.clear()
            cp = compile_patterns([p for i, p in enumerate(DEFAULT_PATTERNS) if mask >> i & 1])
            self._by_mask[mask] = cp
        return cp

    def _redact_text(
        self, text: str, *, counts: dict[str, int] | None, truncated: bool, tool: str
    ) -> tuple[str, int]:
        if not text.isascii():  # look-alikes of the ASCII the rules need (lookalike.py)
            folded = lookalike.fold(text)
            if folded != text:
                out, hits = self._redact_separated(folded, counts=counts, truncated=truncated, tool=tool)
                if hits:
                    return out, hits
        return self._redact_separated(text, counts=counts, truncated=truncated, tool=tool)

    def _redact_separated(
        self, text: str, *, counts: dict[str, int] | None, truncated: bool, tool: str
    ) -> tuple[str, int]:
        out, hits = self._redact_pass(text, counts=counts, truncated=truncated, tool=tool)
        if REPLACED in out:  # a NUL between a flag and its value (hostile_text.py)
            out, more = redact_replaced_as_separators(
                out, lambda t: self._redact_pass(t, counts=counts, truncated=truncated, tool=tool)
            )
            hits += more
        return out, hits

    def _redact_pass(
        self, text: str, *, counts: dict[str, int] | None, truncated: bool, tool: str
    ) -> tuple[str, int]:
        hits = 0
        if self._use_default:
            own, lib = self._index.masks(text, text.lower())
            cp = self._default_for(own)
            if cp is not None:
                text, n = sub_compiled(cp, text, counts=counts)
                hits += n
            if truncated and self._tail is not None:
                text, n = sub_compiled(
                    self._tail, text, counts=counts, pos=max(0, len(text) - _TAIL_WINDOW_CHARS)
                )
                hits += n
            spans = cli_spans(text, tool)
            # Library rules are chosen on the text before the default pass: that pass
            # only puts "[REDACTED]" where a secret was, and no library pattern
            # matches in or across the marker (test_privacy_formats.py).
            mask = lib
            if mask:
                for i, rule in enumerate(self._library):
                    if mask >> i & 1:
                        name = LIBRARY_COUNTER_PREFIX + rule.name
                        spans.extend((s, e, name) for s, e in rule.spans(text))
            if spans:
                text, n = replace_spans(text, spans, counts=counts)
                hits += n
        if self._env_arg_rx is not None and "=" in text:
            low = text.lower()
            if not self._env_triggers or any(t in low for t in self._env_triggers):
                text, n = replace_spans(text, regex_spans(self._env_arg_rx, text, "env_name"), counts=counts)
                hits += n
        for x in self._extras:
            text, n = sub_extra(x, text, counts=counts)
            hits += n
        if self._entropy:
            found = entropy.high_entropy_spans(
                text, threshold=self._entropy_threshold, min_length=self._entropy_min_length
            )
            if found:
                text, n = replace_spans(text, [(s, e, "high_entropy") for s, e in found], counts=counts)
                hits += n
        return text, hits


def _tool(binary: str) -> str:
    """The client name of an executed binary when it has client rules, else ""."""
    name = binary.rpartition("/")[2]
    return name if name in TOOLS else ""
