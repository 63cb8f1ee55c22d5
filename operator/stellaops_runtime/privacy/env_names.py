"""Environment variables whose name says they hold a secret.

``PGPASSWORD=x``, ``AWS_SECRET_ACCESS_KEY=x``, ``DB_TOKEN=x``: the value is a
secret whatever it looks like, so these are filtered by name, both where a
``NAME=value`` appears in arguments (``env PGPASSWORD=x psql``, ``docker run -e
DB_PASSWORD=x``) and in a list of environment entries (``filter_env``: Tetragon
can export a process's environment, the container observer will pass env
lists). Values of other variables still go through the value rules.

Names are shell-style globs (``*`` any run of name characters, ``?`` one),
matched against the whole name, case-insensitively in env lists; in argument
text only upper-case names count as variables (``token_limit=5`` in a config
string is not an environment variable), so the argument rule needs an
upper-case name, except for a glob ending in a suffix that names nothing but a secret
(:data:`ANY_CASE_SUFFIXES`: ``db_psw=x``, Jenkins' ``creds_PSW`` of a lower-case binding), or in
one naming a credential whose value is no setting (:data:`SETTING_GUARDED_SUFFIXES`: ``db_creds=u:x``
goes, ``use_jwt=true`` stays).

A name in an env list may hold any character but ``=`` (Kubernetes accepts
``spring.datasource.password`` and ``db-password``; Spring and .NET read such
names), so a list entry's name is also matched with every character other
than a letter, a digit or ``_`` read as ``_`` (:func:`name_matches`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from stellaops_runtime.contracts.escapes import reading
from stellaops_runtime.privacy.base import (
    BLOCK_SCALAR,
    CONTINUED,
    DOUBLE_QUOTED,
    ESCAPED_DQ,
    ESCAPED_SQ,
    NOT_A_MARKER,
    NOT_A_PEM_START,
    REDACTED,
    SQ_PIECES,
)
from stellaops_runtime.privacy.key_words import SETTING_WORDS

DEFAULT_ENV_NAME_PATTERNS: tuple[str, ...] = (
    "*PASSWORD*",
    "*PASSWD*",
    "*PASSPHRASE*",
    "*PASS_PHRASE*",
    "*_PWD",
    "*_PASS",
    "PASS",
    "*PASS",  # glued: DBPASS, MYSQLPASS, PGPASS (not BYPASS, COMPASS, GIT_ASKPASS: NOT_A_GLUED_PASS)
    "*_PW",
    "*BINDPW",  # an LDAP bind password: LDAP_BINDPW (nslcd's bindpw)
    "*_PAT",  # a personal access token: GITHUB_PAT (R's gh, usethis), AZURE_DEVOPS_EXT_PAT (az devops)
    "PAT",
    "SSHPASS",
    # Jenkins' credentials() binding of a username/password: X=user:password and X_PSW (X_USR stays)
    "*_CREDS",
    "CREDS",
    # Bundler's credentials of a gem source, BUNDLE_<HOST>=user:password (BUNDLE_GEMS__CORP__COM: the
    # host's dots written __; BUNDLE_PATH, BUNDLE_WITHOUT have none)
    "BUNDLE_*__*",
    "*_PSW",
    "PSW",
    "*PASSCOMMAND",  # BORG_PASSCOMMAND: a command printing the passphrase (echo X)
    "*_KEY_PEM",  # rclone: RCLONE_SFTP_KEY_PEM (a private key)
    "*_KEY_BASE64",  # rclone: RCLONE_S3_SSE_CUSTOMER_KEY_BASE64
    "*TOKEN*",
    "*SECRET*",
    "*_KEY",
    "*SIGNING*KEY",  # Gradle's ORG_GRADLE_PROJECT_signingKey, signingInMemoryKey (an armored private key)
    "*WRITEKEY",  # HONEYCOMB_WRITEKEY
    "*_SALT",  # the WordPress image's WORDPRESS_AUTH_SALT ... WORDPRESS_NONCE_SALT, SIGNING_SALT
    "SALT",
    "*CREDENTIAL*",
    "*API_KEY*",
    "*APIKEY*",
    "*PRIVATE_KEY*",
    "*_AUTH",
    "AUTH",
    "JWT",
    "*_JWT",
    "*COOKIE*",
    "*SESSION_ID*",
    "*CONNECTION_STRING*",
    "*DSN",
    "PGPASSWORD",
    "MYSQL_PWD",
    "REDISCLI_AUTH",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)

_NAME_CHAR = "[A-Za-z0-9_]"
# A value that is a setting, no secret: a switch word or a number (``use_jwt=true``, ``load_creds=1``).
_SETTING = rf"(?i:{'|'.join(SETTING_WORDS)}|\d+)"

# After a path's key (group ``d`` of argument_regex): its closing quote and bracket
# (``.env["db_creds"]``), and an update's or a comparison's first character (``|=``, ``!=``)
_D_END = r"""(?(d)"?+\]?+[ \t]*+[|!]?+)"""

# Glob suffixes matched in any case in argument text too: ``_PSW`` is Jenkins' password suffix and
# an abbreviation of nothing else (``db_psw=x ./run``, ``nexus_creds_PSW``); ``token_limit=5`` and
# ``sort_key=name`` stay (their names are no variable's in lower case).
ANY_CASE_SUFFIXES: tuple[str, ...] = ("_PSW",)
# Suffixes matched in any case in argument text unless the value is a setting: ``db_creds=u:pw``,
# ``sentry_dsn=https://key@host/1``, ``db_jwt=eyJ…``, ``db_salt=x`` lose their values; ``use_jwt=true``,
# ``load_creds=1`` (a switch word of key_words.SETTING_WORDS or a number) stay. A suffix counts only
# when a configured glob matches a name ending in it (``*_CREDS``, ``*DSN``, ``*_JWT``, ``*_SALT``);
# an entry without a leading ``_`` is a whole name (``sshpass=x``, the glob ``SSHPASS``). ``_PAT``
# is not one: in lower case it most often names a pattern (``file_pat=*.log``).
SETTING_GUARDED_SUFFIXES: tuple[str, ...] = ("_CREDS", "_DSN", "_JWT", "_SALT", "SSHPASS")
# A camelCase or PascalCase key of a mapping (a Helm values file: ``githubPat: x``, ``dbCreds: u:x``) counts
# when its snake case (``GITHUB_PAT``) ends in one of these and a glob takes it, unless its value is a
# setting (``useJwt: true``): the names no key word ends (``dbPassword``, ``apiToken`` are the key rules').
# ``_KEY`` is not one: ``sortKey``, ``primaryKey``, ``cacheKey`` name no secret.
CAMEL_CASE_SUFFIXES: tuple[str, ...] = (
    "_PAT", "_CREDS", "_CREDENTIAL", "_CREDENTIALS", "_DSN", "_JWT", "_SALT", "_KEY_PEM", "_KEY_BASE64",
)  # fmt: skip

# The glob ``*PASS`` takes a name whose last part (after ``_``, ``.`` or ``-``) ends in PASS glued to
# what names the password's service (``DBPASS``, ``MYSQLPASS``, ``APP_ROOTPASS``), unless that part is
# one of these words with "pass" after it: English (BYPASS, COMPASS), a program asking for a password
# (GIT_ASKPASS), a test's outcome (XPASS, NOPASS), a filter or render pass (LOWPASS, RENDERPASS, TWOPASS),
# a password manager's name (LASTPASS, KEEPASS). Found by a grep of Debian's /usr/share, /etc, the Python
# libraries and the test fixtures for upper-case names ending in PASS (test_privacy_glued_pass_names.py).
NOT_A_GLUED_PASS: tuple[str, ...] = (
    "BY", "COM", "ENCOM", "SUR", "TRES", "OVER", "UNDER", "RE", "OUT",
    "ASK",
    "X", "NO", "EX",
    "LOW", "HIGH", "BAND", "ALL", "NOTCH", "MULTI", "SINGLE", "ONE", "TWO", "FIRST", "SECOND", "THIRD",
    "SUB", "RENDER", "PRE", "POST", "DEPTH", "SHADOW", "BLUR", "LIGHT",
    "LAST", "KEE", "GO",
)  # fmt: skip
_GLUED_PASS = (
    rf"(?:{_NAME_CHAR}*[_.-])?(?!(?:{'|'.join(NOT_A_GLUED_PASS)})PASS(?!{_NAME_CHAR}))"
    rf"(?:(?![_.-]){_NAME_CHAR})*PASS"
)


def glob_to_regex(glob: str) -> str:
    """A name glob as a regex fragment (no anchors); ``*PASS`` is :data:`NOT_A_GLUED_PASS`'s rule."""
    if glob.upper() == "*PASS":
        return _GLUED_PASS
    out = []
    for ch in glob:
        if ch == "*":
            out.append(f"{_NAME_CHAR}*")
        elif ch == "?":
            out.append(_NAME_CHAR)
        else:
            out.append(re.escape(ch))
    return "".join(out)


def name_regex(globs: Iterable[str]) -> re.Pattern[str]:
    """One case-insensitive regex matching a whole name against any of ``globs``."""
    return re.compile("(?:" + "|".join(glob_to_regex(g) for g in globs) + r")\Z", re.IGNORECASE | re.ASCII)


_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]")


