"""``stella-runtime witness``: make, sign and verify runtime witnesses (docs/witnesses.md).

- ``keygen``: a new Ed25519 key pair (private key 0600, never overwritten);
- ``sign``: the witness for one claim (image, package, function, optionally
  a vulnerability) from what the store recorded: an in-toto Statement in a
  DSSE envelope, signed with the key;
- ``verify``: check an envelope's signature, payload type, statement and
  subject, and with ``--image``, ``--purl``, ``--function`` and ``--vuln``
  that it is the witness of that claim (each read by the parser ``sign``
  reads it with), and with ``--not-before`` that it is no older witness of
  the claim; exit 0 when it holds, 1 naming what failed, 2 on usage errors;
- ``list`` and ``get``: the witnesses ``sign --save`` kept in the store, by
  image and claim, and one envelope back as it was signed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.cli import exitcodes, pipes
from stellaops_runtime.cli.query_output import emit
from stellaops_runtime.cli.store_access import image_and_store_options as _common
from stellaops_runtime.cli.store_access import ref_type as _arg
from stellaops_runtime.cli.store_access import with_store as _with_store
from stellaops_runtime.evidence.document import evidence
from stellaops_runtime.evidence.store_facts import observe
from stellaops_runtime.store.queries import snapshot
from stellaops_runtime.store.refs import PurlQuery, RefError, parse_rfc3339
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness import store as wstore
from stellaops_runtime.witness.bridge import write_witness
from stellaops_runtime.witness.issued import no_later_than_store, store_now
from stellaops_runtime.witness.statement import (
    FUTURE_SLACK,
    check_statement,
    encode,
    issued_after,
    statement,
    subject_image,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("witness", help="make, sign and verify runtime witnesses (DSSE, Ed25519)")
    ws = p.add_subparsers(dest="witness", metavar="ACTION")
    p.set_defaults(func=lambda _a: _usage(p))

    k = ws.add_parser("keygen", help="write a new Ed25519 key pair")
    k.add_argument("--private", required=True, metavar="FILE", help="private key (PEM, mode 0600)")
    k.add_argument("--public", required=True, metavar="FILE", help="public key (PEM)")
    k.set_defaults(func=run_keygen)

    s = ws.add_parser("sign", help="the signed witness for a claim, from the store")
    _common(s)
    s.add_argument("--purl", required=True, type=_arg(wstore.claim_purl), metavar="PURL",
                   help="package URL (no version: any version)")  # fmt: skip
    s.add_argument("--function", required=True, type=_arg(wstore.claim_function), metavar="NAME|ID")
    s.add_argument("--vuln", type=_arg(wstore.vulnerability_id), metavar="ID",
                   help="the vulnerability the claim is about (e.g. CVE-2022-37434)")  # fmt: skip
    s.add_argument(
        "--exploit-path", action="store_true", help="the claim records a confirmed vulnerable flow"
    )
    # signed into the predicate, which nothing cuts: bounded as a claim's values are (witness stays < 100 KB)
    s.add_argument("--policy-hash", type=_arg(_policy_hash), metavar="HASH",
                   help="hash of the TracingPolicy set that observed it")  # fmt: skip
    s.add_argument("--key", required=True, metavar="FILE", help="Ed25519 private key (PEM)")
    s.add_argument("--out", metavar="FILE", help="write the envelope here (default: stdout)")
    s.add_argument("--save", action="store_true", help="also keep the envelope in the store")
    s.set_defaults(func=run_sign)

    ls = ws.add_parser("list", help="witnesses kept in the store for an image (and claim)")
    _common(ls)
    ls.add_argument("--claim", type=_arg(wstore.claim_ref), metavar="ID",
                    help="claim id (sha256:…), or give --purl and --function")  # fmt: skip
    _claim_options(ls, "with --function (and --vuln): the claim")
    ls.set_defaults(func=run_list)

    g = ws.add_parser("get", help="one stored envelope, by row id or sha256:<digest>")
    g.add_argument("ref", metavar="ID|sha256:HEX")
    g.add_argument("--out", metavar="FILE", help="write it here (default: stdout)")
    g.add_argument("--store", metavar="URL", default=None, help="store URL")
    g.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    g.set_defaults(func=run_get)

    v = ws.add_parser("verify", help="check a witness: signature, payload type, statement, subject")
    v.add_argument("file", metavar="FILE", help="the DSSE envelope (JSON)")
    v.add_argument("--key", required=True, metavar="FILE", help="Ed25519 public key (PEM)")
    v.add_argument("--image", type=_arg(subject_image), metavar="IMAGE", help="the image the subject must be")
    _claim_options(v, "the package the claim must name", vuln=_verify_vuln)
    v.add_argument("--not-before", type=_arg(parse_rfc3339), metavar="TIME",
                   help="RFC 3339: refuse a witness issued earlier (an older one of the claim)")  # fmt: skip
    v.add_argument("--json", action="store_true", help="print the verified statement")
    v.set_defaults(func=run_verify)


def _claim_options(
    p: argparse.ArgumentParser,
    purl_help: str,
    vuln: Callable[[str], str | None] = wstore.vulnerability_id,
) -> None:
    """``--purl``, ``--function`` and ``--vuln`` read by the parsers ``sign`` reads them with, so
    ``list`` finds and ``verify`` accepts the claim ``sign`` signed, however it was typed."""
    p.add_argument("--purl", type=_arg(wstore.claim_purl), metavar="PURL", help=purl_help)
    p.add_argument("--function", type=_arg(wstore.claim_function), metavar="NAME|ID")
    p.add_argument("--vuln", type=_arg(vuln), metavar="ID")


def _verify_vuln(text: str) -> str:
    """``verify --vuln``: the vulnerability the witness must name. Empty is refused, not read as
    none (``sign`` and ``list`` read it so): ``--vuln "$CVE"`` with the variable unset would
    otherwise check no vulnerability and pass a witness of any (tests/integration/
    test_witness_verify_empty.py)."""
    v = wstore.vulnerability_id(text)
    if v is None:
        raise RefError("--vuln is empty: name the vulnerability the witness must be about")
    return v


def _policy_hash(text: str) -> str:
    """``--policy-hash``: at most as long as a claim's values (wstore.bounded)."""
    return wstore.bounded(text, "policy hash")


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return exitcodes.ERROR


