"""The default secret patterns, named: our own rules, in the order the combined regex tries them.

Process arguments are where secrets leak into runtime evidence (``--password=``,
``PGPASSWORD=``, bearer tokens passed to ``curl -H``, connection strings). This
module owns the list of what the privacy filter recognizes by default in its
one-regex pass (``DEFAULT_PATTERNS``: the rules here, then ``cli_flags``'
``CLI_FLAG_SECRET``, ``provider_tokens`` and ``personal_data``), kept apart
from the filter so that the list can be read and reviewed on its own.
detect-secrets' rules (``library_rules``), client short options
(``cli_options``) and environment names (``env_names``) run after it.

Every pattern has a name (the key of ``PrivacyFilter.redactions_by_pattern``
and of the metrics) and a regex with exactly one group named ``s``: the secret.
Only that group is replaced with ``[REDACTED]``; the text around it (the key,
the flag, the scheme and user of a URL, a token's well-known prefix) is kept so
that a human still sees what kind of thing was there. A pattern whose ``s``
group spans the whole match (JWT, e-mail) replaces the whole match.

Decisions worth knowing (the corpus in tests/fixtures/privacy proves them):

* a key counts only when the secret word ends the key: ``--password=x``,
  ``db_password=x`` and ``PGPASSWORD=x`` are redacted; ``--password-file=/run/x``
  and ``--token-file=/var/run/x`` are paths to secrets, not secrets, and are kept;
* a value runs to whitespace (a password may hold ``&``, ``;``, a quote), except a
  key's right after ``?``/``&``/``#`` (a URL query: ends at ``&``) or ``;`` (an ODBC
  string: ends at ``;``, braces ``{a;b}`` kept whole);
* the flag form with a space (``--password x``) needs a leading ``-`` and a
  value that does not start with ``-`` (the next flag); ``--no-password`` is a
  switch, not a key;
* ``-p<secret>`` is too ambiguous (``-p 8080``, ``-p tcp``) to match for any
  program: short options are matched per client in ``cli_options``;
* e-mail addresses need a dot and a letters-only TLD and no ``:`` after it (``git@github.com:o/r``,
  ``image@sha256:...`` stay); the whole address goes (a personal domain identifies a person too);
* ``scheme://user:password@host`` keeps scheme, user and host; ``http://host:8080/`` is no credential;
* a PEM private key goes from after its BEGIN line to its END line (or the end of a cut text).

``base.compile_patterns`` joins the patterns a field triggers into one
alternation, so one pass over a field finds every secret and
``match.lastgroup`` says which pattern matched.
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import (
    BLOCK_SCALAR,
    DOUBLE_QUOTED,
    NOT_A_MARKER,
    NOT_A_PEM_START,
    REDACTED,
    WORD_VALUE,
    CompiledPatterns,
    SecretPattern,
    compile_patterns,
    first_char_alternatives,
    number_groups,
)
from stellaops_runtime.privacy.cli_flags import CLI_FLAG_SECRET
from stellaops_runtime.privacy.cut_tail import (
    JDBC_PASSWORD,
    TRUNCATED_TAIL,
    TRUNCATED_URL_TAIL,
    after_id_and_blanks,
)
from stellaops_runtime.privacy.encoded_keys import BASE64_PEM_KEY
from stellaops_runtime.privacy.flag_values import FLAG_VALUE_PATTERNS
from stellaops_runtime.privacy.http_headers import AUTHORIZATION_ALTERNATIVES, COOKIE_HEADER
from stellaops_runtime.privacy.key_words import PASSWORD_WORDS, PW_WORDS, SECRET_WORDS
from stellaops_runtime.privacy.personal_data import PERSONAL_DATA_PATTERNS
from stellaops_runtime.privacy.provider_tokens import PROVIDER_PATTERNS
from stellaops_runtime.privacy.stdin_secrets import STDIN_SECRET_ALTERNATIVES, STDIN_TRIGGERS

__all__ = [
    "DEFAULT_PATTERNS",
    "DEFAULT_PATTERN_NAMES",
    "PASSWORD_WORDS",
    "REDACTED",
    "SECRET_WORDS",
    "TRUNCATED_TAIL",
    "TRUNCATED_URL_TAIL",
    "CompiledPatterns",
    "SecretPattern",
    "compile_patterns",
]


# An SQL string literal: single quotes (a quote inside is doubled), optionally with
# a national or escape-string prefix (``N'...'`` in SQL Server, ``E'...'`` in
# PostgreSQL), or double quotes (MySQL; an Oracle quoted identifier); the closing
# quote is optional (the text may have been truncated).
_SQL_LITERAL = rf"""(?:[Ee]'(?:[^'\\]|\\[\s\S]|'')*'?|[Nn]?'(?:[^']|'')*'?|{DOUBLE_QUOTED})"""

# A value quoted with escaped quotes, inside a double-quoted shell or JSON string
# (``sh -c "app --password=\\"a b\\""``): to the next ``\\"``.
_ESCAPED_QUOTED = r'\\"(?:[^"\\]|\\(?!")[\s\S])*(?:\\")?'
# bash's ANSI-C quoting (``$'pa\\'ss word'``): to the closing quote that is not escaped.
_ANSI_C_QUOTED = r"\$'(?:[^'\\]|\\[\s\S])*+'?"
# A quoted value: double quotes (``\"`` inside does not end it), single quotes, an SQL
# ``N'...'``/``E'...'`` literal, escaped quotes; the closing quote is optional (the text may
# have been truncated).
_QUOTED = rf"""{DOUBLE_QUOTED}|[NnEe]?'[^']*'?|{_ESCAPED_QUOTED}|{_ANSI_C_QUOTED}"""
# A key's or flag's value: quoted, or a run up to whitespace (base.WORD_VALUE: a password may
# hold ``&``, ``;`` or a quote); a marker the text already holds is none (base.NOT_A_MARKER).
# The run keeps a quote inside it (``it's``) but not one that ends it before whitespace or
# the end: Tetragon quotes an argument holding a space (``-H "X-Api-Key: x"``).
# A redirection is no value either: ``psql --password <<EOF`` and ``mysql --password < <(echo X)``
# prompt for the password, which the here-document or the substitution gives (here_docs.py).
# A call or a tuple of arguments, one quoted among its first, is one value (Python's
# ``auth=('user', 'password')``, ``auth = HTTPBasicAuth(user, 'password')``): to its ``)`` (or a cut
# text's end), its arguments on one line or several, bounded, possessive.
_CALL_VALUE = r"""[\w.]{0,65}+\([^()'"]{0,64}+['"][^()]{0,512}+(?:\)|\Z)"""
_WIDE_VALUE = (
    rf"""{NOT_A_PEM_START}(?!<[<(\s])(?:{BLOCK_SCALAR}|{_QUOTED}|{_CALL_VALUE}|{NOT_A_MARKER}{WORD_VALUE})"""
)
# The value of a key right after ``?``, ``&`` or ``#`` (a URL query or fragment, a form
# body: ``?access_token=x&limit=10``): a query's value ends at ``&`` or ``#`` (a ``&`` in
# it is written ``%26``).
_QUERY_VALUE = rf"""(?:{_QUOTED}|[^\s"'&#]+)"""
# The value of a key right after ``;`` (an ODBC or ADO.NET connection string:
# ``Server=db;Pwd=x;Database=y``): braced (``{a;b}``, ``}}`` is a ``}`` inside) or quoted,
# else a run up to the next ``;`` or double quote. ODBC keeps ``&`` and spaces in a value,
# so a space ends it only before ``;``, a quote, the next flag (`` -Q``) or the end of the
# text. The whitespace is taken possessively: a field of spaces costs one scan, not one per space.
_ODBC_VALUE = (
    rf"""(?:\{{(?:[^}}]|\}}\}})*\}}?|{_QUOTED}"""
    r"""|[^\s;"'](?:[^\s;"]|\s++(?=[^\s;"-]))*)"""
)
# Between a key and its value: ``=``, ``:``, ``:=`` (make, Go; make's ``::=``, ``?=``, ``+=`` too),
# Perl's and Ruby's `` => ``
# (``password=>x`` keeps ``>x``; the ``=`` of ``=> `` alone is none), escaped (``PASSWORD\\=x``),
# after the key's closing quote, escaped too; the ``:`` of ``:=`` or ``::=`` is no separator of
# its own (read again, ``:= [REDACTED]`` would lose its ``=``).
_SEP = r"(?:\\*[\"'])?(?:\s+=>|=>(?=\s)|\s*[:?+]:{0,2}=|\s*\\*(?:=|:(?!:*=))(?!>\s))\s*"
# The same with ``=`` only: a key right after ``/`` (``/run/password=x``, ``https://h/v1/token=x``)
# is a key when ``=`` follows it; ``:`` after it is a path (``-v /etc/passwd:/etc/passwd:ro``).
_SEP_EQ = r"(?:\\*[\"'])?\s*\\*=(?!>\s)\s*"
# What a key may carry before its credential word (``PG`` in ``PGPASSWORD``, ``db_``,
# ``spring.datasource.``).
_KEY_PREFIX = r"[\w.-]*?"


