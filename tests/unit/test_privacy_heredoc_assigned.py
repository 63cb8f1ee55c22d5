"""A here-document printed by ``cat`` into a command substitution assigned to a secret's name.

s50 RP: ``DB_PASSWORD=$(cat <<'EOF'`` then the value's lines then ``EOF`` and ``)`` is how a script sets
a variable to a multi-line (or quoting-free) value; bash runs it and the variable holds the lines. The key
rules took ``$(cat`` for the value and the lines stayed, since the opening line named no reader of a
password (privacy/here_docs.py). A name that is no secret's keeps its document.
"""

from __future__ import annotations

import subprocess

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_PW = "RP50heredocSecret"


@pytest.mark.parametrize(
    "script",
    [
        "export DB_PASSWORD=$(cat <<'EOF'\n{pw}\nEOF\n)\necho \"$DB_PASSWORD\"\n",
        'db_pass="$(cat <<-EOF\n\t{pw}\n\tEOF\n)"\necho "$db_pass"\n',
        'API_TOKEN=$(cat <<EOF\n{pw}\nEOF\n)\necho "$API_TOKEN"\n',
    ],
)
def test_the_documents_lines_go(script: str) -> None:
    script = script.format(pw=_PW)
    ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == _PW  # bash sets the variable to the document's lines
    out = written_buffer(script)
    assert _PW not in out, out
    assert out.endswith("\necho " + script.rsplit("\necho ", 1)[1]), out
    assert _PW not in exec_arguments("/bin/bash", "-c " + script)


@pytest.mark.parametrize("name", ["CONFIG", "KEYBOARD", "bypass"])
def test_a_name_no_secrets_keeps_its_document(name: str) -> None:
    script = f"{name}=$(cat <<EOF\nkeep me\nEOF\n)\n"
    assert written_buffer(script) == script


def test_assigned_documents_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in ("DB_PASSWORD=$(cat <<E\n", "a_pass=$(cat <<E\nx\nE\n)\n", "x_token=$(cat "):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