_CAMEL = re.compile(r"[A-Za-z][a-z0-9]*+(?:[A-Z]++[a-z0-9]*+)++", re.ASCII)
_CAMEL_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", re.ASCII)


def camel_case_name(name: str) -> str:
    """A camelCase or PascalCase ``name``'s snake case (``githubPat``: ``GITHUB_PAT``) when it ends in a
    word of :data:`CAMEL_CASE_SUFFIXES`; "" for any other name."""
    if not _CAMEL.fullmatch(name):
        return ""
    snake = _CAMEL_BREAK.sub("_", name).upper()
    return snake if snake.endswith(CAMEL_CASE_SUFFIXES) else ""


def name_matches(rx: re.Pattern[str], name: str) -> bool:
    """Whether an env list entry's ``name`` matches ``rx`` (a :func:`name_regex`), as it is, with
    each character outside ``[A-Za-z0-9_]`` read as ``_`` (``spring.datasource.password``), or in snake
    case (``githubPat``: :func:`camel_case_name`)."""
    if rx.match(name):
        return True
    plain = _NOT_NAME_CHAR.sub("_", reading(name))  # look-alikes as ASCII, escapes decoded (escapes.py)
    if plain != name and rx.match(plain) is not None:
        return True
    snake = camel_case_name(plain)
    return bool(snake) and rx.match(snake) is not None


