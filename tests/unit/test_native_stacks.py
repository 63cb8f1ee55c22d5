"""Stacks of the native probes without a kernel: policy notes, generated C, records, decoding.

The kernel side (the probes really take these stacks, counts stay exact) is
tests/native/test_native_stacks_kernel.py; here: what a policy turns on, that
the generated program has stack code exactly where asked, and that records
with stack ids and trailers with kernel addresses decode into the frames a
Tetragon kprobe event gives, hostile ones counted.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stellaops_runtime.adapter import from_json
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.canonical.kallsyms import KernelSymbols
from stellaops_runtime.contracts.crds import parse_policy_spec
from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.contracts.syscalls import X86_64
from stellaops_runtime.controller.render_policy import render_policy
from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig, NativeConfigError, UprobeTarget
from stellaops_runtime.native.detect import Check, Report, detect, posture_of
from stellaops_runtime.native.events import MAX_FRAMES, Decoder, encode_trailer
from stellaops_runtime.native.loader import program_text
from stellaops_runtime.native.policy_config import merge_entries
from stellaops_runtime.native.probes import syscalls, tcp, uprobes

NODE = "node-a"
KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000100 T entry_SYSCALL_64
ffffffff81000130 t entry_SYSCALL_64_after_hwframe
ffffffff81000200 D some_data
ffffffff81400000 T syscall_trace_enter
ffffffff81400400 T do_syscall_64
ffffffff81400800 T __x64_sys_getppid
ffffffff81400900 T _etext_marker
ffffffffc0000000 t nf_hook_thing\t[nf_tables]
"""


# -- policies -> config, and the notes --------------------------------------------------------


def _entry(spec: dict) -> dict:
    """The probe ConfigMap entry the operator renders for ``spec`` (its own code)."""
    base = {"maxLevel": "EbpfDeep", "podSelector": {}}
    rendered = render_policy(
        kind="ObservationPolicy", name="p", namespace="default", uid="u",
        spec=parse_policy_spec(base | spec, cluster=False),
    )  # fmt: skip
    return rendered.probe_entry


def test_kernel_and_user_stacks_on_syscalls_are_taken_and_not_reported_as_missing() -> None:
    entry = _entry({"syscalls": ["openat", "connect"], "stackTraces": {"kernel": True, "user": True}})
    res = merge_entries({"ObservationPolicy/default/p": entry}, NativeConfig())
    cfg = res.config
    assert set(cfg.kernel_stack_syscalls) == set(cfg.user_stack_syscalls) == {"openat", "connect"}
    assert not [n for n in res.not_covered if "stack" in n]


def test_stacks_are_per_policy_syscall_and_tcp_follows_the_entry() -> None:
    with_k = _entry({"syscalls": ["openat"], "stackTraces": {"kernel": True}, "tcpState": True})
    plain = _entry({"syscalls": ["connect"]})
    user_only = _entry({"syscalls": ["getppid"], "stackTraces": {"user": True}})
    res = merge_entries({"a": with_k, "b": plain, "c": user_only}, NativeConfig())
    cfg = res.config
    assert cfg.kernel_stack_syscalls == ("openat",)
    assert cfg.user_stack_syscalls == ("getppid",)  # connect: no policy asks for its stacks
    assert (cfg.tcp_state, cfg.tcp_kernel_stacks, cfg.tcp_user_stacks) == (True, True, False)


def test_kernel_stacks_on_functions_are_a_note_and_user_stacks_on_them_are_taken() -> None:
    entry = _entry(
        {
            "functions": [{"binaryPath": "/usr/bin/app", "symbols": ["handle"]}],
            "stackTraces": {"kernel": True, "user": True},
        }
    )
    res = merge_entries({"k": entry}, NativeConfig())
    assert res.config.user_stacks is True
    assert res.config.kernel_stack_syscalls == () and not res.config.tcp_kernel_stacks
    notes = [n for n in res.not_covered if "stack" in n]
    assert notes == [
        "k: kernel stack traces on functions: a uprobe fires in user space, with no kernel path under "
        "way, so function events carry the user stack only"
    ]


