"""The operator's probe ConfigMap, rendered by the operator's own code from the shipped example
policies, read back as native probe configuration; and hostile payload files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from stellaops_runtime.contracts.crds import API_VERSION, CLUSTER_POLICY_KIND, parse_policy_spec
from stellaops_runtime.controller.render_policy import (
    PROBE_CONFIG_KEY,
    PROBE_CONFIG_KIND,
    probe_entry_key,
    render_policy,
    render_probe_configmap,
)
from stellaops_runtime.native import policy_config
from stellaops_runtime.native.config import NativeConfig, NativeConfigError, UprobeTarget
from stellaops_runtime.native.policy_config import (
    PurlFunction,
    load_probe_config,
    merge_entries,
    read_probe_config,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _entry(doc: dict) -> tuple[str, dict]:
    kind, meta = doc["kind"], doc["metadata"]
    cluster = kind == CLUSTER_POLICY_KIND
    rendered = render_policy(
        kind=kind,
        name=meta["name"],
        namespace=meta.get("namespace"),
        uid="uid-1",
        spec=parse_policy_spec(doc["spec"], cluster=cluster),
    )
    return probe_entry_key(
        kind=kind, namespace=meta.get("namespace"), name=meta["name"]
    ), rendered.probe_entry


def _configmap_file(tmp_path: Path, *docs: dict) -> Path:
    entries = dict(_entry(d) for d in docs)
    cm = render_probe_configmap(
        name="stellaops-probes-x", namespace="stellaops-agent", entries=entries, owner=None
    )
    p = tmp_path / PROBE_CONFIG_KEY  # as the ConfigMap volume mounts its key
    p.write_text(cm["data"][PROBE_CONFIG_KEY])
    return p


def _example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def test_constants_agree_with_the_operator() -> None:
    assert policy_config.API_VERSION == API_VERSION
    assert policy_config.KIND == PROBE_CONFIG_KIND
    assert policy_config.CONFIGMAP_KEY == PROBE_CONFIG_KEY


def test_example_observation_policy_becomes_syscalls_uprobes_and_stacks(tmp_path: Path) -> None:
    path = _configmap_file(tmp_path, _example("observationpolicy.yaml"))
    res = read_probe_config(str(path), NativeConfig())
    cfg = res.config
    assert cfg.syscalls == ("connect", "execve", "openat")
    lib = "/proc/1/root/usr/lib/x86_64-linux-gnu/libssl.so.3"
    assert cfg.uprobes == (UprobeTarget(lib, "SSL_read"), UprobeTarget(lib, "SSL_write"))
    assert cfg.user_stacks is True  # stackTraces.user with functions
    assert res.policies == ["ObservationPolicy/default/web"]
    assert res.purl_functions == [
        PurlFunction(
            "ObservationPolicy/default/web", "pkg:deb/debian/openssl@3.0.11?arch=amd64", ("SSL_do_handshake",)
        )
    ]
    text = "\n".join(res.not_covered)
    assert "stack" not in text  # user stacks on its syscalls and functions: both taken natively
    assert cfg.user_stack_syscalls == ("connect", "execve", "openat") and cfg.kernel_stack_syscalls == ()
    assert "rateLimit" not in text  # applied: Tetragon's one event per thread and probe per minute
    assert cfg.syscall_periods == (("connect", 60), ("execve", 60), ("openat", 60))
    assert cfg.uprobe_periods == ((f"{lib}:SSL_read", 60), (f"{lib}:SSL_write", 60))
    assert '"app": "web"' in text and "pods outside the selector are traced too" in text
    # load_probe_config gives the same config and says the same in the log
    assert load_probe_config(str(path), NativeConfig()) == cfg


def test_every_not_covered_feature_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _configmap_file(tmp_path, _example("observationpolicy.yaml"))
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.native.policy_config"):
        load_probe_config(str(path), NativeConfig())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for note in read_probe_config(str(path), NativeConfig()).not_covered:
        assert note in logged
    assert "pkg:deb/debian/openssl@3.0.11?arch=amd64 (SSL_do_handshake) named by purl" in logged


def test_cluster_policy_merges_with_the_agents_base_config(tmp_path: Path) -> None:
    path = _configmap_file(
        tmp_path, _example("observationpolicy.yaml"), _example("clusterobservationpolicy.yaml")
    )
    base = NativeConfig(syscalls=("openat", "mmap"), rate_per_second=50, cgroup_allow=(7,))
    res = read_probe_config(str(path), base)
    cfg = res.config
    assert set(cfg.syscalls) == {"openat", "mmap", "execve", "connect", "accept4"}
    assert len(cfg.syscalls) == len(set(cfg.syscalls))
    assert cfg.rate_per_second == 50 and cfg.cgroup_allow == (7,)  # the agent's own settings stay
    assert res.policies == ["ClusterObservationPolicy//apps-syscalls", "ObservationPolicy/default/web"]
    # rateLimit: the loosest any asker wants; the agent's own openat (no limit) keeps every openat event
    assert cfg.syscall_periods == (("accept4", 30), ("connect", 30), ("execve", 30))
    assert any("kube-system" in n for n in res.not_covered)  # its namespaceSelector is reported


def test_a_policy_below_ebpf_deep_adds_no_uprobes_and_no_stacks(tmp_path: Path) -> None:
    doc = _example("observationpolicy.yaml")
    doc["spec"]["maxLevel"] = "ActiveTracing"
    res = read_probe_config(str(_configmap_file(tmp_path, doc)), NativeConfig())
    assert res.config.uprobes == () and res.purl_functions == []
    assert res.config.user_stacks is False
    assert res.config.syscalls == ("connect", "execve", "openat")


def test_empty_configmap_leaves_base_unchanged(tmp_path: Path) -> None:
    p = tmp_path / "probes.json"
    cm = render_probe_configmap(name="x", namespace="y", entries={}, owner=None)
    p.write_text(cm["data"][PROBE_CONFIG_KEY])
    base = NativeConfig(syscalls=("openat",), user_stacks=True)
    res = read_probe_config(str(p), base)
    assert res.config == base and res.not_covered == [] and res.policies == []


def test_a_saved_configmap_object_is_read_too(tmp_path: Path) -> None:
    entries = dict([_entry(_example("observationpolicy.yaml"))])
    cm = render_probe_configmap(name="x", namespace="y", entries=entries, owner=None)
    p = tmp_path / "cm.json"
    p.write_text(json.dumps(cm))
    assert read_probe_config(str(p), NativeConfig()).config.syscalls == ("connect", "execve", "openat")


def _payload(policies: object) -> bytes:
    return json.dumps({"apiVersion": API_VERSION, "kind": PROBE_CONFIG_KIND, "policies": policies}).encode()


def test_tcp_state_request_and_unknown_fields_and_foreign_syscalls() -> None:
    entry = {
        # fstatat: no such syscall on x86_64 (it has newfstatat); a newer operator may name one
        "syscalls": [{"name": "connect"}, {"name": "renameat"}, {"name": "fstatat"}],
        "tcpState": True,
        "futureFeature": {"x": 1},
    }
    res = merge_entries({"P/ns/a": entry}, NativeConfig())
    assert res.config.tcp_state is True
    assert res.config.syscalls == ("connect", "renameat")
    assert any("syscall fstatat is not in this agent's x86_64 syscall table" in n for n in res.not_covered)
    assert any("'futureFeature' is not understood" in n for n in res.not_covered)


def test_rate_limit_periods_combine_per_probe_across_policies() -> None:
    fn = {"binaryPath": "/usr/bin/app", "symbols": ["f"]}
    entries = {
        "P/a/limited": {
            "syscalls": [{"name": "openat"}, {"name": "read"}],
            "functions": [fn],
            "rateLimitSeconds": 5,
        },
        "P/b/slower": {"syscalls": [{"name": "read"}], "rateLimitSeconds": 60},
        "P/c/all": {"functions": [fn]},  # no rateLimit: every call of f
        "P/d/long": {"syscalls": [{"name": "close"}], "rateLimitSeconds": 10**9},
    }
    res = merge_entries(entries, NativeConfig(), host_root="")
    assert res.config.syscall_periods == (("close", 7 * 86_400), ("openat", 5), ("read", 5))
    assert res.config.uprobe_periods == ()  # P/c/all wants every call of f
    assert res.config.uprobes == (UprobeTarget("/usr/bin/app", "f"),)
    assert any("P/d/long: rateLimit of 1000000000 s is longer" in n for n in res.not_covered)


def test_too_many_uprobe_targets_are_reported_not_fatal() -> None:
    fns = [{"binaryPath": f"/usr/bin/b{i}", "symbols": ["f", "g"]} for i in range(40)]
    res = merge_entries({"P/ns/a": {"functions": fns}}, NativeConfig(), host_root="")
    assert len(res.config.uprobes) == 64
    assert sum("more than 64 uprobe targets" in n for n in res.not_covered) == 16


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1]", "expected a JSON object, got list"),
        (json.dumps({"apiVersion": "v1", "kind": "ProbeConfig"}).encode(), "expected apiVersion"),
        (_payload([1]), "policies: expected a mapping"),
        (_payload({"k": 5}), "policies: expected a mapping"),
        (_payload({"k": {"syscalls": "openat"}}), "k.syscalls: expected a list, got str"),
        (_payload({"k": {"syscalls": [{"name": 3}]}}), r"k.syscalls\[0\].name: expected a non-empty string"),
        (_payload({"k": {"functions": [{"binaryPath": "/x\u0000y", "symbols": ["f"]}]}}), "without NUL"),
        (_payload({"k": {"functions": [{"binaryPath": "rel/x", "symbols": ["f"]}]}}), "not an absolute path"),
        (_payload({"k": {"functions": [{"binaryPath": "/x", "symbols": []}]}}), "no symbols"),
        (
            _payload({"k": {"functions": [{"binaryPath": "/x", "purl": "pkg:deb/a", "symbols": ["f"]}]}}),
            "exactly one of binaryPath and purl",
        ),
        (_payload({"k": {"stackTraces": {"user": "yes"}}}), "k.stackTraces: expected"),
        (_payload({"k": {"tcpState": 1}}), "k.tcpState: expected true or false"),
        (_payload({"k": {"rateLimit": "1m"}}), "k.rateLimitSeconds: expected a positive integer"),
        (_payload({"k": {"rateLimitSeconds": "60"}}), "k.rateLimitSeconds: expected a positive integer"),
        (json.dumps({"kind": "ConfigMap", "data": {}}).encode(), "a ConfigMap without data"),
    ],
)
def test_hostile_payloads_are_clear_errors(tmp_path: Path, raw: bytes, message: str) -> None:
    p = tmp_path / "probes.json"
    p.write_bytes(raw)
    with pytest.raises(NativeConfigError, match=message):
        read_probe_config(str(p), NativeConfig())


def test_missing_and_huge_files(tmp_path: Path) -> None:
    with pytest.raises(NativeConfigError, match="cannot read: No such file or directory"):
        load_probe_config(str(tmp_path / "absent.json"), NativeConfig())
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (policy_config.MAX_FILE_BYTES + 10))
    with pytest.raises(NativeConfigError, match="more than a ConfigMap can hold"):
        load_probe_config(str(big), NativeConfig())
    with pytest.raises(NativeConfigError, match="cannot read"):
        load_probe_config(str(tmp_path), NativeConfig())  # a directory


def test_a_binary_path_follows_its_symlinks_inside_the_nodes_root(tmp_path: Path) -> None:
    """An absolute symlink under /proc/1/root is followed by the kernel from the agent's own root:
    /usr/bin/java -> /etc/alternatives/java was looked up in the agent's image. The path is
    resolved inside the node's root; events keep the path the policy gave (``module``)."""
    root = tmp_path / "node"
    (root / "opt" / "real").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "opt" / "real" / "app").write_bytes(b"\x7fELF")
    (root / "usr" / "bin" / "app").symlink_to("/etc/alternatives/app")  # absolute, as alternatives are
    (root / "etc" / "alternatives").mkdir(parents=True)
    (root / "etc" / "alternatives" / "app").symlink_to("/opt/real/app")
    (root / "usr" / "bin" / "plain").write_bytes(b"\x7fELF")
    (root / "usr" / "bin" / "up").symlink_to("../../../../../../../etc/hostname")  # climbs out
    (root / "usr" / "bin" / "loop").symlink_to("/usr/bin/loop")
    paths = ("/usr/bin/app", "/usr/bin/plain", "/usr/bin/up", "/usr/bin/loop")
    fns = [{"binaryPath": p, "symbols": ["f"]} for p in paths]
    entry = {"functions": fns, "rateLimit": "1m", "rateLimitSeconds": 60}
    res = merge_entries({"P/ns/a": entry}, NativeConfig(), host_root=str(root))
    assert res.config.uprobes == (
        UprobeTarget(f"{root}/opt/real/app", "f", f"{root}/usr/bin/app"),
        UprobeTarget(f"{root}/usr/bin/plain", "f"),
    )  # a link climbing out of the root, or a loop, is not handed to the kernel: reported
    skipped = [n for n in res.not_covered if "not probed" in n]
    assert skipped == [
        f"P/ns/a: function /usr/bin/up (f) not probed: cannot be resolved inside the node's root {root}: "
        "'/usr/bin/up': symlink /usr/bin/up -> ../../../../../../../etc/hostname points outside the root "
        "filesystem",
        f"P/ns/a: function /usr/bin/loop (f) not probed: cannot be resolved inside the node's root {root}: "
        "'/usr/bin/loop': too many levels of symbolic links",
    ]
    # the policy's rateLimit reaches the resolved targets
    assert dict(res.config.uprobe_periods) == {t.label(): 60 for t in res.config.uprobes}
    # without a node root (the agent's own paths) nothing is resolved
    plain = merge_entries({"P/ns/a": {"functions": fns[:1]}}, NativeConfig(), host_root="")
    assert plain.config.uprobes == (UprobeTarget("/usr/bin/app", "f"),)
