"""Credential options of infrastructure and package clients (a family of ``cli_options``).

Why this exists: an adversarial corpus written from these tools' manuals (session 45) found
keys and passwords that they take by position or by a short option, which no option name
tells: Vault's and OpenBao's unseal key share (``vault operator unseal KEY``), Consul's and
Nomad's gossip encryption key (``consul keyring -install KEY``, ``-encrypt KEY``), ``az sql
server create -p``, ``oras push -p``, ``poetry publish -p``, ``uv publish -t``, ``influx
write -t``, ``cypher-shell -p``, ``useradd -p``. ``cli_options`` merges ``INFRA_RULES`` into
its table by client name (a client may have rules in both); the forms of a value are
``cli_syntax``'s. Every rule cites its manual page; tests/unit/test_privacy_infra_clients.py
holds each case and the same tools' other words, which stay.
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import NOT_A_MARKER
from stellaops_runtime.privacy.cli_syntax import QUOTED_WORD, START, VALUE, after_sub, sep, sep_or_eq

__all__ = ["INFRA_RULES", "OPTIONS_THEN_TOKEN"]

# A command's options, then a token as its argument (``vault login -method=token T``, ``snyk auth T``):
# a token holding a space is quoted whole; a quote closing a ``sh -c`` script is not the token's; an
# option, quoted or not, never is (``"-method=token"``).
OPTIONS_THEN_TOKEN = (
    r"(?:[\"']?-\S+\s+)*+"
    rf"(?P<s>{QUOTED_WORD}|{NOT_A_MARKER}[^\s=\"'\\-](?:[^\s=\"']|[\"'](?=[^\s=]))*(?=[\s\"']|$))"
)

# A key share or a gossip key as a command's argument after its options: base64, so ``=`` may end it
# (``OPTIONS_THEN_TOKEN`` refuses ``=``: ``vault login token=X`` is a pair the key rules read).
_KEY_WORD = rf"(?P<s>{QUOTED_WORD}|{NOT_A_MARKER}[^\s=\"'\\-][^\s\"']*)"
_OPTIONS_THEN_KEY = rf"(?:[\"']?-\S+\s+)*+{_KEY_WORD}"
# The same key as the command's last word, after options of which some take a value as the next word
# (``-address https://v:8200 KEY``: Go's flags; read first, else the address was taken for the key and
# the key stored). Each option either takes the next word or not; a wrong guess fails at once (the key
# must end the command), so the cost stays linear.
_OPTIONS_THEN_LAST = r"(?:[\"']?-\S+\s+(?:(?![\"']?-)\S+\s+)??)*?"
_OPTIONS_THEN_LAST_KEY = rf"{_OPTIONS_THEN_LAST}{_KEY_WORD}(?=[\s\"']*$)"
# -p after a subcommand: separate, ``=`` or glued (pflag and knack read all three)
_P = rf"{START}-p(?:=|\s+(?![-\s])|(?=[^\s=])){VALUE}"

# Redis Sentinel's password of a master: SENTINEL SET NAME auth-pass PASSWORD, or the configuration's
# ``sentinel auth-pass NAME PASSWORD`` (a directive given as ``--sentinel …`` too)
_AUTH_PASS = r"(?<!\S)(?:(?:--)?(?i:sentinel)\s+(?i:auth-pass)\s+\S+|(?i:auth-pass))\s+(?![-\s])" + VALUE
# useradd's and usermod's -p HASH: not a command substitution, whose own command the rules read
# (``-p $(mkpasswd -m sha-512 X)``: mkpasswd's)
_USERADD_P = rf"{START}-p(?:=|\s+(?!-)|(?=\S))(?![\s\"']?\$\(|[\"']?`){VALUE}"
# A word naming a secret, as a configuration key's last part (``dbPassword``, ``db:adminPassword``)
# (quoted: its closing quote may be a single-quoted script's escaped one, ``'"'"'``, RP7)
_SECRET_NAME = (
    r"[^\s=-]\S{0,64}?(?i:password|passwd|pwd|secret|token|key|pass)"
    r"""(?:'(?:\\'|\\?"'\\?")'|["'])?"""
)
# Options between a subcommand and its words, bounded: pulumi's options that take a value take it
# (``-s dev``, ``--stack=dev``, ``-C dir``: else ``dev`` was taken for the key and the key for the
# value, RP7), the others none (``--secret``, ``--path``)
_SWITCHES = (
    r"(?:(?:(?:-s|--stack|-C|--cwd|--config-file|--type|--color|-v|--verbosity)(?:=|\s+)\S+"
    r"|--?[\w-]++(?:=\S*+)?)\s+){0,8}+"
)
# pulumi config set [--secret] KEY VALUE [--secret]: with --secret (before or after) any value is one,
# without it a key naming a secret
# (other options, with their values, at most 8 words, before or after; ``--`` before the value, which
# may then start with a dash: it was taken for the value, and the value stored)
_DD = r"(?:--\s+)?+"
_PULUMI = (
    rf"(?<!\S)config\s+set\s+(?:\S+\s+){{0,8}}?--secret\s+{_SWITCHES}[^\s-]\S*\s+{_DD}{VALUE}",
    rf"(?<!\S)config\s+set\s+{_SWITCHES}[^\s-]\S*\s+{VALUE}(?=(?:\s+\S+){{0,8}}?\s+--secret(?![^\s\"']))",
    rf"(?<!\S)config\s+set\s+{_SWITCHES}{_SECRET_NAME}\s+(?:--\s+|(?![-\s])){VALUE}",
)
# anaconda-client's global -t/--token before the subcommand (``anaconda -t TOKEN upload``; after it
# ``upload -t`` is the package type): read from the command's start, across its global options
# (-s/--site take a value); argparse's ``-t=T`` and ``-tT`` too; a path is no token (``pip install
# anaconda -t /opt/target``)
_ANACONDA = (
    r"(?:(?<=anaconda)\s+|\A\s*)(?:(?:-s|--site)(?:=|\s+)\S+\s+|(?:--[\w-]++|-(?!t)[\w-]++)\s+){0,8}+"
    rf"-t(?:=|\s+|(?=[^\s=]))(?![\"']?[/~.])(?!-){VALUE}"
)
# client name -> its credential options (regex alternatives, each with a (?P<s>) group)
INFRA_RULES: dict[tuple[str, ...], tuple[str, ...]] = {
    # https://developer.hashicorp.com/vault/docs/commands/operator/unseal (unseal [options] [KEY]),
    # operator rekey and generate-root (a key share as argument; "-" reads standard input), the same
    # in OpenBao's bao (https://openbao.org/docs/commands/operator/unseal)
    ("vault", "bao"): (
        rf"(?<!\S)operator\s+(?:unseal|rekey|generate-root)\s+{_OPTIONS_THEN_LAST_KEY}",
        rf"(?<!\S)operator\s+(?:unseal|rekey|generate-root)\s+{_OPTIONS_THEN_KEY}",
    ),
    # https://developer.hashicorp.com/consul/commands/keyring (-install, -use, -remove, the older -init)
    # and the agent's gossip key (-encrypt), Go flags: ``-f=V`` or ``-f V``, one dash or two
    ("consul",): (sep_or_eq("--?(?:install|use|remove|init|encrypt)"),),
    # https://developer.hashicorp.com/nomad/commands/operator/gossip/keyring-install (install|use|remove
    # <key>; "operator keyring" before 1.4) and the agent's -encrypt
    ("nomad",): (
        sep_or_eq("--?encrypt"),
        rf"(?<!\S)keyring\s+(?:install|use|remove)\s+{_OPTIONS_THEN_LAST_KEY}",
        rf"(?<!\S)keyring\s+(?:install|use|remove)\s+{_OPTIONS_THEN_KEY}",
    ),
    # https://learn.microsoft.com/en-us/cli/azure/sql/server#az-sql-server-create (--admin-password -p),
    # postgres/mysql (flexible-)server and sql mi create|update alike;
    # https://learn.microsoft.com/en-us/cli/azure/containerapp/secret (--secrets name=value ...: the whole
    # list, up to the next option)
    ("az",): (
        after_sub(r"(?:server|flexible-server|mi)\s+(?:create|update)", _P),
        after_sub(r"vm\s+user\s+update", _P),
        r"(?<!\S)--secrets?\s+(?P<s>[^\s=-][^\s=]*=\S*(?:\s+[^\s=-][^\s=]*=\S*)*)",
    ),
    # https://oras.land/docs/commands/oras_push (-p, --password on every command that reaches a registry)
    ("oras",): (_P,),
    # https://python-poetry.org/docs/cli/#publish (-p, --password)
    ("poetry",): (after_sub("publish", sep_or_eq("-p")),),
    # https://docs.astral.sh/uv/reference/cli/#uv-publish (-p, --password; -t, --token)
    ("uv",): (after_sub("publish", sep_or_eq("-p")), after_sub("publish", sep_or_eq("-t"))),
    # https://docs.influxdata.com/influxdb/v2/reference/cli/influx/ (-t, --token on every command)
    ("influx",): (sep_or_eq("-t"),),
    # https://neo4j.com/docs/operations-manual/current/cypher-shell/ (-p, --password) and
    # neo4j-admin (dbms) set-initial-password PASSWORD
    ("cypher-shell",): (sep_or_eq("-p"),),
    ("neo4j-admin",): (rf"(?<!\S)set-initial-password\s+{OPTIONS_THEN_TOKEN}",),
    # https://man7.org/linux/man-pages/man8/useradd.8.html and usermod(8) (-p, --password: the hash)
    ("useradd", "usermod"): (_USERADD_P,),
    # https://min.io/docs/minio/linux/reference/minio-mc/mc-config.html (config host add ALIAS URL
    # ACCESSKEY SECRETKEY, the older form of alias set)
    ("mc",): (r"(?<!\S)config\s+host\s+add\s+\S+\s+\S+\s+(?P<s>\S+\s+\S+)",),
    # https://docs.aws.amazon.com/cli/latest/reference/elasticache/create-user.html (--passwords a b …)
    # and cloudformation's --parameters ParameterKey=K,ParameterValue=V (a key naming a secret)
    ("aws",): (
        r"(?<!\S)--passwords(?:=|\s+)(?P<s>[^\s-]\S*(?:\s+[^\s-]\S*)*)",
        rf"(?i:ParameterKey)={_SECRET_NAME},(?i:ParameterValue)=(?P<s>[^\s,\"']+)",
    ),
    # https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/ (SENTINEL SET NAME
    # auth-pass PASSWORD; the configuration's ``sentinel auth-pass NAME PASSWORD``)
    ("redis-cli", "valkey-cli", "keydb-cli"): (_AUTH_PASS,),
    ("redis-server", "redis-sentinel", "valkey-server"): (_AUTH_PASS,),
    # https://etcd.io/docs/v3.5/op-guide/authentication/rbac/ (user add <name or name:password>)
    # https://www.pulumi.com/docs/iac/cli/commands/pulumi_config_set/
    ("pulumi",): _PULUMI,
    # https://docs.doppler.com/docs/cli (secrets set NAME VALUE, or NAME=VALUE …): the list, its names too
    # (an option's value before the list starts it: ``-p proj -c dev NAME X`` loses ``proj`` to ``X``,
    # options inside it stay, RP7)
    ("doppler",): (
        r"(?<!\S)secrets\s+set\s+(?:--?[\w-]++(?:=\S*+)?\s+)*+"
        r"(?P<s>[^\s-]\S*+(?:\s+(?:-\S++\s++)*+[^\s-]\S*+)*)",
    ),
    # https://gitlab.com/gitlab-org/cli/-/blob/main/docs/source/auth/login.md (-t, --token)
    ("glab",): (after_sub(r"auth\s+login", sep_or_eq("-t")),),
    # https://docs.gitlab.com/runner/commands/ (register -r, --registration-token)
    ("gitlab-runner",): (after_sub("register", sep_or_eq("-r")),),
    # https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-token/ (token create|delete TOKEN)
    ("kubeadm",): (r"(?<!\S)token\s+(?:create|delete)\s+(?:--?\S+\s+)*?(?P<s>[a-z0-9]{6}\.[a-z0-9]{16})",),
    # https://getcomposer.org/doc/articles/authentication-for-private-packages.md (http-basic.HOST USER
    # PASSWORD, bitbucket-oauth.HOST KEY SECRET, github-oauth|gitlab-oauth|gitlab-token|bearer.HOST TOKEN)
    ("composer",): (
        rf"(?<!\S)(?:http-basic|bitbucket-oauth)\.\S+\s+\S+\s+{VALUE}",
        rf"(?<!\S)(?:github-oauth|gitlab-oauth|gitlab-token|bearer)\.\S+\s+{VALUE}",
        # after --auth, any program's ``--auth X`` took the key (patterns.py): the last word is the secret
        # (then an option, another command or the end: ``--auth K u X --global``, ``… X && composer install``)
        rf"(?<!\S)--auth\s+\S+\s+(?:[^\s-]\S*\s+)?(?![-;|&\s]){VALUE}(?=[\s\"']*$|[\s\"']+[-;|&]|;)",
    ),
    # https://bundler.io/man/bundle-config.1.html (credentials of a gem source: HOST user:password or a
    # token; a key of host form only, a value that is no option)
    ("bundle",): (
        r"(?<!\S)config\s+(?:set\s+)?(?:--(?:global|local)\s+)?[\w-]+(?:\.[\w-]+)+\s+"
        r"(?![\"']?-)(?:[^\s:]+:)?(?P<s>[^\s:]\S*)",
    ),
    # https://learn.microsoft.com/en-us/dotnet/core/tools/dotnet-nuget-add-source (-p) and
    # dotnet-nuget-push (-k); nuget.exe setapikey <key>
    ("dotnet",): (
        after_sub(r"nuget\s+(?:add|update)\s+source", sep("-p")),
        after_sub(r"nuget\s+(?:push|delete)", sep("-k")),
    ),
    # (and nuget.exe push <package> [<apiKey>]: https://learn.microsoft.com/en-us/nuget/reference/cli-reference/cli-ref-push)
    ("nuget", "nuget.exe"): (
        rf"(?<!\S)(?i:setapikey)\s+{VALUE}",
        rf"(?<!\S)(?i:push)\s+[^\s-]\S*\s+(?![-/\s]){VALUE}",
    ),
    # https://docs.anaconda.com/anaconda-org/user-guide/work-with-tokens/ (anaconda -t TOKEN upload)
    ("anaconda",): (_ANACONDA,),
    # https://docs.anaconda.com/anaconda-org/user-guide/work-with-tokens/ (conda token set TOKEN)
    # (after an option and its value, ``-s SITE``: the last word, RP7)
    ("conda",): (
        rf"(?<!\S)token\s+set\s+{_OPTIONS_THEN_LAST}(?![-\s]){VALUE}(?=[\s\"']*$)",
        rf"(?<!\S)token\s+set\s+(?![-\s]){VALUE}",
    ),
    ("etcdctl",): (r"(?<!\S)user\s+add\s+[^\s:-][^\s:]*:(?P<s>\S+)",),
}
