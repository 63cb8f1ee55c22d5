"""Options whose name says they hold a credential, for any program.

Why this exists: ``-pass pass:X`` (openssl), ``--storepass X``, ``--creds
user:X``, ``--from-literal=K=X``, ``--pin X``, ``--otp X`` name a secret
whatever program runs them, so unlike the short options of ``cli_options``
(``-p`` is a password for mysql and a port for docker) they need no client:
``CLI_FLAG_SECRET`` joins the default one-regex pass of ``patterns``. Kept
apart from the per-client tables, which are compiled per client.
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import SecretPattern, number_groups
from stellaops_runtime.privacy.cli_syntax import AFTER_COLON, VALUE

# The words before a flag's last word pin or otp that say it names no PIN or one-time code: CPU,
# GPU, NUMA, memory, node, socket, thread and IRQ pinning (--cpu-pin 3, --gpu-pin 0,1), a TLS
# certificate or public-key pin (--tls-pin sha256//…), a hash, digest, image, version or DNS pin,
# the Erlang/OTP release (--erlang-otp 25). One fixed-width lookbehind each, any case. A deny list:
# a word not listed (--sim-pin, --new-pin, --admin-pin) still loses the value.
_NOT_A_PIN = "".join(
    rf"(?<!(?i:[-_]{word})[-_])"
    for word in [
        "cpu",
        "cpus",
        "vcpu",
        "vcpus",
        "gpu",
        "gpus",
        "core",
        "cores",
        "numa",
        "mem",
        "memory",
        "node",
        "socket",
        "thread",
        "irq",
        "hash",
        "digest",
        "image",
        "version",
        "dns",
        "tls",
        "ssl",
        "cert",
        "public-key",
        "erlang",
    ]
)


# Options whose name says what they are, for any program: -pass/-passin/-passout pass:X
# (openssl), names ending in "pass" (--pass, -storepass, -keypass, --proxy-pass),
# --oauth2-bearer, --creds/--src-creds/--dest-creds user:password (skopeo, buildah,
# podman), --from-literal=KEY=VALUE (kubectl create secret).
CLI_FLAG_SECRET = SecretPattern(
    "cli_flag_secret",
    number_groups(
        "|".join(
            [
                r"-(?<![\w./-]-)pass(?:in|out)?\s+pass:(?P<s>\S+)",
                # (a switch saying there is none is no option with a value: impacket's ``-no-pass``)
                r"-(?<![\w./-]-)-?(?!(?i:no)-)(?:[A-Za-z0-9]+[-_.])*[A-Za-z0-9]*(?i:pass)(?:=|\s+(?![-\s]))"
                + VALUE,
                r"-(?<![\w./-]-)-oauth2-bearer(?:=|\s+)" + VALUE,
                # a personal access token after a flag whose last word is pat (GitHub Enterprise
                # Importer's --github-source-pat, --ado-pat; --pat): two dashes, not --no-pat
                r"-(?<![\w./-]-)-(?!(?i:no)-)(?:[A-Za-z0-9]+[-_])*(?i:pat)(?:=|\s+(?![-\s]))" + VALUE,
                r"-(?<![\w./-]-)-(?:src-|dest-)?creds(?:=|\s+)" + AFTER_COLON,
                # (the pair quoted whole, its value holding a space: ``'key=a b'``, ``\"key=a b\"``)
                r"-(?<![\w./-]-)-from-literal(?:=|\s+)'[^\s=']+=(?P<s>[^'\n]*+)'?",
                r'-(?<![\w./-]-)-from-literal(?:=|\s+)\\?"[^\s="\\]+=(?P<s>(?:[^"\\\n]|\\(?!")[^\n])*+)(?:\\?")?',
                r"-(?<![\w./-]-)-from-literal(?:=|\s+)[^\s=]+=" + VALUE,
                # a command printing the secret (restic and rclone --password-command "echo X",
                # rclone's --webdav-bearer-token-command): the whole command goes
                r"-(?<![\w./-]-)-(?:[A-Za-z0-9]+-)*(?:pass(?:word)?|token)-command(?:=|\s+(?![-\s]))" + VALUE,
                # a PIN or a one-time code after its flag (pkcs11-tool --pin/--so-pin, aws sts
                # --token-code, Duo's --passcode, --otp/--totp, aws iam enable-mfa-device
                # --authentication-code1/2); the flag's own name, not a part of one (--pin-cpus,
                # --spin, --exit-code stay)
                # (also with underscores: --otp_code, --user_pin)
                # A last word pin or otp after a word naming what is pinned or released is no
                # secret (--cpu-pin, --tls-pin, --erlang-otp: _NOT_A_PIN).
                r"-(?<![\w./-]-)-(?:[A-Za-z0-9]+[-_])*(?:" + _NOT_A_PIN + r"(?i:pin|otp)|(?i:totp|hotp)"
                r"|(?i:passcode|authentication-code[12]"
                r"|(?:token|mfa|otp|totp|auth|verification|2fa|one-time)[-_]code))(?:=|\s+(?![-\s]))" + VALUE,
            ]
        )
    ),
    triggers=(
        *("pass", "bearer", "creds", "from-literal", "token-command", "pin", "otp", "-code", "_code"),
        *("-pat", "_pat"),
    ),
)
