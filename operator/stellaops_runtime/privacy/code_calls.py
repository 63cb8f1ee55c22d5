"""Passwords given by position to a connect or login call in a code string.

Why this exists: the key rules (``patterns``) find a password by its name
(``password='x'``, ``:password => 'x'``), but many database, FTP, mail and HTTP
clients take it as a positional argument, and a workload runs such code from its
command line (``php -r``, ``perl -e``, ``ruby -e``, ``python3 -c``, a ``sh -c``
script): ``new PDO($dsn, 'root', 'pw')``, ``mysqli_connect(h, u, 'pw')``,
``DBI->connect($dsn, "u", "pw")``, ``basic_auth 'u', 'pw'``, ``s.login('u', 'pw')``.
Nothing named the third argument, so it was stored in clear.

Each call is listed with the position of its password argument (its manual or
API reference); when that argument is a string literal (single or double
quoted, double quotes escaped with backslashes inside a shell string, Perl's
``q{…}``), the literal goes, its quotes with it; a variable (``$pass``) is no
text of a secret and stays. The arguments before it are skipped whole: literals
(commas in them too), one level of nested calls (``getenv('DB_HOST')``) and
anything else up to a comma. A literal cut by the field's end goes to that end.

The rules are their own small regex, run only on a text holding a quote and a
word of a listed call, so the whole-set regex (``patterns``) does not grow.
Every match is possessive (each argument is read once: linear in the text).
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.key_words import SETTING_WORDS

__all__ = ["code_call_spans"]

# A string literal: '…' and "…" with backslash escapes, "…" with its quotes escaped by one or more
# backslashes (code inside a shell string: ``\"pw\"``, ``\\\"pw\\\"``), Perl's q{…}, q(…), q[…].
# (A run of backslashes is read whole, once: not once per backslash, which was quadratic.)
_LITERAL = (
    r"'(?:[^'\\\n]|\\[^\n])*+'"
    r'|"(?:[^"\\\n]|\\[^\n])*+"'
    r'|\\++"(?:[^"\\\n]|\\++(?!"))*+\\++"'
    r"|qq?+(?:\{[^{}\n]*+\}|\([^()\n]*+\)|\[[^\[\]\n]*+\])"
)
# A single quote of the code inside a single-quoted shell script (``sh -c '…'``): '\'' or '"'"'.
_SH_QUOTE = r"""'(?:\\'|"'")'"""
# The password literal: the same, or one the field's end cut (to that end).
# (Python's r'', b'', f'', u'' prefixes; Ruby's %q(…), %Q{…}, %(…) too; C#'s @"…" and $"…"; in a
# single-quoted shell script, quoted with _SH_QUOTE; Python's triple quotes; Go's raw `…` and
# JavaScript's template literal)
_SECRET = (
    r"[rRbBuUfF@$]{0,2}+(?:"
    rf"{_SH_QUOTE}[^'\n]*+(?:{_SH_QUOTE}|\Z)"
    r"|'''(?:[^'\\]|\\[\s\S]|'(?!''))*+(?:'''|\Z)"
    r'|"""(?:[^"\\]|\\[\s\S]|"(?!""))*+(?:"""|\Z)'
    r"|`[^`]*+(?:`|\Z)"
    r"|'(?:[^'\\\n]|\\[^\n])*+(?:'|\Z)"
    r'|"(?:[^"\\\n]|\\[^\n])*+(?:"|\Z)'
    r'|\\++"(?:[^"\\\n]|\\++(?!"))*+(?:\\++"|\Z))'
    r"|(?:qq?+|%[qQ]?+)(?:\{[^{}\n]*+(?:\}|\Z)|\([^()\n]*+(?:\)|\Z)|\[[^\[\]\n]*+(?:\]|\Z))"
)
# One argument skipped: literals, one level of a nested call, any other character but a comma or
# what ends a statement (``;``, a line break).
_ARG = rf"""(?:{_LITERAL}|\((?:{_LITERAL}|[^()'"\n])*+\)|[^,;()'"\\\n]++|\\++(?!["']))*+"""
# The call's opening: a parenthesis, or (Ruby) blanks before a quoted first argument.
_OPEN = r"""(?:\s*+\(|[ \t]++(?=\\*+["']))\s*+"""
_COMMA = r"\s*+,\s*+"

