"""The spool file: rows the store could not take at shutdown, kept for the next start.

A rolling update during a store outage must lose nothing. At shutdown the
agent writes every pending batch (:class:`~stellaops_runtime.store.batches.Batch`,
with its agent id and flush sequence) to ``store.spoolPath``; the next agent
on the node loads them and writes them through the flush ledger, so a batch
that had in fact been committed is not counted twice.

Format: JSON lines. A header line (format name, version, batch and row
counts), one line per batch, and a trailer line holding the SHA-256 of every
byte before it. The file is written to a temporary file in the same
directory, fsynced and renamed over the old one, so a reader sees a whole old
file or a whole new one. A file whose digest or counts do not match is
corrupt: it is moved aside (``<path>.corrupt-<time>``), never half-loaded. A file whose digest
and header are good but one of whose batch lines does not decode (another version's rows: a
downgrade reading a newer agent's file) keeps the batches that do (:func:`read_spool_salvaged`):
the file is kept aside as it was, and only that batch's counts are lost. A file merged into
the one written at shutdown (agent/spool_keeper.py) keeps such lines as they were (:class:`Unread`),
so the next agent meets them: replays them if it reads them, else keeps them aside with a gap.

Several agents may share one path (two agent pods of a node at once: a
rolling update with surge, a manual run): :func:`spool_lock` serializes
what they do to it, and :func:`spool_identity` lets an agent tell the file it
loaded from one another agent wrote since (agent/flusher.py merges such a
file into the one it writes, and removes only the file it loaded).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from stellaops_runtime.atomic_file import stale_temporaries, write_atomically
from stellaops_runtime.regular_file import open_regular
from stellaops_runtime.store.batches import Batch, batch_from_json, batch_to_json, is_fact

FORMAT = "stellaops-runtime-spool"
VERSION = 1
MAX_SPOOL_BYTES = 1 << 30  # refuse to read a larger file into memory
STALE_TEMP_SECONDS = 600.0  # a temporary spool file this old is a killed agent's

# (device, inode, size, mtime ns) of a spool file: another agent's rename changes it.
Identity = tuple[int, int, int, int]


class SpoolError(Exception):
    """The spool file cannot be written, or is corrupt (the message says which and why)."""


class Unread(NamedTuple):
    """The batch lines of a spool file that do not decode, as read, and the rows its header gives
    them: written on into a file merged with it (agent/spool_keeper.py), so the next agent meets
    them (replays them, if it is of their version; else keeps them aside, its gap over them)."""

    lines: list[str]
    rows: int


NOTHING_UNREAD = Unread([], 0)
_WINDOW = re.compile(r'"window_start_ns"\s{0,64}:\s{0,64}(\d{1,19})\b')
_MATCH_CHARS = 256  # longer than any match of _WINDOW (at most 165 characters)
_CHUNK = 1 << 20


def unread_window_ns(unread: Unread) -> int | None:
    """The earliest window start a batch line that does not decode names (read as text: its row
    type or evidence kind may be unknown here, its windows not): where the gap for its lost counts
    starts. None: no line names one."""
    found = [int(m) for line in unread.lines for m in _WINDOW.findall(line)]
    return min((t for t in found if t < 1 << 63), default=None)


def text_window_ns(path: str | Path) -> int | None:
    """The earliest window start the text of the spool file at ``path`` names (:func:`unread_window_ns`),
    for one set aside whole (its digest, header or counts wrong): where the gap for its lost counts
    starts at the latest. None: it names none, or it is no regular file (a FIFO or a symlink is
    refused, never waited on, nor ``/dev/zero`` read)."""
    earliest: int | None = None
    with contextlib.suppress(OSError), os.fdopen(open_regular(path, follow=False), "rb") as f:
        if os.fstat(f.fileno()).st_size > MAX_SPOOL_BYTES:
            return None
        # Read in chunks, never whole: a file of up to MAX_SPOOL_BYTES read at once (and decoded)
        # took twice its size in memory at the shutdown merge, past the agent's memory limit.
        tail, read = "", 0
        while True:
            chunk = f.read(_CHUNK) if read < MAX_SPOOL_BYTES else b""  # a file grown meanwhile
            read += len(chunk)
            text = tail + chunk.decode("ascii", errors="replace")
            # A match starting in the last _MATCH_CHARS may be cut by the chunk's end (a number's
            # digits too): it is read whole with the next chunk, the text kept from there.
            cut = len(text) - _MATCH_CHARS if chunk else len(text)
            for m in _WINDOW.finditer(text):
                if m.start() >= cut:
                    break
                t = int(m.group(1))
                if t < 1 << 63 and (earliest is None or t < earliest):
                    earliest = t
            if not chunk:
                break
            tail = text[max(cut, 0) :]
    return earliest


def lost_line(path: str | Path, why: str) -> Unread:
    """A batch line no agent decodes, standing for a spool file set aside whole when it was to be
    merged into the one written (agent/spool_keeper.py): the next agent meets it as a lost batch
    (its gap), from the earliest window the file's text names (:func:`text_window_ns`), if any."""
    doc: dict[str, Any] = {"lost": f"a spool file merged here was set aside whole: {why[:200]}"}
    if (since := text_window_ns(path)) is not None:
        doc["window_start_ns"] = since
    return Unread([json.dumps(doc, ensure_ascii=True, sort_keys=True)], 0)