def argument_regex(globs: Iterable[str], *, pem_rule: bool = False) -> re.Pattern[str]:
    """``NAME=value`` in argument text with an upper-case NAME matching a glob: group ``s`` is the value.

    ``pem_rule``: the ``pem_private_key`` rule ran first, so a value starting a private key
    (``PRIVATE_KEY=-----BEGIN …``) is left to it (its BEGIN line stays, its body is gone).
    """
    globs = list(globs)
    alternatives = [
        f"(?i:{glob_to_regex(g)})"
        if g.upper().endswith(ANY_CASE_SUFFIXES)
        else glob_to_regex(g.upper()).replace("[A-Za-z0-9_]", "[A-Z0-9_]")
        for g in globs
    ]
    matched = name_regex(globs) if globs else None
    suffixes = [
        s.lower() for s in SETTING_GUARDED_SUFFIXES if s[0] == "_" and matched and matched.match("X" + s)
    ]
    whole = [s.lower() for s in SETTING_GUARDED_SUFFIXES if s[0] != "_" and matched and matched.match(s)]
    guarded = ([f"{_NAME_CHAR}*(?:{'|'.join(suffixes)})"] if suffixes else []) + whole
    if guarded:  # after the upper-case ones: ``DB_JWT=1`` still loses its value
        alternatives.append(
            rf"(?i:{'|'.join(guarded)})(?={_D_END}[ \t]*+\\*=[ \t]*+(?!{_SETTING}(?![^\s\"';&])))"
        )
    # a camelCase or PascalCase name (Helm's ``--set githubPat=x``) ending in a word of
    # CAMEL_CASE_SUFFIXES a glob takes, unless its value is a setting (``--set useJwt=true,b=1``)
    camel = [
        "".join(f"(?:{part.capitalize()}|{part})" for part in s.split("_") if part)
        for s in CAMEL_CASE_SUFFIXES
        if matched and matched.match("X" + s)
    ]
    if camel:
        alternatives.append(
            rf"[A-Za-z][A-Za-z0-9]*?(?<=[a-z0-9])(?:{'|'.join(camel)})"
            rf"(?={_D_END}[ \t]*+\\*=[ \t]*+(?!{_SETTING}(?![^\s\"';&,])))"
        )
    names = "|".join(alternatives)
    # The value runs to whitespace (``DB_KEY=a&b`` loses ``a&b``); after ``?``, ``&`` or ``;``
    # (group ``q``) the name is one of a URL query or a connection string's (or follows a
    # shell's ``;`` or ``&``), and there the value ends at the next ``&`` or ``;``.
    # After ``.`` (group ``d``) the name ends a path of keys: Helm's ``--set env.DBPASS=x`` (its value
    # runs to whitespace, the ``,``-joined settings after it too), yq's and jq's ``.env.DBPASS = "x"``
    # (blanks around ``=``, an update ``|=``, a comparison ``==``/``!=``).
    # A path's key may be quoted (yq's and jq's ``.env["DBPASS"] = "x"``, ``.env."DBPASS" = "x"``).
    start = r"""(?:(?<=[?&;])(?P<q>)|(?:(?<=\.)|(?<=\.")|(?<=\["))(?P<d>)|(?<![\w.$?&;-]))"""
    # Blanks before ``=`` (an INI or TOML line, ``GITHUB_PAT = "x"``; no shell assignment has them) too.
    # A Makefile's assignments too (``DBPASS ?= x``, ``:=``, ``::=``, ``:::=``, ``+=``, ``!=``: GNU make's
    # manual, 6.2 and 6.5; blanks around them or none: ``DBPASS?=x``).
    sep = (
        r"""(?(d)"?+\]?+[ \t]*+(?:[|=!]=|\\*=)[ \t]*+"""
        r"""|(?:\\*=|[ \t]++=(?![=~>])[ \t]*+|[ \t]*+(?:[?+!]|:{1,3}+)=(?![=~>])[ \t]*+))"""
    )
    # Unquoted, it goes on over a blank escaped with a backslash, one shell word (``db_psw=a\\ b``), as
    # the key rules' value does (key_rules._WORD_VALUE); one backslash per step: a run is read once; a
    # vertical tab or a form feed ends none (``DBPASS=a\vb`` kept ``b``).
    # (continued on the next line by a backslash at its end too: base.CONTINUED)
    word = rf"""(?:\\[ \t]|[^ \t\r\n"'])(?:\\[ \t]|{CONTINUED}|[^ \t\r\n])*"""
    # (quoted by an escaped single quote too, a script quoted again: ``DBPASS='"'"'a b'"'"'``, RP8)
    # (in escaped double quotes at any depth: ``sh -c "sh -c \\"env DBPASS=\\\\\\"a b\\\\\\"\\""``)
    quoted = rf"""{DOUBLE_QUOTED}|{ESCAPED_DQ}|{ESCAPED_SQ}|'[^']*'?{SQ_PIECES}"""
    value = rf"""(?P<s>{quoted}|(?(q)[^\s"';&]+|{NOT_A_MARKER}{word}))"""
    guard = NOT_A_PEM_START if pem_rule else ""
    # a bash array's element (``DBPASS[0]=x``, ``GITHUB_PAT[1]=x``: s51), glued to ``=`` as bash assigns it,
    # or to ``+=`` (``DBPASS[0]+=x``: s51 RP)
    index = r"(?:\[[\w$.-]{0,64}+\](?=\+?=))?+"
    return re.compile(
        rf"{start}(?:{names}){index}{sep}(?=\S){guard}{value}", re.ASCII
    )  # ``PASSWORD\\=x`` (escaped) too


