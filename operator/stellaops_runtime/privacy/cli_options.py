"""Credential options of command-line clients, in every syntax each client accepts.

Options whose name says what they are (``--password=``, ``--token``,
``-storepass``) are redacted for any program by ``patterns`` and by
``cli_flags.CLI_FLAG_SECRET``; the forms an option's value is written in are
``cli_syntax``'s. Short options are another matter: ``-p`` is a
password for ``mysql`` (glued only: ``-pSECRET``; ``mysql -p shop`` prompts and
``shop`` is the database), for ``sshpass`` and ``mongosh`` (separate or glued),
but a port for ``docker run -p 8080:80`` and a parameters file for ``az
deployment create -p``. So short options are matched only inside a command of
the client they belong to (``TOOL_RULES``), and some only after its
subcommand (``docker login -p``, ``az login -p``).

A command is found two ways: the event's executed binary (its basename) for
``process.arguments`` (Tetragon gives the arguments without ``argv[0]``), and a
client's name as a word inside the text (``sh -c "mysql -pX db"``, ``env
PGPASSWORD=x psql``, ``sudo redis-cli -a X``). A command found in the text
ends at the next shell separator (``;``, ``|``, ``&``, a newline); a command
given by the binary is the whole argument string (no shell parsed it).

The syntax of each client is in its manual; the corpus
(tests/fixtures/privacy/cli_corpus.yaml) cites the page for every case. The
database, directory and message-broker clients are a family of their own in
``cli_db_options`` (``DB_RULES``), merged into ``_RULES`` here.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.base import (
    DOUBLE_QUOTED,
    ESCAPED_SQ_OPEN,
    WORD_VALUE,
)
from stellaops_runtime.privacy.cli_db_options import DB_RULES
from stellaops_runtime.privacy.cli_infra_options import INFRA_RULES, OPTIONS_THEN_TOKEN
from stellaops_runtime.privacy.cli_syntax import (
    QUOTED_WORD,
    START,
    VALUE,
    after_sub,
    glued,
    sep,
    sep_or_eq,
    sep_or_glued,
    userpass,
)
from stellaops_runtime.privacy.client_rules import ClientRules

_LOGIN = ("docker", "podman", "nerdctl", "buildah", "helm", "crane", "regctl", "skopeo")
_SNMP = tuple(
    f"snmp{c}"
    for c in (
        "walk",
        "bulkwalk",
        "get",
        "getnext",
        "bulkget",
        "set",
        "table",
        "delta",
        "status",
        "df",
        "trap",
        "inform",
        "test",
        "netstat",
    )
)
_IMPACKET = tuple(
    f"{prefix}{name}{suffix}"
    for name in (
        "secretsdump",
        "psexec",
        "smbexec",
        "wmiexec",
        "atexec",
        "dcomexec",
        "smbclient",
        "mssqlclient",
        "GetUserSPNs",
        "GetNPUsers",
        "getTGT",
        "getST",
        "lookupsid",
        "reg",
        "services",
    )
    for prefix, suffix in (("impacket-", ""), ("", ".py"))
    # (reg.py and services.py are any workload's script names too: its last host:port would go)
    if f"{name}{suffix}" not in ("reg.py", "services.py")
)

# mkpasswd PASSWORD [SALT]: the first words after its options, read from the client's name (or the
# start of its arguments) on, once: -S, -R, -m, -P take a value, separate or glued; an option ends
# before whitespace, a quote, ")" or the end; at most 16 options (a run of "mkpasswd -m" costs 16
# options a start, not a scan to the end). A word after ``)`` is no longer mkpasswd's.
# (a word holding a space is quoted: Tetragon's quotes, or the script's; a cut one to the end; the
# quote after a blank: ``-s"`` ends a ``sh -c`` script)
_MK_WORD = r"""(?:(?<!\S)"[^"\n]+(?:"|\Z)|(?<!\S)'[^'\n]+(?:'|\Z)|[^\s<>|;&()$`'"-][^\s)'"`]*)"""
_MK_OPTION = (
    r"""(?:-[SRmP](?:[ \t]+|(?=\S))[^\s)]+|--(?:salt|rounds|method|password-fd)=[^\s)]+"""
    r"""|-[A-Za-z0-9]+|--[a-z-]+)(?=[\s"')]|\Z)"""
)
_MKPASSWD = rf"(?:(?<=mkpasswd)|\A)(?:\s*{_MK_OPTION}){{0,16}}+\s*(?P<s>{_MK_WORD}(?:[ \t]+{_MK_WORD})?)"