def write_spool(path: str | Path, batches: list[Batch], unread: Unread = NOTHING_UNREAD) -> int:
    """Replace the spool file with ``batches`` (and ``unread``, batch lines of a file merged into
    it that do not decode here, as they were); returns the rows of ``batches``. Raises SpoolError."""
    p = Path(path)
    rows = sum(b.rows for b in batches)
    # the rows of the batches' ``units``: an agent of before the facts checks this count, and reads no
    # fact (store/batches.py batch_to_json writes them apart)
    counted = rows - sum(is_fact(u) for b in batches for u in b.units)
    header = {"format": FORMAT, "version": VERSION, "batches": len(batches) + len(unread.lines),
              "rows": counted + unread.rows, "created_unix": int(time.time())}  # fmt: skip
    lines = [json.dumps(header, ensure_ascii=True, sort_keys=True)]
    lines += [json.dumps(batch_to_json(b), ensure_ascii=True, sort_keys=True) for b in batches]
    lines += [ln.encode("ascii", "backslashreplace").decode("ascii") for ln in unread.lines]
    body = ("\n".join(lines) + "\n").encode("ascii")
    trailer = json.dumps({"sha256": hashlib.sha256(body).hexdigest()}).encode("ascii") + b"\n"
    try:
        write_atomically(p, body + trailer, mode=0o600, durable=True)
    except OSError as e:
        raise SpoolError(f"cannot write spool file {p}: {e.strerror or e}") from None
    return rows


def read_spool(path: str | Path) -> list[Batch] | None:
    """The batches of a spool file; None when there is none. Raises SpoolError when it is corrupt."""
    got = read_spool_identified(path)
    return None if got is None else got[0]


def read_spool_identified(path: str | Path) -> tuple[list[Batch], Identity] | None:
    """:func:`read_spool`, with the identity of the very file read (see :func:`spool_identity`)."""
    got = read_spool_salvaged(path)
    if got is None:
        return None
    batches, identity, bad = got
    if bad:
        raise SpoolError(f"{path}: bad record: {bad[0]}")
    return batches, identity


def read_spool_salvaged(path: str | Path) -> tuple[list[Batch], Identity, list[str]] | None:
    """:func:`read_spool_identified`, keeping the batches that decode when others do not: (batches,
    identity, why each other batch line is bad). Raises SpoolError when none decodes, or when the
    file's digest, header or batch count is wrong (then any byte may be: nothing is kept)."""
    got = read_spool_kept(path)
    return None if got is None else got[:3]