# position of the password argument -> the calls that take it there; a name without ``.`` or ``->``
# before it stands alone (no word character or ``$`` before it).
_CALLS: dict[int, tuple[str, ...]] = {
    # poplib's pass_(password)
    1: (".pass_",),
    # Ruby Net::HTTP basic_auth(user, pass); requests' HTTPBasicAuth/HTTPDigestAuth/HTTPProxyAuth,
    # aiohttp's BasicAuth; Go's req.SetBasicAuth; .NET's NetworkCredential; Java's
    # PasswordAuthentication; PHP's oci_connect(user, pass, …); login(user, pass) of ftplib,
    # smtplib, imaplib, Net::FTP, Net::SMTP and docker clients; auth(user, pass) of Net::SMTP and
    # superagent.
    2: (
        *("basic_auth", "HTTPBasicAuth", "HTTPDigestAuth", "HTTPProxyAuth", "BasicAuth", "SetBasicAuth"),
        *("NetworkCredential", "PasswordAuthentication", "oci_connect", "oci_pconnect", "oci_new_connect"),
        *(".login", "->login", ".auth", "->auth"),
        # pika's PlainCredentials(user, pass); python-ldap's simple_bind_s / simple_bind / bind_s(who, cred)
        *("PlainCredentials", ".simple_bind_s", ".simple_bind", ".bind_s"),
        # cx_Oracle.connect(user, password, dsn); the MongoDB shell's db.changeUserPassword(user, pw)
        *("cx_Oracle.connect", ".changeUserPassword"),
    ),
    # PHP: new PDO(dsn, user, pass), mysqli_connect / new mysqli / mysql_connect / mssql_connect
    # (host, user, pass), ldap_bind(link, dn, pass), ftp_login(ftp, user, pass),
    # ssh2_auth_password(session, user, pass), imap_open(mailbox, user, pass), ->real_connect;
    # Perl DBI->connect(dsn, user, pass); Ruby Net::FTP.open/new and Python's FTP(host, user, pass);
    # Java DriverManager.getConnection(url, user, pass); Go smtp.PlainAuth(identity, user, pass);
    # pymysql.connect and MySQLdb.connect(host, user, passwd).
    3: (
        *("PDO", "mysqli", "mysqli_connect", "mysql_connect", "mysql_pconnect", "mssql_connect"),
        *("mssql_pconnect", "ldap_bind", "ftp_login", "ssh2_auth_password", "imap_open"),
        *("getConnection", "PlainAuth", "pymysql.connect", "MySQLdb.connect"),
        *("FTP", "FTP_TLS", "FTP.open", "FTP.new", "DBI->connect", "DBI->connect_cached"),
        *(".real_connect", "->real_connect"),
        # Node's new Sequelize(database, username, password, options); PHP's odbc_connect,
        # odbc_pconnect, db2_connect, db2_pconnect, ibase_connect (database, user, password)
        *("Sequelize", "odbc_connect", "odbc_pconnect", "db2_connect", "db2_pconnect", "ibase_connect"),
        # Python: mysql.connector.connect, pymssql.connect, aiomysql.connect, ibm_db.connect / pconnect
        # (host or database, user, password); ldap3's Connection(server, user, password)
        *("mysql.connector.connect", "pymssql.connect", "aiomysql.connect", "ibm_db.connect"),
        # minio-py's Minio(endpoint, access_key, secret_key)
        *("ibm_db.pconnect", "Connection", "Minio"),
    ),
    # PHP mysqli_real_connect(link, host, user, pass); Perl LWP ->credentials(netloc, realm, user,
    # pass); Python urllib's add_password(realm, uri, user, passwd); redis-py's Redis / StrictRedis
    # (host, port, db, password).
    4: (
        *("mysqli_real_connect", ".credentials", "->credentials", ".add_password", "Redis", "StrictRedis"),
        # paramiko's SSHClient.connect(hostname, port, username, password), by its usual receivers
        # only (``connect`` alone is too common a name: an MQTT client's fourth is its bind address)
        *("ssh.connect", "ssh_client.connect", "SSHClient().connect"),
    ),
    # Ruby Net::SMTP.start(address, port, helo, user, secret).
    5: ("SMTP.start",),
}
_POSITION = {name: pos for pos, names in _CALLS.items() for name in names}
# Calls that take the password at another position when it is their last argument: a DataSource's
# getConnection(user, pass); a redis client's auth(pass) (redis-py, phpredis, node-redis).
_LAST: dict[str, int] = {"getConnection": 2, ".auth": 1, "->auth": 1}
# Calls whose last argument is a password too when it is at this position: pexpect's
# pxssh.login(server, username, password) (ftplib's login(user, passwd, acct) then loses its acct),
# keyword arguments after it too (``port=2222``: a keyword's ``=``, not ``==``).
_ALSO_LAST: dict[str, int] = {".login": 3, "->login": 3}
# An authentication method or a switch given alone to ``auth`` (``app.auth('oidc')``, a web framework's
# setting) is no redis password (key_words.SETTING_WORDS): the literal, its quotes and prefix aside.
_A_SETTING = re.compile(r"[rRbBuUfF@$]{0,2}+[\\'\"`]*+(?i:" + "|".join(SETTING_WORDS) + r")[\\'\"`]*+")


