"""Native probe configuration: every bad value is a NativeConfigError naming the field."""

from __future__ import annotations

import pytest

from stellaops_runtime.native.config import NativeConfig, NativeConfigError, UprobeTarget, UsdtTarget


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"syscalls": ("opnat",)}, "native.syscalls: unknown on x86_64: opnat"),
        ({"rate_per_second": -1}, "native.rate_per_second: expected an integer in [0, 10000000], got -1"),
        ({"syscall_sample_every": 0}, "native.syscall_sample_every: expected an integer in [1, 1000000]"),
        ({"ring_buffer_pages": 3}, "native.ring_buffer_pages: must be a power of two, got 3"),
        ({"burst": "10"}, "native.burst: expected an integer"),
        ({"user_stacks": 1}, "native.user_stacks: expected true or false"),
        ({"cgroup_allow": (0,)}, "native.cgroup_allow: expected a list of cgroup ids"),
        ({"cgroup_allow": (1 << 64,)}, "native.cgroup_allow: expected a list of cgroup ids"),
        ({"uprobes": (UprobeTarget("relative/bin", "f"),)}, "needs an absolute path and a symbol"),
        ({"uprobes": (UprobeTarget("/bin/x\x00y", "f"),)}, "needs an absolute path and a symbol"),
        ({"uprobes": (UprobeTarget("/bin/x", ""),)}, "needs an absolute path and a symbol"),
        ({"uprobes": (UprobeTarget("/bin/x", "f\udcff"),)}, "'/bin/x:f\\\\udcff': not valid UTF-8"),
        ({"uprobes": (UprobeTarget("/bin/\udcff", "f"),)}, "not valid UTF-8"),
        ({"usdt": (UsdtTarget("/bin/x", "p", "n\ud800"),)}, "native.usdt: .*: not valid UTF-8"),
        ({"uprobes": tuple(UprobeTarget("/b", f"f{i}") for i in range(65))}, "at most 64 targets"),
        ({"syscall_periods": (("openat", 0),)}, "native.syscall_periods: expected"),
        ({"uprobe_periods": (("/b:f", "60"),)}, "native.uprobe_periods: expected"),
        ({"uprobe_periods": [("/b:f", 60)]}, "native.uprobe_periods: expected"),
        ({"tcp_state": "yes"}, "native.tcp_state: expected true or false"),
    ],
)
def test_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(NativeConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        NativeConfig(**kwargs)


def test_from_dict_reads_the_agent_config_section() -> None:
    cfg = NativeConfig.from_dict(
        {
            "syscalls": ["openat", "connect"],
            "uprobes": [{"binary": "/usr/bin/x", "symbol": "f"}],
            "ratePerSecond": 100,
            "cgroupAllow": [42],
            "syscallSampleEvery": 8,
        }
    )
    assert cfg.syscalls == ("openat", "connect")
    assert cfg.uprobes == (UprobeTarget("/usr/bin/x", "f"),)
    assert cfg.rate_per_second == 100 and cfg.cgroup_allow == (42,) and cfg.syscall_sample_every == 8


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "native: expected a mapping, got list"),
        ({"uprobes": "x"}, "native.uprobes: expected a list"),
        ({"uprobes": [{"binary": 1, "symbol": "f"}]}, r"native.uprobes\[0\]: expected"),
        ({"rateLimit": 5}, "native.rateLimit: unknown field"),
        # a key an entry does not have was ignored: a filter never applied, a typo never seen
        (
            {"uprobes": [{"binary": "/x", "symbol": "f", "pid": 7}]},
            r"native.uprobes\[0\].pid: unknown field \(known: binary, symbol\)",
        ),
        (
            {"usdt": [{"binary": "/x", "provider": "p", "name": "n", "strings": [2]}]},
            r"native.usdt\[0\].strings: unknown field \(known: binary, provider, name, stringArgs\)",
        ),
        (
            {"usdt": [{"binary": "/x", "provider": "p", "name": "n", "stringArgs": [3]}]},
            r"native.usdt\[0\].stringArgs: expected a list of 1 and 2",
        ),
        (
            {"usdt": [{"binary": "/x", "provider": "p", "name": "n", "stringArgs": [True]}]},
            r"native.usdt\[0\].stringArgs: expected a list of 1 and 2",
        ),
    ],
)
def test_from_dict_hostile(raw: object, message: str) -> None:
    with pytest.raises(NativeConfigError, match=message):
        NativeConfig.from_dict(raw)  # type: ignore[arg-type]


def test_a_usdt_target_names_its_string_arguments_and_the_agent_config_keeps_them() -> None:
    """docs/native-probes.md: arguments are text, "strings ... (or the arguments a target lists as
    strings)"; ``stringArgs`` was not read (the target's arguments came as integers, addresses)."""
    from stellaops_runtime.contracts.config import parse_config
    from stellaops_runtime.native.config import UsdtTarget

    entry = {"binary": "/usr/bin/app", "provider": "app", "name": "req", "stringArgs": [1]}
    cfg = NativeConfig.from_dict({"usdt": [entry]})
    assert cfg.usdt == (UsdtTarget("/usr/bin/app", "app", "req", (1,)),)
    assert cfg.usdt[0].strings() == (1,)
    # the agent config reads it and writes it back the same (config dump, round trip)
    agent = parse_config({"native": {"usdt": [entry]}})
    assert agent.native.probes.usdt == cfg.usdt
    assert parse_config(agent.model_dump(by_alias=True)).native.probes.usdt == cfg.usdt
