"""The configured redaction rules, compiled, and the passes that run them over one text.

``PrivacyFilter`` (filter.py) decides *which* text is filtered and counts what
happened per event; this module decides *what in a text* is a secret. Kept
apart so the passes, their order and their compiled state are read in one
place, without the event, cache and truncation logic around them.

With ``default_patterns``, one pass over a text runs, in order: the default
rules (``patterns``, ``provider_tokens``, ``personal_data`` and the
option-name rules of ``cli_flags``), only those whose triggers and gates the
text passes, each by its own regex as their one alternation would (``rule_scan``:
linear); on a truncated text the
``TRUNCATED_TAIL`` rules near its end; the short options of the client that
runs (``tool``) or is named in the text (``cli_options``); a password given by
position to a connect or login call in code (``code_calls``); a value after
``--`` and a PEM key written as one shell word (``shell_words``); a value literal after a quoted
secret's name (``named_literals``); SQL*Plus's
``CONNECT user/password`` in a script an Oracle client reads (``sql_connect``); the lines of a
here-document for a password reader (``here_docs``); the answer to an expect prompt
that names nothing after a reader is spawned (``expect_prompts``); the values of a Kubernetes
Secret's ``stringData`` and ``data`` (``secret_manifests``); detect-secrets' rules
(``library_rules``). Then environment variable names (``env_names``; as a mapping's key,
``mapping_env``), each of ``extra_patterns``, and with ``entropy_detection`` high-entropy tokens
(``entropy``). A text holding U+FFFD (a NUL) gets the pass again with it read as
a space (``hostile_text``), and a text holding a vertical tab or a form feed again with them read as
word characters (``hostile_text``), and a text holding a carriage return alone again with each read as
a line feed (``hostile_text``). A text holding look-alikes of ASCII or escaped key names
gets the passes again on its reading (``contracts/escapes.py``), and on that reading with its Unicode
spaces kept, the field losing what either covers (``reading_union``).

There is no logging here: a log line is exactly where a secret must not go.
"""

from __future__ import annotations

import re
from collections import defaultdict

from stellaops_runtime.contracts import escapes
from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.value_lines import value_end
from stellaops_runtime.privacy import entropy, env_names
from stellaops_runtime.privacy.base import REDACTED
from stellaops_runtime.privacy.code_calls import code_call_spans
from stellaops_runtime.privacy.engine import (
    ExtraPattern,
    TriggerIndex,
    cli_spans,
    regex_spans,
    replace_spans,
    sub_compiled,
    sub_extra,
)
from stellaops_runtime.privacy.escaped_headers import escaped_header_spans
from stellaops_runtime.privacy.expect_prompts import nameless_prompt_spans
from stellaops_runtime.privacy.here_docs import here_string_spans, heredoc_spans, stdin_substitution_spans
from stellaops_runtime.privacy.hostile_text import (
    INFORMATION_SEPARATORS,
    REPLACED,
    lone_returns_as_line_feeds,
    redact_breaks_joined,
    redact_replaced_as_separators,
    separated,
)
from stellaops_runtime.privacy.library_rules import LibraryRule, library_rules
from stellaops_runtime.privacy.mapping_env import mapping_env_spans
from stellaops_runtime.privacy.named_literals import named_literal_spans
from stellaops_runtime.privacy.patterns import (
    DEFAULT_PATTERNS,
    TRUNCATED_TAIL,
    TRUNCATED_URL_TAIL,
    CompiledPatterns,
    compile_patterns,
)
from stellaops_runtime.privacy.properties_lines import properties_line_spans
from stellaops_runtime.privacy.quoted_rest import rest_of_quoted
from stellaops_runtime.privacy.reading_union import count_new, union
from stellaops_runtime.privacy.rule_scan import default_rules, selected, sub_rules
from stellaops_runtime.privacy.secret_manifests import secret_data_spans
from stellaops_runtime.privacy.secure_strings import secure_string_spans
from stellaops_runtime.privacy.shell_words import shell_word_spans
from stellaops_runtime.privacy.spaced_env import spaced_env_spans
from stellaops_runtime.privacy.spaced_logons import spaced_logon_spans
from stellaops_runtime.privacy.sql_connect import sql_connect_spans
from stellaops_runtime.privacy.url_users import url_user_spans
from stellaops_runtime.privacy.value_first_lines import ValueFirstLines
from stellaops_runtime.privacy.wire_lines import wire_line_spans

LIBRARY_COUNTER_PREFIX = "detect_secrets."

