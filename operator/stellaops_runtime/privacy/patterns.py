"""The default secret patterns, named: our own rules, in the order the combined regex tries them.

Process arguments are where secrets leak into runtime evidence (``--password=``,
``PGPASSWORD=``, bearer tokens passed to ``curl -H``, connection strings). This
module owns the list of what the privacy filter recognizes by default in its
one-regex pass (``DEFAULT_PATTERNS``: the rules here, then ``cli_flags``'
``CLI_FLAG_SECRET``, ``provider_tokens`` and ``personal_data``), kept apart
from the filter so that the list can be read and reviewed on its own.
detect-secrets' rules (``library_rules``), client short options
(``cli_options``) and environment names (``env_names``) run after it.
The key rules (``password``, ``secret_token``, ``aws_secret_access_key``) are built by
``key_rules``: a credential word's heads, and the one value they share.

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

The patterns a field triggers find what their alternation (``base.compile_patterns``) would,
each run by its own regex (``rule_scan``: linear), and ``match.lastgroup`` says which of a
pattern's alternatives matched.
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import (
    DOUBLE_QUOTED,
    ESCAPED_SQ,
    REDACTED,
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
from stellaops_runtime.privacy.key_rules import QUOTED, SEP, in_query_or_odbc, keyed, valued
from stellaops_runtime.privacy.key_words import PASSWORD_WORDS, PW_WORDS, SECRET_WORDS, SETTING_WORDS
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
# PostgreSQL), or double quotes (MySQL; an Oracle quoted identifier), or opened by an escaped quote
# inside a single-quoted script (base.ESCAPED_SQ); the closing
# quote is optional (the text may have been truncated).
_SQL_LITERAL = rf"""(?:{ESCAPED_SQ}|[Ee]'(?:[^'\\]|\\[\s\S]|'')*'?|[Nn]?'(?:[^']|'')*'?|{DOUBLE_QUOTED})"""

_PASSWORD_HEADS, _PASSWORD_OTHERS = keyed(list(PASSWORD_WORDS))
_PW_HEADS = [
    r"-(?<![\w./-]-)-?(?:[A-Za-z0-9]+[-_.])*(?:pw|PW)(?:=|\s+(?![-\s]))",
    # a two-dash flag of one word ending in ``pw`` (kickstart's and slapd's ``--rootpw X``, ``--adminPw``)
    r"-(?<![\w./-]-)-[A-Za-z0-9]++(?<=[a-z0-9]pw|[a-z0-9]Pw|[A-Za-z0-9]PW)(?:=|\s+(?![-\s]))",
    rf"(?:{'|'.join(PW_WORDS)}){SEP}",
]
# The ``password`` and ``pw`` heads share one value, the ``pw`` ones after as before; the XML, query
# and ODBC alternatives now after them start with ``<``, ``?&#`` or ``;``, never as a head (``-pP``).
_PASSWORD = "|".join(
    [
        valued(_PASSWORD_HEADS + _PW_HEADS),
        *_PASSWORD_OTHERS,
        *in_query_or_odbc("|".join(PW_WORDS), r"[\"']?\s*=\s*"),
        *STDIN_SECRET_ALTERNATIVES,  # ``echo X | chpasswd``, ``| docker login --password-stdin``, .pgpass
    ]
)
_AWS_HEADS, _AWS_OTHERS = keyed(
    [r"aws[_-]?secret[_-]?access[_-]?key", r"aws[_-]?secret[_-]?key"], bare_space=True
)
_SECRET_HEADS, _SECRET_OTHERS = keyed(list(SECRET_WORDS))

# A log level, a switch or an authentication method alone is no token: a logger named after its
# package keeps its level (``-Dlogging.level.com.example.auth=DEBUG``, ``log4j.logger.x.secret=INFO``),
# an ``auth`` setting its method or switch (``--auth=oidc``, ``-Dauth=none``, ``auth=true``).
_NOT_A_SETTING_WORD = r"(?!(?i:" + "|".join(SETTING_WORDS) + r")(?![^\s\"',;&}]))"

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
    rf"=(?![$`])(?P<s>{QUOTED}|(?:[^\s\"'&#;]|;(?![\w.-]+=))++)"
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
            "|".join([valued(_AWS_HEADS), *_AWS_OTHERS])
            # The secret right after its access key id and one separator, with no key name:
            # s3fs's ``ID:SECRET`` line, a credentials CSV, positional arguments (a fixed-width
            # lookbehind: the id is always 20 characters); also both quoted, as two arguments of a
            # call or a quoted CSV (``('AKIA…', 'SECRET')``, ``"AKIA…","SECRET"``).
            # Every form has a separator or a quote right before the secret: checked first (one look
            # back), so a run of letters does not try the id's lookbehinds at each (s49 P: a 1 MiB run of
            # ``A`` cost this rule 176 ms).
            + r"|[A-Za-z0-9/+](?<=[:,;\s\"'][A-Za-z0-9/+])(?:(?<=A[KS]IA[A-Z0-9]{16}[:,;\s][A-Za-z0-9/+])"
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
        triggers=("pass", "pw", "psw", *STDIN_TRIGGERS),
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
                [COOKIE_HEADER, _OAUTH_CODE, valued(_SECRET_HEADS, _NOT_A_SETTING_WORD), *_SECRET_OTHERS]
            )
        ),
        triggers=("token", "key", "secret", "auth", "session", "cookie", "signature", "code=", "sonar"),
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
