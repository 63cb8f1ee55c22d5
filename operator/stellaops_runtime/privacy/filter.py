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
   in the limit), then, when ``redact_arguments`` is on, redacted by the
   configured rules (``redactor.Redactor`` runs them, in its order;
   docs/privacy.md says what each covers). Truncating first bounds the regex
   work (a 1 MiB argument costs a scan of ``max_argument_bytes``); a secret cut
   in half by the truncation is still redacted (key=value, bearer and PEM
   patterns match to the end of the text; ``TRUNCATED_TAIL`` catches what a
   cut leaves of formats known by their end or length: a connection string
   before its ``@``, a prefixed token, a JWT, an e-mail address, a card number).

A traced argument whose policy label names a secret (``password``) is redacted
whole (``hostile_text``), and so is the string argument after one whose value is a
secret's name (``setenv("DB_PASSWORD", X)``: ``arg_pairs``).

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

from collections.abc import Iterable

from stellaops_runtime.adapter.common import image_digest
from stellaops_runtime.adapter.validate import MAX_TEXT_CHARS
from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.privacy import env_names
from stellaops_runtime.privacy.arg_pairs import VALUE_TYPES, SecretNames
from stellaops_runtime.privacy.base import REDACTED
from stellaops_runtime.privacy.cli_options import client_name
from stellaops_runtime.privacy.hostile_text import SecretLabels
from stellaops_runtime.privacy.image_refs import redact_ref
from stellaops_runtime.privacy.redactor import LIBRARY_COUNTER_PREFIX, Redactor

__all__ = ["LIBRARY_COUNTER_PREFIX", "TRUNCATION_MARKER", "PrivacyFilter"]

TRUNCATION_MARKER = "…[truncated {n} bytes]"