# client name -> its credential options (regex alternatives, each with a (?P<s>) group)
_RULES: dict[tuple[str, ...], tuple[str, ...]] = {
    **DB_RULES,
    # https://curl.se/docs/manpage.html (-u/--user, -U/--proxy-user, -E/--cert, --oauth2-bearer, -b/--cookie)
    ("curl",): (
        userpass("-[A-Za-z]*[uU]"),
        userpass("--(?:proxy-)?user"),
        userpass("(?:-E|--cert|--proxy-cert)"),
        sep("--oauth2-bearer"),
        rf"(?<!\S)(?:-b|--cookie)\s+[\"']?[^\s=\"']+=(?P<s>{WORD_VALUE})",
    ),
    # https://linux.die.net/man/1/sshpass (-p password, getopt: glued too)
    ("sshpass",): (sep_or_glued("-p"),),
    # https://httpd.apache.org/docs/2.4/programs/htpasswd.html (-b: password is the last argument)
    # (the last argument: quoted when it holds a space, ``"pass phrase"`` or ``'pass phrase'``, tried
    # first; else the last word whole, a quote character in it or at its end too: ``Pw1'``)
    ("htpasswd",): (
        r"""(?<!\S)-[A-Za-z]*b[A-Za-z]*\s(?:.*\s)?(?P<s>"[^"\n]*"|'[^'\n]*')\s*$""",
        r"(?<!\S)-[A-Za-z]*b[A-Za-z]*\s(?:.*\s)?(?P<s>\S+)\s*$",
    ),
    # https://docs.openssl.org/3.0/man1/openssl-enc/ (-k, -K) and openssl-passwd (password last)
    ("openssl",): (sep("-k"), sep("-K"), r"(?<!\S)passwd\s(?:.*\s)?(?P<s>[^\s-][^\s]*)\s*$"),
    # https://docs.docker.com/reference/cli/docker/login/ and podman/helm/skopeo/oras login -p
    # (pflag: -p X, -p=X, -pX)
    _LOGIN: (after_sub("login", rf"(?<!\S)-p(?:=|\s+(?![-\s])|(?=[^\s=])){VALUE}"),),
    # https://learn.microsoft.com/en-us/cli/azure/reference-index#az-login (-p, --password),
    # https://learn.microsoft.com/en-us/cli/azure/keyvault/secret#az-keyvault-secret-set (--value)
    ("az",): (after_sub("login", sep("-p")), after_sub(r"secret\s+set", sep_or_eq("--value"))),
    # https://cli.github.com/manual/gh_secret_set (-b, --body)
    ("gh",): (
        after_sub(r"secret\s+set", sep_or_eq("--body")),
        after_sub(r"secret\s+set", sep_or_glued("-b")),
    ),
    # https://docs.npmjs.com/cli/v10/configuring-npm/npmrc#auth-related-configuration (_authToken,
    # _auth, _password) and https://yarnpkg.com/configuration/yarnrc#npmAuthToken, set with `config set`
    ("npm", "yarn", "pnpm"): (
        r"(?<!\S)set\s+\S*(?i:authtoken|authident|_auth|_password)\s+(?P<s>[^\s=]\S*)",
    ),
    # https://python-poetry.org/docs/repositories/#configuring-credentials
    # (config pypi-token.NAME TOKEN, config http-basic.NAME USER PASSWORD)
    ("poetry",): (
        r"(?<!\S)pypi-token\.\S+\s+(?P<s>[^\s-]\S*)",
        r"(?<!\S)http-basic\.\S+\s+[^\s-]\S*\s+(?P<s>[^\s-]\S*)",
    ),
    # https://doc.rust-lang.org/cargo/commands/cargo-login.html (the token as an argument)
    # (its options with a value, --registry/--color/--config/-Z, are skipped with it)
    ("cargo",): (
        r"(?<!\S)login(?>\s+(?:--(?:registry|color|config)(?:=\S*|\s+\S+)|-Z(?:\S+|\s+\S+)|-\S+))*+"
        rf"\s+(?P<s>{QUOTED_WORD}|[^\s-]\S*)",
    ),
    # https://twine.readthedocs.io/en/stable/#twine-upload (-p, --password)
    ("twine",): (sep("-p"),),
    # https://docs.aws.amazon.com/cli/latest/reference/configure/set.html,
    # secretsmanager create-secret / put-secret-value / update-secret --secret-string
    # (https://docs.aws.amazon.com/cli/latest/reference/secretsmanager/put-secret-value.html),
    # ssm put-parameter --value (https://docs.aws.amazon.com/cli/latest/reference/ssm/put-parameter.html)
    ("aws",): (
        r"(?<!\S)set\s+\S*(?i:secret|token|password)\S*\s+(?P<s>[^\s]+)",
        sep_or_eq("--secret-string"),
        after_sub("put-parameter", sep_or_eq("--value")),
    ),
    # https://lftp.yar.ru/lftp-man.html (-u user,password)
    ("lftp",): (userpass("(?:-u|--user)", ","),),
    # https://www.samba.org/samba/docs/current/man-html/smbclient.1.html (-U user%password)
    ("rpcclient", "smbcacls", "smbget"): (userpass("(?:-U|--user=?)", "%"),),
    # and smbclient servicename [password]: the word right after //server/share that is no option
    # and no shell redirection or separator (``< cmds.txt``); the service may be quoted
    # (``'\\fs01\share'``, as a backslash service must be in a shell)
    ("smbclient",): (
        userpass("(?:-U|--user=?)", "%"),
        rf"{START}(?://|\\\\)[^\s/\\]+[/\\]\S*\s+(?P<s>[^\s<>|;&-]\S*)",
    ),
    # https://docs.snowflake.com/en/developer-guide/snowflake-cli/command-reference/connection-commands/add-connection
    # (snow connection add -p, --password; -P is the port). snowsql's -p is its port
    # (https://docs.snowflake.com/en/user-guide/snowsql-start): snowsql has no password option.
    ("snow",): (after_sub(r"connection\s+add", rf"(?<!\S)-p(?:=|\s+(?![-\s])|(?=[^\s=])){VALUE}"),),
    # https://developer.wordpress.org/cli/commands/config/set/ (wp config set NAME VALUE): a name
    # ending in a secret word (DB_PASSWORD, AUTH_KEY, NONCE_SALT...) loses its value
    ("wp",): (
        r"(?<!\S)config\s+set\s+(?:--\S+\s+){0,8}?[^\s-]\S{0,64}?"
        rf"(?i:password|passwd|pass|pwd|secret|key|salt|token|auth)[\"']?\s+(?P<s>{VALUE.removeprefix('(?P<s>')}",
    ),
    # https://manpages.ubuntu.com/manpages/noble/man8/caddy-hash-password.8.html (--plaintext)
    ("caddy",): (after_sub("hash-password", sep_or_eq("--plaintext")),),
    # https://manpages.ubuntu.com/manpages/jammy/man1/mkpasswd.1.html (mkpasswd PASSWORD [SALT])
    ("mkpasswd",): (_MKPASSWD,),
    # https://linux.die.net/man/1/zip and unzip (-P password); 7-Zip and RAR (-pPASSWORD)
    ("zip", "unzip", "zipcloak"): (sep("-P"),),
    # RAR also -hpPASSWORD (encrypts the headers too)
    ("7z", "7za", "7zz", "7zr", "rar", "unrar"): (glued("-p"), glued("-hp")),
    # https://man.openbsd.org/ssh-keygen (-N new_passphrase, -P passphrase)
    ("ssh-keygen",): (sep("-N"), sep("-P")),
    # https://developer.hashicorp.com/vault/docs/commands/login (token as argument); kv put and
    # write pairs: cli_pairs.py
    ("vault", "bao"): (rf"(?<!\S)login\s+{OPTIONS_THEN_TOKEN}",),
    # https://docs.snyk.io/snyk-cli/commands/auth (snyk auth [<API_TOKEN>], after --auth-type=token);
    # the standalone binaries keep their download names (snyk-linux, snyk-alpine, …)
    (
        *("snyk", "snyk-linux", "snyk-linux-arm64", "snyk-alpine", "snyk-alpine-arm64"),
        *("snyk-macos", "snyk-macos-arm64", "snyk-win.exe"),
    ): (
        rf"(?<!\S)auth\s+{OPTIONS_THEN_TOKEN}",
        # (its quote escaped, a script quoted again: ``'"'"'api=T'"'"'``, ``\\\"api=T\\\"``; RP8)
        rf"(?<!\S)config\s+set\s+(?:{ESCAPED_SQ_OPEN}|\\*+[\"'])?api={VALUE}",
    ),
    # https://docs.codecov.com/docs/codecov-uploader and codecov-cli (-t, --token: the upload token)
    ("codecov", "codecovcli"): (sep("-t"),),
    # https://rclone.org/commands/rclone_obscure/ (the password as argument; "-" reads stdin), the
    # backend flags whose name does not end in a secret word (https://rclone.org/crypt/
    # --crypt-password2, https://rclone.org/sftp/ --sftp-key-pem, https://rclone.org/s3/
    # --s3-sse-customer-key-base64); config create/update/password pairs: cli_pairs.py
    ("rclone",): (
        sep("obscure"),
        rf"(?<!\S)--[\w-]*?(?:password[0-9]|key-pem|key-base64)(?:=|\s+(?![-\s])){VALUE}",
    ),
    # https://min.io/docs/minio/linux/reference/minio-mc/mc-alias-set.html (ACCESSKEY SECRETKEY)
    # and https://min.io/docs/minio/linux/reference/minio-mc-admin/mc-admin-user-add.html
    ("mc",): (
        r"(?<!\S)alias\s+set\s+\S+\s+\S+\s+(?P<s>\S+\s+\S+)",
        r"(?<!\S)user\s+add\s+\S+\s+\S+\s+(?P<s>\S+)",
    ),
    # https://github.com/FreeRDP/FreeRDP/wiki/CommandLineInterface (/p:, /gp: gateway password,
    # /password:), and rdesktop(1) (-p password)
    # (an argument holding a space is quoted whole: ``"/p:pass phrase"``, the value to its quote or
    # to the end of a cut text)
    ("xfreerdp", "xfreerdp3", "wlfreerdp", "wlfreerdp3", "sdl-freerdp", "sdl-freerdp3"): (
        r"""(?<!\S)"[/-](?:g?p|(?:gateway-)?password):(?P<s>[^"\n]+)(?="|\Z)"""
        rf"""|(?<!\S)[/-](?:g?p|(?:gateway-)?password):(?P<s>{WORD_VALUE})""",
    ),
    ("rdesktop",): (sep("-p"),),
    # https://learn.microsoft.com/en-us/previous-versions/windows/it-pro/windows-server-2012-r2-and-2012/gg651155(v=ws.11)
    # net use [dev] \\host\share PASSWORD [/user:u] and net user NAME PASSWORD: the first word after
    # the share or the name that is no /option and no * (prompts); /p: is /persistent:yes|no.
    ("net", "net.exe"): (
        rf"(?<!\S)(?i:use)\s+(?:(?:[A-Za-z]:|\*)\s+)?\\\\\S+(?:\s+/\S+){{0,8}}\s+(?P<s>{DOUBLE_QUOTED}|[^\s/*\"]\S*)",
        rf"(?<!\S)(?i:user)\s+[^\s/]\S*(?:\s+/\S+){{0,8}}\s+(?P<s>{DOUBLE_QUOTED}|[^\s/*\"]\S*)",
        r"(?<!\S)/(?i:p|persistent):(?!(?i:yes|no)(?!\S))(?P<s>\S+)",
    ),
    # https://networkmanager.dev/docs/api/latest/nmcli.html (wifi connect ... password X, wifi-sec.psk X)
    ("nmcli",): (sep("password"), sep(r"[\w.-]*psk")),
    # https://linux.die.net/man/1/ipmitool (-P password; -E and -f read it elsewhere)
    ("ipmitool",): (sep_or_glued("-P"),),
    # https://www.net-snmp.org/docs/man/snmpcmd.html (-A authPassword, -X privPassword, -c community):
    # the well-known default communities (public, private) stay, a finding a security team needs
    # (getopt: glued too, ``-cCOMMUNITY``)
    _SNMP: (
        sep_or_glued("-A"),
        sep_or_glued("-X"),
        rf"{START}-c(?:\s+(?![-\s])|(?=\S))(?!(?:public|private)(?!\S)){VALUE}",
    ),
    # https://linux.die.net/man/8/wpa_passphrase (wpa_passphrase SSID [PASSPHRASE]: the second word)
    ("wpa_passphrase",): (
        rf"(?:(?<=wpa_passphrase)|\A)\s*(?:{QUOTED_WORD}|[^\s|;&<>\"'-]\S*)\s+(?P<s>{QUOTED_WORD}|[^\s|;&<>\"'-]\S*)",
    ),
    # https://bitwarden.com/help/cli/ (bw unlock [PASSWORD], bw login [EMAIL] [PASSWORD])
    ("bw",): (
        rf"(?<!\S)unlock\s+(?P<s>{QUOTED_WORD}|[^\s|;&<>\"'-]\S*)",
        rf"(?<!\S)login\s+[^\s|;&<>-]\S*\s+(?P<s>{QUOTED_WORD}|[^\s|;&<>\"'-]\S*)",
    ),
    # https://ngrok.com/docs/agent/cli/ (ngrok config add-authtoken TOKEN, the older ngrok authtoken TOKEN)
    ("ngrok",): (rf"(?<!\S)(?:add-)?authtoken\s+(?P<s>{QUOTED_WORD}|[^\s|;&<>\"'-]\S*)",),
    # containerd's ctr: images pull|push, content fetch --user/-u user[:password] (ctr run's -u is a user)
    ("ctr",): (after_sub("(?:pull|push|fetch)", userpass("(?:-u|--user=?)")),),
    # https://httpie.io/docs/cli/authentication and xh (-a, --auth USER:PASSWORD)
    ("http", "https", "xh", "xhs"): (userpass("(?:-a|--auth=?)"),),
    # https://github.com/fortra/impacket: a target [[domain/]username[:password]@]address
    # (or a target cut in its password: to the end of the cut text)
    # (-hashes LMHASH:NTHASH: a hash is as good as the password to them)
    # (a target quoted, its password holding a space: ``'dom/u:a b@h'``, Tetragon's ``"dom/u:a b@h"``,
    # ``\"…\"`` in a ``sh -c`` script; impacket's password holds no ``@``)
    _IMPACKET: (
        r"(?<!\S)(?:[^\s/:@]+/)?[^\s/:@]+:(?P<s>[^\s@]+)(?=@\S|\Z)",
        r"""(?<!\S)\\?["'](?:[^\s/:@"'\\]+/)?[^\s/:@"'\\]+:(?P<s>[^@\n"'\\]++)(?=@[^\s"'\\]|\Z)""",
        sep("-hashes"),
    ),
    # https://www.netexec.wiki/ and crackmapexec, evil-winrm (-p PASSWORD, -H NTHASH: a hash is as
    # good as the password to them); smbmap's -H is its host
    ("nxc", "netexec", "crackmapexec", "cme", "evil-winrm"): (sep("-p"), sep("-H")),
    ("smbmap",): (sep("-p"),),
    # https://www.ncftp.com/ncftp/doc/ncftpput.html (-p pass)
    ("ncftp", "ncftpput", "ncftpget", "ncftpls"): (sep("-p"),),
    # https://docs.digitalocean.com/reference/doctl/ (-t, --access-token: a global flag)
    # (a token of its own form keeps its prefix: provider_tokens.py)
    ("doctl",): (rf"{START}-t(?:=|\s+(?![-\s]))(?!do[opr]_v1_){VALUE}",),
}

