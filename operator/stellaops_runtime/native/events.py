"""Native probe payloads -> RuntimeCallEvent, in the shapes the Tetragon adapter gives.

A payload is one kernel record (records.py) followed by a trailer the source
adds from /proc (procinfo.py): the binary, the exec time, and the user stack
as (address, file offset, file). The same event seen by Tetragon and by these
probes becomes the same RuntimeCallEvent:

- exec: kind ``exec``, ``module`` = ``process.binary``;
- syscall: kind ``syscall``, ``function_name`` = ``__x64_sys_<name>`` (the
  kprobe symbol Tetragon reports), with an argument ``sample_every`` when sampled;
- uprobe: kind ``uprobe``, ``function_name`` = symbol, ``module`` = binary path,
  plus ``latency_ns`` (Tetragon has none) and the user stack;
- usdt: kind ``usdt``, ``function_name`` = ``provider:name``, ``module`` = binary
  path, arguments ``arg1``.. as text (strings read from the process) or integers;
- tcp: kind ``tracepoint``, ``function_name`` = ``sock/inet_sock_set_state`` (the
  adapter's ``subsys/event`` form), arguments named after the tracepoint's fields
  (``oldstate``, ``newstate``, ``sport``, ``dport``, ``family``, ``protocol`` as
  integers; ``saddr``, ``daddr`` as text): the shape ``adapter/tcp_state_args.py``
  gives Tetragon's unlabelled ``int_arg``/``uint_arg``/``sock_arg`` arguments.
  By default the kernel emits only the transitions Tetragon is given, under
  the calling task; with ``tcpAllTransitions`` a record may be unattributed
  (no owner task known): then pid 0, no binary, no container.

Stacks: the trailer carries user frames (address, file offset, file), and,
after them, kernel return addresses; the source took both out of the kernel
record (``records.split_stacks``), which carries them as it was written. A
record that still has its stack section is read past it (its counts must be
ones the kernel can write, else ``native_bad_stack``). Syscall and TCP events get both when the
probes took them (``native/probes/syscalls.py``, ``tcp.py``); uprobe events
get the user stack. Kernel addresses become Tetragon's kernel frames: the
kallsyms symbol and the offset from its start (``module`` left empty, as
Tetragon leaves it), through the kernel symbol table the canonicalizer uses
(``canonical/kallsyms.py``), so the same frame gets the same function ID
whichever source saw it. An address no kernel text symbol covers is dropped,
as Tetragon drops it; each event that lost a frame so is counted
(``native_kernel_frame_unsymbolized``).
Either stack is cut at ``max_stack_depth`` frames (``stack_truncated``).

Pure apart from reading the kernel symbol table once when none is given. A
malformed payload is counted by reason and dropped.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import struct
from collections.abc import Callable, Sequence

from stellaops_runtime.adapter import validate
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.canonical.kallsyms import KernelSymbols
from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.contracts.events import (
    Argument,
    ContainerInfo,
    EventKind,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.contracts.syscalls import X86_64
from stellaops_runtime.native import records
from stellaops_runtime.native.config import UprobeTarget, UsdtTarget

SOURCE = "bcc"
SYSCALL_PREFIX = "__x64_sys_"
_NAME_OF_NR = {nr: name for name, nr in X86_64.items()}
_TRAILER_HEAD = struct.Struct("<QHH")  # exec ktime, binary length, frame count
_FRAME = struct.Struct("<QQH")  # address, file offset, module length
_KERNEL_HEAD = struct.Struct("<H")  # kernel address count (the section is absent when none)
_KERNEL_ADDR = struct.Struct("<Q")
MAX_FRAMES = 127
MAX_KERNEL_CACHE = 65536  # symbolized kernel addresses kept (kernel stacks repeat)
TCP_FUNCTION = tcp_state.FUNCTION_NAME
AF_INET, AF_INET6 = tcp_state.FAMILY_NUMBER["AF_INET"], tcp_state.FAMILY_NUMBER["AF_INET6"]
MAX_PATH = 4096


class Malformed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode_trailer(
    binary: str,
    exec_ktime_ns: int,
    frames: Sequence[tuple[int, int, str]],
    kernel: Sequence[int] = (),
) -> bytes:
    """What the source appends to a kernel record (see decode); ``kernel``: kernel return addresses."""
    b = binary.encode("utf-8", "surrogateescape")[:MAX_PATH]
    frames = frames[:MAX_FRAMES]
    out = [_TRAILER_HEAD.pack(exec_ktime_ns, len(b), len(frames)), b]
    for addr, off, module in frames:
        m = module.encode("utf-8", "surrogateescape")[:MAX_PATH]
        out.append(_FRAME.pack(addr, off, len(m)))
        out.append(m)
    kernel = kernel[:MAX_FRAMES]
    if kernel:
        out.append(_KERNEL_HEAD.pack(len(kernel)))
        out += [_KERNEL_ADDR.pack(a) for a in kernel]
    return b"".join(out)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


# An execve path naming a descriptor, not the file: fexecve/execveat (``/dev/fd/3``), a runtime
# executing itself again (``/proc/self/exe``). /proc/<pid>/exe names the file.
_DESCRIPTOR_PATH = re.compile(r"^/(?:dev/fd/|proc/(?:self|thread-self|\d+)/(?:fd/|exe$))")


def names_file(path: str) -> bool:
    """Whether an execve path names the executed file: absolute, and not a descriptor's path."""
    return path.startswith("/") and not _DESCRIPTOR_PATH.match(path)


