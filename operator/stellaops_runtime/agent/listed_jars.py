"""The JAR a package lists beside a library of it seen loaded, told to the store as a "listed" row.

A distribution packages a JNI library with its JAR (Fedora's ``java-atk-wrapper``:
``/usr/lib64/libatk-wrapper.so.0`` and ``/usr/lib/java/java-atk-wrapper.jar``). Only the library is
ever stored: the JVM runs the JAR's classes as JIT code under no file. Where the library lies in no
JNI place (a ``jni`` directory, ``%{_libdir}/%{name}/``), nothing stored showed that the package
holds Java code, and "no function of it ran" was answered about methods no stack could name.

Attribution knows the JAR (the package's database lists it: attribution/owners.py); this module
turns each (image, package, JAR) into one ``hot_symbols`` row of evidence kind ``listed``: 0 calls,
function "", the JAR's path in the image, the package's PURL, in the window of the library's row
that was attributed. Such a row is no observation (every reader counts only rows with calls, and
evidence/interpreted.py never takes it for a JAR seen loaded); the answers read it as the JNI
library's place. It rides the same flush as the counts (ledger, outage buffer, spool, export), as
agent/unprobed.py's facts do. Each is handed over once per agent; the set of those sent is bounded.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey

MAX_SENT = 100_000  # facts remembered as sent; past it the set starts over (a fact sent again costs a row)


class ListedJars:
    """The (image, PURL, JAR) facts already handed to the store."""

    def __init__(self) -> None:
        self._sent: set[tuple[str, str, str]] = set()

    def deltas(self, attributed: Iterable[tuple[HotSymbolDelta, str]]) -> list[HotSymbolDelta]:
        """One 0-call ``listed`` row per fact not handed over yet, from (a delta whose package was
        just attributed, the JAR that package lists); a delta whose purl was taken back gives none."""
        out: list[HotSymbolDelta] = []
        for d, jar in attributed:
            fact = (d.key.image_digest, d.purl, jar)
            if not d.purl or not jar or fact in self._sent:
                continue
            if len(self._sent) >= MAX_SENT:
                self._sent.clear()
            self._sent.add(fact)
            key = HotSymbolKey(d.key.image_digest, jar, "", EvidenceKind.LISTED)
            out.append(
                HotSymbolDelta(
                    key,
                    d.window_start_ns,
                    0,
                    d.first_seen_ns,
                    d.last_seen_ns,
                    confidence=0.0,
                    purl=d.purl,
                    node_name=d.node_name,
                )
            )
        return out
