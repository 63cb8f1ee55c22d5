"""The frame canonicalizer as the agent's configuration asks for it (``symbols.*``).

Apart from agent/pipeline.py because building it is configuration, not the
per-event path: the pipeline calls :func:`make_canonicalizer` once, and tests
and tools that need the agent's very canonicalizer call it without a pipeline.
"""

from __future__ import annotations

from stellaops_runtime.canonical import demangle as demangling
from stellaops_runtime.canonical.cxxfilt import CxxfiltDemangler
from stellaops_runtime.canonical.debugfiles import DebugSearch
from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.parseworker import ParseWorker
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.config import AgentConfig, SymbolsConfig


def make_canonicalizer(config: AgentConfig, *, node_name: str) -> FrameCanonicalizer | None:
    """The frame canonicalizer the config asks for (None when ``symbols.enabled`` is off).

    Its binary parses run on a parse-worker thread; a batch waits at most
    ``symbols.parseWaitMilliseconds`` for them (agent/pipeline.py).
    """
    sym = config.symbols
    if not sym.enabled:
        return None
    if not demangling.BINDINGS_AVAILABLE and demangling.current_fallback() is None:
        # The demangler bindings are missing from this install: GNU c++filt, one coprocess.
        demangling.install_fallback(CxxfiltDemangler())
    else:  # installed, but loaded only at the first C++ or Rust name: c++filt if that load fails
        demangling.fallback_if_bindings_fail(CxxfiltDemangler)
    symbolizer = Symbolizer(
        max_binaries=sym.max_binaries,
        proc_root=sym.proc_root or "/proc",
        kallsyms_path=sym.kallsyms_path,
        gate=ParseWorker(sym.parse_wait_milliseconds / 1000),
        index_cache_dir=sym.index_cache_dir or None,
    )
    fc = FrameCanonicalizer(
        symbolizer=symbolizer,
        max_binaries=sym.max_binaries,
        max_frames=sym.max_frames,
        proc_root=sym.proc_root or None,
        host_root=sym.host_root or None,
        node_name=node_name,
    )
    fc.symbolizer.set_debug_search(debug_search(sym))
    return fc


def debug_search(sym: SymbolsConfig) -> DebugSearch:
    """Where separate debug files are looked for: the process's root, the host root, a debuginfod cache."""
    return DebugSearch(
        enabled=sym.debug_files,
        roots=(sym.host_root,) if sym.host_root else (),
        debuginfod_dirs=(sym.debuginfod_cache_dir,) if sym.debuginfod_cache_dir else (),
    )
