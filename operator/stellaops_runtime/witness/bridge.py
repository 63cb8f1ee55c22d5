"""The agent's witness bridge: claims seen in the flushed counts get a signed witness.

The seed's TetragonWitnessBridge "buffers observations by claim_id". A claim
is what a scanner or policy engine asks to have proven: an image digest, a
package, a function, optionally a vulnerability (a file or a mounted
ConfigMap, :func:`load_claims`). The bridge:

- looks at every batch of counts the agent drains (:meth:`WitnessBridge.observe`)
  and notes the claims it touches; once the store has taken those counts
  (:meth:`WitnessBridge.stored`), the claims are marked, so a witness never
  rests on counts still on their way. The mark is a set of claim ids, so the
  work waiting is bounded by the number of claims, whatever the event rate,
  and marking is a dictionary lookup per row: the hot-symbol path never
  waits for a signer;
- every ``intervalSeconds``, and once more at shutdown, signs a witness for
  each marked claim from what the store holds, read as one snapshot while
  other nodes flush (the same document as ``stella-runtime witness sign``),
  keeps it in the store and, when ``outputDir`` is set, writes it there
  atomically (a temporary file in that directory, fsync, rename: a reader
  or a kill never sees half a witness).
  ``signConcurrency`` signers run at once (an asyncio semaphore, the seed's
  SemaphoreSlim), each on a daemon thread; a claim whose signing fails or
  hangs stays marked and is tried again next time (:meth:`WitnessBridge.flush`).

``generated`` counts the witnesses made (``tetragon_witness_generated``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import Engine

from stellaops_runtime.atomic_file import write_atomically
from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta
from stellaops_runtime.evidence.document import evidence
from stellaops_runtime.evidence.store_facts import observe
from stellaops_runtime.regular_file import read_regular
from stellaops_runtime.store import rust_paths
from stellaops_runtime.store.function_refs import FunctionQuery, function_query
from stellaops_runtime.store.name_spellings import clone_of, spaceless
from stellaops_runtime.store.queries import snapshot
from stellaops_runtime.store.refs import PurlQuery, RefError
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness import store as wstore
from stellaops_runtime.witness.issued import no_later_than_store
from stellaops_runtime.witness.statement import encode, statement, subject_image

log = logging.getLogger(__name__)
FILE_EVIDENCE = ("loaded", "executed")
HUNG_AFTER_SECONDS = 60.0  # a periodic signing round running longer is abandoned (run)


class ClaimsError(Exception):
    """A claims file that cannot be used (the message names the file and the entry)."""


@dataclass(frozen=True, slots=True)
class Claim:
    image: str  # sha256:<hex>
    purl: str
    function: str
    vulnerability: str | None = None
    exploit_path: bool = False

    @property
    def id(self) -> str:
        return wstore.claim_id(self.image, self.purl, self.function, self.vulnerability)


CLAIM_KEYS = ("image", "purl", "function", "vulnerability", "exploitPath")
MAX_CLAIMS_FILE_BYTES = 4 * 1024 * 1024  # a ConfigMap holds at most 1 MiB; a file of claims, a few


def _unknown(where: str, key: object, known: tuple[str, ...]) -> ClaimsError:
    """A key no claim has: refused, since dropping it silently (``exploit_path: true``) signs a
    claim other than the one written."""
    near = [k for k in known if k.lower() == re.sub(r"[-_]", "", str(key)).lower()]
    hint = f" (did you mean {near[0]}?)" if near else f" (a claim has {', '.join(known)})"
    return ClaimsError(f"{where}: unknown key {key!r}{hint}")


def _text(c: dict[Any, Any], key: str, where: str) -> str:
    """A required string: YAML's ``function:`` (null) or ``function: 0x10`` (16) is no name."""
    value = c.get(key)
    if not isinstance(value, str):
        raise ClaimsError(f"{where}: {key} must be a string, got {value!r}")
    return value