def read_spool_kept(path: str | Path) -> tuple[list[Batch], Identity, list[str], Unread] | None:
    """:func:`read_spool_salvaged`, with the batch lines that do not decode as they were."""
    p = Path(path)
    try:
        fd = open_regular(p, follow=False)  # a FIFO at the spool path must not block the start
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SpoolError(f"cannot open spool file {p}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size > MAX_SPOOL_BYTES:
            raise SpoolError(f"spool file {p} is {st.st_size} bytes, over the {MAX_SPOOL_BYTES} limit")
        data = f.read()
    batches, bad, unread = _parse(data, where=str(p))
    return batches, _identity(st), bad, unread


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def spool_identity(path: str | Path) -> Identity | None:
    """Which file is at ``path`` now (None: none); a file written since has another identity."""
    try:
        return _identity(os.stat(path, follow_symlinks=False))
    except OSError:
        return None


@contextlib.contextmanager
def spool_lock(path: str | Path, *, wait: float = 1.0) -> Iterator[bool]:
    """Hold the spool's lock file (``.<name>.lock`` beside it) while reading, merging or removing.

    Yields whether the lock is held: False after ``wait`` seconds of another
    holder, or when the lock file cannot be made (a read-only directory, where
    no spool file can be written either); the caller decides what to skip.
    """
    p = Path(path)
    try:
        fd = os.open(p.with_name(f".{p.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.02)
        yield True
    finally:
        os.close(fd)  # releases the lock


def parse_spool(data: bytes, *, where: str = "spool") -> list[Batch]:
    """Check a spool file's digest and counts, then decode its batches. Raises SpoolError."""
    batches, bad = parse_spool_salvaged(data, where=where)
    if bad:
        raise SpoolError(f"{where}: bad record: {bad[0]}")
    return batches


def parse_spool_salvaged(data: bytes, *, where: str = "spool") -> tuple[list[Batch], list[str]]:
    """:func:`parse_spool`, keeping the batches that decode: (batches, why each other batch line is
    bad). Raises SpoolError when the digest, the header or the batch count is wrong, or no batch
    line decodes."""
    return _parse(data, where=where)[:2]


def _parse(data: bytes, *, where: str) -> tuple[list[Batch], list[str], Unread]:
    body, sep, trailer = data.rstrip(b"\n").rpartition(b"\n")
    if not sep:
        raise SpoolError(f"{where}: truncated (no trailer)")
    body += b"\n"
    try:
        want = json.loads(trailer)["sha256"]
    except (ValueError, KeyError, TypeError):
        raise SpoolError(f"{where}: truncated or damaged trailer") from None
    if hashlib.sha256(body).hexdigest() != want:
        raise SpoolError(f"{where}: SHA-256 does not match its trailer (damaged or truncated)")
    lines = body.decode("ascii", errors="replace").splitlines()
    try:
        header: dict[str, Any] = json.loads(lines[0])
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise SpoolError(f"{where}: not a version-{VERSION} {FORMAT} file")
    except SpoolError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as e:
        raise SpoolError(f"{where}: bad header: {str(e)[:200]}") from None
    batches: list[Batch] = []
    bad: list[str] = []
    raw: list[str] = []
    rows = 0  # the rows of the batches' ``units``, which the header counts (not their ``facts``)
    for i, line in enumerate(lines[1:], start=1):
        try:
            d = json.loads(line)
            batches.append(batch_from_json(d))
            rows += batches[-1].rows - len(d.get("facts", ()))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as e:
            # Whatever shape a line holds, it is a bad batch (its counts lost), never a crash.
            bad.append(f"batch {i}: {str(e)[:200]}")
            raw.append(line)
    if len(batches) + len(bad) != header.get("batches") or not _rows_fit(rows, header.get("rows"), bad):
        raise SpoolError(f"{where}: batch or row count does not match its header")
    if bad and not batches:
        raise SpoolError(f"{where}: bad record: {bad[0]}")
    return batches, bad, Unread(raw, header["rows"] - rows)


def _rows_fit(rows: int, want: Any, bad: list[str]) -> bool:
    """The rows decoded against the header's count: all of them, or at most it with batches bad."""
    if type(want) is not int:
        return False
    return rows <= want if bad else rows == want


def remove_stale_temporaries(path: str | Path, *, older_than: float = STALE_TEMP_SECONDS) -> int:
    """Remove temporary spool files (``.<name>.tmp-*``) not modified for ``older_than`` seconds.

    An agent killed while writing its spool (SIGKILL at the end of the grace
    period) leaves one behind, up to the size of a whole spool, on a hostPath
    nothing else cleans. Call it under :func:`spool_lock`: an agent writing its
    spool holds the lock, and the age spares the file of an agent that does not.
    """
    p = Path(path)
    removed = 0
    cutoff = time.time() - older_than
    with contextlib.suppress(OSError):
        for tmp in stale_temporaries(p):
            with contextlib.suppress(OSError):
                st = tmp.lstat()
                if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
    return removed


def quarantine_spool(path: str | Path) -> Path | None:
    """Move a corrupt spool file aside; returns where it went (None if it could not be moved)."""
    p = Path(path)
    dest = p.with_name(f"{p.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        os.replace(p, dest)
    except OSError:
        return None
    return dest


def keep_aside(path: str | Path) -> Path | None:
    """Keep the spool file as it is now beside it (``<name>.corrupt-<time>``, a hard link: the
    file is replayed in part and removed later); returns where (None if it could not be kept)."""
    p = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(10):  # never over a file set aside the same second
        dest = p.with_name(f"{p.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
        try:
            os.link(p, dest, follow_symlinks=False)
            return dest
        except FileExistsError:
            continue
        except OSError:
            return None
    return None


def remove_spool(path: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()