def _in_query_or_odbc(keyword: str, sep: str) -> list[str]:
    """A key ending in ``keyword`` right after ``?``/``&``/``#`` or ``;``, with the value of that context.

    These alternatives start at the ``?``, ``&``, ``#`` or ``;`` before the key, so in the
    one combined regex they match before the key's own alternative (which starts at the
    credential word, further right) and the query's or ODBC string's value rule wins.
    """
    return [
        rf"[?&#]{_KEY_PREFIX}(?:{keyword}){sep}(?P<s>{_QUERY_VALUE})",
        rf";[ \t]*{_KEY_PREFIX}(?:{keyword}){sep}(?P<s>{_ODBC_VALUE})",
    ]


def _keyed(keywords: list[str], *, bare_space: bool = False) -> tuple[list[str], list[str]]:
    """A key ending in one of ``keywords``, as (heads, alternatives with their own values).

    ``[prefix]KEYWORD=value``, ``KEYWORD: value``, ``"KEYWORD": value`` or ``--[prefix]KEYWORD
    value``: ``keywords`` (regex fragments) match case-insensitively and must end the key, which
    may have any prefix (``db_password``, ``PGPASSWORD``). A keyword right after ``/`` is a key
    only before ``=`` (``/run/password=x``); before ``:`` it is a path (``/etc/passwd:``). A value
    runs to whitespace, unless the key follows ``?``, ``&`` or ``#`` (a URL query: it ends at
    ``&``) or ``;`` (an ODBC string: it ends at ``;``): those alternatives, and an XML element's,
    carry their own values. ``bare_space`` also accepts ``KEYWORD value`` without a dash, for keys
    specific enough (``aws configure set aws_secret_access_key VALUE``).

    The heads end where the wide value starts, and ``_valued`` gives them one: ``(?:A|B)V`` finds
    what ``AV|BV`` did, in the same order (once 90 copies of ``_WIDE_VALUE``, half the whole set's
    characters: tests/unit/test_privacy_shared_value.py). The other alternatives now come after the
    heads, which changes no match: only an alternative whose first character is at a position can
    match there, and theirs (``<``, ``?&#``, ``;``) are never a key's (a letter) or a flag's (``-``).
    """
    if not all(k[:1].isalpha() for k in keywords):  # the reordering above needs it
        raise ValueError(f"a key word must start with a letter: {keywords}")
    kw = "|".join(keywords)
    flag = rf"-(?<![\w./-]-)-?(?!-|(?i:no)-)[\w.-]*?(?i:{kw})\s+(?=[^\s-])"
    sep = rf"(?:{_SEP}|\s+(?=[^\s-]))" if bare_space else _SEP
    # In the keywords' order; which one of ``k``'s may start at a position depends only on the
    # character there and the one before it (``/`` or not).
    keys = "|".join(alt for k in keywords for alt in first_char_alternatives(k, tail=r"(?<!/@)"))
    path_keys = "|".join(alt for k in keywords for alt in first_char_alternatives(k, tail=r"(?<=/@)"))
    # An XML element named for the secret: ``<password>x</password>``, ``<db:password>``.
    xml = rf"<(?:[\w.-]++:)?{_KEY_PREFIX}(?i:{kw})(?:\s[^<>]*)?>(?P<s>[^<\s][^<]*)"
    heads = [flag, rf"(?:{keys}){sep}", rf"(?:{path_keys}){_SEP_EQ}"]
    return heads, [xml, *_in_query_or_odbc(f"(?i:{kw})", r"[\"']?\s*=\s*")]


