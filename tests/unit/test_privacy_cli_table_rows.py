"""docs/privacy.md's client table promises forms of this session's rows that cli_corpus.yaml does not hold.

Each row of the table names what goes and what stays; the corpus (test_privacy_cli.py) had one
spelling of most new rows. These are the others the table names: ngrok's bare ``authtoken``,
smbmap, impacket's ``psexec.py``, crackmapexec, ctr's ``-u user:SECRET``, ipmitool's glued
``-PSECRET``, redis ACL's ``!HASH``, xh/HTTPie's ``--auth``; and what the table says stays
(bw ``--passwordenv``, smbmap ``-H host``, Net-SNMP ``-c private``, ``wpa_passphrase SSID``).
Also the page's quoted values (``requirepass "..."``, ``AUTH2 user "..."``, ``cargo login`` with
escaped quotes inside ``sh -c``) and ``:=`` with no blanks around it ("blanks around it or not":
the corpus has blanks).
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter

HASH = "4f2b8c0d9e3a1b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c"

# (argument text as a `sh -c` line, secret, expected)
SECRETS = [
    ("isql -v MyDSN dbuser OdbcPw-9x1 -b", "OdbcPw-9x1", "isql -v MyDSN dbuser [REDACTED] -b"),
    # isql reads its own options between DSN, UID and PWD too (s50 RP)
    ("isql MyDSN -v dbuser -b OdbcPw-9x2", "OdbcPw-9x2", "isql MyDSN -v dbuser -b [REDACTED]"),
    ("isql MyDSN -d, dbuser OdbcPw-9x3 -v", "OdbcPw-9x3", "isql MyDSN -d, dbuser [REDACTED] -v"),
    ("ngrok authtoken 2NgrokTok_5hJ8kLmN", "2NgrokTok_5hJ8kLmN", "ngrok authtoken [REDACTED]"),
    (
        "smbmap -H 10.0.0.5 -u admin -p SmbmapPw-1q",
        "SmbmapPw-1q",
        "smbmap -H 10.0.0.5 -u admin -p [REDACTED]",
    ),
    (
        "psexec.py corp/admin:PsexecPw-2w@10.0.0.5",
        "PsexecPw-2w",
        "psexec.py corp/admin:[REDACTED]@10.0.0.5",
    ),
    (
        "crackmapexec smb 10.0.0.5 -u admin -p CmePw-3e",
        "CmePw-3e",
        "crackmapexec smb 10.0.0.5 -u admin -p [REDACTED]",
    ),
    (
        "ctr -n k8s.io images pull -u ci:CtrPw-7j3 registry.example.com/app:1",
        "CtrPw-7j3",
        "ctr -n k8s.io images pull -u ci:[REDACTED] registry.example.com/app:1",
    ),
    (
        "ctr content fetch --user ci:CtrPw-8j3 registry.example.com/app:1",
        "CtrPw-8j3",
        "ctr content fetch --user ci:[REDACTED] registry.example.com/app:1",
    ),
    (
        "ipmitool -I lanplus -H bmc01 -U admin -PIpmiGlued77 chassis power status",
        "IpmiGlued77",
        "ipmitool -I lanplus -H bmc01 -U admin -P[REDACTED] chassis power status",
    ),
    (f"redis-cli ACL SETUSER alice on !{HASH} ~*", HASH, "redis-cli ACL SETUSER alice on ![REDACTED] ~*"),
    (
        "redis-cli CONFIG SET maxmemory 100mb requirepass RqPw2",
        "RqPw2",
        "redis-cli CONFIG SET maxmemory 100mb requirepass [REDACTED]",
    ),
    (
        'redis-cli CONFIG SET requirepass "Rq Quoted 1"',
        "Rq Quoted 1",
        "redis-cli CONFIG SET requirepass [REDACTED]",
    ),
    (
        'redis-cli MIGRATE cache2 6379 key 0 5000 AUTH2 alice "Mig Quoted 2"',
        "Mig Quoted 2",
        "redis-cli MIGRATE cache2 6379 key 0 5000 AUTH2 [REDACTED]",
    ),
    ('sh -c "cargo login \\"Cargo Tok 2\\""', "Cargo Tok 2", 'sh -c "cargo login [REDACTED]"'),
    ('sh -c "make DB_PASSWORD:=MkTight-1a all"', "MkTight-1a", 'sh -c "make DB_PASSWORD:=[REDACTED] all"'),
    (
        "sh -c \"echo 'API_TOKEN :=Half-3c' >> a.mk\"",
        "Half-3c",
        "sh -c \"echo 'API_TOKEN :=[REDACTED]' >> a.mk\"",
    ),
]

# The user before the password may go with it (the generic --auth flag rule takes the whole value).
SECRETS_USER_MAY_GO = [
    ("xh --auth deploy:XhPw-4 POST https://api.example.com/hooks", "XhPw-4"),
    ("https --auth=deploy:HttpsPw-4 POST https://api.example.com/hooks", "HttpsPw-4"),
]

KEPT = [
    "bw unlock --passwordenv BW_PW --raw",
    "smbmap -H 10.0.0.5",
    "snmpwalk -v2c -c private sw01 system",
    "wpa_passphrase HomeNet",
    "isql MyDSN dbuser -v",
    "isql -U sa -S SYBASE -i q.sql",
    "isql -S SYBASE -U sa -D db",
    "isql -U sa -w 200 -S SYBASE",
]


def _filtered(text: str) -> tuple[str, int]:
    pf = PrivacyFilter(PrivacyConfig())
    ev = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, binary="/bin/sh", arguments=text),
    )
    pf.apply(ev)
    return ev.process.arguments, pf.fields_redacted


@pytest.mark.parametrize(("text", "secret", "expected"), SECRETS, ids=[s[0][:40] for s in SECRETS])
def test_a_table_rows_secret_goes(text: str, secret: str, expected: str) -> None:
    out, redacted = _filtered(text)
    assert secret not in out
    assert out == expected
    assert redacted == 1


@pytest.mark.parametrize(
    ("text", "secret"), SECRETS_USER_MAY_GO, ids=[s[0][:40] for s in SECRETS_USER_MAY_GO]
)
def test_httpie_and_xh_long_auth_loses_its_password(text: str, secret: str) -> None:
    out, redacted = _filtered(text)
    assert secret not in out
    assert "[REDACTED]" in out
    assert out.endswith("POST https://api.example.com/hooks")
    assert redacted == 1


@pytest.mark.parametrize("text", KEPT)
def test_what_a_table_row_says_stays_is_kept(text: str) -> None:
    assert _filtered(text) == (text, 0)
