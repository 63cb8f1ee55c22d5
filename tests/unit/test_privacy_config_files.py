"""Credentials files and XML configurations that name a secret apart from its value (session 50).

Found trying what a workload writes: a ``.netrc`` entry (``machine h login u password x``, curl's, git's,
ftp's and Python's credentials file: no ``=`` or ``:`` joins the password to its word), Java's properties
XML (``<entry key="db.password">x</entry>``) and elements named by an attribute (``<property
name="password">x</property>``), Hadoop's and Hive's ``<name>…Password</name>`` then ``<value>x</value>``
(core-site.xml, hive-site.xml), and a pretty-printed ``<password>`` whose text opens on the next line:
each kept its secret.
"""

from __future__ import annotations

import netrc
from pathlib import Path

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments
from tests.privacy_events import written_buffer as _write

_PW = "P50confSecret"
# a plain word: a bare ``password`` before a word that looks like a secret (mixed case, digits) took it
# already; a password of letters only was kept
_WORD = "swordfish"


@pytest.mark.parametrize(
    "text",
    [
        "machine git.example.com login ci password {pw}\n",
        "machine h\n  login u\n  account a\n  password {pw}\n\nmachine k login v password {pw}\n",
        "default login anonymous password {pw}\n",
        "machine h password {pw} login u\n",
    ],
)
def test_a_netrc_entrys_password_goes(text: str, tmp_path: Path) -> None:
    text = text.format(pw=_WORD)
    path = tmp_path / "netrc"
    path.write_text(text)
    auth = netrc.netrc(str(path)).authenticators("h" if "machine h" in text else "git.example.com")
    assert auth is None or auth[2] == _WORD  # what the reader of the file takes for the password
    out = _write(text)
    assert _WORD not in out
    # an account is a secret too (ftp's ACCT, s51: test_privacy_netrc_entries.py)
    assert out.count("[REDACTED]") == text.count(_WORD) + text.count("account ")


def test_a_netrc_written_by_a_script_loses_its_password() -> None:
    script = f"-c 'echo \"machine github.com login x password {_WORD}\" > ~/.netrc'"
    assert _WORD not in exec_arguments("/bin/sh", script)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<entry key="db.password">{pw}</entry>', '<entry key="db.password">[REDACTED]</entry>'),
        ("<property name='password'>{pw}</property>", "<property name='password'>[REDACTED]</property>"),
        ('<param name="apiToken" >\n  {pw}\n</param>', '<param name="apiToken" >\n  [REDACTED]</param>'),
        (
            "<property>\n  <name>fs.s3a.secret.key</name>\n  <value>{pw}</value>\n</property>",
            "<property>\n  <name>fs.s3a.secret.key</name>\n  <value>[REDACTED]</value>\n</property>",
        ),
        (
            "<name>javax.jdo.option.ConnectionPassword</name><value>{pw}</value>",
            "<name>javax.jdo.option.ConnectionPassword</name><value>[REDACTED]</value>",
        ),
        ("<password>\n  {pw}\n</password>", "<password>\n  [REDACTED]</password>"),
    ],
)
def test_an_xml_value_named_for_a_secret_goes(text: str, expected: str) -> None:
    assert _write(text.format(pw=_PW)) == expected


@pytest.mark.parametrize(
    "text",
    [
        # an access key's id, a user, a self-closing element's later text, netrc's words in a sentence
        "<property>\n  <name>fs.s3a.access.key</name>\n  <value>AKIAKEEPME</value>\n</property>",
        '<entry key="user">bob</entry>',
        '<property name="password"/>\n<a>text</a>',
        "the machine password is x",
        "machine h login u\n",
    ],
)
def test_what_names_no_secret_stays(text: str) -> None:
    assert _write(text) == text


def test_config_file_rules_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in (
        "machine h login u ",
        "machine password ",
        '<entry key="password" ',
        '<a name="password">',
        "<name>password</name>",
        "<name>password</name><value>",
        "<password> ",
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit


def test_prose_naming_the_words_stays() -> None:
    # (LK's corpus: a docstring and a comment)
    for text in ('"""Set default password for encrypted files."""', "comment out the <auth> element to x"):
        assert _write(text) == text