# How far back from the end of a truncated field the tail patterns look.
_TAIL_WINDOW_CHARS = 512
# One trigger pass for both rule lists: [0] the default patterns, [1] detect-secrets' rules.
# Built with the first filter that uses the default patterns: detect-secrets (and the
# requests library it imports) is loaded only then (issue 13).
_INDEX: list[TriggerIndex] = []


def _trigger_index(rules: tuple[LibraryRule, ...]) -> TriggerIndex:
    if not _INDEX:
        own = [(p.triggers, p.gate) for p in DEFAULT_PATTERNS]
        _INDEX.append(TriggerIndex(own, [(r.triggers, r.gate) for r in rules]))
    return _INDEX[0]


class Redactor:
    """The rules of one PrivacyConfig, compiled; :meth:`redact` runs them over a text."""

    def __init__(self, config: PrivacyConfig) -> None:
        self._use_default = config.default_patterns
        # Each default pattern compiled alone, once per process (here: the agent's start-up); a field
        # runs only those whose trigger words it contains (rule_scan.py).
        self._rules = default_rules() if config.default_patterns else ()
        self._tail: CompiledPatterns | None = (
            compile_patterns((TRUNCATED_TAIL,)) if config.default_patterns else None
        )
        self._url_tail: CompiledPatterns | None = (
            compile_patterns((TRUNCATED_URL_TAIL,)) if config.default_patterns else None
        )
        self._extras = [
            ExtraPattern(name=f"extra_{i}", regex=re.compile(rx))
            for i, rx in enumerate(config.extra_patterns)
        ]
        self._entropy = config.entropy_detection
        self._entropy_threshold = config.entropy_threshold
        self._entropy_min_length = config.entropy_min_length
        # Environment-variable names: the defaults (with default_patterns) and the config's own.
        env_globs = [
            *(env_names.DEFAULT_ENV_NAME_PATTERNS if config.default_patterns else ()),
            *config.extra_env_name_patterns,
        ]
        self.env_globs = tuple(env_globs)
        self._env_arg_rx = (
            env_names.argument_regex(env_globs, pem_rule=config.default_patterns) if env_globs else None
        )
        # name-value entries (``{"name": "DB_PASSWORD", "value": x}``), either member first
        self._env_pair_rxs = (
            (env_names.pair_regex(env_globs), env_names.value_first_regex(env_globs)) if env_globs else ()
        )
        self._value_first_lines = ValueFirstLines(env_globs) if env_globs else None
        self.env_name_rx = env_names.name_regex(env_globs) if env_globs else None
        self._env_triggers = env_names.literal_triggers(env_globs)
        # Whether any rule is configured at all (else no text needs a pass).
        self.active = self._use_default or bool(self._extras) or bool(env_globs) or self._entropy
        if self._use_default:
            self._library = library_rules()
            self._index = _trigger_index(self._library)

    def counter_names(self) -> list[str]:
        """Every counter a pass may increment, in the order the metrics list them."""
        names: list[str] = []
        if self._use_default:
            names += [p.name for p in DEFAULT_PATTERNS]
            names += [TRUNCATED_TAIL.name, "cli_option"]
            names += [LIBRARY_COUNTER_PREFIX + r.name for r in self._library]
        if self._env_arg_rx is not None:
            names.append("env_name")
        names += [x.name for x in self._extras]
        if self._entropy:
            names.append("high_entropy")
        return names

    def redact(
        self, text: str, *, counts: dict[str, int] | None, truncated: bool, tool: str, argv: bool = False
    ) -> tuple[str, int]:
        """``text`` with its secrets replaced, and how many were (each counted in ``counts``).

        ``truncated``: the text was cut (the tail rules run near its end); ``tool``:
        the basename of the executed binary when ``text`` is its argument list.
        ``argv``: ``text`` is an exec's arguments, joined by blanks (one holding a blank quoted).
        """
        # Look-alikes of the ASCII the rules need, escaped key names (contracts/escapes.py): a
        # text that reads differently is redacted in its reading when that finds a secret (the
        # reading first: ``B\u0435arer`` (a Cyrillic e) read as it is would be taken for the value of
        # ``Authorization:`` and leave the token after it), else as it is.
        read = escapes.reading(text)
        if read != text:
            out, hits = self._redact_separated(read, counts=counts, truncated=truncated, tool=tool, argv=argv)
            if hits:
                # The same reading with its Unicode spaces kept (one character for one: aligned) is
                # redacted too, and the field loses what either covers: a space the reading took for
                # a blank is inside one word in the text (``DBPASS=a<NBSP>b`` loses ``b``; reading_union.py).
                kept = escapes.reading(text, keep_spaces=True)
                if kept != read and len(kept) == len(read):
                    seen: dict[str, int] = defaultdict(int)
                    kept_out, more = self._redact_separated(
                        kept, counts=seen, truncated=truncated, tool=tool, argv=argv
                    )
                    both = union(read, out, kept, kept_out) if more else None
                    if both is not None:
                        # a secret the kept reading took whole was counted by the first: only new markers
                        count_new(counts, seen, both.count(REDACTED) - out.count(REDACTED))
                        return both, hits + more
                return out, hits
        return self._redact_separated(text, counts=counts, truncated=truncated, tool=tool, argv=argv)

    def _redact_separated(
        self, text: str, *, counts: dict[str, int] | None, truncated: bool, tool: str, argv: bool = False
    ) -> tuple[str, int]:
        out, hits = self._redact_pass(text, counts=counts, truncated=truncated, tool=tool, argv=argv)
        first = hits
        # a NUL between a flag and its value (hostile_text.py); a raw one in text that did not come through
        # the adapter (a log line); an information separator, white space to Python's str.split (hostile_text)
        for char in (REPLACED, "\x00", *INFORMATION_SEPARATORS):
            if char in out:
                out, more = redact_replaced_as_separators(
                    out,
                    lambda t: self._redact_pass(t, counts=counts, truncated=truncated, tool=tool, argv=argv),
                    char=char,
                )
                hits += more
        for char in (REPLACED, "\x00") if first else ():
            # the text itself read with it as a separator too: a value the first pass ran over it took a
            # flag or a header whose value then stayed (``--oauth2-bearer=x\0-H\0Authorization: Bearer
            # t u``: reading_union.py)
            if char in text:
                found: dict[str, int] = defaultdict(int)
                apart = separated(text, char)
                apart_out, more = self._redact_pass(
                    apart, counts=found, truncated=truncated, tool=tool, argv=argv
                )
                both = union(text, out, apart, apart_out) if more else None
                if both is not None:
                    count_new(counts, found, both.count(REDACTED) - out.count(REDACTED))
                    out, hits = both, hits + more
        lined = lone_returns_as_line_feeds(text)
        if lined != text:
            # a carriage return alone ends a line to configparser and YAML (``password = a\r  S``: the
            # value goes on over the deeper line): the text read with them as line feeds too
            found = defaultdict(int)
            lined_out, more = self._redact_pass(
                lined, counts=found, truncated=truncated, tool=tool, argv=argv
            )
            both = union(text, out, lined, lined_out) if more else None
            if both is not None:
                count_new(counts, found, both.count(REDACTED) - out.count(REDACTED))
                out, hits = both, hits + more
        if hits:
            out = rest_of_quoted(out)
        # inside one word: a rule ending its value at ``\s`` read again; a carriage return alone, and a line
        # feed in an argument not quoted, only in an exec's arguments (one shell word holds it:
        # ``--password=$'a\rS'``, ``mysql -pa<LF>S``), a line break in a buffer and in a quoted script
        if "\v" in out or "\f" in out or (argv and ("\r" in out or "\n" in out)):
            seen: dict[str, int] = defaultdict(int)
            joined, more = redact_breaks_joined(
                out,
                lambda t: self._redact_pass(t, counts=seen, truncated=truncated, tool=tool, argv=argv),
                lone_returns=argv,
            )
            if more:
                count_new(counts, seen, joined.count(REDACTED) - out.count(REDACTED))
                out, hits = rest_of_quoted(joined), hits + more
        return out, hits

    def _redact_pass(
        self, text: str, *, counts: dict[str, int] | None, truncated: bool, tool: str, argv: bool = False
    ) -> tuple[str, int]:
        hits = 0
        if self._use_default:
            own, lib = self._index.masks(text, text.lower())
            if own:
                text, n = sub_rules(selected(self._rules, own), text, counts=counts)
                hits += n
            if truncated and self._tail is not None and self._url_tail is not None:
                # A URL's password or token cut before its ``@`` may be longer than the window:
                # those rules read the whole text (linear: patterns.py); the others its end.
                start = max(0, len(text) - _TAIL_WINDOW_CHARS)
                if "://" in text[:start] or "jdbc:oracle:" in text[:start]:
                    text, n = sub_compiled(self._url_tail, text, counts=counts)
                    hits += n
                text, n = sub_compiled(self._tail, text, counts=counts, pos=start)
                hits += n
            spans = cli_spans(text, tool)
            spans.extend(code_call_spans(text))  # a password given by position to a call (code_calls.py)
            spans.extend(named_literal_spans(text))  # define('DB_PASSWORD', 'x') (named_literals.py)
            spans.extend(
                secure_string_spans(text)
            )  # PowerShell's ConvertTo-SecureString 'pw' (secure_strings.py)
            spans.extend(shell_word_spans(text))  # ``--password -- X``, an escaped PEM (shell_words.py)
            spans.extend(escaped_header_spans(text))  # ``-H X-Api-Key\\ :\\ X`` (escaped_headers.py)
            spans.extend(sql_connect_spans(text))  # SQL*Plus's CONNECT user/password (sql_connect.py)
            # a quoted URL's or Go DSN's password with a blank, a URL's cut by the limit too
            spans.extend(spaced_logon_spans(text, cut=truncated))
            spans.extend(url_user_spans(text))  # a token or base64 user:password as a URL's user
            spans.extend(wire_line_spans(text))  # PASS x, AUTH x, a .pgpass line (wire_lines.py)
            spans.extend(properties_line_spans(text, argv=argv))  # ``db.password x`` (properties_lines.py)
            if "<<" in text:  # a here-document or a here-string for a password reader (here_docs.py)
                spans.extend(heredoc_spans(text))
                if "<<<" in text:
                    spans.extend(here_string_spans(text))
            if "<(" in text:  # a process substitution onto a reader's standard input (here_docs.py)
                spans.extend(stdin_substitution_spans(text))
            if "spawn" in text:  # an expect script answering a prompt that names nothing
                spans.extend(nameless_prompt_spans(text))
            if "ata" in text:  # a Kubernetes Secret's stringData or data (secret_manifests.py)
                spans.extend(secret_data_spans(text))
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
        if self._env_arg_rx is not None and ("=" in text or ":" in text or "value" in text.lower()):
            low = text.lower()
            spans = []
            named = not self._env_triggers or any(t in low for t in self._env_triggers)
            # ``DBPASS: x`` and an INI line's ``DBPASS = x`` (mapping_env.py); also the rest of a value the
            # key rules took the first word of, under any name (``pwd: a b``, ``password = a b``)
            # (and a Java properties line's dotted key glued to ``=``: ``a.password=[REDACTED] b``)
            keyed = (
                ":" in text
                or " =" in text
                or "\t=" in text
                or "?=" in text  # a Makefile's ``DBPASS ?= a b``, ``!=``, ``+=`` (``:=`` holds a ``:``)
                or "!=" in text
                or "+=" in text
                or ("=" in text and ("." in text or REDACTED in text))
            )
            mapped: list[tuple[int, int, str]] = []
            if keyed and self.env_name_rx is not None and (named or REDACTED in text):
                mapped = mapping_env_spans(text, self.env_name_rx, argv=argv)
                # the rest of a value a rule cut (its marker, then more) is that secret's: uncounted
                # (``pwd: a b`` counted password and env_name); the hit still marks the field changed
                more = [span for span in mapped if text.startswith(REDACTED, span[0])]
                if more:
                    text, n = replace_spans(text, more, counts=None)
                    hits += n
                    mapped = (
                        mapping_env_spans(text, self.env_name_rx, argv=argv)
                        if len(more) < len(mapped)
                        else []
                    )
            if named:
                spans = regex_spans(self._env_arg_rx, text, "env_name") if "=" in text else []
                # an INI line's value goes on over the lines indented below its key (value_lines.py)
                spans = [(s, value_end(text, s, e), name) for s, e, name in spans]
                if "value" in low and "name" in low:
                    if self._value_first_lines is not None:
                        spans.extend(self._value_first_lines.spans(text))
                    for rx in self._env_pair_rxs:
                        # ``value: a`` then deeper lines: one plain scalar (s50 RP)
                        spans.extend(
                            (s, value_end(text, s, e), n) for s, e, n in regex_spans(rx, text, "env_name")
                        )
            spans.extend(mapped)
            if spans:
                text, n = replace_spans(text, spans, counts=counts)
                hits += n
        if self.env_name_rx is not None and ("set" in text or "ENV" in text):
            # fish's set -x NAME x, csh's setenv NAME x, a Dockerfile's ENV NAME x (spaced_env.py)
            spaced = spaced_env_spans(text, self.env_name_rx)
            if spaced:
                text, n = replace_spans(text, spaced, counts=counts)
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