def _fail(message: str, code: int = exitcodes.ERROR) -> int:
    print(f"stella-runtime witness: {message}", file=sys.stderr)
    return code


def write_out(path: str, data: bytes) -> None:
    """``--out``: a regular file (new, or through a symlink) gets ``data`` whole or not at all
    (bridge.write_witness: a full disk or a file size limit mid-write leaves the witness that
    was there, never half of the new one); a stream (``/dev/stdout``, a FIFO) is written as one."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        with open(path, "wb") as f:
            f.write(data)
        return
    write_witness(Path(os.path.realpath(path)), data)


def run_keygen(args: argparse.Namespace) -> int:
    try:
        kid = keys.generate(args.private, args.public)
    except (keys.KeyError_, OSError) as e:
        return _fail(str(e))
    emit(f"key {kid}: private {args.private}, public {args.public}")
    return exitcodes.OK


def run_sign(args: argparse.Namespace) -> int:
    pq: PurlQuery = args.purl
    if not args.image.startswith("sha256:"):  # a host's or container's key: no witness subject
        return _fail(f"--image {args.image}: a witness is of an image digest (sha256:<64 hex digits>)")
    try:
        private = keys.load_private(args.key)
    except keys.KeyError_ as e:
        return _fail(str(e))
    if args.out and os.path.exists(args.out) and os.path.samefile(args.out, args.key):
        return _fail(f"--out {args.out} is the key file: not overwriting a key")
    if args.out and keys.holds_pem(args.out):
        return _fail(f"--out {args.out} holds a PEM key (-----BEGIN …): not overwriting a key")

    def ask(conn: sa.Connection) -> int:
        snapshot(conn)  # one snapshot: agents flush while this reads (as vex and evidence)
        obs = observe(conn, image=args.image, purl=pq, function=args.function, exploit_path=args.exploit_path)
        doc = evidence(obs, image=args.image, purl=pq.text, function=args.function.text)
        doc = no_later_than_store(conn, doc)  # issued no later than the store's time (issued.py)
        stmt = statement(obs, doc, image=args.image, purl=pq.text, function=args.function.text,
                         vulnerability=args.vuln, policy_hash=args.policy_hash)  # fmt: skip
        text = json.dumps(dsse.sign(encode(stmt), private), indent=2) + "\n"
        if args.save:
            issued = dt.datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00"))
            # The answer is read: end its snapshot before writing. On SQLite an agent's write held
            # off by it goes first; writing inside it would fail at once ("database is locked").
            conn.commit()
            try:
                kid = keys.key_id(private.public_key())
                row, new = wstore.save(conn, envelope=text.encode(), stmt=stmt, key_id=kid, issued_at=issued)
            except wstore.NoWitnessTable as e:
                return _fail(str(e))
            print(
                f"stella-runtime witness: stored as {row}{'' if new else ' (already there)'}", file=sys.stderr
            )
        if args.out:
            try:
                write_out(args.out, text.encode())
            except OSError as e:
                return _fail(f"cannot write {args.out}: {e.strerror or e}")
            state = doc["reachability_state"] or "defer"
            emit(f"witness for {_shown(args.function.text)} in {args.image}: {state} -> {args.out}")
        else:
            emit(text.rstrip("\n"))
        return exitcodes.OK

    return _with_store(args, ask)


def run_list(args: argparse.Namespace) -> int:
    claim = args.claim
    if claim is not None and (args.purl or args.function or args.vuln):  # one would be ignored
        return _fail("give --claim, or --purl and --function (and --vuln), not both")
    if claim is None and (args.purl or args.function or args.vuln):
        if not (args.purl and args.function):  # --vuln alone would list every claim's witnesses
            return _fail("give --purl and --function together (and --vuln with them), or --claim")
        claim = wstore.claim_id(args.image, args.purl.text, args.function.text, args.vuln)

    def ask(conn: sa.Connection) -> int:
        try:
            rows = wstore.find(conn, image=args.image, claim=claim)
        except wstore.NoWitnessTable as e:
            return _fail(str(e))
        # issued later than the store's clock: signed by a version before issued.py on a clock
        # running ahead; listed by the date it bears, which is not when it was issued
        now = store_now(conn) or dt.datetime.now(dt.UTC)
        ahead = [r.issued_at.replace(tzinfo=r.issued_at.tzinfo or dt.UTC) > now + FUTURE_SLACK for r in rows]
        if args.json:
            found = [{**r.to_json(), "issued_in_future": a} for r, a in zip(rows, ahead, strict=True)]
            emit(json.dumps({"image": args.image, "claim_id": claim, "witnesses": found}, indent=2))
        else:
            for r, a in zip(rows, ahead, strict=True):
                # one line per witness: a claim's newline or tab cannot forge another
                claimed = f"{_shown(r.function)} ({_shown(r.purl)})" + (
                    f" {_shown(r.vulnerability)}" if r.vulnerability else ""
                )
                mark = "\tissued later than the store's clock: its date is not its age" if a else ""
                if r.image_digest != args.image:  # one content's other digest (witness/store.py find)
                    mark += f"\tsigned for {r.image_digest}, a digest paired with it"
                emit(
                    f"{r.id}\t{r.envelope_sha256}\t{r.state or 'defer'}\t{claimed}\t"
                    f"{r.issued_at.isoformat()}{mark}"
                )
        return exitcodes.OK if rows else exitcodes.NOT_FOUND

    return _with_store(args, ask)


_REF = re.compile(r"[0-9]{1,18}|sha256:[0-9a-f]{64}")  # a row id (BIGINT) or an envelope digest


def run_get(args: argparse.Namespace) -> int:
    if not _REF.fullmatch(args.ref):
        return _fail(f"expected a row id or sha256:<digest>, got {args.ref!r}")
    if args.out and keys.holds_pem(args.out):
        return _fail(f"--out {args.out} holds a PEM key (-----BEGIN …): not overwriting a key")

    def ask(conn: sa.Connection) -> int:
        try:
            data = wstore.envelope(conn, ref=args.ref)
        except wstore.NoWitnessTable as e:
            return _fail(str(e))
        if data is None:
            return _fail(f"no stored witness {args.ref}", exitcodes.NOT_FOUND)
        if args.out:
            try:
                write_out(args.out, data)
            except OSError as e:
                return _fail(f"cannot write {args.out}: {e.strerror or e}")
        else:
            pipes.write(data.decode())
        return exitcodes.OK

    return _with_store(args, ask)


def _shown(text: str) -> str:
    """``text`` with control and format characters escaped: a signed claim's newline or terminal
    escape must not print a second, forged verdict line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def run_verify(args: argparse.Namespace) -> int:
    try:
        public = keys.load_public(args.key)
    except keys.KeyError_ as e:
        return _fail(str(e))
    try:
        envelope: Any = dsse.read_envelope(args.file)
    except OSError as e:
        return _fail(f"cannot read {args.file}: {e.strerror or e}")
    except dsse.VerificationError as e:
        return _fail(f"{args.file}: {e}", exitcodes.NOT_FOUND)
    try:
        stmt = check_statement(dsse.verify(envelope, public), image=args.image, purl=args.purl,
                               function=args.function, vulnerability=args.vuln,
                               not_before=args.not_before)  # fmt: skip
    except dsse.VerificationError as e:
        return _fail(f"{args.file}: verification failed: {e}", exitcodes.NOT_FOUND)
    ahead = issued_after(stmt, dt.datetime.now(dt.UTC))  # refused with --not-before; said otherwise
    if ahead is not None:
        print(f"stella-runtime witness: {args.file}: warning: {ahead}", file=sys.stderr)
    if args.json:
        emit(json.dumps(stmt, indent=2))
    else:
        claim, a = stmt["predicate"]["claim"], stmt["predicate"]["assessment"]
        state = a["reachability_state"] or "defer to static analysis"
        issued = _shown(str(stmt["predicate"].get("issued_at")))
        emit(f"verified: {_shown(claim['function'])} of {_shown(claim['purl'])} in {claim['image_digest']}: "
             f"{state}, issued {issued}, signed by key {keys.key_id(public)}")  # fmt: skip
    return exitcodes.OK
