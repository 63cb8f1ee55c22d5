"""A ``.netrc`` entry's password with no ``login`` pair, and its ``account`` (session 51).

Python's netrc, curl and ftp read an entry's pairs in any order, and none needs a ``login``:
``machine h password S`` kept ``S``, and ``account S`` (ftp's second password, RFC 959 ``ACCT``) was read
only as a word to pass over (s50 RP's left-alone 2).
"""

from __future__ import annotations

import netrc
from pathlib import Path

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_S = "swordfish"


@pytest.mark.parametrize(
    "text",
    [
        "machine h password {s}\n",
        "machine h\n  password {s}\n",
        "machine h login u account {s} password {s}\n",
        "machine h account {s}\n",
        "machine h user u password {s}\n",
        'machine h password "{s}"\n',
        "machine h login u password {s}\nmachine h2 password {s}\n",
    ],
)
def test_a_netrc_entrys_password_and_account_go(text: str, tmp_path: Path) -> None:
    text = text.format(s=_S)
    path = tmp_path / "netrc"
    path.write_text(text)
    path.chmod(0o600)
    _login, account, password = netrc.netrc(str(path)).authenticators("h") or ("", "", "")
    assert _S in (account, password)  # what Python's netrc reads as a secret of the entry
    out = written_buffer(text)
    assert _S not in out
    assert out.count("[REDACTED]") == text.count(_S)
    assert out.startswith("machine h")


def test_a_script_writing_such_an_entry_loses_it() -> None:
    assert _S not in exec_arguments("/bin/sh", f"-c 'echo \"machine h password {_S}\" >> ~/.netrc'")


@pytest.mark.parametrize(
    "text",
    [
        "Set default password for new users\n",  # a default entry counts only with a login pair
        "the build machine room password policy\n",  # no pair after the host word
        "machine password reset\n",
        "default account settings\n",
    ],
)
def test_prose_keeps_its_words(text: str) -> None:
    assert written_buffer(text) == text


def test_netrc_entries_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in (
        "machine h ",
        "machine h password a ",
        "machine h port 1 port 2 port 3 ",
        "default account ",
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