def _name(name: str) -> str:
    """A call's name as a regex alternative that starts with a literal character (a cheap skip)."""
    first = re.escape(name[0])
    lone = "" if name[0] in ".-" else rf"(?<![\w$]{first})"
    return f"{first}{lone}{re.escape(name[1:])}"


# A listed call's name and opening (the name captured: it says where the password is).
_OPENING = re.compile(
    "(?P<n>" + "|".join(_name(n) for n in sorted(_POSITION, key=len, reverse=True)) + f"){_OPEN}"
)
# From a call's opening: its password argument when that is a literal, else its arguments up to the
# first that ends the list (``)``), a statement (``;``) or a line, read all the same (the next call is
# looked for after them: each character is read a bounded number of times).
_ARGUMENTS = {
    pos: re.compile(rf"(?:{_ARG}{_COMMA}){{{pos - 1}}}(?P<s>{_SECRET})|{_ARG}(?:{_COMMA}{_ARG})*+")
    for pos in _CALLS
}
_LAST_ARGUMENT = {
    pos: re.compile(rf"(?:{_ARG}{_COMMA}){{{pos - 1}}}(?P<s>{_SECRET})(?=\s*+\)|\Z)")
    for pos in set(_LAST.values())
}
_ALSO_LAST_ARGUMENT = {
    pos: re.compile(
        rf"(?:{_ARG}{_COMMA}){{{pos - 1}}}(?P<s>{_SECRET})(?=\s*+\)|\Z|{_COMMA}[A-Za-z_]\w*+\s*+=(?!=))"
    )
    for pos in set(_ALSO_LAST.values())
}
# A text without one of these holds none of the calls (a C-speed check before the regex).
_TRIGGERS = (
    *("PDO", "mysql", "connect", "Connection", "login", "auth", "Auth", "FTP"),
    *("_bind", "imap_open", "redential", "add_password", "SMTP", "pass_", "Sequelize", "bind_s"),
    *("Redis", "Minio", "Password"),
)
# jaydebeapi.connect(jclassname, url, driver_args, jars): driver_args a list or tuple ``[user,
# password]``, third or as the keyword ``driver_args=`` after up to 4 arguments
# (https://github.com/baztian/jaydebeapi; a dict's ``"password"`` key is the key rules'): the list's
# second item when it is a literal. The first is any item (``os.environ['U']``, ``u'sa'``) but none
# that closes the list (``['sa'], '/h2.jar'``: a user alone, then the jars, keeps the path).
_LIST_ITEM = (
    rf"""(?:{_LITERAL}|\((?:{_LITERAL}|[^()'"\n])*+\)|\[(?:{_LITERAL}|[^\[\]'"\n])*+\]"""
    r"""|[^,;()\[\]'"\\\n]++)*+"""
)
_JAYDEBEAPI = re.compile(
    rf"jaydebeapi\.connect{_OPEN}(?:(?:{_ARG}{_COMMA}){{2}}|(?:{_ARG}{_COMMA}){{0,4}}?driver_args\s*+=\s*+)"
    rf"[\[(]\s*+{_LIST_ITEM}{_COMMA}(?P<s>{_SECRET})"
)
# Calls found inside an earlier call's arguments (``s.login(u, FTP(h, u, 'pw'))``) read again, at
# most this many; past it the rest of that earlier call's arguments is the secret (fail closed:
# text that nests listed calls that often is no script).
MAX_NESTED_CALLS = 8


def code_call_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, "password") of every password literal given by position to a listed call."""
    if not any(t in text for t in _TRIGGERS):
        return []
    out: list[tuple[int, int, str]] = []
    covered = 0  # the end of the arguments read so far
    nested = 0
    if "jaydebeapi" in text:
        out.extend((*m.span("s"), "password") for m in _JAYDEBEAPI.finditer(text))
    o = _OPENING.search(text)
    while o is not None:
        m = _ARGUMENTS[_POSITION[o["n"]]].match(text, o.end())
        if m is not None:
            covered = max(covered, m.end())
        last = _LAST.get(o["n"])
        if last is not None and (m is None or m["s"] is None):
            only = _LAST_ARGUMENT[last].match(text, o.end())
            if only is not None and not (last == 1 and _A_SETTING.fullmatch(only["s"])):
                m = only
        if m is not None:
            s, e = m.span("s")
            if e > s:
                out.append((s, e, "password"))
        also = _ALSO_LAST.get(o["n"])
        if also is not None:
            third = _ALSO_LAST_ARGUMENT[also].match(text, o.end())
            if third is not None:
                out.append((*third.span("s"), "password"))
        o = _OPENING.search(text, o.end())
        if o is not None and o.start() < covered:
            nested += 1
            if nested > MAX_NESTED_CALLS:
                out.append((o.start(), covered, "password"))
                o = _OPENING.search(text, covered)
    return out