def test_below_ebpf_deep_the_operator_asks_for_no_stacks_and_none_are_taken() -> None:
    entry = _entry(
        {"maxLevel": "ActiveTracing", "syscalls": ["openat"], "stackTraces": {"kernel": True, "user": True}}
    )
    cfg = merge_entries({"x": entry}, NativeConfig()).config
    assert cfg.syscalls == ("openat",)
    assert cfg.kernel_stack_syscalls == cfg.user_stack_syscalls == ()


def test_the_agents_own_stack_settings_stay_under_policies() -> None:
    base = NativeConfig(
        syscalls=("mmap",), kernel_stack_syscalls=("mmap",), tcp_state=True, tcp_user_stacks=True
    )
    cfg = merge_entries({"x": _entry({"syscalls": ["openat"]})}, base).config
    assert cfg.kernel_stack_syscalls == ("mmap",) and cfg.tcp_user_stacks is True


# -- configuration ----------------------------------------------------------------------------


def test_config_reads_the_stack_fields_and_refuses_bad_ones() -> None:
    cfg = NativeConfig.from_dict(
        {
            "syscalls": ["openat", "connect"], "kernelStackSyscalls": ["openat"],
            "userStackSyscalls": ["connect"], "tcpState": True, "tcpKernelStacks": True,
            "tcpUserStacks": False, "stackDepth": 64,
        }
    )  # fmt: skip
    assert (cfg.kernel_stack_syscalls, cfg.user_stack_syscalls) == (("openat",), ("connect",))
    assert cfg.tcp_kernel_stacks and cfg.takes_stacks() and cfg.kernel_stacks() and cfg.stack_depth == 64
    for bad in (0, 128, True, "64"):
        with pytest.raises(
            NativeConfigError, match=r"native\.stack_depth: expected an integer in \[1, 127\]"
        ):
            NativeConfig.from_dict({"stackDepth": bad})
    with pytest.raises(NativeConfigError, match="stackMapEntries"):  # the map is gone, so is its size
        NativeConfig.from_dict({"stackMapEntries": 4096})
    with pytest.raises(
        NativeConfigError, match=r"native.kernel_stack_syscalls: not in native.syscalls: 'mmap'"
    ):
        NativeConfig(syscalls=("openat",), kernel_stack_syscalls=("mmap",))
    with pytest.raises(
        NativeConfigError, match=r"native\.user_stack_syscalls: expected a list of syscall names"
    ):
        NativeConfig.from_dict({"syscalls": ["openat"], "userStackSyscalls": "openat"})
    with pytest.raises(NativeConfigError, match=r"native\.tcp_kernel_stacks: expected true or false"):
        NativeConfig.from_dict({"tcpKernelStacks": "yes"})
    hostile = "x" * 100_000 + "\x00"
    with pytest.raises(NativeConfigError) as e:
        NativeConfig(syscalls=("openat",), user_stack_syscalls=(hostile,))
    assert len(str(e.value)) < 200  # the hostile name is cut in the message


# -- the generated program ---------------------------------------------------------------------


def _c(cfg: NativeConfig) -> str:
    return program_text(cfg, ring_buffer=True) + tcp.c_source(cfg, ring_buffer=True)


def _walks(text: str) -> list[str]:
    return re.findall(r"bpf_get_stack\([^;]*\);", text)


def test_without_stacks_the_program_has_no_stack_code() -> None:
    cfg = NativeConfig(syscalls=("openat", "getppid"), tcp_state=True, uprobes=(UprobeTarget("/bin/x", "f"),),
                       user_stacks=False)  # fmt: skip
    text = _c(cfg)
    assert "bpf_get_stack" not in text and "stella_scratch" not in text and "BPF_STACK_TRACE" not in text
    assert "stella_syscall_st" not in text and "stella_tcp_st" not in text  # plain records