# A client may have rules in both tables (vault: login here, operator unseal there): its
# alternatives are joined, and clients with the same alternatives share one compiled regex, compiled
# the first time one of them is seen (client_rules.py).
_BY_TOOL: dict[str, tuple[str, ...]] = {}
for _table in (_RULES, INFRA_RULES):
    for _tools, _alts in _table.items():
        for _t in _tools:
            _BY_TOOL[_t] = _BY_TOOL.get(_t, ()) + _alts
TOOL_RULES = ClientRules(_BY_TOOL)

TOOLS: frozenset[str] = frozenset(TOOL_RULES)
# A version after a client's name is the same client (``mysql-8.0``, ``mysql8``, ``redis-cli-7.2``,
# ``sshpass-1.09``, ``helm3``: a distribution's or an image's versioned binary): digits, ``.``, ``-``,
# ``_``. Not after a name of under four characters nor after ``net`` or ``http``: with a version those
# are other words (``-f net8.0``, a .NET target framework, then ``/p:Name=value``; ``http2``).
_VERSION_CHARS = "0123456789.-_"
_VERSION = r"(?:[-_.]?+[0-9]++(?:[-_.][0-9]++)*+)?+"
VERSIONED: frozenset[str] = frozenset(
    t for t in TOOLS if len(t) >= 4 and t not in ("http", "https", "net.exe")
)
# A package runner names a client with a version or a tag after ``@`` (``npx snyk@latest auth T``,
# ``pnpm dlx snyk@1.1290.0``, ``bunx snyk@^1``): the same client. Only a version or a dist-tag word,
# so that a user name before a host (``ssh mysql@db``, ``mysql@10.0.0.5``) is no client.
_AT_VERSION = r"(?:@(?:latest|next|beta|canary|[~^=v]?[0-9]++(?:\.[0-9]++){0,2}+(?:[-+][\w.]++)?+))?+"
# A client's name as a word: after the start, a space, a quote, "/" (a path), "=", or what opens
# or separates a shell command: "(", "`", "{", ";", "|", "&" (``$(mysql -pX)``, ``true;redis-cli``);
# a version may follow a name of VERSIONED.
TOOL_WORD = re.compile(
    r"(?<![^\s\"'/=(`{;|&])(?:(?:"
    + "|".join(re.escape(t) for t in sorted(VERSIONED, key=len, reverse=True))
    + rf"){_VERSION}|"
    + "|".join(re.escape(t) for t in sorted(TOOLS - VERSIONED, key=len, reverse=True))
    + rf"){_AT_VERSION}(?=[\s\"']|$)"
)


