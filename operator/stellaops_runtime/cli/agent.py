"""``stella-runtime agent``: run the node agent (the main job)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.cli.help_format import HelpFormatter
from stellaops_runtime.contracts.config import (
    STORE_URL_ENV,
    ConfigError,
    PrivacyConfig,
    load_config,
    parse_config,
)
from stellaops_runtime.contracts.redact import redact_error

log = logging.getLogger("stellaops_runtime.agent")

HELP = """\
Run the node agent: stream Tetragon events (gRPC, or its JSON export file),
filter them for privacy, count which functions run in which images, and
write the counts to the hot-symbol store every flush interval. Serves
Prometheus metrics and health on :8080 (/metrics, /healthz, /readyz).

SIGTERM or SIGINT stops the sources, flushes everything counted so far and
exits 0; exit 2 on a bad config (a SQLite store's directory must exist unless
store.createDirectories is true) or when the final flush cannot reach the store.

Where Debian's libjemalloc2 is installed (the image has it), the agent re-executes
itself once under jemalloc, which gives a flushed window's memory back to the
node; STELLA_AGENT_ALLOCATOR=system keeps the interpreter's allocator.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "agent",
        help="run the node agent (Tetragon -> privacy -> hot-symbol store)",
        description=HELP,
        formatter_class=HelpFormatter,  # argparse's, without shutil (cli/help_format.py)
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="agent config YAML (tetragon.*, hotSymbols.*, privacy.*, store.*, metrics.*) or a ConfigMap "
        "holding it; without it every default applies (docs/configuration.md)",
    )
    p.add_argument(
        "--exit-when-idle",
        metavar="SECONDS",
        type=float,
        help="stop, flush and exit 0 after no event arrived for this long and an export file was read to "
        "its end (replays, scripts); exit 2 if rows could not be stored (spooled or lost)",
    )
    p.add_argument(
        "--store",
        metavar="URL",
        help=f"override store.url (SQLAlchemy URL; default: ${STORE_URL_ENV} when set, e.g. from a Secret)",
    )
    p.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=int,
        help="override metrics.port (0 picks a free port; the log says which)",
    )
    p.add_argument(
        "--node-name", metavar="NAME", help="this node's name (default: $NODE_NAME, else the hostname)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stellaops_runtime.agent import jemalloc

    # First of all, so that nothing (a config warning, a config error) is said twice: under
    # jemalloc where it is installed this does not return (agent/jemalloc.py).
    why = jemalloc.reexec_if_planned()
    try:
        config = load_config(args.config) if args.config else parse_config({})
        store = args.store or os.environ.get(STORE_URL_ENV)
        if store or args.metrics_port is not None:  # re-validated like any other key
            doc = config.model_dump(by_alias=True)
            if store:
                doc["store"]["url"] = store
            if args.metrics_port is not None:
                doc["metrics"]["port"] = args.metrics_port
            config = parse_config(doc)
    except ConfigError as e:
        print(f"stella-runtime agent: {redact_error(e)}", file=sys.stderr)
        return exitcodes.ERROR
    from stellaops_runtime.store.engine import StoreConfigError, prepare_sqlite_directory, refuse_in_memory

    try:  # a missing SQLite directory is a config error, not an outage to retry
        refuse_in_memory(config.store.url)
        prepare_sqlite_directory(config.store.url, create=config.store.create_directories)
    except StoreConfigError as e:
        print(f"stella-runtime agent: {redact_error(e)}", file=sys.stderr)
        return exitcodes.ERROR
    _redact_logs(config.privacy)
    if args.exit_when_idle is not None and args.exit_when_idle <= 0:
        print("stella-runtime agent: --exit-when-idle must be > 0", file=sys.stderr)
        return exitcodes.ERROR
    from stellaops_runtime.agent.allocator import jemalloc_library, tune_malloc

    if library := jemalloc_library():
        log.info("memory allocator: jemalloc (%s)", library)
    elif preloaded := os.environ.get(jemalloc.MARK_ENV):  # re-executed, but the loader dropped it
        log.warning("memory allocator: %s was preloaded but is not loaded: the interpreter's", preloaded)
    else:
        log.info("memory allocator: the interpreter's (%s)", why)
    tune_malloc()  # before any thread exists: large buffers go back to the kernel when freed
    if config.privacy.default_patterns:
        _compile_default_rules()
    from stellaops_runtime.agent.node_presence import NodePresence, wait_for_node
    from stellaops_runtime.agent.runner import Agent  # heavy imports only when running

    presence = NodePresence(config.store.spool_path)  # one agent per node: a second one waits
    if not wait_for_node(presence):
        return exitcodes.OK
    node = args.node_name or os.environ.get("NODE_NAME", "")
    try:
        agent = Agent(config, node_name=node, exit_when_idle=args.exit_when_idle, presence=presence)
    except ConfigError as e:  # e.g. the witness claims or key file
        print(f"stella-runtime agent: {redact_error(e)}", file=sys.stderr)
        return exitcodes.ERROR
    return asyncio.run(agent.run())


def _compile_default_rules() -> None:
    """Compile the default privacy rules now, before the runner's imports (issue 13).

    The agent's pipeline compiles them anyway when it is built (privacy/redactor.py,
    privacy/rule_scan.py: each rule and its head once per process); only the moment moves. Their
    regexes (~60,000 characters) allocate megabytes of short-lived parse objects while they
    compile, among them the few objects the compiled regexes keep: compiled after the runner's
    imports, the freed room stayed in partly used allocator pages for the agent's life; compiled
    first, the imports that follow fill it (~1.3 MB less idle RSS under jemalloc for the one regex
    of the whole set the agent compiled before, docs/benchmarks.md, Seventeenth pass).
    """
    from stellaops_runtime.privacy.rule_scan import default_rules

    default_rules()


def _redact_logs(privacy: PrivacyConfig) -> None:
    """Mask secrets in every log record and traceback of the agent (privacy/log_filter.py).

    The agent's privacy rules for tracebacks are compiled on the first traceback logged.
    """
    from stellaops_runtime.privacy.log_filter import attach

    rules: list[Callable[[str], str]] = []

    def deep(text: str) -> str:
        if not rules:
            from stellaops_runtime.privacy.filter import PrivacyFilter

            rules.append(PrivacyFilter(privacy).redact_text)
        return rules[0](text)

    attach(deep)