def test_no_probe_uses_a_stack_trace_map_any_more() -> None:
    cfg = NativeConfig(syscalls=("getppid",), kernel_stack_syscalls=("getppid",),
                       user_stack_syscalls=("getppid",), tcp_state=True, tcp_kernel_stacks=True,
                       tcp_user_stacks=True, uprobes=(UprobeTarget("/bin/x", "f"),))  # fmt: skip
    for ring_buffer in (True, False):
        text = _c(cfg)
        assert "BPF_STACK_TRACE" not in text and "get_stackid" not in text
        assert len(_walks(program_text(cfg, ring_buffer=ring_buffer))) == 5  # 2 syscall, 2 tcp, 1 uprobe


def test_kernel_stacks_on_syscalls_take_the_kernel_stack_only_where_the_syscall_asks() -> None:
    cfg = NativeConfig(syscalls=("openat", "getppid"), kernel_stack_syscalls=("getppid",), stack_depth=16)
    text = syscalls.c_source(cfg, ring_buffer=True)
    assert _walks(text) == ["bpf_get_stack(args, &e->addrs[0], 128, 0);"]  # no BPF_F_USER_STACK
    assert f"if (w & {syscalls.KERNEL_STACK})" in text
    # a walk that fails (r < 0) or finds nothing (r == 0) is counted as stack_lost; the record still goes
    lost = f"stella_count({records.KIND_SYSCALL}, {records.C_STACK_LOST})"
    assert f"if (r > 0) stella_kn = (u32)r / 8; else {lost};" in text
    assert text.index(lost) < text.index("stella_events.ringbuf_output")
    whole = program_text(cfg, ring_buffer=True)
    # room for 16 kernel addresses, in a per-CPU scratch record; only the used part is output
    assert (
        "u64 addrs[16];" in whole
        and "BPF_PERCPU_ARRAY(stella_scratch_syscall, struct stella_syscall_st, 1);" in whole
    )
    assert "stella_events.ringbuf_output(e, stella_size, 0)" in text and "ringbuf_reserve" not in text
    bits = syscalls.want_bits(cfg)
    assert bits == {X86_64["openat"]: syscalls.WANT, X86_64["getppid"]: syscalls.WANT | syscalls.KERNEL_STACK}


def test_user_stacks_on_syscalls_and_both_on_tcp() -> None:
    cfg = NativeConfig(syscalls=("connect",), user_stack_syscalls=("connect",), tcp_state=True,
                       tcp_kernel_stacks=True, tcp_user_stacks=True)  # fmt: skip
    sc = syscalls.c_source(cfg, ring_buffer=False)
    assert _walks(sc) == ["bpf_get_stack(args, &e->addrs[at], 1016, BPF_F_USER_STACK);"]
    assert "stella_events.perf_submit(args, e, stella_size)" in sc  # the perf buffer: the used part too
    t = tcp.c_source(cfg, ring_buffer=True)
    assert _walks(t) == [
        "bpf_get_stack(args, &e->addrs[0], 1016, 0);",
        "bpf_get_stack(args, &e->addrs[at], 1016, BPF_F_USER_STACK);",  # right after the kernel frames
    ]
    assert "u64 addrs[254];" in program_text(cfg, ring_buffer=True)  # the TCP record: room for both
    # every change: stacks only where the current task is the caller (not in softirq context)
    every = tcp.c_source(NativeConfig(tcp_state=True, tcp_all_transitions=True, tcp_kernel_stacks=True),
                         ring_buffer=True)  # fmt: skip
    assert "if (caller) {\n        long r = bpf_get_stack(args, &e->addrs[0], 1016, 0);" in every


