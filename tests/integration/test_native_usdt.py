"""USDT probes on the real kernel: a C program with a semaphore-guarded probe, built here.

The probe's note is written by hand in the program (the stapsdt note format,
as <sys/sdt.h> emits it), so no SystemTap headers are needed. The program
fires its probe only while the semaphore is raised, and prints how often it
did: the kernel raises it for us (uprobe ref_ctr_offset), for a process that
starts after the probes were attached.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native import usdt
from stellaops_runtime.native.config import NativeConfig, UsdtTarget
from stellaops_runtime.native.detect import Report, detect
from stellaops_runtime.native.session import run_session

pytestmark = pytest.mark.bpf

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((section(".probes"))) volatile unsigned short stella_app_hit_semaphore = 0;

#define STELLA_PROBE(a, b) __asm__ __volatile__ (                                       \
    "990: nop\n"                                                                        \
    ".pushsection .note.stapsdt,\"?\",\"note\"\n"                                       \
    ".balign 4\n"                                                                       \
    ".4byte 992f-991f, 994f-993f, 3\n"                                                  \
    "991: .asciz \"stapsdt\"\n"                                                         \
    "992: .balign 4\n"                                                                  \
    "993: .8byte 990b\n"                                                                \
    ".8byte _.stapsdt.base\n"                                                           \
    ".8byte stella_app_hit_semaphore\n"                                                 \
    ".asciz \"stella_app\"\n"                                                           \
    ".asciz \"hit\"\n"                                                                  \
    ".asciz \"-4@%0 8@%1\"\n"                                                           \
    "994: .balign 4\n"                                                                  \
    ".popsection\n"                                                                     \
    ".ifndef _.stapsdt.base\n"                                                          \
    ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"             \
    ".weak _.stapsdt.base\n"                                                            \
    ".hidden _.stapsdt.base\n"                                                          \
    "_.stapsdt.base: .space 1\n"                                                        \
    ".size _.stapsdt.base, 1\n"                                                         \
    ".popsection\n"                                                                     \
    ".endif\n"                                                                          \
    :: "r"(a), "r"(b))

int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    const char *tag = argv[2];
    int fired = 0;
    for (int i = 0; i < n; i++) {
        if (stella_app_hit_semaphore) { STELLA_PROBE(i - 3, tag); fired++; }
    }
    printf("%d\n", fired);
    return 0;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("usdt")
    (d / "app.c").write_text(PROGRAM)
    out = d / "stella_usdt_app"
    subprocess.run(["gcc", "-O1", "-o", str(out), str(d / "app.c")], check=True)
    return out


@pytest.fixture(scope="module")
def report() -> Report:
    return detect(mount_tracefs=True, cache_dir=str(Path(".cache/native").resolve()))


def test_notes_are_read_with_file_offsets_semaphore_and_arguments(program: Path) -> None:
    probes = usdt.read_probes(str(program))
    assert [(p.provider, p.name) for p in probes] == [("stella_app", "hit")]
    p = probes[0]
    assert p.ref_ctr_offset > 0 and p.offset > 0
    assert [a.size for a in p.args] == [-4, 8] and all(a.kind == "reg" for a in p.args)
    data = program.read_bytes()
    assert data[p.offset] == 0x90  # the nop the probe sits on
    assert data[p.ref_ctr_offset : p.ref_ctr_offset + 2] == b"\x00\x00"  # the semaphore, initially 0


def test_a_file_without_notes_has_no_probes_and_a_bad_file_is_a_message(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    subprocess.run(
        ["gcc", "-O1", "-o", str(plain), "-x", "c", "-"], input=b"int main(void){return 0;}", check=True
    )
    assert usdt.read_probes(str(plain)) == []
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x7fELF" + b"\xff" * 60)
    with pytest.raises(usdt.UsdtError, match=str(bad)):
        usdt.read_probes(str(bad))
    with pytest.raises(usdt.UsdtError, match="No such file"):
        usdt.read_probes(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8@%rbp", usdt.UsdtArg(8, "reg", reg="bp", spec="8@%rbp")),
        ("-4@%eax", usdt.UsdtArg(-4, "reg", reg="ax", spec="-4@%eax")),
        ("-4@%r12d", usdt.UsdtArg(-4, "reg", reg="r12", spec="-4@%r12d")),
        ("-4@112(%rsp)", usdt.UsdtArg(-4, "mem", reg="sp", disp=112, spec="-4@112(%rsp)")),
        ("8@-0x10(%rbp)", usdt.UsdtArg(8, "mem", reg="bp", disp=-16, spec="8@-0x10(%rbp)")),
        ("4@$5", usdt.UsdtArg(4, "const", disp=5, spec="4@$5")),
    ],
)
def test_argument_specs(spec: str, expected: usdt.UsdtArg) -> None:
    assert usdt.parse_arg(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("%rax", "not SIZE@OPERAND"),
        ("3@%rax", "size 3 is not 1, 2, 4 or 8"),
        ("8@%xmm0", "register %xmm0 unknown on x86_64"),
        ("8@8(%rax,%rbx,2)", "operand form not supported"),
        ("8@$zz", "bad constant"),
        # past 64 bits: written into the program, a compile error that cost every probe
        ("8@$99999999999999999999999", "does not fit in 64 bits"),
        ("8@-99999999999999999999999(%rbp)", "does not fit in 64 bits"),
        ("8@$-9223372036854775808", "does not fit in 64 bits"),
        # more digits than Python converts: a ValueError escaped the load
        ("8@" + "9" * 5000 + "(%rbp)", "bad displacement"),
        ("8@$" + "9" * 5000, "bad constant"),
    ],
)
def test_hostile_argument_specs(spec: str, message: str) -> None:
    with pytest.raises(usdt.UsdtError, match=message):
        usdt.parse_arg(spec)


def test_semaphore_guarded_probe_counts_exactly_with_its_arguments(report: Report, program: Path) -> None:
    if report.posture < Posture.FULL_INSTRUMENTATION:
        pytest.skip(f"native probes give {report.posture} here: {report.missing}")
    n = 29
    cfg = NativeConfig(
        exec_events=False,
        usdt=(
            UsdtTarget(str(program), "stella_app", "hit", string_args=(2,)),
            UsdtTarget(str(program), "stella_app", "absent"),
            UsdtTarget("/nonexistent/stella", "p", "n"),
        ),
    )
    out: list[str] = []

    def workload() -> None:
        out.append(
            subprocess.run([str(program), str(n), "tag-x"], capture_output=True, text=True, check=True).stdout
        )

    res = asyncio.run(run_session(cfg, seconds=1.0, report=report, during=workload))
    assert not res.error, res.error
    assert out == [f"{n}\n"]  # the kernel raised the semaphore: every iteration fired
    assert dict(res.failed) == {
        f"{program}:stella_app:absent": f"no USDT probe stella_app:absent in {program}",
        "/nonexistent/stella:p:n": "binary /nonexistent/stella not found",
    }
    evs = [e for e in res.events if e.kind is EventKind.USDT]
    assert len(evs) == n
    assert {(e.function_name, e.module) for e in evs} == {("stella_app:hit", str(program))}
    assert sorted(int(e.arguments[0].value) for e in evs) == [i - 3 for i in range(n)]  # signed
    assert {e.arguments[1].value for e in evs} == {"tag-x"}
    assert res.kernel_counters["usdt"]["emitted"] == n


def test_without_our_probes_the_semaphore_stays_down(program: Path) -> None:
    out = subprocess.run([str(program), "10", "x"], capture_output=True, text=True, check=True).stdout
    assert out == "0\n"


@pytest.mark.parametrize(
    "operands",
    ["8@$99999999999999999999999 8@-99999999999999999999999(%%rbp) 8@%1", "8@8(%%rax,%%rbx,2) 8@%1"],
    ids=["past-64-bits", "indexed"],
)
def test_a_note_with_operands_we_cannot_read_costs_its_arguments_not_every_probe(
    report: Report, tmp_path: Path, operands: str
) -> None:
    """Before, past 64 bits, BCC refused to compile the program: no probe at all loaded, exec and
    syscalls included. The probe attaches, with none of its arguments read (docs: "Known limits")."""
    if report.posture < Posture.FULL_INSTRUMENTATION:
        pytest.skip(f"native probes give {report.posture} here: {report.missing}")
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    hostile = PROGRAM.replace(
        '".asciz \\"-4@%0 8@%1\\"\\n"',
        f'".asciz \\"{operands}\\"\\n"',
    )
    assert hostile != PROGRAM
    (tmp_path / "hostile.c").write_text(hostile)
    prog = tmp_path / "stella_usdt_hostile"
    subprocess.run(["gcc", "-O1", "-o", str(prog), str(tmp_path / "hostile.c")], check=True)
    n = 4
    cfg = NativeConfig(exec_events=True, usdt=(UsdtTarget(str(prog), "stella_app", "hit"),))
    out: list[str] = []

    def workload() -> None:
        out.append(
            subprocess.run([str(prog), str(n), "t"], capture_output=True, text=True, check=True).stdout
        )

    res = asyncio.run(run_session(cfg, seconds=1.0, report=report, during=workload))
    assert not res.error, res.error
    assert res.failed == [] and f"usdt {prog}:stella_app:hit" in res.attached
    assert out == [f"{n}\n"]
    evs = [e for e in res.events if e.kind is EventKind.USDT]
    assert len(evs) == n and all(e.arguments == [] for e in evs)
    assert any(e.kind is EventKind.EXEC and e.process.binary == str(prog) for e in res.events)
    (probe,) = usdt.read_probes(str(prog))
    assert probe.args == ()  # not read, still attached
