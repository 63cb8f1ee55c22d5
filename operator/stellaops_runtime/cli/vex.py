"""``stella-runtime vex``: VEX statements for one image from runtime evidence (docs/vex.md).

For every vulnerability of the input file (our JSON or OSV records), every
affected package and vulnerable function is looked up in the store, a
runtime witness is signed for each and written to ``--witness-dir``, and the
status follows :mod:`stellaops_runtime.evidence.vex`: ``affected``,
``not_affected`` (``vulnerable_code_not_in_execute_path``, only after a
window watched at EbpfDeep, user stacks sampled, on every day) or
``under_investigation``. Output: OpenVEX (default)
or CycloneDX, on stdout or ``--out``. Exit 0 when the document was written,
2 on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import errno
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.atomic_file import temporary_name, write_atomically
from stellaops_runtime.cli import exitcodes
from stellaops_runtime.cli.query_output import emit
from stellaops_runtime.cli.store_access import ref_type as _arg
from stellaops_runtime.cli.store_access import store_options as _store_options
from stellaops_runtime.cli.store_access import with_store as _with_store
from stellaops_runtime.evidence import vex, vex_input
from stellaops_runtime.evidence.document import evidence
from stellaops_runtime.evidence.store_facts import observe
from stellaops_runtime.store.coverage_open import OpenMemo
from stellaops_runtime.store.function_refs import function_query
from stellaops_runtime.store.queries import snapshot
from stellaops_runtime.store.refs import PurlQuery, RefError, image_key
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness import store as wstore
from stellaops_runtime.witness.issued import issued_now, no_later_than_store
from stellaops_runtime.witness.statement import encode, statement


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "vex",
        help="VEX statements (OpenVEX or CycloneDX) for an image from runtime evidence, with witnesses",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--image", required=True, metavar="IMAGE", help="image digest or reference with a digest")
    p.add_argument("--vulns", required=True, metavar="FILE", help="vulnerabilities: our JSON input or OSV")
    p.add_argument("--format", choices=["openvex", "cyclonedx"], default="openvex")
    p.add_argument(
        "--window-days", type=int, default=30, metavar="N",
        help="not_affected needs each of the N days up to --until watched gap-free (default 30)",
    )  # fmt: skip
    p.add_argument(
        "--until", type=_arg(_date), metavar="YYYY-MM-DD",
        help="the window's last day (default: the last day the image is known to have run)",
    )  # fmt: skip
    p.add_argument(
        "--key", required=True, metavar="FILE", help="Ed25519 private key the witnesses are signed with"
    )
    p.add_argument(
        "--witness-dir", required=True, metavar="DIR", help="where the signed witnesses are written"
    )
    p.add_argument("--out", metavar="FILE", help="write the VEX document here (default: stdout)")
    _store_options(p)
    p.set_defaults(func=run)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise RefError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _fail(message: str) -> int:
    print(f"stella-runtime vex: {message}", file=sys.stderr)
    return exitcodes.ERROR


MAX_VULNS_BYTES = 256 * 1024 * 1024  # a vulnerability list for one image is far smaller


def read_vulns(path: str) -> Any:
    """The ``--vulns`` document, read up to :data:`MAX_VULNS_BYTES` (a pipe too: ``<(curl …)``);
    VexInputError for a larger one (``/dev/zero`` was read until memory ran out) or one nested
    too deep to parse; ValueError (not JSON) and OSError as ``json`` and ``open`` raise them."""
    with open(path, "rb") as f:
        data = f.read(MAX_VULNS_BYTES + 1)
    if len(data) > MAX_VULNS_BYTES:
        raise vex_input.VexInputError(f"larger than {MAX_VULNS_BYTES} bytes: not read")
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _one_of_ours(out: str, *, key: str, vulns: str) -> str:
    """What ``out`` is when it is the private key or the input (a typo must not replace either
    with the document, as ``witness sign --out`` never replaces the key); "" otherwise."""
    for what, path in (("the private key", key), ("the vulnerabilities file", vulns)):
        with contextlib.suppress(OSError):  # one that does not exist is neither
            if os.path.samefile(out, path):
                return what
    return "a PEM key (-----BEGIN …)" if keys.holds_pem(out) else ""  # the public key beside it


_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV)


def write_new_witness(wdir: Path, stem: str, first: int, data: bytes) -> tuple[str, int]:
    """``data`` as ``<stem>-<n>.witness.json`` in ``wdir``, ``n`` the first from ``first`` that no
    file, symlink or directory holds; (file name, n). A witness file a document cites is never
    replaced, not by this run, a later one or one running beside it, and nothing is written through
    a symlink: the envelope goes to a hidden temporary file (atomic_file.py), fsynced, and is
    hard-linked to its name, which fails on any name already taken (the number then goes on).
    Where hard links are refused, the name is created exclusively (``O_EXCL | O_NOFOLLOW``) and
    written there. Raises OSError."""
    tmp = temporary_name(wdir / f"{stem}.witness.json")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o644)
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, 0o644)  # a witness is a public, signed document, whatever the umask
            os.fsync(fd)
        finally:
            os.close(fd)
        n = first
        while True:
            name = f"{stem}-{n}.witness.json"
            try:
                os.link(tmp, wdir / name, follow_symlinks=False)
                return name, n
            except FileExistsError:
                n += 1
            except OSError as e:
                if e.errno not in _NO_HARD_LINKS:
                    raise
                return _create_new(wdir, stem, n, data)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _create_new(wdir: Path, stem: str, n: int, data: bytes) -> tuple[str, int]:
    """:func:`write_new_witness` on a file system without hard links: the first free name, created
    exclusively and written in place (removed again if the write fails)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        name = f"{stem}-{n}.witness.json"
        try:
            fd = os.open(wdir / name, flags, 0o644)
        except FileExistsError:
            n += 1
            continue
        try:
            try:
                _write_all(fd, data)
                os.fchmod(fd, 0o644)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(wdir / name)
            raise
        return name, n


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def run(args: argparse.Namespace) -> int:
    if args.window_days < 1:
        return _fail("--window-days must be at least 1")
    try:
        image = image_key(args.image)
        if not image.startswith("sha256:"):  # the product and every witness name a sha256 digest
            raise RefError(f"vex needs an image's sha256 digest (the VEX product), got {args.image!r}")
        private = keys.load_private(args.key)
        vulns = vex_input.parse(read_vulns(args.vulns))
        for v in vulns:  # a function ID or package that does not read is the file's error
            for t in v.targets:
                try:
                    wstore.claim_purl(t.purl)  # a version range would match nothing; 13 MB, no witness
                except RefError as e:
                    raise vex_input.VexInputError(f"{v.id}: {e}") from None
                for fn in t.functions:
                    try:
                        wstore.claim_function(fn)
                    except RefError as e:
                        raise vex_input.VexInputError(f"{v.id}: {e}") from None
    except (RefError, keys.KeyError_, vex_input.VexInputError) as e:
        return _fail(f"{args.vulns}: {e}" if isinstance(e, vex_input.VexInputError) else str(e))
    except OSError as e:
        return _fail(f"cannot read {args.vulns}: {e.strerror or e}")
    except ValueError:
        return _fail(f"{args.vulns}: not JSON")
    if args.out and (what := _one_of_ours(args.out, key=args.key, vulns=args.vulns)):
        return _fail(f"--out {args.out} is {what}: not overwriting it")
    wdir = Path(args.witness_dir)
    try:
        wdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return _fail(f"cannot create {wdir}: {e.strerror or e}")

    def ask(conn: sa.Connection) -> int:
        snapshot(conn)  # one snapshot: agents flush while this reads
        decisions = []
        # Witnesses written per file stem: ids that read the same as a file name (CVE/1, CVE_1)
        # number on, so no witness of this run overwrites another's that a statement cites.
        numbered: dict[str, int] = {}
        open_memo: OpenMemo = {}  # the open gaps, once per run, not per function (coverage_open.py)
        for v in vulns:
            findings: list[vex.Finding] = []
            for t in v.targets:
                pq = PurlQuery.parse(t.purl)
                for fn in t.functions:
                    fq = function_query(fn)
                    if others := t.names_of(fn):  # a Go symbol's other spellings (vex_input)
                        fq = dataclasses.replace(fq, names=(*fq.names, *others))
                    obs = observe(conn, image=image, purl=pq, function=fq, open_memo=open_memo)
                    doc = no_later_than_store(conn, evidence(obs, image=image, purl=t.purl, function=fn))
                    stmt = statement(obs, doc, image=image, purl=t.purl, function=fn, vulnerability=v.id)
                    data = (json.dumps(dsse.sign(encode(stmt), private), indent=2) + "\n").encode()
                    stem = re.sub(r"[^A-Za-z0-9._-]", "_", v.id)
                    try:
                        name, numbered[stem] = write_new_witness(wdir, stem, numbered.get(stem, 0) + 1, data)
                    except OSError as e:
                        return _fail(f"cannot write a witness of {stem} in {wdir}: {e.strerror or e}")
                    findings.append(vex.Finding(t.purl, fn, obs, f"{vex.envelope_digest(data)} ({name})"))
            decisions.append(vex.decide(v, findings, window_days=args.window_days, until=args.until))
        render = vex.openvex if args.format == "openvex" else vex.cyclonedx
        # dated no later than the store's clock, as its witnesses are (issued.py): a statement
        # dated in the future outranks, in a merge, the ones made after it
        now = issued_now(conn)
        text = json.dumps(render(image, decisions, image_name=args.image, now=now), indent=2) + "\n"
        if args.out:
            out = Path(args.out)
            try:  # whole or not at all: a policy engine must never read half a document
                write_atomically(out, text.encode(), mode=0o644, durable=True)
            except OSError as e:
                return _fail(f"cannot write {out}: {e.strerror or e}")
            states = (vex.AFFECTED, vex.NOT_AFFECTED, vex.UNDER_INVESTIGATION)
            counts = {s: sum(d.status == s for d in decisions) for s in states}
            emit(f"{args.out}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        else:
            emit(text.rstrip("\n"))
        return exitcodes.OK

    return _with_store(args, ask)