def test_uprobes_take_the_callers_user_stack_at_the_return_never_a_kernel_stack() -> None:
    cfg = NativeConfig(uprobes=(UprobeTarget("/bin/x", "f"),), user_stacks=True)
    text = uprobes.c_source(cfg, ring_buffer=True)
    assert _walks(text) == ["bpf_get_stack(ctx, &e->addrs[at], 1016, BPF_F_USER_STACK);"]
    assert text.index("bpf_get_stack") > text.index("stella_up_return(")  # in the return probe
    # uprobe programs may be preempted midway: with the ring buffer their record is reserved there,
    # private to the call, not built in a per-CPU scratch copy another task could overwrite
    assert "stella_events.ringbuf_reserve(sizeof(struct stella_uprobe_st))" in text
    assert "stella_scratch_uprobe" not in program_text(cfg, ring_buffer=True)
    assert "stella_scratch_uprobe.lookup" in uprobes.c_source(cfg, ring_buffer=False)  # perf: no other room


# -- records and decoding ----------------------------------------------------------------------


@pytest.fixture
def ksyms(tmp_path: Path) -> KernelSymbols:
    p = tmp_path / "kallsyms"
    p.write_text(KALLSYMS)
    return KernelSymbols(kallsyms_path=str(p), notes_path=str(tmp_path / "none"),
                         sys_module_path=str(tmp_path / "none"))  # fmt: skip


def _head(kind: int, flags: int, pid: int = 4242) -> tuple:
    return (kind, flags, 0, pid, pid, 0, 5_000, 77, b"prog")


def _syscall(
    user: list[int] | None = None, kernel: list[int] | None = None, nr: int = X86_64["getppid"]
) -> bytes:
    """A syscall record as the kernel writes it with stacks: head, kernel addresses, user addresses."""
    user, kernel = user or [], kernel or []
    rec = records.STRUCTS[records.KIND_SYSCALL].pack(*_head(records.KIND_SYSCALL, records.FLAG_STACKS), nr, 1)
    return (
        rec
        + records.STACK_HEAD.pack(len(user), len(kernel), 0)
        + struct.pack(f"<{len(kernel) + len(user)}Q", *kernel, *user)
    )


def _decoder(ks: KernelSymbols, **kw: object) -> Decoder:
    return Decoder(node_name=NODE, targets=[], wall_minus_monotonic_ns=0, kernel_symbols=lambda: ks, **kw)  # type: ignore[arg-type]


def test_record_size_and_split_stacks_follow_the_flag_and_the_counts() -> None:
    plain = records.STRUCTS[records.KIND_SYSCALL].pack(*_head(records.KIND_SYSCALL, 0), X86_64["getppid"], 1)
    assert records.record_size(plain + b"\0" * 8) == len(plain)  # perf padding is not a stack
    assert records.split_stacks(plain + b"\xff" * 8) == (plain + b"\xff" * 8, [], [])
    stacked = _syscall(user=[0x401000, 0x401100], kernel=[0xFFFFFFFF81400180])
    assert records.record_size(stacked + b"\0" * 5) == len(plain) + 8 + 3 * 8
    rec, user, kernel = records.split_stacks(stacked)
    assert (user, kernel) == ([0x401000, 0x401100], [0xFFFFFFFF81400180])
    assert rec == plain  # the flag cleared, the stacks taken out
    assert records.record_size(rec) == len(plain)
    # a kernel-only and a user-only record
    assert records.split_stacks(_syscall(kernel=[7]))[1:] == ([], [7])
    assert records.split_stacks(_syscall(user=[9]))[1:] == ([9], [])
    # cut short, or counting more than any stack the kernel walks: left as they are (the decoder refuses)
    for bad in (stacked[:-1], stacked[: len(plain) + 3]):
        assert records.split_stacks(bad) == (bad, [], [])
    too_many = _syscall(user=[1] * (records.MAX_STACK_FRAMES + 1))
    assert records.split_stacks(too_many) == (too_many, [], [])
    up = records.STRUCTS[records.KIND_UPROBE].pack(
        *_head(records.KIND_UPROBE, records.FLAG_STACKS), 0, 0, 100
    )
    up += records.STACK_HEAD.pack(1, 0, 0) + struct.pack("<Q", 0x401234)
    assert records.split_stacks(up)[1:] == ([0x401234], [])
    assert records.record_size(b"") == 0 and records.split_stacks(b"\x63") == (b"\x63", [], [])
    exec_rec = records.STRUCTS[records.KIND_EXEC].pack(
        *_head(records.KIND_EXEC, records.FLAG_STACKS), 1, 0, b"/x"
    )
    assert records.record_size(exec_rec) == len(exec_rec)  # exec records never carry stacks


