"""Credentials that infrastructure and package clients take by position or by a short option.

Found by an adversarial corpus of command lines written from each tool's documented syntax
(session 45, P7): these leaked whole through the filter the agent uses. Each case names the
page its syntax comes from and the part that must go; the output is the text with exactly that
part replaced. The look-alikes after them (the same tools' other words) must stay.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter

_KEY = "IXyR0OJnSFobekZMMCKCoVEpT7wI6l+USMzE3IcyDyo="  # the form of a Vault unseal key or a gossip key
_UUID = "0f1e2d3c-4b5a-4697-8877-665544332211"  # the form of a Snyk API token
_PW = "P7sec-1"


def _filter(text: str) -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # https://docs.snyk.io/snyk-cli/commands/auth run through a package runner with a version
        (f"npx snyk@latest auth {_UUID}", _UUID),
        (f"npx --yes snyk@1.1290.0 auth {_UUID}", _UUID),
        (f'sh -c "pnpm dlx snyk@^1 auth {_UUID} && snyk test"', _UUID),
        # https://docs.snyk.io/snyk-cli/authenticate-to-use-the-cli (snyk config set api=<token>)
        (f"snyk config set api={_UUID}", _UUID),
        # https://developer.hashicorp.com/vault/docs/commands/operator/unseal ([KEY]); OpenBao's bao
        (f"vault operator unseal {_KEY}", _KEY),
        (f"vault operator unseal -address=https://v:8200 {_KEY}", _KEY),
        (f"bao operator unseal {_KEY}", _KEY),
        # https://developer.hashicorp.com/vault/docs/commands/operator/rekey (a key share as argument)
        (f"vault operator rekey -nonce=abcd {_KEY}", _KEY),
        # https://developer.hashicorp.com/consul/commands/keyring (-install, -use, -remove KEY)
        (f"consul keyring -install={_KEY}", _KEY),
        (f"consul keyring -use {_KEY}", _KEY),
        # https://developer.hashicorp.com/consul/docs/agent/config/cli-flags (-encrypt) and Nomad's agent
        (f"consul agent -server -encrypt={_KEY} -data-dir=/c", _KEY),
        (f"nomad agent -encrypt {_KEY}", _KEY),
        # https://developer.hashicorp.com/nomad/commands/operator/gossip/keyring-install (<key>)
        (f"nomad operator gossip keyring install {_KEY}", _KEY),
        (f"nomad operator keyring use {_KEY}", _KEY),
        # https://learn.microsoft.com/en-us/cli/azure/sql/server#az-sql-server-create (--admin-password -p)
        (f"az sql server create -g rg -n s -u admin -p {_PW}", _PW),
        (f"az postgres flexible-server create -u a -p {_PW}", _PW),
        # https://learn.microsoft.com/en-us/cli/azure/containerapp/secret (--secrets: the whole list)
        (f"az containerapp secret set -n app --secrets dbpass={_PW} k2=x2 -g rg", f"dbpass={_PW} k2=x2"),
        # https://oras.land/docs/commands/oras_push (-p, --password on every remote command)
        (f"oras push reg.corp/x:1 -u bob -p {_PW} f.txt", _PW),
        # https://python-poetry.org/docs/cli/#publish (-p, --password) and uv publish (-p, -t)
        (f"poetry publish -u bob -p {_PW}", _PW),
        (f"uv publish -t {_PW} dist/*", _PW),
        (f"uv publish -u bob -p {_PW}", _PW),
        # https://docs.influxdata.com/influxdb/v2/reference/cli/influx/write/ (-t, --token)
        (f"influx write -t {_PW} -b b -o o 'm v=1'", _PW),
        # https://neo4j.com/docs/operations-manual/current/cypher-shell/ (-p, --password)
        (f"cypher-shell -a bolt://h -u neo4j -p {_PW}", _PW),
        # https://neo4j.com/docs/operations-manual/current/configuration/set-initial-password/
        (f"neo4j-admin dbms set-initial-password {_PW}", _PW),
        # https://man7.org/linux/man-pages/man8/useradd.8.html and usermod(8) (-p, --password: the hash)
        ("useradd -m -p $6$salt$P7hash bob", "$6$salt$P7hash"),
        (f"usermod -p {_PW} bob", _PW),
        # https://min.io/docs/minio/linux/reference/minio-mc/mc-config.html (config host add … ACCESS SECRET)
        (f"mc config host add m http://m:9000 admin {_PW}", f"admin {_PW}"),
        # https://docs.aws.amazon.com/cli/latest/reference/elasticache/create-user.html (--passwords a b …)
        (f"aws elasticache create-user --user-id u --passwords {_PW} x2 --access-string on", f"{_PW} x2"),
        # https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/ (SENTINEL SET … auth-pass,
        # the configuration's sentinel auth-pass NAME PASSWORD given as a directive)
        (f"redis-server /s.conf --sentinel auth-pass mymaster {_PW}", _PW),
        (f"redis-cli -p 26379 SENTINEL SET mymaster auth-pass {_PW}", _PW),
        # https://etcd.io/docs/v3.5/op-guide/authentication/rbac/ (user add <name or name:password>)
        (f"etcdctl user add bob:{_PW}", _PW),
    ],
)
def test_a_key_or_password_a_client_takes_by_position_or_short_option_goes(text: str, secret: str) -> None:
    out = _filter(text)
    assert out == text.replace(secret, "[REDACTED]")
    assert "P7sec" not in out and "P7hash" not in out and _KEY not in out and _UUID not in out


@pytest.mark.parametrize(
    "text",
    [
        "npx snyk@latest test --all-projects",
        "ssh mysql@10.0.0.5 -p 2222",
        "vault operator unseal",  # prompts
        "vault operator unseal -reset",
        "vault operator rekey -init -key-shares=5 -key-threshold=3",
        "consul keyring -list",
        "consul agent -server -bootstrap-expect=3 -data-dir=/c",
        "nomad operator gossip keyring list",
        "az deployment group create -g rg -f main.bicep -p params.json",
        "az sql db create -g rg -s srv -n db",
        "oras discover -o tree reg.corp/x:1",
        "uv pip install -p 3.12 pkg",
        "uv run -p 3.12 app.py",
        "influx write -b b -o o -p s 'm v=1'",
        "useradd -m -s /bin/bash bob",
        "mc config host list",
        "aws elasticache describe-users --user-id u",
        "redis-cli -p 26379 SENTINEL get-master-addr-by-name mymaster",
        "etcdctl user add bob",  # prompts
        "etcdctl user list",
    ],
)
def test_other_words_of_those_clients_stay(text: str) -> None:
    assert _filter(text) == text


@pytest.mark.parametrize(
    ("binary", "arguments", "secret"),
    [
        ("/usr/bin/npx", f"snyk@latest auth {_UUID}", _UUID),
        ("/usr/local/bin/vault", f"operator unseal {_KEY}", _KEY),
        ("/bin/consul", f"keyring -install {_KEY}", _KEY),
        ("/usr/bin/oras", f"pull reg/x:1 -p {_PW}", _PW),
    ],
)
def test_the_agents_path_drops_them_from_an_exec(binary: str, arguments: str, secret: str) -> None:
    # PrivacyFilter.apply: the process's arguments as Tetragon gives them, the binary apart
    ev = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, binary=binary, arguments=arguments),
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    assert ev.process is not None
    assert ev.process.arguments == arguments.replace(secret, "[REDACTED]")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # https://www.pulumi.com/docs/iac/cli/commands/pulumi_config_set/ (--secret after the pair; a
        # key naming a secret without it; --secret before the pair: test_pulumis_secret_flag_first)
        (f"pulumi config set dbPassword {_PW} --secret", _PW),
        (f"pulumi config set region-id {_PW} -s dev --secret", _PW),
        (f"pulumi config set db:adminPassword {_PW}", _PW),
        # https://docs.aws.amazon.com/cli/latest/reference/cloudformation/create-stack.html (--parameters
        # ParameterKey=K,ParameterValue=V: the value of a key naming a secret)
        (
            f"aws cloudformation create-stack --parameters ParameterKey=DBPassword,ParameterValue={_PW}",
            _PW,
        ),
        # https://docs.doppler.com/docs/cli (secrets set NAME VALUE, NAME=VALUE …: each value, its names too)
        (f"doppler secrets set API_URL {_PW}", f"API_URL {_PW}"),
        (f"doppler secrets set A={_PW} B=x2 --silent", f"A={_PW} B=x2"),
        # https://gitlab.com/gitlab-org/cli/-/blob/main/docs/source/auth/login.md (-t, --token)
        (f"glab auth login --hostname gitlab.corp -t {_PW}", _PW),
        # https://docs.gitlab.com/runner/commands/ (register -r, --registration-token)
        (f"gitlab-runner register --url https://g -r {_PW}", _PW),
        # https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-token/ (token create [token])
        ("kubeadm token create abcdef.p7sec0123456789a --ttl 2h", "abcdef.p7sec0123456789a"),
        # https://learn.microsoft.com/en-us/cli/azure/vm/user#az-vm-user-update (-p, --password)
        (f"az vm user update -g rg -n vm -u bob -p {_PW}", _PW),
        # https://getcomposer.org/doc/articles/authentication-for-private-packages.md
        (f"composer config --global http-basic.repo.corp bob {_PW}", _PW),
        (f"composer config -g github-oauth.github.com {_PW}", _PW),
        (f"composer config gitlab-token.gitlab.corp {_PW}", _PW),
        # https://bundler.io/man/bundle-config.1.html (credentials for gem sources: HOST user:password)
        (f"bundle config set --global gems.contribsys.com bob:{_PW}", _PW),
        (f"bundle config gems.corp.com {_PW}", _PW),
        # https://learn.microsoft.com/en-us/dotnet/core/tools/dotnet-nuget-add-source (-p, --password) and
        # dotnet nuget push (-k, --api-key); nuget.exe setapikey <key>
        (f"dotnet nuget add source https://n -n corp -u bob -p {_PW}", _PW),
        (f"dotnet nuget push x.nupkg -k {_PW} -s https://api.nuget.org", _PW),
        (f"nuget setapikey {_PW} -source https://n", _PW),
        (f"nuget push x.nupkg {_PW} -Source https://n", _PW),
        (f"conda token set {_PW}", _PW),
        # SonarQube's scanner property sonar.login (a token; sonar.token since 10)
        (f"mvn sonar:sonar -Dsonar.login={_PW}", _PW),
        (f"sonar-scanner -Dsonar.login={_PW} -Dsonar.host.url=https://s", _PW),
    ],
)
def test_a_secret_a_deploy_or_package_client_takes_by_position_goes(text: str, secret: str) -> None:
    out = _filter(text)
    assert out == text.replace(secret, "[REDACTED]")
    assert "P7sec" not in out and "p7sec" not in out


@pytest.mark.parametrize(
    "text",
    [
        "pulumi config set aws:region eu-west-1",
        "pulumi config get dbPassword",
        "aws cloudformation create-stack --parameters ParameterKey=Env,ParameterValue=prod",
        "doppler secrets get API_URL --plain",
        "glab mr list -t bug",
        "gitlab-runner run -r 5",
        "kubeadm token list",
        "composer config --global process-timeout 2000",
        "bundle config set --local path vendor/bundle",
        "bundle config set --global mirror.https://rubygems.org https://m.corp",
        "bundle config build.nokogiri --use-system-libraries",
        "env BUNDLE_PATH=vendor/bundle BUNDLE_WITHOUT=dev bundle install",
        "dotnet nuget list source",
        "nuget push x.nupkg -Source https://n -SkipDuplicate",
        "conda token list",
        "dotnet publish -p:Version=1.2",
        "mvn sonar:sonar -Dsonar.host.url=https://s -Dsonar.projectKey=app",
    ],
)
def test_other_words_of_those_deploy_and_package_clients_stay(text: str) -> None:
    assert _filter(text) == text


def test_composers_auth_switch_takes_the_key_and_the_rule_the_secret() -> None:
    # any program's ``--auth X`` loses X (here the key); composer's rule takes the secret after it
    assert _filter(f"composer config --auth gitlab-token.gitlab.corp {_PW}") == (
        "composer config --auth [REDACTED] [REDACTED]"
    )
    assert _filter(f"composer config -g --auth http-basic.r.corp bob {_PW}") == (
        "composer config -g --auth [REDACTED] bob [REDACTED]"
    )


def test_pulumis_secret_flag_first_takes_the_value_and_the_key_after_it() -> None:
    # any program's ``--secret X`` loses X (patterns.py), here the key; pulumi's rule takes the value
    assert (
        _filter(f"pulumi config set --secret dbPassword {_PW}")
        == "pulumi config set --secret [REDACTED] [REDACTED]"
    )
    out = _filter(f"pulumi config set -s dev --secret region-id {_PW}")
    assert out == "pulumi config set -s dev --secret [REDACTED] [REDACTED]"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # the other spellings docs/privacy.md's client table names for these rows
        (f"vault operator generate-root -nonce=n {_KEY}", _KEY),
        (f"bao login {_PW}", _PW),
        (f"consul keyring -remove={_KEY}", _KEY),
        (f"consul keyring --init {_KEY}", _KEY),
        (f"nomad operator gossip keyring remove {_KEY}", _KEY),
        (f"az mysql server update -g rg -n s -p {_PW}", _PW),
        (f"az sql mi create -g rg -n mi -u a -p {_PW}", _PW),
        (f"composer config bitbucket-oauth.bitbucket.org k1 {_PW}", _PW),
        (f"composer config gitlab-oauth.gitlab.corp {_PW}", _PW),
        (f"composer config bearer.repo.corp {_PW}", _PW),
        (f"env BUNDLE_GEMS__CONTRIBSYS__COM=bob:{_PW} bundle install", f"bob:{_PW}"),
        (f"dotnet nuget update source corp -u bob -p {_PW}", _PW),
        (f"dotnet nuget delete x 1.0 -k {_PW}", _PW),
        (f"valkey-server /s.conf --sentinel auth-pass m {_PW}", _PW),
        ("kubeadm token delete abcdef.p7sec0123456789a", "abcdef.p7sec0123456789a"),
    ],
)
def test_the_tables_other_spellings_go(text: str, secret: str) -> None:
    out = _filter(text)
    assert out == text.replace(secret, "[REDACTED]")
    assert "P7sec" not in out and "p7sec" not in out and _KEY not in out
