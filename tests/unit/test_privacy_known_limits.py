"""What the privacy filter does where docs/privacy.md "Known limits" says it falls short.

Each limit there is a decision (a fix would cost more than it gives, or needs state the filter
does not keep); these tests pin down what happens, so that the page stays true and a change that
lifts a limit shows here.
"""

from __future__ import annotations

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter


def _filter(text: str) -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text)


def test_a_pin_flag_whose_word_is_not_listed_loses_its_value() -> None:
    # _NOT_A_PIN is a deny list: a pinning flag it does not name is taken for a PIN (over-redaction)
    assert _filter("app --pcie-pin 1 --lane-pin=2") == "app --pcie-pin [REDACTED] --lane-pin=[REDACTED]"
    assert _filter("app --gpu-pin 1 --hash-pin x") == "app --gpu-pin 1 --hash-pin x"  # listed: kept


def test_a_base64_blob_of_a_user_and_password_is_kept() -> None:
    # base64("admin:S3cr3tPass") with no "Authorization: Basic" before it: nothing tells it from
    # innocent base64, so it is kept; a private key's blob goes (its prefix is fixed per key type)
    assert _filter("echo YWRtaW46UzNjcjN0UGFzcw== | base64 -d") == "echo YWRtaW46UzNjcjN0UGFzcw== | base64 -d"
    assert (
        _filter("echo LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2 | base64 -d")
        == "echo [REDACTED] | base64 -d"
    )


def test_a_here_document_fed_to_a_reader_another_way_is_kept() -> None:
    # written to a file, then given to the reader by a flag or further than 4 KiB on: kept
    doc = 'sh -c "cat > /tmp/pw <<EOF\nroot:Kept-1\nEOF\n'
    assert _filter(doc + 'kinit --password-file=/tmp/pw bob"') == doc + 'kinit --password-file=/tmp/pw bob"'
    far = doc + "true\n" * 1000 + 'chpasswd < /tmp/pw"'  # past the default cut of 4 KiB: a larger one
    assert PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 16)).filter_field(far) == far
    # the file named another way: the names are compared as written, not resolved
    other = 'sh -c "cat > ./pw <<EOF\nroot:Kept-1\nEOF\nchpasswd < pw"'
    assert _filter(other) == other
    near = doc + 'chpasswd < /tmp/pw"'  # within 4 KiB through standard input: the document goes
    assert _filter(near) == 'sh -c "cat > /tmp/pw <<EOF\n[REDACTED]\nEOF\nchpasswd < /tmp/pw"'


def test_a_nameless_prompt_without_a_reader_spawned_keeps_its_answer() -> None:
    # "*:" names nothing: its answer goes only after the spawn of a program that asks for a password
    kept = 'expect -c \'expect "*:"; send "Kept-2\\r"; spawn passwd\''  # the spawn comes after it
    assert _filter(kept) == kept
    kept = 'expect -c \'spawn ./setup.sh; expect "*:"; send "Kept-3\\r"\''
    assert _filter(kept) == kept
    gone = 'expect -c \'spawn sudo -k id; expect "*:"; send "Gone-4\\r"\''
    assert _filter(gone) == "expect -c 'spawn sudo -k id; expect \"*:\"; send [REDACTED]'"


def test_a_secret_split_across_two_traced_writes_keeps_the_second_half() -> None:
    # Each write() event is filtered by what its own buffer shows: no state joins the buffers.
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field("API_TOKEN=tok3nFirstHalf") == "API_TOKEN=[REDACTED]"
    assert pf.filter_field("SecondHalf9x\n") == "SecondHalf9x\n"  # kept: nothing names it
    # A key file: the first buffer loses all after its BEGIN line, the last all before its END
    # line; a buffer with neither, in the middle, is kept.
    first = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsplitKeyFirst"
    last = "splitKeyLast0aB9\n-----END RSA PRIVATE KEY-----\n"
    assert pf.filter_field(first) == "-----BEGIN RSA PRIVATE KEY-----[REDACTED]"
    assert pf.filter_field(last) == "[REDACTED]-----END RSA PRIVATE KEY-----\n"
    assert pf.filter_field("q0Ht7vXkPm2ZsL9rTgYw4BnCjE6aUoR1\n") == "q0Ht7vXkPm2ZsL9rTgYw4BnCjE6aUoR1\n"


