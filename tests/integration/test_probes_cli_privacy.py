"""``stella-runtime probes run --usdt … --json`` prints traced string arguments through the privacy filter.

A USDT probe's string arguments are values a workload chooses (CPython's
``function__entry`` gives a file name and a function name; the CLI reads both
as strings). The agent filters every argument value before it stores or logs
it; the trial run printed them raw. The CLI runs as a subprocess while the
test runs a program whose probe (provider ``python``, name
``function__entry``, so the CLI reads its two arguments as strings) fires
with a connection string holding a password; the truth is that the password
is what the filter redacts in the agent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.detect import detect

pytestmark = pytest.mark.bpf

CACHE = str(Path(".cache/native").resolve())
SECRET = "UsdtPw-4k2q"

PROGRAM = r"""
#include <stdio.h>
__attribute__((section(".probes"))) volatile unsigned short python_function__entry_semaphore = 0;
#define PROBE(a, b) __asm__ __volatile__ (                                              \
    "990: nop\n"                                                                        \
    ".pushsection .note.stapsdt,\"?\",\"note\"\n"                                       \
    ".balign 4\n"                                                                       \
    ".4byte 992f-991f, 994f-993f, 3\n"                                                  \
    "991: .asciz \"stapsdt\"\n"                                                         \
    "992: .balign 4\n"                                                                  \
    "993: .8byte 990b\n"                                                                \
    ".8byte _.stapsdt.base\n"                                                           \
    ".8byte python_function__entry_semaphore\n"                                         \
    ".asciz \"python\"\n"                                                               \
    ".asciz \"function__entry\"\n"                                                      \
    ".asciz \"8@%0 8@%1\"\n"                                                            \
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
int main(void) {
    /* on the stack: a page the probe's read finds resident (.rodata may not be faulted in yet) */
    char file[] = "postgres://app:SECRET@db/shop";
    char func[] = "connect";
    int fired = 0;
    if (python_function__entry_semaphore) { PROBE(file, func); fired++; }
    printf("%d\n", fired);
    return 0;
}
"""


def test_usdt_string_arguments_are_redacted_in_the_json_output(tmp_path: Path) -> None:
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=CACHE)
    if rep.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native probes cannot attach USDT probes here: {rep.missing}")
    src = tmp_path / "app.c"
    src.write_text(PROGRAM.replace("SECRET", SECRET))
    prog = tmp_path / "usdt_secret_app"
    subprocess.run(["gcc", "-O1", "-o", str(prog), str(src)], check=True)
    # --seconds counts from the attach (native/session.py): the program runs every 50 ms until the end
    cli = subprocess.Popen(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "probes", "run", "--seconds", "2", "--json",
         "--no-exec", "--usdt", f"{prog}:python:function__entry"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, STELLA_CACHE_DIR=CACHE),
    )  # fmt: skip
    fired = 0
    deadline = time.monotonic() + 120
    while cli.poll() is None:  # run the program until the run ends (the probe attaches meanwhile)
        assert time.monotonic() < deadline, "probes run did not end"
        fired += int(subprocess.run([str(prog)], check=True, capture_output=True, text=True).stdout)
        time.sleep(0.05)
    out, err = cli.communicate()
    assert cli.returncode == 0, err
    assert fired > 0, "the probe never fired: no process started while it was attached"
    events = [orjson.loads(line) for line in out.splitlines()[:-1]]
    mine = [e for e in events if e["module"] == str(prog)]
    assert mine, out[-2000:]
    for e in mine:
        assert [a["value"] for a in e["arguments"]] == ["postgres://app:[REDACTED]@db/shop", "connect"]
    assert SECRET not in out
    assert SECRET not in err