def _valued(heads: list[str], guard: str = "") -> str:
    """The heads, then ``guard`` (a lookahead refusing a value) and the wide value, once (group ``s``)."""
    return rf"(?:{'|'.join(heads)}){guard}(?P<s>{_WIDE_VALUE})"


_PASSWORD_HEADS, _PASSWORD_OTHERS = _keyed(list(PASSWORD_WORDS))
_PW_HEADS = [
    r"-(?<![\w./-]-)-?(?:[A-Za-z0-9]+[-_.])*(?:pw|PW)(?:=|\s+(?![-\s]))",
    rf"(?:{'|'.join(PW_WORDS)}){_SEP}",
]
# The ``password`` and ``pw`` heads share one value, the ``pw`` ones after as before; the XML, query
# and ODBC alternatives now after them start with ``<``, ``?&#`` or ``;``, never as a head (``-pP``).
_PASSWORD = "|".join(
    [
        _valued(_PASSWORD_HEADS + _PW_HEADS),
        *_PASSWORD_OTHERS,
        *_in_query_or_odbc("|".join(PW_WORDS), r"[\"']?\s*=\s*"),
        *STDIN_SECRET_ALTERNATIVES,  # ``echo X | chpasswd``, ``| docker login --password-stdin``, .pgpass
    ]
)
_AWS_HEADS, _AWS_OTHERS = _keyed(
    [r"aws[_-]?secret[_-]?access[_-]?key", r"aws[_-]?secret[_-]?key"], bare_space=True
)
_SECRET_HEADS, _SECRET_OTHERS = _keyed(list(SECRET_WORDS))

