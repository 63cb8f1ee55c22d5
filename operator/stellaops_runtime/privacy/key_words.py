"""The credential words that make a key a secret's key, kept apart from the rules that use them.

A key (``db_password=``, ``--api-key``, ``X-Auth-Token:``) is a secret's key when its name
ends in one of these words; the ``password`` and ``secret_token`` rules (patterns.py) are
built from them, and the filter redacts a traced argument whole when the tracing policy's
label for it ends in one (hostile_text.py). Each word is a regex fragment, matched
case-insensitively, except the ``pw``/``pass`` words, whose case decides where they end a key.
"""

from __future__ import annotations

__all__ = ["PASSWORD_WORDS", "PW_WORDS", "SECRET_WORDS", "SETTING_WORDS"]

# The credential words a key must end with (regex fragments, case-insensitive):
# the "password" and "secret_token" rules; the filter also redacts a traced
# argument whole when the tracing policy's label for it ends with one.
# ``passcode``: a one-time passcode (``vault login -method=duo passcode=X``).
# ``psw``, ``pswd``: the abbreviations of nothing but a password (``--psw X``, ``PSW=X``, Jenkins' ``X_PSW``,
# glued ``rootpsw=X``), except in the words ``ipsw`` (an iPhone firmware file: ``--ipsw x.ipsw``) and
# ``gpsw`` (a GPS week). (A lookbehind after the first character: key_rules.keyed leads with it.)
PASSWORD_WORDS: tuple[str, ...] = (
    *("password", "passwd", "passphrase", "passcode", "pwd"),
    r"pass[_-]phrase",  # ``--pass-phrase X``, ``GPG_PASS_PHRASE=X`` (P7, session 45)
    r"p(?:(?<![ig]p)|(?<=[A-Za-z0-9][ig]p))swd?",
)
SECRET_WORDS: tuple[str, ...] = (
    "token",
    r"api[_-]?key",
    "secret",
    # ``.`` too: Hadoop's and Spark's keys (``fs.s3a.secret.key``, ``spark.hadoop.fs.s3a.access.key``)
    r"secret[_.-]?key",
    r"access[_.-]?key",
    # Azure API Management's ``Ocp-Apim-Subscription-Key`` header
    r"subscription[_-]?key",
    "auth",
    # Tailscale's and others' ``--authkey`` / ``authkey=``
    r"auth[_.-]?key",
    r"session[_-]?id",
    "cookie",
    "signature",
    r"private[_.-]?key(?:[_-]?id)?",
    # Hadoop's ABFS/WASB key names the account after it:
    # ``fs.azure.account.key.<account>.dfs.core.windows.net``
    r"account[_.-]?key(?:\.[\w-]{1,63}+){0,6}+",
    # SonarQube's scanner property ``sonar.login``: a token (or a user before ``sonar.password``)
    r"sonar[._]login",
    # Gradle's signing plugin's in-memory armored key (``-PsigningKey=…``, ``ORG_GRADLE_PROJECT_signingKey``)
    # and the maven-publish plugin's ``signingInMemoryKey`` (``signingKeyId`` is an id: it ends no key;
    # git's ``user.signingKey`` is a key's id or public key, no secret)
    # (not ``_``: an upper-case ``SIGNING_KEY=`` is the environment-name rule's, *_KEY)
    r"s(?<!user\.s)igning[.-]?(?:in[.-]?memory[.-]?)?key",
)

# ``pw`` ends a password key too (PuTTY's ``plink -pw X``, OpenLDAP's ``rootpw=X``,
# ``DB_PW=X``, ``adminPw=X``), in one case (or camelCase) and, for a flag, alone or after a separator
# (``--pw``, ``--root-pw``): ``mysql -pS3cretMyPw db`` is a glued password whose
# last letters are no key, and ``db`` no value.
# The ``pw`` and ``pass`` words, each where it ends a key (lookbehinds after the first character).
PW_WORDS: tuple[str, ...] = (
    r"p(?<![A-Z]p)w",
    r"P(?<![a-z]P)W",
    r"P(?<=[a-z]P)w",  # camelCase: adminPw=
    # ``pass`` ends a key as a word of its own (``db_pass=``, ``pass:``, ``adminPass=``,
    # ``DB_PASS=``), not inside one (``bypass=``, ``compass=``).
    r"p(?<![A-Za-z0-9]p)ass",
    r"P(?<=[a-z]P)ass",
    r"P(?<![A-Za-z0-9]P)(?<!--- P)ASS",  # (``--- PASS: TestX (0.00s)``: go test's summary, no key)
)

# A log level, a switch or an authentication method: alone, no value of a credential key
# (``--auth=oidc``, ``-Dauth=none``, ``log4j.logger.x.secret=INFO``: patterns.py) and no password of
# an ``auth`` call (``app.auth('oidc')``: code_calls.py). Regex fragments, matched case-insensitively.
SETTING_WORDS: tuple[str, ...] = (
    *("trace", "debug", "info", "warn", "warning", "error", "fatal", "off", "on", "none", "true"),
    *("false", "yes", "no", "enabled", "disabled", "oidc", "ldap", "basic", "bearer", "jwt", "oauth2?"),
    *("saml", "kerberos", "x509", "mtls", "tls", "anonymous", "iam"),
)
