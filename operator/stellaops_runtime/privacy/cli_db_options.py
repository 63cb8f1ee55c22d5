"""Credential options of database, directory and message-broker clients (a family of ``cli_options``).

Why this exists: ``cli_options`` holds every client's short and positional
credential options, and grew past a module's size; the database clients
(``mysql -pX``, ``sqlcmd -P X``, ``redis-cli -a X``, Oracle's ``user/password@db``),
the LDAP clients and the brokers (RabbitMQ, Mosquitto, etcd) are one family
here. ``cli_options`` merges ``DB_RULES`` into its table; the forms of an
option's value are ``cli_syntax``'s. The syntax of each client is in its manual;
the corpus (tests/fixtures/privacy/cli_corpus.yaml) cites the page for every case.
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import WORD_VALUE
from stellaops_runtime.privacy.cli_syntax import (
    QUOTED_WORD,
    VALUE,
    after_sub,
    glued,
    sep,
    sep_or_glued,
    userpass,
)

_MYSQL = (
    "mysql",
    "mariadb",
    "mysqldump",
    "mariadb-dump",
    "mysqladmin",
    "mariadb-admin",
    "mysqlimport",
    "mysqlshow",
    "mysqlcheck",
    "mysqlpump",
    "mysqlbinlog",
    "mysqlslap",
)
_MONGO = (
    "mongosh",
    "mongo",
    "mongodump",
    "mongorestore",
    "mongoexport",
    "mongoimport",
    "mongostat",
    "mongotop",
    "mongofiles",
)
_REDIS = ("redis-cli", "valkey-cli", "keydb-cli")
# unixODBC's isql DSN UID PWD: the word after the data source's and the user's. isql reads its options
# anywhere (isql.c: a word starting with ``-`` is an option, the others fill DSN, UID, PWD in turn), so
# its own glued options may stand between them too (``isql DSN -v UID -b PWD`` kept PWD: s50 RP); not
# Sybase's value-taking ``-U``/``-S``/``-P``/``-D`` (``isql -U sa -S SYBASE -i q.sql`` names no PWD).
_ODBC_OPTS = r"(?:-(?:[bvqnkew3]|[cdlmLx]\S++)[ \t]++)*+"
_ODBC_WORD = r"[^\s|;&<>\"'-]\S*+"
_ODBC_PWD = (
    rf"(?:(?<=isql|usql)|\A)[ \t]*+(?:-[A-Za-z]\S*+[ \t]++)*+{_ODBC_WORD}[ \t]++{_ODBC_OPTS}{_ODBC_WORD}"
    rf"[ \t]++{_ODBC_OPTS}(?P<s>{QUOTED_WORD}|[^\s|;&<>\"'-]\S*)"
)
_SQLCMD = ("sqlcmd", "bcp", "osql", "mssql-cli", "tsql")
_LDAP = (
    "ldapsearch",
    "ldapadd",
    "ldapmodify",
    "ldapdelete",
    "ldapwhoami",
    "ldapcompare",
    "ldapmodrdn",
    "ldapexop",
)
_ORACLE = ("sqlplus", "sqlldr", "expdp", "impdp", "rman", "dgmgrl")

# A word of a redis command: quoted whole (a password holding a space), else a run to whitespace
# that starts with no shell separator (a password may hold ``&`` or ``;``).
_REDIS_WORD = rf"""(?:{QUOTED_WORD}|[^\s;|&"'\\]\S*|\\\S*)"""

# client name -> its credential options (regex alternatives, each with a (?P<s>) group)
DB_RULES: dict[tuple[str, ...], tuple[str, ...]] = {
    # https://dev.mysql.com/doc/refman/8.4/en/connection-options.html#option_general_password
    _MYSQL: (glued("-p"),),
    # MySQL Shell: -p too, and its URI-like target [user[:password]@]host[:port][/schema] with no
    # scheme (https://dev.mysql.com/doc/mysql-shell/8.4/en/mysql-shell-connection-using-uri.html),
    # positional or after --uri; an ``@`` in the password is percent-encoded there
    ("mysqlsh",): (
        glued("-p"),
        r"""(?<![^\s="'])[^\s:/@"'=-][^\s:/@"'=]*+:(?P<s>[^\s@"']++)(?=@[^\s@"'])""",
    ),
    # https://www.mongodb.com/docs/mongodb-shell/reference/options/
    _MONGO: (sep_or_glued("-p"),),
    # https://redis.io/docs/latest/develop/tools/cli/ (-a, AUTH [user] password)
    # CONFIG SET requirepass|masterauth VALUE (https://redis.io/docs/latest/commands/config-set/),
    # (a pair of a CONFIG SET of several); ACL SETUSER's rules: cli_pairs.py
    _REDIS: (
        sep("-a"),
        # AUTH [user] password, MIGRATE's AUTH password and AUTH2 user password: a value runs to
        # whitespace or is quoted; a second word (the password after a user name) counts unless
        # the first ended with a shell separator.
        rf"(?<!\S)[\"']?(?i:auth2?)[\"']?\s+(?P<s>{_REDIS_WORD}(?:(?<![;|&])\s+(?=[^\s;|&-]){_REDIS_WORD})?)",
        rf"(?<!\S)[\"']?(?i:requirepass|masterauth)[\"']?\s+(?P<s>{_REDIS_WORD})",
    ),
    # https://learn.microsoft.com/en-us/sql/tools/sqlcmd/sqlcmd-utility (-P password); FreeTDS's tsql -P
    _SQLCMD: (sep_or_glued("-P"),),
    # https://docs.influxdata.com/influxdb/v2/reference/cli/influx/setup/ (-p, --password)
    ("influx",): (after_sub("setup", sep("-p")),),
    # https://www.vertica.com/docs/10.1.x/HTML/Content/Authoring/ConnectingToVertica/vsql/CommandLineOptions.htm
    # (-w password; -W prompts, -p is the port)
    ("vsql",): (sep_or_glued("-w"),),
    # SAP HANA hdbsql -u user -p password; Hive's beeline -n user -p password (-w: a password file)
    ("hdbsql",): (sep("-p"),),
    ("beeline",): (sep("-p"),),
    # Sybase / SAP ASE isql -U user -P password (-Ppassword glued too); unixODBC's isql and iusql DSN
    # [UID [PWD]] (https://www.unixodbc.org/doc/isql.html: the third positional word, options glued: -v)
    ("isql",): (sep_or_glued("-P"), _ODBC_PWD),
    ("iusql",): (_ODBC_PWD,),
    # https://www.ibm.com/docs/en/db2-for-zos/12?topic=processor-connect (CONNECT TO db USER u USING password)
    ("db2",): (rf"(?<!\S)(?i:user)\s+\S+\s+(?i:using)\s+(?P<s>{WORD_VALUE})",),
    # https://www.openldap.org/software/man.cgi?query=ldapsearch (-w passwd), ldappasswd -s/-a
    _LDAP: (sep_or_glued("-w"),),
    # ldappasswd: -s newPasswd, -a oldPasswd (in ldapsearch -s is the scope, -a alias dereferencing)
    ("ldappasswd",): (sep_or_glued("-w"), sep_or_glued("-s"), sep_or_glued("-a")),
    # https://docs.oracle.com/en/database/oracle/oracle-database/19/sqpug/ (user/password@db)
    # (a password holding a space or ``@`` in double quotes: ``scott/"a b"@db``, escaped in a ``sh -c``
    # script or in Tetragon's quotes: ``"scott/\\"a b\\"@db"``; the logon single-quoted in a shell;
    # a quoted password cut by the field's end goes to it)
    _ORACLE: (
        r"""(?<!\S)[A-Za-z0-9_$#.\"']+/(?P<s>\\"(?:[^"\\\n]|\\(?!")[^\n])*+(?:\\"|\Z)"""
        r"""|"[^"\n]*+(?:"|\Z)|[^\s@/]+)(?=@|\s|$|["'])""",
    ),
    # https://cassandra.apache.org/doc/latest/cassandra/managing/tools/cqlsh.html (-p)
    ("cqlsh",): (sep("-p"),),
    # https://mosquitto.org/man/mosquitto_pub-1.html (-P password)
    ("mosquitto_pub", "mosquitto_sub", "mosquitto_rr"): (sep("-P"),),
    # https://etcd.io/docs/v3.5/dev-guide/interacting_v3/ (--user username[:password])
    ("etcdctl",): (userpass("--user=?"),),
    # https://www.rabbitmq.com/docs/management-cli (-p, --password)
    ("rabbitmqadmin",): (sep_or_glued("-p"),),
    # https://www.rabbitmq.com/docs/man/rabbitmqctl.8 (add_user / change_password USER PASSWORD)
    ("rabbitmqctl",): (rf"(?<!\S)(?:add_user|change_password)\s+\S+\s+{VALUE}",),
}