def pair_regex(globs: Iterable[str]) -> re.Pattern[str]:
    """``name: NAME`` then ``value: x``, NAME matching a glob (any case): group ``s`` is the value.

    An environment entry as Kubernetes, Docker's API and ECS write it, in JSON or YAML
    (``kubectl patch -p '{"env":[{"name":"DB_PASSWORD","value":"x"}]}'``,
    ``- name: DB_PASSWORD\n  value: x``), its quotes escaped too (JSON in a shell string).
    """
    # A name may hold dots and dashes here (``spring.datasource.password``).
    names = "|".join(glob_to_regex(g).replace(_NAME_CHAR, r"[\w.-]") for g in globs)
    q = r"""(?:(?<!\\)\\*["'])?"""  # a run of backslashes is read from its first only: linear
    # (a YAML block scalar too: ``value: >-`` then its lines, a long value in a manifest, session 50)
    value = (
        rf"""(?P<s>{BLOCK_SCALAR}|\\*"(?:[^"\\]|\\(?!")[\s\S])*(?:\\*")?|'[^']*'?"""
        r"""|[^\s"',}\]\\][^\r\n"',}\]]*)"""
    )
    return re.compile(
        rf"(?<![\w.-]){q}name{q}[ \t]*[:=]\s*{q}(?:{names}){q}\s*,?\s*{q}value{q}[ \t]*[:=][ \t]*{value}",
        re.IGNORECASE | re.ASCII,
    )