def _trailer(payload: bytes, at: int) -> tuple[str, int, list[StackFrame], list[int]]:
    if at == len(payload):
        return "", 0, [], []
    if len(payload) - at < _TRAILER_HEAD.size:
        raise Malformed("native_short_trailer")
    ktime, blen, nframes = _TRAILER_HEAD.unpack_from(payload, at)
    at += _TRAILER_HEAD.size
    if nframes > MAX_FRAMES or blen > MAX_PATH or at + blen > len(payload):
        raise Malformed("native_bad_trailer")
    binary = payload[at : at + blen].decode("utf-8", "replace")
    at += blen
    frames: list[StackFrame] = []
    for _ in range(nframes):
        if at + _FRAME.size > len(payload):
            raise Malformed("native_bad_trailer")
        addr, off, mlen = _FRAME.unpack_from(payload, at)
        at += _FRAME.size
        if mlen > MAX_PATH or at + mlen > len(payload):
            raise Malformed("native_bad_trailer")
        module = payload[at : at + mlen].decode("utf-8", "replace")
        at += mlen
        frames.append(StackFrame(module=module, offset=off if module else 0, address=addr))
    kernel: list[int] = []
    if at != len(payload):
        if len(payload) - at < _KERNEL_HEAD.size:
            raise Malformed("native_bad_trailer")
        (count,) = _KERNEL_HEAD.unpack_from(payload, at)
        at += _KERNEL_HEAD.size
        if not 0 < count <= MAX_FRAMES or len(payload) - at != count * _KERNEL_ADDR.size:
            raise Malformed("native_bad_trailer")
        kernel = [a for (a,) in _KERNEL_ADDR.iter_unpack(payload[at:])]
    return binary, ktime, frames, kernel


_CGROUP_AT = records.HEADER.size - records.COMM_LEN - 8  # the header's cgroup id, just before ``comm``
_CGROUP = struct.Struct("<Q")


def cgroup_of(payload: bytes) -> int:
    """The cgroup id a record names (0 when it is too short to say): read without decoding it."""
    if len(payload) < records.HEADER.size or payload[0] not in records.STRUCTS:
        return 0
    return int(_CGROUP.unpack_from(payload, _CGROUP_AT)[0])


def exec_id(node_name: str, ktime_ns: int, pid: int) -> str:
    """Tetragon's form (base64 of ``node:ktime:pid``), from the exec time we saw; '' when unseen."""
    if not ktime_ns:
        return ""
    return base64.b64encode(f"{node_name}:{ktime_ns}:{pid}".encode()).decode()


