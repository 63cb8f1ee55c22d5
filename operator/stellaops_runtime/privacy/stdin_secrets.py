"""Passwords a command hands another program on its standard input, or writes to its password file.

Container entrypoints and CI steps set or use passwords this way, and the value is
then in the command line of the shell that runs them (``sh -c "…"``), with no
key or flag in front of it that the key rules could see:

- what is echoed (or printed with ``printf``) into chpasswd(8) or passwd(1), or given to
  them in a here-string: ``echo root:X | chpasswd``, ``echo -e "X\\nX" | passwd app``,
  ``echo X | sudo passwd --stdin app``, ``printf '%s\\n' root:X | chpasswd``,
  ``chpasswd <<< root:X``;
- what is echoed into a command that reads its password from standard input
  (``--password-stdin``: ``docker``, ``podman``, ``nerdctl``, ``buildah``,
  ``helm registry``, ``oras``, ``skopeo``, ``cosign login``; ``--pass-stdin``:
  ``regctl``; gpg's ``--passphrase-fd 0``): ``echo X | docker login -u u --password-stdin registry``, or in a
  here-string (``docker login --password-stdin registry <<< X``); a token echoed into
  ``gh auth login --with-token`` or ``vault login -``, a passphrase into openssl's ``-passin stdin``;
- what a process substitution prints (``<(echo X)``) for an option naming a credential
  (``initdb --pwfile=<(echo X)``) or onto a reader's standard input (``--password-stdin < <(echo X)``);
- the ``send`` answering an expect(1) script's password prompt (``expect "password:"; send "X\\r"``);
  a here-document for a reader is here_docs.py's (its delimiter is a back-reference);
- the password field of a PostgreSQL password file line the command writes
  (``echo db:5432:*:app:X > ~/.pgpass``; the format is
  ``hostname:port:database:username:password``,
  https://www.postgresql.org/docs/current/libpq-pgpass.html).

These alternatives join the ``password`` rule (patterns.py, triggers ``pass`` and
``pw``: every consumer here names one); each starts with a literal character, as
the combined regex needs (patterns.py).
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import DOUBLE_QUOTED, NOT_A_PEM_START, WORD_VALUE

# What ``echo`` prints: a quoted string or a word, up to the pipe.
_ECHOED = r"""(?P<s>'[^']*'?|"(?:[^"\\]|\\[\s\S])*"?|[^\s|;&]+)"""
_ECHO = rf"e(?<![\w-]e)cho\s+(?:-[neE]+\s+)?{_ECHOED}\s*\|\s*"
# The program on the other side of the pipe.
_SETS_PASSWORD = r"(?:sudo\s+(?:-\S+\s+)*)?(?:/\S*/)?(?:chpasswd|passwd)(?![\w-])"
# ``--password-stdin``, ``--pass-stdin``, gpg's ``--passphrase-fd 0`` (descriptor 0: standard input)
_READS_PASSWORD = r"[^|;&\n]*?--pass(?:(?:word)?-stdin(?![\w-])|phrase-fd[ =]0(?![0-9]))"

