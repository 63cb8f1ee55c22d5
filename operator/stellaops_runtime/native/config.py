"""Configuration of the native probes: what to attach and how much the kernel lets through.

Plain data with validation; a bad value is a ``NativeConfigError`` with a
message naming the field. Filtering happens in the kernel (probes/prelude.py):
the cgroup allow list, the per-cgroup token bucket and 1-in-N sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stellaops_runtime.contracts.syscalls import TABLE_RELEASE, X86_64

MAX_CGROUPS = 4096
MAX_UPROBE_TARGETS = 64
MAX_PERIOD_SECONDS = 7 * 86_400


class NativeConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class UprobeTarget:
    binary: str  # absolute path of the ELF file (on a node: through /proc/<pid>/root for a container)
    symbol: str
    module: str = ""  # the path events report as module when not ``binary`` (a file inside a container)
    root: str = ""  # a PURL target's container root (/proc/<pid>/root), ``module`` its file there
    # (root, module) of the other containers whose file at ``module`` is this very file (one image's
    # layer file): looked at for replacements too (native/follow_shared.py)
    shared: tuple[tuple[str, str], ...] = ()
    # a PURL target's containers at the load (ids): those whose file at ``module`` is this file. Only
    # their calls are the probes' (agent/source_switch_overlap.py); another image's file at the same
    # path is not probed
    containers: tuple[str, ...] = ()

    def label(self) -> str:
        return f"{self.binary}:{self.symbol}"


# Probes whose arguments 1 and 2 are C strings (Python's: file name, function name, line).
KNOWN_STRING_ARGS: dict[tuple[str, str], tuple[int, ...]] = {
    ("python", "function__entry"): (1, 2),
    ("python", "function__return"): (1, 2),
}


@dataclass(frozen=True, slots=True)
class UsdtTarget:
    binary: str
    provider: str
    name: str
    string_args: tuple[int, ...] | None = None  # which of args 1, 2 are strings (None: known table)

    def label(self) -> str:
        return f"{self.binary}:{self.provider}:{self.name}"

    def strings(self) -> tuple[int, ...]:
        if self.string_args is not None:
            return self.string_args
        return KNOWN_STRING_ARGS.get((self.provider, self.name), ())


@dataclass(slots=True)
class NativeConfig:
    exec_events: bool = True
    syscalls: tuple[str, ...] = ()  # syscall names a policy asks for ("openat", "connect", ...)
    uprobes: tuple[UprobeTarget, ...] = ()
    usdt: tuple[UsdtTarget, ...] = ()
    tcp_state: bool = False  # TCP state changes (tracepoint sock:inet_sock_set_state)
    # With tcp_state: every change, not only the ones Tetragon is given (contracts/tcp_state.py);
    # the extra ones carry the socket's remembered process or none, and a Tetragon node never has them.
    tcp_all_transitions: bool = False
    user_stacks: bool = True  # user stack of each uprobe call (the caller's, taken at the return)
    # Syscall events that carry the kernel stack (the syscall's entry path) and the user stack
    # (the code that made the call); every name must be in ``syscalls``.
    kernel_stack_syscalls: tuple[str, ...] = ()
    user_stack_syscalls: tuple[str, ...] = ()
    # TCP state events (with ``tcp_state``): kernel and user stack of the task making the change.
    tcp_kernel_stacks: bool = False
    tcp_user_stacks: bool = False
    # Frames each stack may have (kernel and user alike): room reserved per stack in the kernel;
    # a deeper stack keeps its innermost ``stack_depth`` frames.
    stack_depth: int = 127
    # Only these cgroup ids (cgroup v2 inode numbers) are traced; empty = every cgroup.
    cgroup_allow: tuple[int, ...] = ()
    # Token bucket per cgroup for syscall and uprobe events; 0 = unlimited.
    rate_per_second: int = 0
    burst: int = 0  # bucket size; defaults to rate_per_second when 0
    # Syscall events: 1 in N is emitted (the rest counted as sampled out); 1 = all.
    syscall_sample_every: int = 1
    # A policy's rateLimit, as Tetragon applies it: per thread and probe, one event per period.
    syscall_periods: tuple[tuple[str, int], ...] = ()  # (syscall name, seconds)
    uprobe_periods: tuple[tuple[str, int], ...] = ()  # (UprobeTarget.label(), seconds)
    ring_buffer_pages: int = 64  # per ring buffer (or per CPU for the perf buffer); power of two
    force_perf_buffer: bool = False
    # Where Tetragon sees the node's root, as policies other than the default set it (the probe
    # ConfigMap's ``tetragonHostRoot``): it names a probed file ``<root><binaryPath>``, so the switch
    # back's overlap filter takes that name as the probes' file too (agent/source_switch_overlap.py)
    tetragon_roots: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NativeConfig:
        """From the camelCase mapping of an agent config (``native:`` section)."""
        if not isinstance(d, dict):
            raise NativeConfigError(f"native: expected a mapping, got {type(d).__name__}")
        ups = d.get("uprobes", [])
        if not isinstance(ups, list):
            raise NativeConfigError("native.uprobes: expected a list of {binary, symbol}")
        usdts = d.get("usdt", [])
        if not isinstance(usdts, list) or not all(
            isinstance(u, dict) and all(isinstance(u.get(k), str) for k in ("binary", "provider", "name"))
            for u in usdts
        ):
            raise NativeConfigError("native.usdt: expected a list of {binary, provider, name}")
        targets = []
        for i, u in enumerate(ups):
            if (
                not isinstance(u, dict)
                or not isinstance(u.get("binary"), str)
                or not isinstance(u.get("symbol"), str)
            ):
                raise NativeConfigError(f"native.uprobes[{i}]: expected {{binary: str, symbol: str}}")
            _entry_keys(u, f"native.uprobes[{i}]", _UPROBE_KEYS)
            targets.append(UprobeTarget(u["binary"], u["symbol"]))
        usdt_targets = []
        for i, u in enumerate(usdts):
            _entry_keys(u, f"native.usdt[{i}]", _USDT_KEYS)
            strings = u.get("stringArgs")
            if strings is not None and (
                not isinstance(strings, list) or not all(type(n) is int and n in (1, 2) for n in strings)
            ):
                raise NativeConfigError(
                    f"native.usdt[{i}].stringArgs: expected a list of 1 and 2 (arguments read as strings)"
                )
            usdt_targets.append(
                UsdtTarget(u["binary"], u["provider"], u["name"], None if strings is None else tuple(strings))
            )
        known = {
            "execEvents": "exec_events", "syscalls": "syscalls", "userStacks": "user_stacks",
            "stackDepth": "stack_depth", "cgroupAllow": "cgroup_allow",
            "ratePerSecond": "rate_per_second", "burst": "burst",
            "syscallSampleEvery": "syscall_sample_every", "ringBufferPages": "ring_buffer_pages",
            "forcePerfBuffer": "force_perf_buffer", "tcpState": "tcp_state",
            "tcpAllTransitions": "tcp_all_transitions", "kernelStackSyscalls": "kernel_stack_syscalls",
            "userStackSyscalls": "user_stack_syscalls", "tcpKernelStacks": "tcp_kernel_stacks",
            "tcpUserStacks": "tcp_user_stacks",
        }  # fmt: skip
        kwargs: dict[str, Any] = {
            "uprobes": tuple(targets),
            "usdt": tuple(usdt_targets),
        }
        for key, value in d.items():
            if key in ("uprobes", "usdt"):
                continue
            if key not in known:
                raise NativeConfigError(f"native.{key}: unknown field (known: {', '.join(sorted(known))})")
            kwargs[known[key]] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    def syscall_stacks(self) -> bool:
        """Whether any syscall event takes a stack (the program then has the code for it)."""
        return bool(self.kernel_stack_syscalls or self.user_stack_syscalls)

    def tcp_stacks(self) -> bool:
        return self.tcp_state and (self.tcp_kernel_stacks or self.tcp_user_stacks)

    def takes_stacks(self) -> bool:
        """Whether some probe takes a stack (the program then has stack code)."""
        return bool(self.uprobes and self.user_stacks) or self.syscall_stacks() or self.tcp_stacks()

    def kernel_stacks(self) -> bool:
        """Whether some probe takes a kernel stack (the kernel symbol table will then be needed)."""
        return bool(self.kernel_stack_syscalls) or (self.tcp_state and self.tcp_kernel_stacks)


def _int_field(cfg: NativeConfig, name: str, lo: int, hi: int) -> int:
    v = getattr(cfg, name)
    if type(v) is not int or not lo <= v <= hi:
        raise NativeConfigError(f"native.{name}: expected an integer in [{lo}, {hi}], got {v!r}")
    return v


def validate(cfg: NativeConfig) -> None:
    for name in (
        "exec_events", "tcp_state", "tcp_all_transitions", "user_stacks", "force_perf_buffer",
        "tcp_kernel_stacks", "tcp_user_stacks",
    ):  # fmt: skip
        if type(getattr(cfg, name)) is not bool:
            raise NativeConfigError(f"native.{name}: expected true or false")
    _int_field(cfg, "stack_depth", 1, 127)
    _int_field(cfg, "rate_per_second", 0, 10_000_000)
    _int_field(cfg, "burst", 0, 10_000_000)
    _int_field(cfg, "syscall_sample_every", 1, 1_000_000)
    pages = _int_field(cfg, "ring_buffer_pages", 1, 1 << 16)
    if pages & (pages - 1):
        raise NativeConfigError(f"native.ring_buffer_pages: must be a power of two, got {pages}")
    if not isinstance(cfg.syscalls, tuple) or not all(isinstance(s, str) for s in cfg.syscalls):
        raise NativeConfigError("native.syscalls: expected a list of syscall names")
    unknown = [s for s in cfg.syscalls if s not in X86_64]
    if unknown:
        raise NativeConfigError(
            f"native.syscalls: unknown on x86_64: {', '.join(sorted(unknown))} (this agent's table holds "
            f"the syscalls of Linux {TABLE_RELEASE} and earlier; a newer one is never counted under its "
            "number: it would be stored under another function than Tetragon's)"
        )
    for name in ("kernel_stack_syscalls", "user_stack_syscalls"):
        names = getattr(cfg, name)
        if not isinstance(names, tuple) or not all(isinstance(s, str) for s in names):
            raise NativeConfigError(f"native.{name}: expected a list of syscall names")
        missing = sorted(set(names) - set(cfg.syscalls))
        if missing:
            shown = ", ".join(repr(m[:64]) for m in missing[:8])
            raise NativeConfigError(f"native.{name}: not in native.syscalls: {shown}")
    if not isinstance(cfg.cgroup_allow, tuple) or not all(
        type(c) is int and 0 < c < 1 << 64 for c in cfg.cgroup_allow
    ):
        raise NativeConfigError("native.cgroup_allow: expected a list of cgroup ids (positive integers)")
    for name, pairs in (("syscall_periods", cfg.syscall_periods), ("uprobe_periods", cfg.uprobe_periods)):
        if not isinstance(pairs, tuple) or not all(
            isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and type(p[1]) is int
            and 0 < p[1] <= MAX_PERIOD_SECONDS
            for p in pairs
        ):  # fmt: skip
            raise NativeConfigError(
                f"native.{name}: expected (name, seconds) pairs, seconds in [1, {MAX_PERIOD_SECONDS}]"
            )
    if len(cfg.cgroup_allow) > MAX_CGROUPS:
        raise NativeConfigError(f"native.cgroup_allow: at most {MAX_CGROUPS} cgroups")
    if len(cfg.uprobes) > MAX_UPROBE_TARGETS:
        raise NativeConfigError(f"native.uprobes: at most {MAX_UPROBE_TARGETS} targets")
    if len(cfg.usdt) > MAX_UPROBE_TARGETS:
        raise NativeConfigError(f"native.usdt: at most {MAX_UPROBE_TARGETS} targets")
    for t in cfg.usdt:
        if not t.binary.startswith("/") or any("\x00" in x for x in (t.binary, t.provider, t.name)):
            raise NativeConfigError(f"native.usdt: {t.label()!r}: needs an absolute path, provider and name")
        if not t.provider or not t.name or not set(t.strings()) <= {1, 2}:
            raise NativeConfigError(f"native.usdt: {t.label()!r}: needs provider, name; string args in 1, 2")
    for u in cfg.uprobes:
        if not u.binary.startswith("/") or "\x00" in u.binary or "\x00" in u.symbol or not u.symbol:
            raise NativeConfigError(f"native.uprobes: {u.label()!r}: needs an absolute path and a symbol")
    labels = [("uprobes", u.label()) for u in cfg.uprobes] + [("usdt", t.label()) for t in cfg.usdt]
    for what, label in labels:
        try:  # a byte argv could not decode (a surrogate): every report naming the target would fail
            label.encode()
        except UnicodeEncodeError:
            raise NativeConfigError(f"native.{what}: {label!a}: not valid UTF-8") from None


_UPROBE_KEYS = ("binary", "symbol")
_USDT_KEYS = ("binary", "provider", "name", "stringArgs")


def _entry_keys(entry: dict[str, Any], where: str, known: tuple[str, ...]) -> None:
    """A key a target entry does not have is an error naming it (a typo, or a filter never applied)."""
    for key in entry:
        if key not in known:
            raise NativeConfigError(f"{where}.{str(key)[:80]}: unknown field (known: {', '.join(known)})")


def effective_burst(cfg: NativeConfig) -> int:
    return cfg.burst or cfg.rate_per_second
