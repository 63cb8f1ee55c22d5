"""The syscalls Linux added after 6.1 are known by name; a name the table lacks is refused, never a number.

The syscall table (contracts/syscalls.py) was Linux 6.1's. On the project's
VM (kernel 6.18) a policy or an agent config naming ``cachestat``,
``mseal``, ``futex_wait`` ... was refused ("unknown on x86_64"), and a
policy entry was told the syscall "does not exist on x86_64" though the
running kernel has it. The table now runs to Linux 6.18 (x86_64 numbers
checked on the running 6.18 kernel through its ``syscalls:sys_enter_<name>``
tracepoints; arm64's from the generic table).

What stays refused: a name no table of this agent holds (a kernel newer than
the table). It is never counted under its number (``syscall_<n>``): the same
call would then be stored under another function than Tetragon's
``__x64_sys_<name>``, and a query for the name would read "not observed" over
calls that were counted. The message says which table the agent has.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts import syscalls as tables
from stellaops_runtime.contracts.syscalls import ARM64, KNOWN_SYSCALLS, X86_64
from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig, NativeConfigError
from stellaops_runtime.native.events import Decoder, encode_trailer
from stellaops_runtime.native.policy_config import merge_entries
from stellaops_runtime.native.probes import syscalls

# Linux 6.2 .. 6.18, x86_64: each number seen on the running 6.18 kernel (a process calling
# syscall(nr) fired that name's syscalls:sys_enter_<name> tracepoint, and only that name's);
# map_shadow_stack (no tracepoint without user shadow stacks) from the kernel's syscall_64.tbl.
NEWER_X86_64 = {
    "uretprobe": 335, "uprobe": 336, "cachestat": 451, "fchmodat2": 452, "map_shadow_stack": 453,
    "futex_wake": 454, "futex_wait": 455, "futex_requeue": 456, "statmount": 457, "listmount": 458,
    "lsm_get_self_attr": 459, "lsm_set_self_attr": 460, "lsm_list_modules": 461, "mseal": 462,
    "setxattrat": 463, "getxattrat": 464, "listxattrat": 465, "removexattrat": 466,
    "open_tree_attr": 467, "file_getattr": 468, "file_setattr": 469,
}  # fmt: skip


def test_the_syscalls_of_linux_6_2_to_6_18_are_known_with_their_numbers() -> None:
    for name, nr in NEWER_X86_64.items():
        assert X86_64.get(name) == nr, name
        assert name in KNOWN_SYSCALLS
        if nr > 400:  # the generic table's numbers, the same on arm64 (uretprobe, uprobe: x86_64 only)
            assert ARM64.get(name) == nr, name
    assert len(set(X86_64.values())) == len(X86_64)  # one name per number
    assert len(set(ARM64.values())) == len(ARM64)
    assert getattr(tables, "TABLE_RELEASE", "6.1") == "6.18"


def test_the_native_probes_filter_and_name_them() -> None:
    cfg = NativeConfig(syscalls=("cachestat", "mseal", "uretprobe"))
    assert syscalls.want_bits(cfg) == {335: syscalls.WANT, 451: syscalls.WANT, 462: syscalls.WANT}
    dec = Decoder(node_name="n", targets=(), wall_minus_monotonic_ns=0)
    head = (records.KIND_SYSCALL, 0, 0, 4242, 4242, 0, 5_000_000, 0, b"worker")
    rec = records.STRUCTS[records.KIND_SYSCALL].pack(*head, 462, 1)
    ev = dec.decode(rec + encode_trailer("/usr/bin/app", 0, []), received_ns=1)
    assert ev is not None and ev.function_name == "__x64_sys_mseal"


def test_a_name_the_table_lacks_is_refused_saying_which_table_the_agent_has() -> None:
    with pytest.raises(NativeConfigError) as e:
        NativeConfig(syscalls=("futex_frobnicate",))
    msg = str(e.value)
    assert msg.startswith("native.syscalls: unknown on x86_64: futex_frobnicate")
    assert "Linux 6.18" in msg and "never counted under its number" in msg


def test_a_policy_naming_a_newer_syscall_gets_it_and_an_unknown_one_is_reported() -> None:
    entry = {"syscalls": [{"name": "cachestat"}, {"name": "futex_frobnicate"}, {"name": "fstatat"}]}
    res = merge_entries({"P/ns/a": entry}, NativeConfig())
    assert res.config.syscalls == ("cachestat",)
    for name in ("futex_frobnicate", "fstatat"):  # a newer kernel's; no kernel's (x86_64 has newfstatat)
        said = [n for n in res.not_covered if f"syscall {name} " in n]
        assert said and "not in this agent's x86_64 syscall table (Linux 6.18 and earlier)" in said[0], said
    assert not any("cachestat" in n for n in res.not_covered)