def value_first_regex(globs: Iterable[str]) -> re.Pattern[str]:
    """``value: x`` then ``name: NAME``, NAME matching a glob (any case): group ``s`` is the value.

    The same entry with its members the other way round (``{"value":"x","name":"DB_PASSWORD"}``,
    written by hand or by a serializer that keeps insertion order). The value must end before the
    name: quoted (to its closing quote), or unquoted up to the end of its line, a comma or a
    brace, at most 256 characters (possessive: each ``value`` of a text costs at most that).
    """
    names = "|".join(glob_to_regex(g).replace(_NAME_CHAR, r"[\w.-]") for g in globs)
    q = r"""(?:(?<!\\)\\*["'])?"""
    value = (
        r"""(?P<s>\\*"(?:[^"\\]|\\(?!")[\s\S])*+\\*"|'[^']*+'"""
        r"""|[^\s"',}\]\\][^\r\n"',}\]]{0,255}+)"""
    )
    # other members of the entry may stand between (``"value": "x", "type": "t", "name": "DB_PASSWORD"``,
    # s50 RP's left-alone 2): up to four, each a quoted string or a short plain word; possessive, bounded
    other = (
        rf"""(?:(?!{q}name{q}[ \t]*[:=]){q}[\w.-]{{1,64}}+{q}[ \t]*[:=][ \t]*"""
        r"""(?:\\*"(?:[^"\\]|\\(?!")[\s\S]){0,256}+\\*"|[^\s"',}\]\\]{1,64}+)\s*,?\s*){0,4}+"""
    )
    return re.compile(
        rf"(?<![\w.-]){q}value{q}[ \t]*[:=][ \t]*{value}"
        rf"\s*,?\s*{other}{q}name{q}[ \t]*[:=]\s*{q}(?:{names}){q}(?![\w.-])",
        re.IGNORECASE | re.ASCII,
    )


def literal_triggers(globs: Iterable[str]) -> tuple[str, ...]:
    """Lower-case literal parts of the globs; an argument text holding none cannot match.

    Empty when a glob has no literal part (``*``): then every text may match. A glob ending in a
    word of :data:`CAMEL_CASE_SUFFIXES` adds that word without ``_`` (``keypem``), as a camelCase name
    writes it.
    """
    parts: set[str] = set()
    for g in globs:
        lit = max(re.split(r"[*?]", g), key=len).lower()
        if not lit:
            return ()
        parts.add(lit)
        # a camelCase name has no ``_`` (``sshKeyPem``: CAMEL_CASE_SUFFIXES): its suffix's words joined
        parts.update(s.replace("_", "").lower() for s in CAMEL_CASE_SUFFIXES if g.upper().endswith(s))
    return tuple(sorted(parts))


def filter_env(
    entries: Iterable[str],
    *,
    name_patterns: Iterable[str] = DEFAULT_ENV_NAME_PATTERNS,
    redact_value: Callable[[str], str] | None = None,
) -> list[str]:
    """Filter ``NAME=value`` environment entries.

    A name matching ``name_patterns`` (case-insensitively, :func:`name_matches`) keeps its name and
    loses its value (``NAME=[REDACTED]``); any other entry's value goes through
    ``redact_value`` (the value rules) when given. An entry without ``=`` is
    passed to ``redact_value`` whole. Order and count are kept.
    """
    globs = list(name_patterns)
    rx = name_regex(globs) if globs else None
    out = []
    for entry in entries:
        name, eq, value = entry.partition("=")
        if not eq:
            out.append(redact_value(entry) if redact_value else entry)
        elif rx is not None and name_matches(rx, name):
            out.append(f"{name}={REDACTED}")
        else:
            out.append(f"{name}={redact_value(value) if redact_value else value}")
    return out