class Decoder:
    """Turns payloads into events; counts by kind and malformed reason in ``stats`` (AdapterStats)."""

    def __init__(
        self,
        *,
        node_name: str,
        targets: Sequence[UprobeTarget],
        wall_minus_monotonic_ns: int,
        usdt_targets: Sequence[UsdtTarget] = (),
        stats: AdapterStats | None = None,
        containers: Callable[[int], ContainerInfo | None] | None = None,
        max_stack_depth: int = validate.DEFAULT_MAX_STACK_DEPTH,
        kernel_symbols: Callable[[], KernelSymbols] | None = None,
    ) -> None:
        """``kernel_symbols``: the canonicalizer's table to share (``Symbolizer.kernel``); without
        it the decoder reads /proc/kallsyms itself, once, at the first kernel frame."""
        self.node_name = node_name
        self.targets = list(targets)
        self.usdt_targets = list(usdt_targets)
        self.offset_ns = wall_minus_monotonic_ns
        self.stats = stats or AdapterStats()
        self.containers = containers
        self.max_stack_depth = max_stack_depth
        self._kernel_symbols = kernel_symbols
        self._ksyms: KernelSymbols | None = None
        self._ksyms_failed = False
        self._kernel_hits: dict[int, tuple[str, int] | None] = {}

    def decode(self, payload: bytes, *, received_ns: int = 0) -> RuntimeCallEvent | None:
        try:
            ev = self._decode(payload, received_ns)
            validate.normalize(ev, self.stats.repaired)
        except Malformed as e:
            self.stats.malformed[e.reason] += 1
            return None
        except validate.BadEvent as e:
            self.stats.malformed[e.reason] += 1
            return None
        self.stats.events[ev.kind] += 1
        return ev

    def _symbols(self) -> KernelSymbols | None:
        if self._ksyms is None and not self._ksyms_failed:
            try:
                self._ksyms = self._kernel_symbols() if self._kernel_symbols else KernelSymbols()
            except OSError:
                self._ksyms_failed = True  # every kernel frame is then counted as unsymbolized
        return self._ksyms

    def _kernel_frame(self, address: int) -> tuple[str, int] | None:
        """(kallsyms symbol, offset from its start) of a kernel text address, None when none covers it."""
        if address in self._kernel_hits:
            return self._kernel_hits[address]
        ks = self._symbols()
        hit = None
        if ks is not None:
            i = ks.find_address(address)
            if i >= 0:
                off = address - ks.addrs[i]
                size = ks.size(i)
                if not size or off < size:
                    hit = (ks.names[i], off)
        if len(self._kernel_hits) >= MAX_KERNEL_CACHE:
            self._kernel_hits.clear()
        self._kernel_hits[address] = hit
        return hit

    def _stack(self, frames: list[StackFrame]) -> list[StackFrame]:
        if len(frames) > self.max_stack_depth:
            self.stats.repaired["stack_truncated"] += 1
            return frames[: self.max_stack_depth]
        return frames

    def _kernel_stack(self, addresses: list[int]) -> list[StackFrame]:
        """Tetragon's kernel frames; an event that lost any (no symbol covers it) is counted once."""
        out: list[StackFrame] = []
        for a in addresses:
            hit = self._kernel_frame(a)
            if hit is not None:
                out.append(StackFrame(symbol=hit[0], offset=hit[1], address=a))
        if len(out) < len(addresses):
            self.stats.repaired["native_kernel_frame_unsymbolized"] += 1
        return self._stack(out)

    def _usdt(self, ev: RuntimeCallEvent, body: tuple) -> None:  # type: ignore[type-arg]
        target, nargs, a1, a2, a3, s1, s2 = body
        if target >= len(self.usdt_targets) or nargs > 3:
            raise Malformed("native_unknown_usdt_target")
        t = self.usdt_targets[target]
        ev.kind = EventKind.USDT
        ev.function_name = f"{t.provider}:{t.name}"  # Tetragon's form
        ev.module = t.binary
        strings = t.strings()
        args: list[Argument] = []
        for n, (raw, text) in enumerate(((a1, s1), (a2, s2), (a3, b"")), start=1):
            if n > nargs:
                break
            if n in strings:
                args.append(Argument(label=f"arg{n}", type="string_arg", value=_cstr(text)))
            else:
                args.append(
                    Argument(
                        label=f"arg{n}", type="int_arg", value=str(raw - (1 << 64) if raw >> 63 else raw)
                    )
                )
        ev.arguments = args

    def _tcp(self, ev: RuntimeCallEvent, flags: int, body: tuple) -> None:  # type: ignore[type-arg]
        old, new, sport, dport, family, protocol, saddr, daddr = body
        if family not in (AF_INET, AF_INET6):
            raise Malformed("native_bad_tcp_family")
        if old not in tcp_state.TCP_STATES or new not in tcp_state.TCP_STATES:
            raise Malformed("native_bad_tcp_state")  # the Tetragon adapter refuses these too
        ev.kind = EventKind.TRACEPOINT
        ev.function_name = TCP_FUNCTION
        if not flags & records.FLAG_TCP_ATTRIBUTED:
            ev.process = ProcessInfo()
            ev.container = None
        n = 4 if family == AF_INET else 16
        ints = (old, new, sport, dport, family, protocol)
        args = [
            Argument(label=k, type="int_arg", value=str(v))
            for k, v in zip(tcp_state.EVENT_INT_ARGS, ints, strict=True)
        ]
        args += [
            Argument(label="saddr", type="string_arg", value=str(ipaddress.ip_address(saddr[:n]))),
            Argument(label="daddr", type="string_arg", value=str(ipaddress.ip_address(daddr[:n]))),
        ]
        ev.arguments = args

    def _decode(self, payload: bytes, received_ns: int) -> RuntimeCallEvent:
        if type(payload) is not bytes or len(payload) < records.HEADER.size:
            raise Malformed("native_short_record")
        kind = payload[0]
        s = records.STRUCTS.get(kind)
        if s is None:
            raise Malformed("native_unknown_kind")
        size = records.record_size(payload)
        if len(payload) < size:
            raise Malformed("native_short_record")
        if kind in records.STACK_KINDS and payload[1] & records.FLAG_STACKS:
            user_n, kernel_n, _ = records.STACK_HEAD.unpack_from(payload, s.size)
            if max(user_n, kernel_n) > records.MAX_STACK_FRAMES:
                raise Malformed("native_bad_stack")  # the kernel never walks more
        fields = s.unpack_from(payload, 0)
        _, flags, _, pid, tid, uid, ktime, cgroup_id, comm = fields[:9]
        body = fields[9:]
        binary, exec_ktime, frames, kernel = _trailer(payload, size)
        proc = ProcessInfo(pid=pid, tid=tid, uid=uid, binary=binary)
        ev = RuntimeCallEvent(
            kind=EventKind.EXEC,
            timestamp_ns=ktime + self.offset_ns,
            node_name=self.node_name,
            process=proc,
            source=SOURCE,
            received_ns=received_ns,
        )
        if self.containers is not None and cgroup_id:
            c = self.containers(cgroup_id)
            if c is not None:
                ev.container = c
        if kind == records.KIND_EXEC:
            _old_pid, _pad, filename = body
            path = _cstr(filename)  # as given to execve: relative or a descriptor's, /proc's answer wins
            proc.binary = path if names_file(path) else (binary or path)
            proc.exec_id = exec_id(self.node_name, ktime, pid)
            ev.module = proc.binary
            if not proc.binary:
                proc.binary = _cstr(comm)
        elif kind == records.KIND_SYSCALL:
            nr, sample_every = body
            name = _NAME_OF_NR.get(nr)
            if name is None:
                raise Malformed("native_unknown_syscall")
            ev.kind = EventKind.SYSCALL
            ev.function_name = SYSCALL_PREFIX + name
            proc.exec_id = exec_id(self.node_name, exec_ktime, pid)
            if sample_every > 1:
                ev.arguments = [Argument(label="sample_every", type="int_arg", value=str(sample_every))]
            ev.user_stack = self._stack(frames)
            ev.kernel_stack = self._kernel_stack(kernel)
        elif kind == records.KIND_USDT:
            self._usdt(ev, body)
            proc.exec_id = exec_id(self.node_name, exec_ktime, pid)
        elif kind == records.KIND_TCP:
            proc.exec_id = exec_id(self.node_name, exec_ktime, pid)
            self._tcp(ev, flags, body)
            ev.user_stack = self._stack(frames)
            ev.kernel_stack = self._kernel_stack(kernel)
        else:
            target, _unused, latency = body
            if target >= len(self.targets):
                raise Malformed("native_unknown_uprobe_target")
            t = self.targets[target]
            ev.kind = EventKind.UPROBE
            ev.function_name = t.symbol
            ev.module = t.module or t.binary
            # a call in flight when the probes detached: entered, never seen to return (no latency)
            ev.latency_ns = None if flags & records.FLAG_IN_FLIGHT else latency
            proc.exec_id = exec_id(self.node_name, exec_ktime, pid)
            ev.user_stack = self._stack(frames)
        return ev