def load_claims(path: str | Path) -> list[Claim]:
    """Claims from YAML or JSON: a list, or ``{"claims": [...]}``, of
    ``{image, purl, function, vulnerability?, exploitPath?}`` (any other key is refused), each
    read by the parsers ``witness sign`` reads its options with: the same claim, the same id."""
    try:
        data = read_regular(path, MAX_CLAIMS_FILE_BYTES)
    except OSError as e:
        raise ClaimsError(f"cannot read claims file {path}: {e.strerror or e}") from None
    if len(data) > MAX_CLAIMS_FILE_BYTES:
        raise ClaimsError(f"claims file {path} is larger than {MAX_CLAIMS_FILE_BYTES} bytes")
    try:
        doc: Any = yaml.safe_load(data)  # bytes: YAML's own encoding rules (UTF-8, or a BOM's)
    except yaml.YAMLError as e:
        raise ClaimsError(f"claims file {path} is not YAML or JSON: {e}") from None
    except RecursionError:
        raise ClaimsError(f"claims file {path} is not YAML or JSON: nested too deeply") from None
    if isinstance(doc, dict) and (extra := [k for k in doc if k != "claims"]):
        raise ClaimsError(f"claims file {path}: unknown key {extra[0]!r} (expected claims: [...])")
    items = doc.get("claims") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ClaimsError(f"claims file {path}: expected a list of claims (or claims: [...])")
    out: list[Claim] = []
    seen: dict[str, int] = {}  # claim id -> the index of its first entry
    for i, c in enumerate(items):
        where = f"claims file {path}, claim {i}"
        if not isinstance(c, dict):
            raise ClaimsError(f"{where}: expected a mapping")
        for key in c:
            if key not in CLAIM_KEYS:
                raise _unknown(where, key, CLAIM_KEYS)
        vuln = c.get("vulnerability")
        if vuln is not None and not isinstance(vuln, str):
            raise ClaimsError(f"{where}: vulnerability must be a string")
        try:
            image = subject_image(_text(c, "image", where))
            purl = wstore.claim_purl(_text(c, "purl", where)).text
            fn = wstore.claim_function(_text(c, "function", where)).text
            vuln = wstore.vulnerability_id(vuln)
        except RefError as e:
            raise ClaimsError(f"{where}: {e}") from None
        exploit = c.get("exploitPath")
        if exploit is None:  # left out or null: no confirmed flow (0 or "" are no booleans)
            exploit = False
        if not isinstance(exploit, bool):  # "false" is a true string: it would claim a live exploit path
            raise ClaimsError(f"{where}: exploitPath must be true or false, got {exploit!r}")
        claim = Claim(image, purl, fn, vuln, exploit)
        first = seen.setdefault(claim.id, i)
        if first != i and out[first].exploit_path != exploit:  # which one would its witness sign?
            raise ClaimsError(f"{where}: the claim of claim {first} again, with exploitPath {exploit}")
        out.append(claim)
    return out


