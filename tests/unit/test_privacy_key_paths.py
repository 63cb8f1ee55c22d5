"""A secret environment name at the end of a path of keys (``env.DBPASS``) or in camelCase loses its value.

Session 47's leak (LK, session 48): the ``NAME=value`` rule (env_names.argument_regex) read no name
right after ``.``, so Helm's ``--set env.DBPASS=x`` and a yq or jq assignment ``.env.DBPASS = "x"``
stored the password of every name only the environment globs take (``DBPASS``, ``GITHUB_PAT``,
``DB_CREDS``); a name holding a key word (``a.b.password=x``) was already the key rules'. A camelCase
Helm name only a glob takes (``--set githubPat=x``) kept its value too (no upper-case name). Each case
runs as the exec the agent filters; the look-alikes are settings the ``NAME=value`` rule keeps.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments as _exec
from tests.privacy_events import written_buffer as _write

_PW = "LK-dotted"


@pytest.mark.parametrize("name", ["DBPASS", "GITHUB_PAT", "DB_CREDS", "db_creds", "SENTRY_DSN"])
def test_helms_set_of_a_dotted_name_loses_the_value(name: str) -> None:
    assert _exec("/usr/local/bin/helm", f"upgrade r ./c --set env.{name}={_PW} -n x") == (
        f"upgrade r ./c --set env.{name}=[REDACTED] -n x"
    )
    # the settings joined by ``,`` after it go too (a value runs to whitespace, as the key rules' does)
    assert _exec("/usr/local/bin/helm", f"install r c --set-string a.b.{name}={_PW},a.c=1") == (
        f"install r c --set-string a.b.{name}=[REDACTED]"
    )
    # the key word form was the key rules' already
    assert _exec("/usr/local/bin/helm", f"install r c --set-string a.b.password={_PW}") == (
        "install r c --set-string a.b.password=[REDACTED]"
    )


@pytest.mark.parametrize("op", ["=", " = ", " |= ", " == "])
def test_a_yq_or_jq_assignment_of_a_dotted_name_loses_the_value(op: str) -> None:
    assert _exec("/usr/bin/yq", f"-i '.env.DBPASS{op}\"{_PW} x\"' values.yml") == (
        f"-i '.env.DBPASS{op}[REDACTED]' values.yml"
    )
    assert _exec("/usr/bin/jq", f"'.GITHUB_PAT{op}\"{_PW}\"' c.json") == f"'.GITHUB_PAT{op}[REDACTED]' c.json"


@pytest.mark.parametrize(
    "name", ["githubPat", "GitlabPAT", "dbCreds", "sentryDsn", "awsCredentials", "s3KeyBase64"]
)
def test_a_camel_case_helm_setting_only_a_glob_takes_loses_the_value(name: str) -> None:
    assert _exec("/usr/local/bin/helm", f"upgrade r c --set {name}={_PW} --set app.{name}={_PW},b=1") == (
        f"upgrade r c --set {name}=[REDACTED] --set app.{name}=[REDACTED]"
    )
    assert (
        _exec("/usr/bin/yq", f"-i '.app.{name} = \"{_PW}\"' v.yml") == f"-i '.app.{name} = [REDACTED]' v.yml"
    )


def test_camel_case_settings_that_name_no_secret_stay() -> None:
    kept = "upgrade r c --set useJwt=true,sortKey=name,filePattern=x,loadCreds=1"
    assert _exec("/usr/local/bin/helm", kept) == kept


def test_dotted_settings_the_name_rule_keeps_stay() -> None:
    for kept in (
        "upgrade r c --set image.tag=1.2,env.LANG=C,x.use_jwt=true",
        "-i '.env.USER = \"bob\"' v.yml",
        "-Dlogging.level.root=INFO",
    ):
        assert _exec("/usr/bin/app", kept) == kept


def test_the_dotted_form_costs_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 17))
    for unit in (
        ".DBPASS ",
        "a.DBPASS = ",
        ".DBPASS |",
        ".DBPASS=x,",
        "githubPatX",
        "aPat.",
        "dbCreds = ",
        "DBPASS = ",
        "db_creds  =  ",
        '.["DBPASS"] = ',  # a quoted key of a path (RLK)
        '."db_creds"] |',
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit


def test_a_configured_glob_alone_takes_its_camel_case_names() -> None:
    # the rule runs only on a trigger, a glob's literal part (``_pat``), which a camelCase name lacks
    pf = PrivacyFilter(PrivacyConfig(default_patterns=False, extra_env_name_patterns=["*_PAT"]))
    assert pf.filter_field(f"--set githubPat={_PW}") == "--set githubPat=[REDACTED]"
    assert pf.filter_field(f"githubPat: {_PW}") == "githubPat: [REDACTED]"


def test_an_ini_or_toml_line_of_a_name_loses_the_value() -> None:
    # blanks around ``=``: no shell assignment, a config file a script writes (the value is its first
    # word or quoted string, as ``NAME=value``'s)
    toml = f'[build.environment]\n  GITHUB_PAT = "{_PW} x"\n  LANG = "C"\n'
    assert _write(toml) == '[build.environment]\n  GITHUB_PAT = [REDACTED]\n  LANG = "C"\n'
    assert _write(f"[db]\nDBPASS = {_PW}\ndb_creds = u:{_PW}\n") == (
        "[db]\nDBPASS = [REDACTED]\ndb_creds = [REDACTED]\n"
    )
    for kept in ("if DBPASS == x", "DBPASS =~ x", "use_jwt = true", "LANG = C"):
        assert _write(kept) == kept
    # a constant of code under such a name loses its value too (over-redaction: 37 lines of 1,500
    # Python files of this machine, none in 3,000 YAML, JSON, TOML, INI and shell files)
    assert _write('TOKEN_URL = "https://sts.example/v1/token"') == "TOKEN_URL = [REDACTED]"


def test_a_camel_case_name_in_an_environment_list_loses_its_value() -> None:
    # a pod's env list (PrivacyFilter.filter_env): the name matched as written or with '.' and '-' as '_'
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_env([f"githubPat={_PW}", f"dbCreds={_PW}", "sortKey=name", "LANG=C"]) == [
        "githubPat=[REDACTED]",
        "dbCreds=[REDACTED]",
        "sortKey=name",
        "LANG=C",
    ]


@pytest.mark.parametrize("path", ['.env["DBPASS"]', '.env."GITHUB_PAT"', '.["DB_CREDS"]', '.app."githubPat"'])
def test_a_quoted_key_of_a_yq_or_jq_path_loses_the_value(path: str) -> None:
    # RLK (s48): a path's key in quotes (yq's and jq's ``.env["KEY"]``, ``.env."KEY"``) was no name
    assert _exec("/usr/bin/yq", f"""-i '{path} = "{_PW}"' f.yaml""") == f"-i '{path} = [REDACTED]' f.yaml"
    assert _exec("/usr/bin/jq", f"""'{path} |= "{_PW}"' f.json""") == f"'{path} |= [REDACTED]' f.json"
    for kept in ("""-i '.env["USER"] = "bob"' f.yaml""", """-i '.env."LANG" = "C"' f.yaml"""):
        assert _exec("/usr/bin/yq", kept) == kept  # another name keeps its value
    # a subscript of code reads alike (over-redaction: 1 line of 1,500 Python files of this machine)
    assert _write('api["authorizerCredentials"] = role\n') == 'api["authorizerCredentials"] = [REDACTED]\n'