# Programs that read a password or a secret on standard input (each from its manual): sudo(8)
# ``-S``/``--stdin``, smbpasswd(8) ``-s``, ``openssl passwd -stdin``, htpasswd(1) ``-i``,
# cryptsetup(8) and kinit(1) (a passphrase or password when no terminal is there), vncpasswd(1)
# ``-f``, mkpasswd(1) ``-s``/``-P 0``, ``caddy hash-password`` without ``--plaintext``; secret
# stores: ``gcloud secrets create|versions add --data-file=-``, ``docker|podman secret create
# NAME -``, ``gh secret set NAME`` without ``--body``. Option words between are bounded: sudo's
# at 32 (it has eleven options that take a value and as many switches; ``sudo -u a -g b -H -E -k
# -n -p x -S`` has 12 words before ``-S``, and a bound of 6 kept its password).
_SUDO_WORDS = 32
_READS_STDIN = "|".join(
    [
        rf"(?:/\S*/)?sudo(?:\s+[^\s|;&]+){{0,{_SUDO_WORDS}}}?\s+(?:-[A-Za-z]*S[A-Za-z]*|--stdin)(?![\w-])",
        r"(?:/\S*/)?smbpasswd(?:\s+[^\s|;&]+){0,6}?\s+-[A-Za-z]*s[A-Za-z]*(?![\w-])",
        r"(?:/\S*/)?openssl\s+passwd(?:\s+[^\s|;&]+){0,8}?\s+-stdin(?![\w-])",
        r"(?:/\S*/)?htpasswd(?:\s+[^\s|;&]+){0,6}?\s+-[A-Za-z]*i[A-Za-z]*(?![\w-])",
        r"(?:/\S*/)?(?:cryptsetup|kinit)(?![\w-])",
        r"(?:/\S*/)?vncpasswd(?:\s+[^\s|;&]+){0,4}?\s+-f(?![\w-])",
        r"(?:/\S*/)?mkpasswd(?:\s+[^\s|;&]+){0,6}?\s+(?:-[A-Za-z0-9]*s|--stdin|-P\s*0|--password-fd=0)(?![\w-])",
        r"(?:/\S*/)?caddy\s+hash-password(?![\w-])(?![^|;&\n]{0,256}?--plaintext)",
        r"""[^|;&\n]{0,1024}?--data-file[= ]-(?![^\s"'])""",
        r"""(?:docker|podman)\s+secret\s+create\s+(?:-\S+\s+){0,8}?[^\s-]\S*\s+-(?![^\s"'])""",
        r"gh\s+secret\s+set(?![\w-])(?![^|;&\n]{0,1024}?\s(?:-b|--body)(?:[\s=]|\S))",
        # a token: ``gh auth login --with-token``, ``vault login -``; openssl's ``-passin stdin``
        r"(?:/\S*/)?gh\s+auth\s+login(?:\s+[^\s|;&]+){0,16}?\s+--with-token(?![\w-])",
        r"""(?:/\S*/)?vault\s+login(?:\s+-[^\s|;&]+){0,16}?\s+-(?![^\s"'])""",
        r"(?:/\S*/)?openssl\s[^|;&\n]{0,512}?\s-pass(?:in)?\s+(?:stdin|fd:0)(?![\w-])",
    ]
)
# Lower-case words one of which is in every text these alternatives match (the password
# rule's triggers, patterns.py, besides its own ``pass`` and ``pw``).
STDIN_TRIGGERS: tuple[str, ...] = (
    "sudo",
    "cryptsetup",
    "kinit",
    "data-file",
    "secret",
    "<(",
    "send",
    "with-token",
    "vault",
)

# A process substitution (bash(1)) printing the password: ``<(echo X)``, ``<(printf '%s' X)``; all
# it prints goes, up to its ``)`` outside quotes (``<(echo 'pa)ss')``; ``\"pa)ss\"`` inside a
# double-quoted ``sh -c`` script; an escaped ``\)``). Possessive: each character is read once.
PROC_PRINTS = (
    r"<\(\s*(?:echo|printf)\s+(?:-[neE]+\s+)?"
    # (a private key printed there is the pem_private_key rule's: taking its BEGIN line kept its body)
    + NOT_A_PEM_START
    + r"""(?P<s>(?=[^)\s])(?:\\"[^"\n]*+"?|'[^'\n]*+'?|"(?:[^"\\\n]|\\.)*+"?|[^)\n'"\\]++|\\[^\n]?)++)"""
)
# ... given to an option whose name holds a credential word as the file to read it from
# (``initdb --pwfile=<(echo X)``, ``rsync --password-file <(…)``, openssl ``-pass file:<(…)``): the
# lookahead finds the word, then the name is read once (possessive), so a long name costs one scan.
_PROC_OPTION = (
    r"-(?<![\w./-]-)-?(?=[\w.-]{0,64}?(?i:pass|pw|secret|token|key|cred|auth))[\w.-]++(?:=|\s+)"
    rf"(?:file:)?{PROC_PRINTS}"
)
# ... or as a file of a Secret (``kubectl create secret generic s --from-file=k=<(echo X)``,
# ``--from-env-file=<(printf …)``; a ConfigMap's the same: over-redaction of what is echoed there).
_PROC_SECRET_FILE = rf"-(?<![\w-]-)-from-(?:env-)?file[= ](?:[^\s=<]{{1,256}}=)?{PROC_PRINTS}"
# What it prints onto a reader's standard input (``docker login --password-stdin reg < <(echo X)``,
# ``sudo -S cmd < <(echo X)``) is here_docs.py's: the readers are the same as a here-document's.

