"""Each command-line client's rules, compiled the first time that client is seen.

Why this exists: ``cli_options`` has rules for 68 sets of clients (mysql, vault, docker,
...), one regex per set. They were all compiled when the privacy package was imported: the
agent kept every one of them (0.22 MB by tracemalloc, and ~90 ms of its import) although a
node runs a handful of those clients, if any; a client's rules are only needed when its binary
runs or its name is a word of a command line (privacy/engine.py ``cli_spans``). Issue 13 wants
the idle agent small.

So ``ClientRules`` maps a client's name to its compiled regex as the old dict did, and compiles
a set's regex on the first lookup of any of its clients. The regex is the one the import
compiled (the same source, the same flags: ``base.compile_patterns``), so the redactions are the
same (tests/unit/test_privacy_client_rules.py runs the privacy corpora both ways). Clients with
the same alternatives share one regex, as before.

A lookup runs on the thread that filters (the agent's pipeline thread; the CLI's filters on
theirs): a compiled set is one list read, and the first lookup of a set compiles it under a
lock, so two threads that see a new client at once compile it once and get the same regex. That
first lookup costs the pipeline thread the set's compile (0.45 ms of CPU for the median set,
2.2 ms for the largest, pulumi's; bench/privacy_rules_cost.py), once per set in the life of the
process; the default rules, far larger, are compiled when the first filter is built (the
agent's start-up: privacy/rule_scan.py). A rule that does not compile fails its client's first lookup, not
the import: tests/unit/test_privacy_cli.py looks every client up.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping

from stellaops_runtime.privacy.base import SecretPattern, compile_patterns, number_groups


class ClientRules(Mapping[str, "re.Pattern[str]"]):
    """Client name -> the compiled regex of its rules, each set compiled on its first lookup."""

    def __init__(self, alternatives: Mapping[str, tuple[str, ...]]) -> None:
        sets: dict[tuple[str, ...], int] = {}
        self._index: dict[str, int] = {}
        for tool, alts in alternatives.items():
            self._index[tool] = sets.setdefault(alts, len(sets))
        self._sources: tuple[tuple[str, ...], ...] = tuple(sets)
        # Written under the lock, read by any thread without it (one list item read: atomic).
        self._compiled: list[re.Pattern[str] | None] = [None] * len(sets)
        self._lock = threading.Lock()

    def __getitem__(self, tool: str) -> re.Pattern[str]:
        i = self._index[tool]
        rx = self._compiled[i]
        if rx is None:
            with self._lock:
                rx = self._compiled[i]
                if rx is None:
                    source = number_groups("|".join(self._sources[i]))
                    rx = compile_patterns([SecretPattern("cli_option", source)]).regex
                    self._compiled[i] = rx
        return rx

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, tool: object) -> bool:
        return tool in self._index

    def compiled(self) -> frozenset[str]:
        """The clients whose rules are compiled so far (a set's clients all at once)."""
        done = {i for i, rx in enumerate(self._compiled) if rx is not None}
        return frozenset(t for t, i in self._index.items() if i in done)

    def sets(self) -> int:
        """How many distinct sets of rules there are (each one regex once compiled)."""
        return len(self._sources)