class WitnessBridge:
    """Marks claims from drained counts; signs their witnesses on a schedule (module docstring)."""

    def __init__(
        self,
        claims: Iterable[Claim],
        *,
        key_file: str,
        output_dir: str = "",
        concurrency: int = 1,
    ) -> None:
        self.claims = {c.id: c for c in claims}
        self._private = keys.load_private(key_file)
        self._key_id = keys.key_id(self._private.public_key())
        self._out = Path(output_dir) if output_dir else None
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._queries: dict[str, tuple[FunctionQuery, PurlQuery]] = {}
        self._by_image_name: dict[tuple[str, str], list[str]] = {}
        self._by_image_overload: dict[tuple[str, str], list[str]] = {}
        self._by_image_clone: dict[tuple[str, str], list[str]] = {}
        self._by_image_spaceless: dict[tuple[str, str], list[str]] = {}
        # image -> (every Rust path its claims ask, as one gate; each claim's own)
        self._rust_by_image: dict[str, tuple[rust_paths.Asked, list[tuple[str, rust_paths.Asked]]]] = {}
        rust: dict[str, list[tuple[str, rust_paths.Asked]]] = {}
        rust_asked: dict[str, list[str]] = {}
        for cid, c in self.claims.items():
            fq, pq = function_query(c.function), PurlQuery.parse(c.purl)
            self._queries[cid] = (fq, pq)
            for name in (*fq.names, *fq.c_names):  # ``crc32()`` also claims the bare ``crc32``
                self._by_image_name.setdefault((c.image, name), []).append(cid)
            for name in fq.overloads:  # ``foo::bar`` also claims each stored ``foo::bar(...)``
                self._by_image_overload.setdefault((c.image, name), []).append(cid)
            for name in fq.clones:  # ``crc32`` also claims ``crc32.part.0``, ``crc32.cold`` (clone_of)
                self._by_image_clone.setdefault((c.image, name), []).append(cid)
            for name in fq.spaceless:  # ``read(std::istream &)`` claims the stored ``read(std::istream&)``
                self._by_image_spaceless.setdefault((c.image, name), []).append(cid)
            if fq.rust_paths:  # ``crate::Type::f`` also claims ``<crate::Type<u8>>::f::<…>`` (rust_paths)
                rust.setdefault(c.image, []).append((cid, rust_paths.Asked(fq.rust_paths)))
                rust_asked.setdefault(c.image, []).extend(fq.rust_paths)
        for image, asked in rust.items():
            self._rust_by_image[image] = (rust_paths.Asked(tuple(rust_asked[image])), asked)
        # A prefix of a stored name can be a claim's only at a length some claim's name has: a name
        # is looked up once per such length, never once per '(' or '.' it holds (a workload's symbol
        # may be 100,000 dots: a slice and a hash per dot was quadratic, seconds of the agent's loop)
        self._overload_lengths = sorted({len(n) for _, n in self._by_image_overload})
        self._clone_lengths = sorted({len(n) for _, n in self._by_image_clone})
        self._staged: set[str] = set()  # touched by counts not yet confirmed stored
        self._marked: set[str] = set()
        self._signing: dict[str, asyncio.Future[None]] = {}  # claims whose signer has not returned
        self.generated = 0
        self.failures = 0
        self.last_error = ""
        # The digests stored as one image with a count's (store/image_pairs.py, set by the agent): a
        # claim by an image's config digest is marked by its counts filed under the manifest digest.
        self.paired: Callable[[str], frozenset[str]] | None = None
        self._images = frozenset(c.image for c in self.claims.values())

    @property
    def marked(self) -> int:
        return len(self._marked)

    def observe(self, deltas: Iterable[HotSymbolDelta]) -> None:
        """Note the claims these counts touch (a lookup per row; never blocks)."""
        for d in deltas:
            k = d.key
            if k.evidence in FILE_EVIDENCE or not d.invocation_count:
                continue
            images: Iterable[str] = (k.image_digest,)
            if self.paired is not None and (o := self.paired(k.image_digest)) and (more := o & self._images):
                images = (k.image_digest, *more)
            for image in images:
                for cid in self._claims_of(image, k.function_name):
                    if cid not in self._staged and (not d.purl or self._queries[cid][1].matches(d.purl)):
                        self._staged.add(cid)

    def _claims_of(self, image: str, name: str) -> list[str]:
        """Claims naming ``name`` itself, a prefix of it followed by ``(`` (its overloads), a prefix
        of it that ``name`` is a compiler clone of (``crc32`` of ``crc32.part.0``, ``f(int)`` of
        ``f(int) (.isra.0)``: name_spellings.clone_of, as a question by name counts them), the name
        and its C++ clone with their spaces read away (name_spellings.spaceless), or its
        generic-free Rust path (``rust_paths.matches``, parsed once per name: an LRU cache)."""
        found = self._by_image_name.get((image, name), [])
        if self._by_image_overload and "(" in name:
            found = list(found)
            for n in self._overload_lengths:  # ``foo::bar`` then ``(``
                if n >= len(name):
                    break
                if name[n] == "(":
                    found += self._by_image_overload.get((image, name[:n]), ())
        if self._by_image_clone and "." in name:  # a clone is its origin's name, ``.`` or `` (.``, a suffix
            found = list(found)
            for n in self._clone_lengths:
                if n >= len(name):
                    break
                c_clone = name[n] == "." and name[n - 2 : n] != " ("
                if (c_clone or name[n : n + 3] == " (.") and (
                    cids := self._by_image_clone.get((image, name[:n]))
                ):
                    found += cids if clone_of(name, name[:n]) else ()
        if self._by_image_spaceless and "(" in name:  # a parameter list spaced otherwise, or its C++ clone
            base = name.rpartition(" (.")[0]
            found = [*found, *self._by_image_spaceless.get((image, spaceless(name)), ())]
            if base and clone_of(name, base):
                found += self._by_image_spaceless.get((image, spaceless(base)), ())
        if self._rust_by_image and (rust := self._rust_by_image.get(image)) and rust[0].may_match(name):
            found = [*found, *(cid for cid, asked in rust[1] if asked.matches(name))]
        return found

    def stored(self, taken: set[str] | None = None) -> None:
        """The counts seen so far are in the store: their claims are due a witness. With ``taken``
        (from :meth:`take_staged`), only those claims: counts drained while the write ran (an
        early drain under a key storm) may wait for the next write, and stay staged until it."""
        if taken is None:
            taken, self._staged = self._staged, set()
        self._marked |= taken

    def take_staged(self) -> set[str]:
        """The claims staged so far, for :meth:`stored` once the write that follows succeeds
        (or :meth:`restage` when it fails); claims staged meanwhile wait for the next write."""
        taken, self._staged = self._staged, set()
        return taken

    def restage(self, taken: set[str]) -> None:
        """A write failed: the claims :meth:`take_staged` gave wait for the next one."""
        self._staged |= taken

    async def flush(self, engine: Engine | None) -> int:
        """Sign a witness for every marked claim; returns how many were made.

        Cancelled (the shutdown deadline, :meth:`run`'s :data:`HUNG_AFTER_SECONDS`), every claim
        not signed yet stays marked and the count of those made is kept. A signer runs on a daemon
        thread of its own: one whose read never returns (a dead route to the store) is left to
        finish alone and never holds the agent's exit. A claim whose last signer still runs gets
        its next one only once that one has returned, so the last witness rests on the last read.
        """
        if engine is None or not self._marked:
            return 0
        todo, self._marked = self._marked, set()

        async def one(cid: str) -> bool:
            try:
                if (busy := self._signing.get(cid)) is not None:
                    with contextlib.suppress(Exception):  # its outcome was its own round's to report
                        await asyncio.shield(busy)
                async with self._sem:
                    await asyncio.shield(self._in_thread(engine, self.claims[cid]))
            except asyncio.CancelledError:
                self._marked.add(cid)  # not made: due again
                raise
            except Exception as e:  # keep it marked: tried again at the next flush
                self._marked.add(cid)
                self.failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("witness for claim %s not made (will retry): %s", cid, self.last_error)
                return False
            self.generated += 1
            return True

        return sum(await asyncio.gather(*(one(c) for c in sorted(todo))))

    def _in_thread(self, engine: Engine, c: Claim) -> asyncio.Future[None]:
        """:meth:`_sign` on a daemon thread (asyncio.to_thread's threads are joined at exit); the
        future is done when the thread has returned."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # read, even if nobody waits

        def done(error: BaseException | None) -> None:
            if self._signing.get(c.id) is fut:
                del self._signing[c.id]
            if fut.done():
                return
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

        def work() -> None:
            error: BaseException | None = None
            try:
                self._sign(engine, c)
            except Exception as e:
                error = e
            with contextlib.suppress(RuntimeError):  # the loop is closed: the agent has exited
                loop.call_soon_threadsafe(done, error)

        self._signing[c.id] = fut
        threading.Thread(target=work, name=f"witness-{c.id[7:19]}", daemon=True).start()
        return fut

    def _sign(self, engine: Engine, c: Claim) -> None:
        fq, pq = self._queries[c.id]
        with engine.connect() as conn:
            snapshot(conn)  # one snapshot: other nodes flush while this reads (as `witness sign`)
            obs = observe(conn, image=c.image, purl=pq, function=fq, exploit_path=c.exploit_path)
            # issued no later than the store's time: this node's clock may run ahead (issued.py)
            doc = no_later_than_store(conn, evidence(obs, image=c.image, purl=c.purl, function=c.function))
            stmt = statement(obs, doc, image=c.image, purl=c.purl, function=c.function,
                             vulnerability=c.vulnerability)  # fmt: skip
            data = (json.dumps(dsse.sign(encode(stmt), self._private), indent=2) + "\n").encode()
            issued = dt.datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00"))
            # The witness is read: end its snapshot before keeping it (as `witness sign --save`).
            # On SQLite a flush waits on that read; writing inside it would be "database is
            # locked" at once, and the witness lost for the interval.
            conn.commit()
            wstore.save(conn, envelope=data, stmt=stmt, key_id=self._key_id, issued_at=issued)
        if self._out is not None:
            stamp = doc["timestamp"].replace(":", "").replace("-", "")
            name = (
                f"{re.sub(r'[^A-Za-z0-9._-]', '_', c.id.removeprefix('sha256:')[:16])}-{stamp}.witness.json"
            )
            self._out.mkdir(parents=True, exist_ok=True)
            write_witness(self._out / name, data)

    async def run(self, stop: asyncio.Event, engine: Callable[[], Engine | None], interval: float) -> None:
        """Flush every ``interval`` seconds until ``stop``; the caller flushes once more at shutdown.
        A flush still running after ``max(interval, HUNG_AFTER_SECONDS)`` is abandoned: its claims
        stay due, and the other claims are signed at the next interval."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if not stop.is_set():
                try:
                    await asyncio.wait_for(self.flush(engine()), timeout=max(interval, HUNG_AFTER_SECONDS))
                except TimeoutError:
                    log.warning("witness signing still running after %gs (the store hangs?): %d claims "
                                "left due", max(interval, HUNG_AFTER_SECONDS), self.marked)  # fmt: skip


def write_witness(path: Path, data: bytes) -> None:
    """``data`` at ``path`` whole or not at all (atomic_file.py): a kill, a full disk or a file size
    limit mid-write leaves no truncated witness, and a reader sees the old file or the new one. The
    temporary name (``.<name>.tmp-…``) matches no ``*.witness.json``. The mode is 0644: a witness
    is a public, signed document."""
    write_atomically(path, data, mode=0o644, durable=True)