# An expect(1) script answering a password, passphrase, PIN or one-time-code prompt: the
# ``send`` (or ``exp_send``) right after such an ``expect`` loses its string
# (``expect "password:"; send "X\r"``, ``expect -re {Enter passphrase.*}``, ``send -- {X}``).
# A marker there already (the text read again) is matched as the value, which leaves it as it is
# and ends the match after it: else ``password:`` would take the rest of the script as its value.
# The second prompt of a new password asks again (``Retype new``, ``Confirm``, ``Verify``, ``again``).
_PROMPT = (
    r"(?i:assword|passphrase|passcode|pin\b|otp|token|secret|verification code|retype|confirm|verify|again)"
)
# A quoted or braced pattern holds no delimiter of its own kind (nor a ``{`` when braced), so each
# character is read by one start only: linear wherever it is tried (_EXPECT_PAIR).
_EXPECTED_DELIMITED = (
    rf"""(?:"[^"\n]{{0,256}}?{_PROMPT}[^"\n]{{0,256}}?"|'[^'\n]{{0,256}}?{_PROMPT}[^'\n]{{0,256}}?'"""
    rf"""|\{{[^{{}}\n]{{0,256}}?{_PROMPT}[^{{}}\n]{{0,256}}?\}})"""
)
_EXPECTED = rf"""(?:{_EXPECTED_DELIMITED}|[^\s;"'{{]{{0,256}}?{_PROMPT}[^\s;]{{0,256}}+)"""
SENT = (
    r"(?:exp_)?send\s+(?:-\S+\s+){0,4}"
    rf"""(?P<s>\[REDACTED\](?![^\s;}}])|{DOUBLE_QUOTED}|'[^']*'?|\\"[^"\n]*+"?|\{{[^}}]*\}}?|{WORD_VALUE})"""
)
# (``\"X\r\"``: quoted inside a double-quoted ``sh -c`` script, up to its closing ``\"``.)
# The action may be Tcl's body after the pattern (``expect "password:" { send "X\r" }``).
_EXPECT_SEND = rf"e(?<![\w-]e)xpect\s+(?:-\S+\s+){{0,4}}{_EXPECTED}(?:[\s;{{]|\\[nr])*+{SENT}"
# A pattern-action pair of an ``expect { … }`` block, wherever it stands among the others
# (``expect { "login:" {send "u\r"; exp_continue} -re "(P|p)assword" {send "X\r"} }``): a quoted or
# braced pattern naming a prompt, then its body.
_EXPECT_PAIR = rf"{_EXPECTED_DELIMITED}(?:\s|\\[nr])*+\{{(?:\s|\\[nr])*+{SENT}"
# Python's pexpect: the ``sendline`` (or ``send``) right after an ``expect`` (``expect_exact``) whose
# quoted pattern, or one pattern of its list, names a prompt (``c.expect('assword:');
# c.sendline('X')``, ``child.expect(['[Pp]assword', pexpect.EOF], timeout=5)\nchild.sendline(\"X\")``).
# The quoted string literal goes (a variable sent is no text to redact). Bounded and possessive: the
# pattern's quotes are _EXPECTED_DELIMITED's, the rest of the call at most 256 characters without
# a parenthesis, the object's name at most four dotted words.
_PEXPECT = (
    rf"\.expect(?:_exact)?\(\s*\[?\s*[rRbBuU]{{0,2}}\\?{_EXPECTED_DELIMITED}[^()\n]{{0,256}}+\)"
    r"(?:[\s;]|\\[nr])*+[A-Za-z_]\w{0,64}+(?:\.\w{1,64}+){0,3}?\.send(?:line)?\(\s*[rRbBuU]{0,2}"
    r"""(?P<s>\\"[^"\n]*+"?|'(?:[^'\\\n]|\\.)*+'?|"(?:[^"\\\n]|\\.)*+"?)"""
)

