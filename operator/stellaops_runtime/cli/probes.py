"""``stella-runtime probes``: what the native (BCC) probes can do on this node, and a trial run.

``probes detect`` prints the capability report and the posture the native
source can deliver (exit 0 when at least Passive, 2 when None); ``probes run``
loads the probes, prints the events they see for ``--seconds``, then the
in-kernel counters (seen, filtered, rate limited, sampled out, lost, emitted).
``--tcp`` adds TCP state changes, printed with their old and new state.
Stacks: ``--kernel-stack NAME`` / ``--user-stack NAME`` trace syscall NAME
with the kernel / user stack of each call (``--tcp-kernel-stack``,
``--tcp-user-stack`` for TCP state changes; uprobe calls carry the caller's
user stack unless ``--no-stacks``); ``--stack-depth`` caps the frames kept.
Every event is printed after the privacy filter (default rules), as the agent stores it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import asdict
from typing import Any

import orjson

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig, NativeConfigError, UprobeTarget, UsdtTarget

HELP = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("probes", help="native BCC probes: capability report and trial run", description=HELP)
    psub = p.add_subparsers(dest="probes_command", metavar="ACTION", required=True)
    d = psub.add_parser("detect", help="what the kernel and BCC allow, and the posture that gives")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.add_argument("--no-mount", action="store_true", help="do not try to mount tracefs")
    d.add_argument("--no-compile", action="store_true", help="skip compiling a test program with BCC")
    d.set_defaults(func=run_detect)
    r = psub.add_parser("run", help="load the probes and print what they see")
    r.add_argument("--seconds", type=float, required=True, help="how long to run")
    r.add_argument("--json", action="store_true", help="events as JSON lines, then a JSON summary")
    r.add_argument("--no-exec", action="store_true", help="no exec events")
    r.add_argument("--syscall", action="append", default=[], metavar="NAME", help="trace this syscall")
    r.add_argument("--uprobe", action="append", default=[], metavar="BINARY:SYMBOL", help="probe a function")
    r.add_argument(
        "--usdt", action="append", default=[], metavar="BINARY:PROVIDER:NAME", help="probe a USDT probe"
    )
    r.add_argument(
        "--tcp", action="store_true", help="TCP state changes (tracepoint sock:inet_sock_set_state)"
    )
    r.add_argument("--no-stacks", action="store_true", help="no user stacks on uprobe events")
    r.add_argument(
        "--kernel-stack", action="append", default=[], metavar="NAME",
        help="trace this syscall with the kernel stack of each call (its entry path); repeatable",
    )  # fmt: skip
    r.add_argument(
        "--user-stack", action="append", default=[], metavar="NAME",
        help="trace this syscall with the user stack of each call (the code making it); repeatable",
    )  # fmt: skip
    r.add_argument("--tcp-kernel-stack", action="store_true", help="with --tcp: kernel stack of the caller")
    r.add_argument("--tcp-user-stack", action="store_true", help="with --tcp: user stack of the caller")
    r.add_argument(
        "--stack-depth", type=int, default=127, metavar="N",
        help="frames kept per stack, 1-127 (the innermost; default 127)",
    )  # fmt: skip
    r.add_argument(
        "--cgroup", action="append", type=int, default=[], metavar="ID", help="only this cgroup id"
    )
    r.add_argument("--rate", type=int, default=0, help="token bucket: events per second per cgroup (0 = off)")
    r.add_argument("--burst", type=int, default=0, help="token bucket size (default: --rate)")
    r.add_argument("--sample", type=int, default=1, metavar="N", help="emit 1 in N syscall events")
    r.add_argument("--perf-buffer", action="store_true", help="use the perf buffer even with a ring buffer")
    r.set_defaults(func=run_probes)


def _report(args: argparse.Namespace) -> Any:
    from stellaops_runtime.native.detect import detect
    from stellaops_runtime.native.session import default_cache_dir

    return detect(
        mount_tracefs=not getattr(args, "no_mount", False),
        compile_test=not getattr(args, "no_compile", False),
        cache_dir=default_cache_dir(),
    )


def run_detect(args: argparse.Namespace) -> int:
    rep = _report(args)
    if args.json:
        sys.stdout.write(orjson.dumps(rep.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out = [f"kernel {rep.kernel} ({rep.machine})", f"posture: {rep.posture}"]
        out += [f"  [{'ok' if c.ok else '--'}] {c.name}: {c.detail}" for c in rep.checks]
        out += [f"missing: {m}" for m in rep.missing]
        sys.stdout.write("\n".join(out) + "\n")
    return exitcodes.OK if rep.posture > Posture.NONE else exitcodes.ERROR


def _config(args: argparse.Namespace) -> NativeConfig:
    targets = []
    for spec in args.uprobe:
        binary, sep, symbol = spec.rpartition(":")
        if not sep:
            raise NativeConfigError(f"--uprobe {spec!r}: expected BINARY:SYMBOL")
        targets.append(UprobeTarget(binary, symbol))
    usdts = []
    for spec in args.usdt:
        rest, _, name = spec.rpartition(":")
        binary, _, provider = rest.rpartition(":")
        if not binary or not provider or not name:
            raise NativeConfigError(f"--usdt {spec!r}: expected BINARY:PROVIDER:NAME")
        usdts.append(UsdtTarget(binary, provider, name))
    syscalls = tuple(dict.fromkeys([*args.syscall, *args.kernel_stack, *args.user_stack]))
    return NativeConfig(
        usdt=tuple(usdts), kernel_stack_syscalls=tuple(dict.fromkeys(args.kernel_stack)),
        user_stack_syscalls=tuple(dict.fromkeys(args.user_stack)), tcp_kernel_stacks=args.tcp_kernel_stack,
        tcp_user_stacks=args.tcp_user_stack, stack_depth=args.stack_depth,
        exec_events=not args.no_exec, syscalls=syscalls, uprobes=tuple(targets),
        tcp_state=args.tcp, user_stacks=not args.no_stacks, cgroup_allow=tuple(args.cgroup),
        rate_per_second=args.rate, burst=args.burst, syscall_sample_every=args.sample,
        force_perf_buffer=args.perf_buffer,
    )  # fmt: skip


def event_json(ev: RuntimeCallEvent) -> bytes:
    d = asdict(ev)
    d["kind"] = str(ev.kind)
    return orjson.dumps(d)


def _clean(text: str) -> str:
    """``text`` with every unprintable character escaped (``\\n``, ``\\x1b``): any user of the node
    names the files it executes, and a name must not forge lines or drive the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _event_text(ev: RuntimeCallEvent) -> str:
    p = ev.process
    what = ev.function_name or ev.module
    lat = f" latency={ev.latency_ns}ns" if ev.latency_ns is not None else ""
    frames = f" frames={len(ev.user_stack)}" if ev.user_stack else ""
    frames += f" kernel_frames={len(ev.kernel_stack)}" if ev.kernel_stack else ""
    return _clean(f"{ev.kind} pid={p.pid} tid={p.tid} binary={p.binary} {what}{lat}{frames}{_tcp_text(ev)}")