def test_the_source_hands_the_decoder_plain_records_and_the_addresses_in_the_trailer(
    ksyms: KernelSymbols,
) -> None:
    kernel = [0xFFFFFFFF81400180, 0xFFFFFFFF8140060F]
    rec, user, kern = records.split_stacks(_syscall(user=[0x55D0000011EF], kernel=kernel))
    ev = _decoder(ksyms).decode(
        rec + encode_trailer("/usr/bin/prog", 0, [(user[0], 0x11EF, "/usr/bin/prog")], kern)
    )
    assert ev is not None
    assert [f.symbol for f in ev.kernel_stack] == ["syscall_trace_enter", "do_syscall_64"]
    assert [(f.module, f.offset) for f in ev.user_stack] == [("/usr/bin/prog", 0x11EF)]


def test_a_record_still_carrying_stacks_is_read_past_them_and_bad_counts_are_counted(
    ksyms: KernelSymbols,
) -> None:
    d = _decoder(ksyms)
    ev = d.decode(_syscall(user=[1, 2], kernel=[3]) + encode_trailer("/b", 0, []))
    assert ev is not None and ev.process.binary == "/b"
    too_many = _syscall(kernel=[1] * (records.MAX_STACK_FRAMES + 1))
    assert d.decode(too_many + encode_trailer("/b", 0, [])) is None
    assert d.stats.malformed["native_bad_stack"] == 1
    huge = bytearray(_syscall())
    huge[records.STRUCTS[records.KIND_SYSCALL].size] = 0xFF  # says 255 user frames, holds none
    assert d.decode(bytes(huge)) is None and d.stats.malformed["native_short_record"] == 1


def test_kernel_addresses_become_tetragons_kernel_frames(ksyms: KernelSymbols) -> None:
    kernel = [0xFFFFFFFF81400180, 0xFFFFFFFF8140060F, 0xFFFFFFFF81000176]
    user = [(0x55D0000011EF, 0x11EF, "/usr/bin/prog")]
    d = _decoder(ksyms)
    ev = d.decode(_syscall() + encode_trailer("/usr/bin/prog", 0, user, kernel))
    assert ev is not None and ev.kind is EventKind.SYSCALL and ev.function_name == "__x64_sys_getppid"
    got = [(f.symbol, f.offset, f.address, f.module) for f in ev.kernel_stack]
    assert got == [
        ("syscall_trace_enter", 0x180, kernel[0], ""),
        ("do_syscall_64", 0x20F, kernel[1], ""),
        ("entry_SYSCALL_64_after_hwframe", 0x46, kernel[2], ""),
    ]
    assert [(f.module, f.offset) for f in ev.user_stack] == [("/usr/bin/prog", 0x11EF)]
    # The same stack from Tetragon (kallsyms symbol + offset from its start, module empty).
    obj = {
        "process_kprobe": {
            "process": {"pid": 4242, "binary": "/usr/bin/prog"}, "function_name": "__x64_sys_getppid",
            "kernel_stack_trace": [{"address": a, "offset": o, "symbol": s} for s, o, a, _ in got],
        },
        "node_name": NODE,
    }  # fmt: skip
    t = from_json.adapt(from_json.decode_line(orjson.dumps(obj)), stats=AdapterStats())
    assert t is not None
    assert [(f.symbol, f.offset, f.address, f.module) for f in t.kernel_stack] == got