def client_name(word: str) -> str:
    """The client whose rules ``word`` (a binary's basename or a word of the text) runs, else ""."""
    if word in TOOLS:
        return word
    if "@" in word:  # a package runner's ``snyk@latest`` (_AT_VERSION)
        word = word.partition("@")[0]
        if word in TOOLS:
            return word
    if word and word[-1] in _VERSION_CHARS[:10]:
        name = word.rstrip(_VERSION_CHARS)
        if name in VERSIONED:
            return name
    return ""


def names_a_client(ws: list[str]) -> bool:
    """Whether any of the words (:func:`words`) is a client's name, with a version after it or not."""
    if not TOOLS.isdisjoint(ws):
        return True
    digits = _VERSION_CHARS[:10]  # (each distinct word once: a text of many words repeats them)
    return not VERSIONED.isdisjoint({w.rstrip(_VERSION_CHARS) for w in set(ws) if w[-1] in digits})


# Where a command found in the text ends: a newline, or ``;``, ``|``, ``&`` standing apart
# (whitespace, the text's end or another separator on one side: ``a; b``, ``a && b``, ``a|
# b``). One inside a word (``AUTH app R3d&is;Pw``, an argument holding it) is part of the word.
COMMAND_END = re.compile(r"\n|(?<![^\s;|&])[;|&]|[;|&](?![^\s;|&])")


_WORD_SPLIT = str.maketrans(dict.fromkeys("/=\"'(`{;|&@", " "))


def words(text: str) -> list[str]:
    """The words of ``text`` when looking for a client's name (split where ``TOOL_WORD`` may start one)."""
    return text.translate(_WORD_SPLIT).split()