# A log level, a switch or an authentication method alone is no token: a logger named after its
# package keeps its level (``-Dlogging.level.com.example.auth=DEBUG``, ``log4j.logger.x.secret=INFO``),
# an ``auth`` setting its method or switch (``--auth=oidc``, ``-Dauth=none``, ``auth=true``).
_NOT_A_SETTING_WORD = (
    r"(?!(?i:trace|debug|info|warn|warning|error|fatal|off|on|none|true|false|yes|no|enabled|disabled"
    r"|oidc|ldap|basic|bearer|jwt|oauth2?|saml|kerberos|x509|mtls|tls|anonymous|iam)(?![^\s\"',;&}]))"
)

# Token-ish run: base64, base64url and the usual token punctuation.
_TOKEN68 = r"[A-Za-z0-9._~+/-]+=*"
# A bare ``Bearer``/``Basic`` credential must look like one (a digit, a symbol or
# an upper-case letter after a lower-case one) so ``Basic authentication`` stays; and it is no
# setting ``name=value`` (a token68 holds ``=`` only at its end): in ``--set auth.type=basic
# auth.enabled=true`` the scheme word is a setting's value and ``auth.enabled=true`` the next one;
# nor the next flag (``--auth-type=basic --auth-user=bob``, ``--auth-scheme Bearer -v``): a flag's
# name is lower-case words; a base64url token may start with ``--`` too (``--Tk9xQ2…``).
_CREDENTIAL_LOOKING = (
    r"(?![A-Za-z_][\w.-]*=[^\s=]|--[a-z][a-z0-9]*+(?:[-_.][a-z0-9]++)*+(?![^\s=])|-[A-Za-z][A-Za-z0-9]?(?!\S))"
    r"(?=[A-Za-z]*(?:[0-9._~+/=-]|[a-z][A-Za-z]*[A-Z]))"
)

# An OAuth 2.0 authorization code (RFC 6749 4.1.2; the device flow's ``device_code``) in a URL's
# query or fragment: exchanged for a token, it is one. Only these key names (``country_code``,
# ``zipcode`` stay).
# The separator before it may be escaped: HTML's ``&amp;`` (its ``;``), a percent-encoded URL
# inside another (``%3Fcode%3DX``: the reading decodes the ``=``, not ``?`` or ``&``), JSON's ``\u0026``.
# A shell's ``$`` or backquote is none (``x=1;code=$(curl …)``, ``?code=$CODE``): a code is a word.
# The code ends at a ``;`` that starts the next ``key=`` (``?a=1;code=X;state=y`` keeps ``;state=y``).
_OAUTH_CODE = (
    r"(?:[?&#;]|%(?:3[Ff]|26|23)|\\u0026)(?i:code|auth_code|authorization_code|device_code)"
    rf"=(?![$`])(?P<s>{_QUOTED}|(?:[^\s\"'&#;]|;(?![\w.-]+=))++)"
)

