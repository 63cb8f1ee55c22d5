"""An environment name glued to ``PASS`` (``DBPASS``, ``MYSQLPASS``, ``PGPASS``) loses its value.

P7's third known limit (session 45), still pinned by RP7: only ``*_PASS`` and ``PASS`` named a password,
so ``env DBPASS=x ./app`` stored the password, to keep ``BYPASS=1`` and ``COMPASS=x``. The glob
``*PASS`` now takes a name whose last part (after ``_``) ends in PASS unless that part is a word that
only ends in "pass" (env_names.NOT_A_GLUED_PASS). The look-alikes are the names ending in PASS that
a grep of Debian's /usr/share, /etc, the Python libraries and the test fixtures found (BYPASS,
PACKET_QDISC_BYPASS, COMPASS, GIT_ASKPASS, SSH_ASKPASS, XPASS, NOPASS, TWOPASS), and other words
ending in "pass" (audio filters, render passes, English words).
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter, filter_env
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments as _exec

_PW = "P8-glued"


def _text(text: str) -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text)


_SECRET_NAMES = [
    "DBPASS",
    "MYSQLPASS",
    "PGPASS",
    "REDISPASS",
    "ADMINPASS",
    "ROOTPASS",
    "SMTPPASS",
    "STOREPASS",  # keytool's -storepass as a variable
    "DERBYPASS",  # ends in BYPASS, but its part is DERBY
    "APP_DBPASS",
    "WP_ADMINPASS",
]


@pytest.mark.parametrize("name", _SECRET_NAMES)
def test_a_name_glued_to_pass_loses_its_value(name: str) -> None:
    assert _exec("/usr/bin/env", f"{name}={_PW} ./app") == f"{name}=[REDACTED] ./app"
    assert _PW not in _exec("/bin/sh", f"-c \"export {name}='{_PW}'; exec ./app\"")
    assert _text(f"docker run -e {name}={_PW} img") == f"docker run -e {name}=[REDACTED] img"
    assert filter_env([f"{name}={_PW}", f"{name.lower()}={_PW}"]) == [
        f"{name}=[REDACTED]",
        f"{name.lower()}=[REDACTED]",
    ]


def test_a_glued_name_in_a_kubernetes_env_entry_loses_its_value() -> None:
    text = f'{{"env":[{{"name":"DBPASS","value":"{_PW}"}}]}}'
    assert _PW not in _text(text)


_WORDS_ENDING_IN_PASS = [
    "BYPASS",
    "PACKET_QDISC_BYPASS",
    "PR_SPEC_STORE_BYPASS",
    "COMPASS",
    "ENCOMPASS",
    "SURPASS",
    "TRESPASS",
    "OVERPASS",
    "UNDERPASS",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "XPASS",
    "NOPASS",
    "TWOPASS",
    "MULTIPASS",
    "LOWPASS",
    "HIGHPASS",
    "BANDPASS",
    "RENDERPASS",
    "SUBPASS",
    "LASTPASS",
    "KEEPASS",
]


@pytest.mark.parametrize("name", _WORDS_ENDING_IN_PASS)
def test_a_word_that_only_ends_in_pass_keeps_its_value(name: str) -> None:
    text = f"env {name}=/usr/bin/ksshaskpass ./app"
    assert _text(text) == text
    assert filter_env([f"{name}=1", f"{name.lower()}=1"]) == [f"{name}=1", f"{name.lower()}=1"]


def test_names_that_held_pass_before_still_lose_their_values() -> None:
    assert _text("env DB_PASS=x PASS=y SSHPASS=z ./a") == (
        "env DB_PASS=[REDACTED] PASS=[REDACTED] SSHPASS=[REDACTED] ./a"
    )
    assert _text("env PASSWORD_RESET_URL=x COMPASS_PASS=y ./a") == (
        "env PASSWORD_RESET_URL=[REDACTED] COMPASS_PASS=[REDACTED] ./a"
    )


def test_the_glued_pass_rule_costs_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))  # (uncut: the default cuts at 4096)
    for unit in ("BYPASSBYPASS_", "A_B_C_DBPASS", "BYPASS=BYPASS=", "X_" * 8 + "PASS "):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit


def test_gos_test_summary_keeps_the_test_name() -> None:
    # ``go test -v`` writes ``--- PASS: TestName (0.00s)`` per test, nested subtests indented: no key
    # (RP7 saw the name taken for a PASS key's value); ``PASS: x`` alone is still a key (a YAML env entry)
    text = (
        "=== RUN   TestX\n--- PASS: TestX (0.00s)\n"
        "    --- PASS: TestX/sub_case (0.00s)\nPASS\nok  \tpkg\t0.01s\n"
    )
    assert _text(text) == text
    assert _text(f"PASS: {_PW}") == "PASS: [REDACTED]"
    assert _text(f"env:\n  DB_PASS: {_PW}\n") == "env:\n  DB_PASS: [REDACTED]\n"