# Innocent fields (nothing redacted, nothing truncated) are remembered so the
# next event of the same process costs one dict lookup. Only innocent text is
# kept (no secret lives in this cache), only short text, and only so many.
_CLEAN_CACHE_MAX_ENTRIES = 4096
_CLEAN_CACHE_MAX_CHARS = 1024

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
        self._redactor = Redactor(config)
        self._redact = config.redact_arguments
        self._patterns_on = self._redactor.active
        # (tool, argv, text) of innocent fields: a tuple, which no field's text can spell (a key
        # built by joining them with NUL could be a plain field's whole text).
        self._clean: dict[tuple[str, bool, str], None] = {}
        self._images: dict[str, str] = {}  # image name or id -> the same, filtered (scrub_image)
        # A traced argument whose policy label names a secret is redacted whole (default rules only).
        self._label_rule = self._redact and config.default_patterns
        self._labels = SecretLabels()
        # The value after an argument naming a secret (setenv("DB_PASSWORD", X)): arg_pairs.py.
        self._names = SecretNames(self._labels, self._redactor.env_name_rx)
        # Tetragon repeats a process's arguments on every event of that process:
        # exec_id -> (hash of the raw text, filtered text, counter deltas). Only a
        # hash of the raw text is kept, never the secret itself.
        self._by_process: dict[str, tuple[int, str, _Deltas]] = {}

        self.events_seen = 0
        self.events_filtered = 0
        self.fields_redacted = 0
        self.arguments_truncated = 0
        self.redactions_by_pattern: dict[str, int] = dict.fromkeys(self._redactor.counter_names(), 0)

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
        named = ""  # the family the previous argument's value names as a secret's name
        for arg in event.arguments:
            raw = arg.value
            if raw:
                family = self._labels.family(arg.label) if arg.label and self._label_rule else ""
                if not family and named and arg.type in VALUE_TYPES:
                    family = named
                if family and raw != REDACTED:
                    arg.value = REDACTED
                    self.fields_redacted += 1
                    self.redactions_by_pattern[family] += 1
                elif not family:
                    arg.value = self.filter_field(raw)
            named = self._names.family(raw) if self._label_rule and raw else ""
        return event

    def _filter_process_arguments(self, exec_id: str, text: str, binary: str) -> str:
        if not exec_id:
            return self.filter_field(text, tool=_tool(binary), argv=True)
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
        out = self.filter_field(text, tool=_tool(binary), argv=True)
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

    def filter_field(self, text: str, *, tool: str = "", argv: bool = False) -> str:
        """Truncate then redact one argument field, counting what happened.

        ``tool``: the basename of the executed binary when ``text`` is its
        argument list (its short credential options then count from the start).
        ``argv``: ``text`` is an exec's argument list (Redactor.redact).
        """
        clean = self._clean
        key = (tool, argv, text)
        if key in clean:
            return text
        cut, removed = self._truncate(text)
        out = cut
        hits = 0
        if self._redact and self._patterns_on:
            out, hits = self._redactor.redact(
                cut,
                counts=self.redactions_by_pattern,
                truncated=removed > 0 or len(text) >= MAX_TEXT_CHARS,
                tool=tool,
                argv=argv,
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

    def scrub_image(self, event: RuntimeCallEvent) -> None:
        """Mask a credential or token in the event's image name and id, in place (once per name).

        Tetragon reports the image name the runtime was given, and containerd accepts any
        (``https://ci:S3cret@registry/app:1``); with no digest the name is the hot-symbol
        index's key (``RuntimeCallEvent.image_key``) and a window's or gap's image. The
        pipeline calls this before anything reads the key; the text is filtered as the
        container lifecycle observer filters it (lifecycle/scrub.py ``scrub_ref``), so both
        name the image alike. An id that is a digest alone (``sha256:<hex>``) is left as it is;
        the event's digest is one (adapter/common.py ``image_digest`` takes nothing else).
        """
        c = event.container
        if c is None or not self._patterns_on:
            return
        ref = c.image_ref
        if ref:
            out = self._images.get(ref)
            c.image_ref = out if out is not None else self._scrub_name(ref)
        ref = c.image_id
        if ref and image_digest(ref) != ref:  # a digest alone holds nothing to mask
            out = self._images.get(ref)
            c.image_id = out if out is not None else self._scrub_name(ref)

    def _scrub_name(self, ref: str) -> str:
        out = redact_ref(ref, self.redact_text)  # a reference part by part (image_refs.py)
        if len(self._images) >= _CLEAN_CACHE_MAX_ENTRIES:
            self._images.clear()
        self._images[ref] = out
        return out

    # -- logs and environment lists -------------------------------------------------

    def redact_text(self, text: str, *, tool: str = "") -> str:
        """Redact secrets in text the agent is about to log.

        Applies the configured rules whatever ``redact_arguments`` says: logs
        are never evidence. No truncation and no counters.
        """
        if not self._patterns_on or not text:
            return text
        out, _ = self._redactor.redact(text, counts=None, truncated=False, tool=tool)
        return out

    def filter_env(self, entries: Iterable[str]) -> list[str]:
        """Filter ``NAME=value`` environment entries: secret names lose their value, others are redacted.

        Uses the default environment-name rules (with ``default_patterns``) and
        ``extra_env_name_patterns``; values of other names go through the
        argument rules (as ``redact_text``). Counts one redacted field per
        entry changed and ``env_name`` per value dropped by name.
        """
        given = list(entries)
        r = self._redactor
        out = env_names.filter_env(given, name_patterns=r.env_globs, redact_value=self.redact_text)
        for before, after in zip(given, out, strict=True):
            if before != after:
                self.fields_redacted += 1
                name, eq, _ = before.partition("=")
                if eq and r.env_name_rx is not None and env_names.name_matches(r.env_name_rx, name):
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


def _tool(binary: str) -> str:
    """The client name of an executed binary when it has client rules (``mysql-8.0``: mysql), else "";
    ``xargs`` too (no rules: its ``-o`` is a switch before the command it runs, engine.py)."""
    name = binary.rpartition("/")[2]
    return name if name == "xargs" else client_name(name)