def _tcp_text(ev: RuntimeCallEvent) -> str:
    """`` SYN_SENT->ESTABLISHED 10.0.0.1:40000->10.0.0.2:443`` for a TCP state event, else ''."""
    if ev.function_name != tcp_state.FUNCTION_NAME:
        return ""
    a = {arg.label: arg.value for arg in ev.arguments}
    states = [
        tcp_state.TCP_STATES.get(int(a[k]), a[k]) if a.get(k, "").isdigit() else "?"
        for k in ("oldstate", "newstate")
    ]
    return f" {states[0]}->{states[1]} {a.get('saddr')}:{a.get('sport')}->{a.get('daddr')}:{a.get('dport')}"


def run_probes(args: argparse.Namespace) -> int:
    from stellaops_runtime.native.session import run_session

    try:
        cfg = _config(args)
    except NativeConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return exitcodes.ERROR
    if not 0 < args.seconds <= 86400:
        print("error: --seconds must be in (0, 86400]", file=sys.stderr)
        return exitcodes.ERROR
    rep = _report(args)
    if rep.posture == Posture.NONE:
        print("error: native probes cannot run here: " + "; ".join(rep.missing), file=sys.stderr)
        return exitcodes.ERROR
    out = sys.stdout
    # What the agent would store passes the agent's privacy filter (default rules) before it is
    # printed: a USDT probe's string arguments are values the workload chose.
    from stellaops_runtime.contracts.config import PrivacyConfig
    from stellaops_runtime.privacy.filter import PrivacyFilter

    privacy = PrivacyFilter(PrivacyConfig())

    def show(ev: RuntimeCallEvent) -> None:
        privacy.scrub_image(ev)
        if privacy.apply(ev) is None:
            return
        out.write((event_json(ev).decode() if args.json else _event_text(ev)) + "\n")

    res = asyncio.run(run_session(cfg, seconds=args.seconds, report=rep, on_event=show))
    summary = res.summary()
    if args.json:
        out.write(orjson.dumps({"summary": summary}).decode() + "\n")
    else:
        for probe, reason in res.failed:
            print(f"probe not attached: {probe}: {reason}", file=sys.stderr)
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode(), file=sys.stderr)
    if res.unwatched:
        print(
            f"warning: for {res.unwatched_seconds:.3f} s of this run ({len(res.unwatched)} span(s), "
            "'unwatched' in the summary) a process may have run a probed binary or library in a file "
            "no probe was on (replaced, a former file found late or not probed, or not every process "
            "read before the run ended): calls made then may be missing from the events",
            file=sys.stderr,
        )
    if res.error:
        print(f"error: {res.error}", file=sys.stderr)
        return exitcodes.ERROR
    return exitcodes.OK