def test_unsymbolized_and_too_deep_kernel_frames_are_counted_and_the_event_kept(ksyms: KernelSymbols) -> None:
    d = _decoder(ksyms, max_stack_depth=2)
    below_text = 0xFFFFFFFF80000000  # before the first symbol
    ev = d.decode(_syscall() + encode_trailer("", 0, [], [below_text] + [0xFFFFFFFF81400410] * 3))
    assert ev is not None and [f.symbol for f in ev.kernel_stack] == ["do_syscall_64"] * 2
    assert d.stats.repaired["native_kernel_frame_unsymbolized"] == 1
    assert d.stats.repaired["stack_truncated"] == 1
    assert d.stats.events[EventKind.SYSCALL] == 1


def test_unreadable_kallsyms_costs_the_kernel_frames_not_the_event() -> None:
    def unreadable() -> KernelSymbols:
        raise PermissionError("kallsyms")

    d = Decoder(node_name=NODE, targets=[], wall_minus_monotonic_ns=0, kernel_symbols=unreadable)
    for _ in range(2):
        ev = d.decode(_syscall() + encode_trailer("", 0, [], [0xFFFFFFFF81400410]))
        assert ev is not None and ev.kernel_stack == []
    assert d.stats.repaired["native_kernel_frame_unsymbolized"] == 2
    assert d.stats.events[EventKind.SYSCALL] == 2


def test_a_tcp_record_with_stacks_decodes_with_both(ksyms: KernelSymbols) -> None:
    k = records.KIND_TCP
    flags = records.FLAG_TCP_ATTRIBUTED | records.FLAG_STACKS
    rec = records.STRUCTS[k].pack(*_head(k, flags), 7, 2, 0, 443, 2, 6, b"\x7f\0\0\x01" + b"\0" * 12,
                                  b"\x7f\0\0\x01" + b"\0" * 12)  # fmt: skip
    rec += records.STACK_HEAD.pack(1, 1, 0) + struct.pack("<QQ", 0xFFFFFFFF81400810, 0x401000)
    rec, user, kernel = records.split_stacks(rec)
    assert (user, kernel) == ([0x401000], [0xFFFFFFFF81400810])
    ev = _decoder(ksyms).decode(
        rec + encode_trailer("/bin/c", 0, [(0x401000, 0x1000, "/bin/c")], [0xFFFFFFFF81400810])
    )
    assert ev is not None and ev.kind is EventKind.TRACEPOINT
    assert [(f.symbol, f.offset) for f in ev.kernel_stack] == [("__x64_sys_getppid", 0x10)]
    assert [f.module for f in ev.user_stack] == ["/bin/c"]


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (b"\x00\x00", "native_bad_trailer"),  # a kernel section of 0 addresses
        ((MAX_FRAMES + 1).to_bytes(2, "little") + b"\0" * 8 * (MAX_FRAMES + 1), "native_bad_trailer"),
        ((2).to_bytes(2, "little") + b"\0" * 8, "native_bad_trailer"),  # says 2, holds 1
        ((1).to_bytes(2, "little") + b"\0" * 9, "native_bad_trailer"),  # a byte too many
        (b"\x01", "native_bad_trailer"),
        ((65535).to_bytes(2, "little"), "native_bad_trailer"),
    ],
)
def test_hostile_kernel_sections_are_counted(ksyms: KernelSymbols, tail: bytes, reason: str) -> None:
    d = _decoder(ksyms)
    assert d.decode(_syscall() + encode_trailer("/b", 0, []) + tail) is None
    assert d.stats.malformed[reason] == 1


def test_a_flagged_record_cut_before_its_stacks_end_is_short(ksyms: KernelSymbols) -> None:
    d = _decoder(ksyms)
    assert d.decode(_syscall(user=[1], kernel=[2])[:-3]) is None
    assert d.stats.malformed["native_short_record"] == 1