# ``printf`` instead of ``echo``: every argument up to the pipe (the format and its values).
# Bounded: a text of many ``printf`` words costs a short scan per word, not one to the end.
_PRINTF = r"p(?<![\w-]p)rintf\s+(?P<s>[^|;&\n]{0,1024}?[^|;&\s])\s*\|\s*"
# A here-string after the consumer (bash ``<<<``): ``chpasswd <<< root:X``,
# ``docker login --password-stdin reg <<< X``; the words between are bounded.
# The word ends before a quote that closes the text around it (``sh -c "chpasswd <<< root:X"``).
# Possessive: the words before ``<<<`` hold no ``<``, so the one place it can start is the end of
# their run; a lazy scan tried ``<<<`` at every character (``sudo -S `` x 512: 9 ms, now 1.5).
_HERE_WORD = rf"""(?P<s>'[^']*'?|"(?:[^"\\]|\\[\s\S])*"?|{WORD_VALUE})"""
_HERE = rf"(?![\w-])[^<|;&\n]{{0,256}}+<<<\s*{_HERE_WORD}"

STDIN_SECRET_ALTERNATIVES: tuple[str, ...] = (
    _PROC_OPTION,
    _PROC_SECRET_FILE,
    _EXPECT_SEND,
    _EXPECT_PAIR,
    _PEXPECT,
    f"{_ECHO}(?:{_SETS_PASSWORD}|{_READS_PASSWORD}|{_READS_STDIN})",
    f"{_PRINTF}(?:{_SETS_PASSWORD}|{_READS_PASSWORD}|{_READS_STDIN})",
    # The lookahead first: a ``sudo`` with no ``<<<`` after it costs one short scan, not one per
    # count of option words (``sudo -S `` x 512: 16 ms without it, at 32 words).
    rf"s(?<![\w-]s)udo(?=[^<|;&\n]{{0,1024}}+<<<)(?:\s+[^\s|;&<]+){{0,{_SUDO_WORDS}}}?"
    rf"\s+(?:-[A-Za-z]*S[A-Za-z]*|--stdin){_HERE}",
    rf"s(?<![\w-]s)mbpasswd(?:\s+[^\s|;&<]+){{0,6}}?\s+-[A-Za-z]*s[A-Za-z]*{_HERE}",
    rf"c(?<![\w-]c)hpasswd{_HERE}",
    rf"p(?<![\w-]p)asswd{_HERE}",
    rf"-(?<![\w-]-)-pass(?:word)?-stdin{_HERE}",
    rf"-(?<![\w-]-)-with-token{_HERE}",
    rf"-(?<![\w-]-)-passphrase-fd[ =]0(?![0-9]){_HERE}",
    # A .pgpass line: from the ``:`` before its port (a number or ``*``) to its fifth field (a ``:``
    # or a backslash in it is escaped with a backslash), written to the file (``> ~/.pgpass``, ``>>``,
    # ``| tee -a``). Every part is bounded and possessive, so that a text of many ``x:1:`` costs a
    # short scan per ``:``, never one to the end of the text.
    r""":(?<=[^\s:'"]:)(?:[0-9]{1,5}|\*):[^\s:'"]{1,256}+:[^\s:'"]{1,256}+:(?P<s>(?:[^\s'":\\]|\\\S){1,512}+)"""
    r"""(?=['"]?\s*(?:>>?|\|\s*tee\s+(?:-a\s+)?)\s*[^\s|;&]{0,4096}\.pgpass)""",
)