# Every alternative of every pattern starts with a literal character or a
# character class (lookbehinds come after the first character, e.g.
# ``A(?<![A-Za-z0-9]A)KIA``): that keeps the one combined regex at tens of ns
# per character instead of hundreds. ``(?P<w>)`` at the end of a pattern means
# "the whole match is the secret".
DEFAULT_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern(
        "pem_private_key",
        # PEM and OpenSSH (-----BEGIN ... PRIVATE KEY-----), SSH2/RFC 4716
        # (---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----) and PuTTY .ppk text.
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?P<s>[\s\S]+?)(?=-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)"
        r"|-(?<![\w-]-)--- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"
        r"(?P<s_2>[\s\S]+?)(?=---- END SSH2 ENCRYPTED PRIVATE KEY ----|\Z)"
        r"|P(?<![\w-]P)uTTY-User-Key-File-[0-9]:(?P<s_3>[\s\S]+)"
        # The rest of a key whose start is in another field (a traced write() of a key file in
        # two buffers): from the start of the field to its END line, when no BEGIN line comes
        # first; a PuTTY key's private lines.
        r"|\A(?P<s_4>(?:(?!-----BEGIN |---- BEGIN )[\s\S])+?)"
        r"(?=-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|---- END SSH2 ENCRYPTED PRIVATE KEY ----)"
        r"|P(?<![\w-]P)rivate-Lines:(?P<s_5>[\s\S]+)",
        triggers=("-----begin", "---- begin ssh2", "putty-user-key-file-", "private key", "private-lines:"),
    ),
    BASE64_PEM_KEY,  # the same key encoded in base64 (encoded_keys.py)
    SecretPattern(
        "connection_string",
        # scheme://user:password@host: keep scheme, user and host. The password
        # runs to the last ``@`` before whitespace or ``/`` (``p@ss`` is allowed).
        # A user with an empty password or GitHub's ``x-oauth-basic`` placeholder is
        # itself the token (``https://<token>:x-oauth-basic@github.com/org/repo``).
        r":(?<=[A-Za-z0-9]:)//(?:(?P<s_2>[^\s:/@]+):(?:x-oauth-basic)?(?=@)"
        r"|[^\s:/@]*:(?P<s>[^\s/]+)(?=@))"
        # Oracle's JDBC thin/OCI URL: jdbc:oracle:thin:user/password@host (no "//" before the user).
        # The password stops at the next ``jdbc:oracle:`` too (JDBC_PASSWORD).
        rf"|j(?<![\w-]j)dbc:oracle:(?:thin|oci8?|kprb):[^\s/@:]++/(?P<s_3>{JDBC_PASSWORD})(?=@)",
        triggers=("://", "jdbc:oracle:"),
    ),
    SecretPattern(
        "authorization_header",
        number_groups(
            "|".join(
                [
                    *AUTHORIZATION_ALTERNATIVES,
                    rf"[Bb](?<![\w-][Bb])(?i:earer|asic)\s+(?P<s>{_CREDENTIAL_LOOKING}{_TOKEN68})",
                ]
            )
        ),
        triggers=("authorization", "bearer", "basic"),
    ),
    SecretPattern(
        "jwt",
        r"e(?<![A-Za-z0-9_-]e)yJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(?P<w>)"
        # glued to a word (``tok_eyJ…``): a header of at most 512 characters, so a run of ``eyJ`` costs
        # 512 characters per start, not the rest of the run
        r"|e(?<=[A-Za-z0-9_-]e)yJ[A-Za-z0-9_-]{4,512}+\.eyJ[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]*+(?P<w_2>)",
        triggers=("eyj",),
    ),
    SecretPattern(
        "aws_access_key_id",
        r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)(?P<s>[A-Z0-9]{16})(?![A-Za-z0-9])",
        triggers=("akia", "asia"),
    ),
    SecretPattern(
        "aws_secret_access_key",
        number_groups(
            "|".join([_valued(_AWS_HEADS), *_AWS_OTHERS])
            # The secret right after its access key id and one separator, with no key name:
            # s3fs's ``ID:SECRET`` line, a credentials CSV, positional arguments (a fixed-width
            # lookbehind: the id is always 20 characters); also both quoted, as two arguments of a
            # call or a quoted CSV (``('AKIA…', 'SECRET')``, ``"AKIA…","SECRET"``).
            + r"|[A-Za-z0-9/+](?:(?<=A[KS]IA[A-Z0-9]{16}[:,;\s][A-Za-z0-9/+])"
            r"|(?<=A[KS]IA[A-Z0-9]{16}[\"'][:,;][\"'][A-Za-z0-9/+])"
            r"|(?<=A[KS]IA[A-Z0-9]{16}[\"'][:,;]\s[\"'][A-Za-z0-9/+])"
            # or a run of up to 32 blanks (two spaces, tabs, ``,`` and spaces: a column-aligned
            # listing); one fixed-width lookbehind per length, tried only after two separators
             + after_id_and_blanks("[A-Z0-9]{16}") + r")[A-Za-z0-9/+]{39}(?![A-Za-z0-9/+=])(?P<w>)"
        ),
        triggers=("aws", "akia", "asia"),
    ),
    SecretPattern(
        "gcp_api_key", r"A(?<![A-Za-z0-9_-]A)Iza(?P<s>[0-9A-Za-z_-]{35})(?![A-Za-z0-9_-])", triggers=("aiza",)
    ),
    SecretPattern(
        "azure_storage_key",
        "|".join(
            [
                *(
                    rf"{alt}\s*=\s*(?P<s_{i}>[^\s;\"']+)"
                    for i, alt in enumerate(
                        first_char_alternatives("accountkey")
                        + first_char_alternatives("sharedaccess(?:key|signature)"),
                        start=2,
                    )
                ),
                r"s(?<=[?&]s)ig=(?P<s>[^\s&\"'#]+)",
                # In a connection string: tried at its ``;``, before the key rules' ODBC alternative.
                r";[ \t]*(?i:accountkey|sharedaccess(?:key|signature))\s*=\s*(?P<s_9>[^\s;\"']+)",
            ]
        ),
        triggers=("accountkey", "sharedaccess", "sig="),
    ),
    SecretPattern(
        "github_token",
        r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_(?P<s>[A-Za-z0-9]{20,255})|ithub_pat_(?P<s_2>[A-Za-z0-9_]{20,255}))"
        r"(?![A-Za-z0-9_])",
        triggers=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    SecretPattern(
        "slack_token",
        r"x(?<![A-Za-z0-9_-]x)(?:ox[abeoprs]|app)-(?P<s>[A-Za-z0-9-]{8,})",
        triggers=("xox", "xapp-"),
    ),
    SecretPattern(
        "stripe_key",
        r"[sr](?<![A-Za-z0-9_][sr])k_(?:live|test)_(?P<s>[A-Za-z0-9]{10,})",
        triggers=("k_live_", "k_test_"),
    ),
    SecretPattern(
        "password",
        number_groups(_PASSWORD),
        triggers=("pass", "pw", *STDIN_TRIGGERS),
    ),
    SecretPattern(
        "sql_password",
        # Passwords in SQL statements (``psql -c``, ``mysql -e``, init scripts), where no
        # ``=`` follows the word: PostgreSQL ``CREATE|ALTER ROLE|USER ... [ENCRYPTED] PASSWORD
        # 'x'`` (also CQL), MySQL ``PASSWORD('x')``, ``IDENTIFIED [WITH plugin] BY|AS
        # [PASSWORD] 'x'`` (MySQL, Oracle; Oracle's unquoted too), ``SET PASSWORD [FOR
        # user] = 'x'``. The literal is the secret; ``PASSWORD = 'x'`` is the key rule's.
        "|".join(
            [
                rf"[Pp](?<![\w$-][Pp])(?i:assword)(?:\s+|\s*\(\s*)(?P<s>{_SQL_LITERAL})",
                r"[Ii](?<![\w$-][Ii])(?i:dentified)\s+(?:(?i:with)\s+[^\s;'\"]+\s+)?(?i:by|as)\s+"
                rf"(?:(?i:password)\s+)?(?P<s_2>{_SQL_LITERAL}|[^\s;'\"]+)",
                r"[Ss](?<![\w$-][Ss])(?i:et)\s+(?i:password)\b[^=;]{0,256}?=\s*"
                rf"(?:(?i:password)\s*\(\s*)?(?P<s_3>{_SQL_LITERAL})",
            ]
        ),
        triggers=("password", "identified"),
    ),
    SecretPattern(
        "secret_token",
        number_groups(
            "|".join(
                [COOKIE_HEADER, _OAUTH_CODE, _valued(_SECRET_HEADS, _NOT_A_SETTING_WORD), *_SECRET_OTHERS]
            )
        ),
        triggers=("token", "key", "secret", "auth", "session", "cookie", "signature", "code="),
    ),
    CLI_FLAG_SECRET,
    *FLAG_VALUE_PATTERNS,
    *PROVIDER_PATTERNS,
    *PERSONAL_DATA_PATTERNS,
    SecretPattern(
        "email",
        r"[A-Za-z0-9._%+-](?<![A-Za-z0-9._%+-][A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*"
        r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9:-])(?P<w>)",
        triggers=("@",),
    ),
)

DEFAULT_PATTERN_NAMES: tuple[str, ...] = tuple(p.name for p in DEFAULT_PATTERNS)