def test_a_short_flag_then_dash_dash_keeps_its_value() -> None:
    # only a flag whose name ends in a credential word takes the word after "--" (shell_words.py);
    # a short option's meaning is its program's (-p: a port, a password, a profile)
    assert _filter("app -p -- KeptDash-3") == "app -p -- KeptDash-3"
    assert _filter("app --password -- Gone-4") == "app --password -- [REDACTED]"


def test_a_password_fed_to_sqlplus_in_a_here_document_is_kept() -> None:
    # sqlplus is no here-document password reader: its documents are SQL (a logon without a
    # password, then the password as the document's first line, keeps it)
    doc = 'sh -c "sqlplus -s scott@db <<EOF\nKeptOra-2\nEOF"'
    assert _filter(doc) == doc


def test_a_client_named_right_after_a_switch_o_is_taken_for_an_output_file() -> None:
    # a client's name as the value of an output option is a file (engine.py _AN_OUTPUT: ``gcc -o
    # mongo4 -pthread``), so a ``-o`` that is a switch before a command hides the client; xargs's
    # ``-o`` (``--open-tty``) alone is known as a switch (test_privacy_blank_and_position_more.py)
    assert _filter("runas -o mysql -pKeptRunas-5") == "runas -o mysql -pKeptRunas-5"
    assert _filter("xargs -o mysql -pGone-6") == "xargs -o mysql -p[REDACTED]"
    assert _filter("runas -r mysql -pGone-6") == "runas -r mysql -p[REDACTED]"


def test_a_key_nesting_parentheses_four_deep_keeps_the_string() -> None:
    # secure_strings reads a ``-Key`` value nesting up to three parentheses deep (bounded, so a start
    # reads at most ~1 KiB); deeper, the value is no key value and the string after it stays
    kept = "ConvertTo-SecureString -Key ((((1)))) 'KeptEnc-7'"
    assert _filter(kept) == kept
    gone = "ConvertTo-SecureString -Key (((1))) 'Gone-8'"
    assert _filter(gone) == "ConvertTo-SecureString -Key (((1))) [REDACTED]"


def test_a_lower_case_name_ending_in_pat_keeps_its_value() -> None:
    # ``*_PAT`` counts in argv in upper case only: in lower case ``_pat`` most often names a pattern
    # (``file_pat=*.log``), and a provider's token there still goes by its prefix rule (review RP6)
    assert _filter("db_pat=KeptPat-9 ./run") == "db_pat=KeptPat-9 ./run"
    assert _filter("DB_PAT=GonePat-9 ./run") == "DB_PAT=[REDACTED] ./run"
    assert _filter("db_pat=ghp_" + "A1b2C3d4E5" * 3 + "abcdef ./run") == "db_pat=ghp_[REDACTED] ./run"


def test_text_glued_after_a_quoted_value_holding_no_blank_goes_with_it() -> None:
    # a shell word joins a quoted piece and what follows it (``'x'tail`` is ``xtail``): no longer a
    # limit for a quoted value holding no blank (s51 P2, test_privacy_glued_quoted_pieces.py); JSON and
    # code go on after it with another key (``{"password":"x","user":"u"}``) and keep it
    assert _filter("app --password 'x'GoneTail-10 next") == "app --password [REDACTED] next"
    assert _filter("db_password=''GoneTail-11 next") == "db_password=[REDACTED] next"
    assert _filter("app --password 'x'\\''Gone-12' next") == "app --password [REDACTED] next"
    # still a limit: a glued piece after a quoted value holding a blank
    assert _filter("app --password 'x y'KeptTail-13 next") == "app --password [REDACTED]KeptTail-13 next"
    # and after an environment name a glob takes, or a client's glued option
    assert _filter('DBPASS="a"KeptTail-14 next') == "DBPASS=[REDACTED]KeptTail-14 next"
    assert _filter('mysql -p"a"KeptTail-15 db') == "mysql -p[REDACTED]KeptTail-15 db"


def test_a_deploy_tools_secret_list_loses_its_names_too() -> None:
    # az containerapp --secrets and doppler secrets set take the list up to the next option whole:
    # its names go with the values (over-redaction, never a leak)
    assert _filter("az containerapp secret set --secrets a=Gone-20 b=Gone-21 -g rg") == (
        "az containerapp secret set --secrets [REDACTED] -g rg"
    )
    assert _filter("doppler secrets set API_URL Gone-22") == "doppler secrets set [REDACTED]"
