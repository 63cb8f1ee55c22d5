"""A Java properties line whose key and value only blanks separate: ``db.password S`` (session 51).

``java.util.Properties.load`` ends a key at its first unescaped ``=``, ``:`` or white space and reads
the rest of the line as the value, so ``spring.datasource.password hunter2`` sets the password. The key
rules need ``=`` or ``:`` and kept it (s50 RP's left-alone 2). Each case is loaded by the real
``java.util.Properties`` (one JVM for all of them) when a JDK is on the machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from stellaops_runtime.privacy.properties_lines import properties_line_spans
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_S = "P51propsSecret"
_CASES = [
    ("db.password {s}\n", "db.password"),
    ("x=1\nspring.datasource.password   {s} two\ny=2\n", "spring.datasource.password"),
    ("db.password\t{s}\n", "db.password"),
    ("fs.s3a.secret.key {s}\n", "fs.s3a.secret.key"),
    ("  app.auth.token {s}\n", "app.auth.token"),
    ("db.password a\\\n    {s}\nx=1\n", "db.password"),
    ("x=1\rdb.password {s}\ry=2\r", "db.password"),  # lines a lone CR ends (s51 RP)
    # a generated password may start with a symbol an operator starts with too (s51 RP)
    ("db.password !{s}\n", "db.password"),
    ("db.password *{s}\n", "db.password"),
    ("db.password -{s}\n", "db.password"),
    ("db.password %{s}&\n", "db.password"),
    ("db.password <{s}>\n", "db.password"),
    # a key of one word, its password word after ``_`` or a camel-case hump (Apache httpd's directive): s51 RP
    ("db_password {s}\n", "db_password"),
    ('  AuthLDAPBindPassword "{s}"\n', "AuthLDAPBindPassword"),
]
_LOADER = """
import java.io.FileReader;
import java.util.Properties;
public class Load {
    public static void main(String[] args) throws Exception {
        for (int i = 0; i < args.length; i += 2) {
            Properties p = new Properties();
            try (FileReader r = new FileReader(args[i])) { p.load(r); }
            System.out.println(p.getProperty(args[i + 1]));
        }
    }
}
"""


@pytest.fixture(scope="module")
def java_reads(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """What java.util.Properties reads for each case's key (one JVM for all)."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on this machine")
    root: Path = tmp_path_factory.mktemp("props")
    (root / "Load.java").write_text(_LOADER)
    args: list[str] = []
    for i, (text, key) in enumerate(_CASES):
        (root / f"{i}.properties").write_text(text.format(s=_S))
        args += [str(root / f"{i}.properties"), key]
    run = subprocess.run(
        [java, str(root / "Load.java"), *args], capture_output=True, text=True, check=True, timeout=60
    )
    return run.stdout.splitlines()


@pytest.mark.parametrize("case", range(len(_CASES)))
def test_a_properties_value_after_blanks_goes(case: int, java_reads: list[str]) -> None:
    text, key = _CASES[case]
    text = text.format(s=_S)
    assert _S in java_reads[case]  # java.util.Properties reads the secret as the key's value
    out = written_buffer(text)
    assert _S not in out
    assert key in out  # the key stays
    assert out.count("[REDACTED]") == 1
    assert _S not in exec_arguments("/bin/sh", f"-c 'cat > app.properties <<EOF\n{text}EOF\n'")


@pytest.mark.parametrize(
    "text",
    [
        "log4j.logger.com.example.secret INFO\n",  # a log level, as the key rules read it
        "the db.password is required\n",  # mid-line prose
        "password reset requested\n",  # no dotted key
        "db.passwordless true\n",  # the word does not end the key
        "db.user bob\n",
        # a key of one word: prose, a setting of the wider secret words, a bare word (s51 RP's sweep of /etc)
        "PREVENT_NO_AUTH superuser\n",
        "        oauth_token given in the authorization URL is valid or not.\n",
        "DB_PASSWORD missing\n",
        "Password changed\n",
        # Python a first draft over-redacted (LK's corpus: shlex, smtplib)
        "        self.password to be set.\n",
    ],
)
def test_look_alikes_keep_their_words(text: str) -> None:
    assert written_buffer(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "    self.token += nextchar\n",
        "    app.token == other\n",
        "this.secret = x;\n",
        "a.token .x\n",
        "    a.token - 1\n",
        "    a.token -> x\n",
        "    a.token && b\n",
        "    a.token *= 2\n",
        "    a.token <\n",
    ],
)
def test_a_line_of_code_is_no_properties_line(text: str) -> None:
    # (the key rules read ``+=``, ``=`` as their own separators: what they take is theirs)
    assert properties_line_spans(text) == []


def test_spaced_properties_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    units = ("a.password x\n", "a." * 40 + "\n", "a.password \\\n", "a.b.c.token" + " " * 30)
    for unit in (*units, "a_password x\n", "a_" * 40 + "\n", "aBPassword " + "x" * 40, "a_token x y\n"):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