def test_encode_trailer_keeps_at_most_max_frames_kernel_addresses(ksyms: KernelSymbols) -> None:
    d = _decoder(ksyms, max_stack_depth=1000)
    ev = d.decode(_syscall() + encode_trailer("", 0, [], [0xFFFFFFFF81400410] * 500))
    assert ev is not None and len(ev.kernel_stack) == MAX_FRAMES


# -- detection and the CLI ---------------------------------------------------------------------


def test_detect_checks_bpf_get_stack_and_ebpf_deep_needs_it(tmp_path: Path) -> None:
    rep = detect(mount_tracefs=False, cache_dir=str(tmp_path))
    check = rep.check("bpf_get_stack")
    assert check is not None
    if not rep.ok("bpf syscall"):
        pytest.skip(f"no bpf(2) here: {rep.check('bpf syscall')}")
    assert check.ok and check.detail == "a tracepoint program calling bpf_get_stack loads"
    # without it, no stacks: the posture stops below EbpfDeep and says why
    r = Report(kernel=rep.kernel, machine="x86_64", kernel_source="/x")
    r.checks = [Check(c.name, True, c.detail) for c in rep.checks if c.name != "bpf_get_stack"]
    r.checks.append(Check("bpf_get_stack", False, "gone"))
    assert posture_of(r, compile_checked=False) == (
        Posture.ACTIVE_TRACING,
        ["EbpfDeep needs bpf_get_stack: gone"],
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stack-depth", "0"], r"native.stack_depth: expected an integer in [1, 127], got 0"),
        (["--kernel-stack", "no_such_call"], "native.syscalls: unknown on x86_64: no_such_call"),
    ],
)
def test_probes_run_refuses_bad_stack_options_with_exit_2(args: list[str], message: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "probes", "run", "--seconds", "1", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert r.stdout == ""


def test_probes_run_stack_flags_make_the_config() -> None:
    import argparse

    from stellaops_runtime.cli import probes as cli_probes

    parser = argparse.ArgumentParser()
    cli_probes.register(parser.add_subparsers())
    args = parser.parse_args(
        ["probes", "run", "--seconds", "1", "--syscall", "openat", "--kernel-stack", "getppid",
         "--user-stack", "getppid", "--user-stack", "openat", "--tcp", "--tcp-kernel-stack",
         "--tcp-user-stack", "--stack-depth", "9"]
    )  # fmt: skip
    cfg = cli_probes._config(args)
    assert cfg.syscalls == ("openat", "getppid")  # a stacked syscall is traced without --syscall
    assert (cfg.kernel_stack_syscalls, cfg.user_stack_syscalls) == (("getppid",), ("getppid", "openat"))
    assert cfg.tcp_kernel_stacks and cfg.tcp_user_stacks and cfg.stack_depth == 9
    plain = cli_probes._config(parser.parse_args(["probes", "run", "--seconds", "1", "--tcp"]))
    assert not plain.takes_stacks() and plain.stack_depth == 127


def test_the_agent_pipeline_decodes_kernel_frames_with_the_canonicalizers_table(tmp_path: Path) -> None:
    """One kernel symbol table per agent: the native decoder shares the canonicalizer's (~10 MB)."""
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.contracts.config import parse_config

    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text(KALLSYMS)
    cfg = parse_config({"symbols": {"kallsymsPath": str(kallsyms)}, "attribution": {"enabled": False}})
    pipe = Pipeline(cfg, node_name=NODE)
    assert pipe.canonicalizer is not None
    rec, _, kern = records.split_stacks(_syscall(kernel=[0xFFFFFFFF81400180, 0xFFFFFFFF8140060F]))
    pipe.process_native([(rec + encode_trailer("/usr/bin/prog", 0, [], kern), 0)])
    decoder = pipe._native_decoder[1]
    assert decoder._ksyms is pipe.canonicalizer.symbolizer.kernel()  # the same object, loaded once
    assert pipe.adapter_stats.malformed == {}
