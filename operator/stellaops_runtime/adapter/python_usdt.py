"""Python's USDT probes -> the Python function they name (one call = one ``function__entry``).

CPython built with ``--with-dtrace`` (Debian's python3.11 is) fires
``python:function__entry`` with three arguments: the source file as the
process sees it (``co_filename``), the function's name (``co_name``) and the
line. Counted as it arrives, every call of every Python function would be one
key, ``python:function__entry`` in the interpreter binary: no evidence of
anything. This stage rewrites such an event into the function it names, so
the hot-symbol bridge counts it as an ``invoked`` function of the ``.py``
file, and package attribution (agent/purls.py) finds the pip distribution
whose ``RECORD`` lists that file.

Both sources give the same shape: the agent's BCC probes label the arguments
``arg1``..``arg3`` (native/events.py), Tetragon gives them unlabelled in
order; the position is what counts here.

- ``function__entry`` with a usable file and name: ``module`` = the file,
  ``function_name`` = the name, no build-id or function ID (those were the
  interpreter's); the arguments stay on the event (the line among them) and
  go through the privacy filter as before.
- ``function__return``: not a call (the entry counted it): dropped, counted.
- A file that is not an absolute path (``<string>``, ``<frozen ...>``, a
  relative path): kept under that name, counted ``unattributable_file``;
  attribution skips modules that are not absolute paths.
- Anything not to be trusted as a name: missing or non-text arguments, empty,
  NUL or control characters, U+FFFD (bytes that were not UTF-8), longer than
  the bound or than the privacy filter would keep, or text the privacy filter
  would redact: the event is dropped and counted by reason, never stored
  under a name that is not the function's.

Pure: no I/O. ``redact`` is the privacy filter's ``redact_text`` so a name
that carries a secret is never made an identity field (identity fields are
kept even in ``symbolIdOnly`` mode, which is why this runs before the filter).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from enum import Enum

from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent
from stellaops_runtime.contracts.posture import Posture

ENTRY = "python:function__entry"
RETURN = "python:function__return"
PREFIX = "python:"
MAX_FILE_BYTES = 4096
MAX_NAME_BYTES = 1024
# Tetragon's numeric argument types (and the native decoder's int_arg): a number names no file.
_NUMBERS = frozenset({"int_arg", "uint_arg", "long_arg", "size_arg"})


class Outcome(Enum):
    OTHER = "other"  # not a Python function probe: untouched
    FUNCTION = "function"  # rewritten into the Python function it names
    DROP = "drop"  # not counted (a return, or args not to be trusted)


# Enum members as module globals: on Python 3.11 reading a member through its class costs ~90 ns (the
# enum's class attribute lookup), a global ~7 ns, and apply() reads them on every USDT event.
_USDT = EventKind.USDT
_OTHER, _FUNCTION, _DROP = Outcome.OTHER, Outcome.FUNCTION, Outcome.DROP
_PASSIVE = Posture.PASSIVE


def _unusable(text: object, limit: int, redact: Callable[[str], str] | None) -> str:
    """Why ``text`` cannot name a file or function ('' when it can)."""
    if type(text) is not str:
        return "not_text"
    if not text:
        return "empty"
    if "\x00" in text:
        return "nul"
    if "\ufffd" in text:
        return "not_utf8"
    if any(c < " " or c == "\x7f" for c in text):
        return "control_character"
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        return "too_long"
    if any("\udc80" <= c <= "\udcff" for c in text):
        return "not_utf8"
    if redact is not None and redact(text) != text:
        return "redacted"
    return ""


class PythonFunctions:
    """Rewrites Python USDT events in place; ``stats`` counts outcomes and reasons."""

    def __init__(
        self,
        *,
        max_argument_bytes: int = 0,
        redact: Callable[[str], str] | None = None,
        malformed: Counter[str] | None = None,
    ) -> None:
        cap = max_argument_bytes if max_argument_bytes > 0 else MAX_FILE_BYTES
        self.max_file_bytes = min(MAX_FILE_BYTES, cap)
        self.max_name_bytes = min(MAX_NAME_BYTES, cap)
        self.redact = redact
        self.stats: Counter[str] = Counter()
        # Drops are also counted here as ``python_usdt_<reason>`` (the adapter's malformed metric).
        self.malformed = malformed

    def apply(self, ev: RuntimeCallEvent) -> Outcome:
        if ev.kind is not _USDT or not ev.function_name.startswith(PREFIX):
            return _OTHER
        name = ev.function_name
        if name == RETURN:
            self.stats["return_not_counted"] += 1
            return _DROP
        if name != ENTRY:
            return _OTHER  # another Python probe (gc__start, ...): left as it is
        args = ev.arguments
        if len(args) < 2:
            return self._drop("missing_arguments")
        if args[0].type in _NUMBERS or args[1].type in _NUMBERS:
            return self._drop("not_text")
        file, function = args[0].value, args[1].value
        why = _unusable(file, self.max_file_bytes, self.redact) or _unusable(
            function, self.max_name_bytes, self.redact
        )
        if why:
            return self._drop(why)
        if not file.startswith("/"):
            self.stats["unattributable_file"] += 1
        ev.module = file
        ev.function_name = function
        ev.build_id = ""
        ev.function_id = ""
        # CPython 3.11-3.13 fire function__entry only while a trace or profile function is set
        # (CPython gh-98894): a call is proof, but no call proves nothing. Coverage: Passive.
        ev.posture_cap = _PASSIVE
        self.stats["functions"] += 1
        return _FUNCTION

    def _drop(self, reason: str) -> Outcome:
        self.stats[f"dropped_{reason}"] += 1
        if self.malformed is not None:
            self.malformed[f"python_usdt_{reason}"] += 1
        return _DROP
