"""Which stored code is an interpreter's: where a function asked by name cannot be "not called".

A sampled user stack names native frames only. In a Python, Node.js, Ruby, JVM... process the
package's own functions run inside the interpreter (``_PyEval_EvalFrameDefault``, V8's JIT code)
and no frame is ever named ``yaml.full_load``. So a function asked by name of a package whose
code is interpreted cannot be said not to have run (evidence/doubts.py, the ``interpreted`` doubt).

A package is known to hold interpreted code by its purl type (pypi, npm, gem, maven, ...:
:data:`INTERPRETED_TYPES`), or by where its stored files lie: a distribution's package of Python
modules (``pkg:deb/debian/python3-yaml``, a conda package) is seen loaded through its native
extension under an interpreter's module directory (``/usr/lib/python3/dist-packages/_yaml.cpython-
311-x86_64-linux-gnu.so``, ``site-packages``, ``node_modules``, ``gems``...). A question with no
package (``query observed`` without ``--purl``) may be about any package of the image: the image
runs interpreted code when any such file, or an interpreter itself (``python3.11``, ``libpython``,
``node``, ``libjvm.so``...), is stored of it, or, when none is, an interpreter's own function
(``_PyEval_EvalFrameDefault``, V8's ``Builtins_JSEntry``) was seen on its stacks: an interpreter
built into a binary of another name. Unless the index holds the name as native code of the image
(:func:`native_name`): an ELF or Go symbol of one of its files, and under that name no code without a
build-id (a Python function seen through USDT), so the question is about that code, which no
interpreter runs unseen. Pure matching plus a read or two of the image's rows.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store import queries
from stellaops_runtime.store.function_refs import FunctionQuery
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.same_image import of_image
from stellaops_runtime.store.schema import hot_symbols

# A JAR a package lists beside a library of it seen loaded (agent/listed_jars.py): no file seen, so
# never one of the files that show interpreted code runs, only a JNI library's JAR (:func:`jni_files`).
_LISTED = EvidenceKind.LISTED.value

# Package URL types whose code runs in an interpreter or a VM (Python, JavaScript, Ruby, the JVM,
# .NET, PHP, the BEAM, R, Perl, Lua, Dart, Julia; VS Code extensions run in Node): no sampled stack
# names their functions.
INTERPRETED_TYPES = frozenset(
    {"pypi", "npm", "gem", "maven", "nuget", "composer", "hex", "cran", "cpan", "luarocks", "pub"}
    | {"bower", "otp", "julia", "vscode-extension"}
)

# Package URL types of compiled code only: a Go module's, a Rust crate's (never a JAR's).
COMPILED_TYPES = frozenset({"golang", "cargo"})

# A file under an interpreter's module directory, or an extension module by its name.
# (R's libraries: ``R/library``, Debian's and install.packages' ``R/site-library``, a user's
# ``R/x86_64-pc-linux-gnu-library``; Alpine's ``php82``, thread-safe PHP's ``php-zts`` (FrankenPHP's
# packages, Fedora's); Debian's ``tcltk``, Fedora's ``tcl8.6``; OpenResty's ``lualib``.)
_MODULE_FILE = re.compile(
    r"/(?:site-packages|dist-packages|lib-dynload|node_modules|nodejs|gems|ruby|perl(?:5|-base)?"
    r"|php[0-9.]*(?:-[nz]ts)?|jvm|R/(?:[^/]*-)?library|lua|lualib|erlang|dotnet"
    r"|tcltk|tcl[0-9][0-9.]*|guile|octave)/"
    r"|/lib/(?:python|pypy)[0-9][0-9.]*/"
    r"|\.cpython-[^/]*\.so$|\.pypy[0-9]*-[^/]*\.so$|\.abi3\.so$|\.node$|\.jar$"
)
# An interpreter or VM itself (the file's base name).
_INTERPRETER = re.compile(
    r"(?:python[0-9.]*[dmt]*|libpython[0-9.]+[dmt]*\.so[0-9.]*|pypy[0-9.]*|libpypy[0-9.]*-c\.so[0-9.]*"
    r"|node(?:js)?|libnode\.so[0-9.]*|deno|bun"
    r"|ruby[0-9.]*|libruby[-0-9.]*\.so[0-9.]*|java|libjvm\.so|(?:zts-)?php[0-9.]*(?:-[nz]ts)?"
    r"|php-(?:fpm|cgi)[0-9.]*|libphp[0-9.]*(?:-[nz]ts(?:-[0-9]+)?)?\.so|frankenphp"
    r"|perl[0-9.]*|libperl\.so[0-9.]*|beam(?:\.smp)?|erlexec"
    r"|lua(?:jit)?[0-9.]*|lib(?:lua|luajit-)[0-9.]*\.so[0-9.]*|dart|dotnet|libcoreclr\.so"
    r"|mono(?:-sgen)?|libmono(?:sgen)?-[0-9.]+\.so[0-9.]*|R|libR\.so|Rscript"
    r"|tclsh[0-9.]*|wish[0-9.]*|libtcl[0-9.]*\.so[0-9.]*|guile[-0-9.]*|libguile[-0-9.]*\.so[0-9.]*"
    r"|julia|libjulia\.so[0-9.]*"
    r"|hhvm|qjs|gjs(?:-console)?|libgjs\.so[0-9.]*|libmozjs-[0-9]+\.so[0-9.]*|electron|libcef\.so|libv8\.so"
    r"|libjavascriptcoregtk-[0-9.]+\.so[0-9.]*|ocamlrun|racket|sbcl|swipl|octave-cli|liboctinterp\.so[0-9.]*"
    r"|graalpy|wasmtime|libwasmtime\.so|wasmer|libwasmer\.so|wasmedge|libwasmedge\.so[0-9.]*|iwasm)"
)

# An interpreter's or a VM's own functions, on every sampled stack of the code it runs: they show
# one built into a binary of another name (a Node.js single-executable app, a .NET single-file app,
# a statically linked Python, Lua in Redis). Names, and name starts (V8, Node, JavaScriptCore).
_INTERPRETER_FUNCTIONS = frozenset(
    {
        "_PyEval_EvalFrameDefault", "PyEval_EvalCode", "Py_RunMain", "Py_BytesMain",
        "coreclr_initialize", "coreclr_execute_assembly", "JNI_CreateJavaVM", "JavaMain",
        "rb_vm_exec", "ruby_run_node", "execute_ex", "zend_execute", "php_execute_script",
        "Perl_runops_standard", "perl_run", "luaV_execute", "lua_pcall", "lua_pcallk",
    }
)  # fmt: skip
_INTERPRETER_STARTS = ("Builtins_", "v8::", "node::", "JSC::")


# A function named by a path of three or more dotted identifiers, a parameter list after it or not
# (``com.sun.jna.Native.load``, ``org.x.Y.<init>(int)``, ``yaml.constructor.Loader.load``): how a
# Java or Python method is named (not Ruby's ``A::B.m``), never a C, C++ or Rust symbol (``::``, clones
# ``.part.0``) nor a Go one with a module path (``/``) or a pointer receiver (``.(*T)``). The other
# spellings of such a method a user or an advisory writes (:func:`method_path`) are ones too.
_ID = r"[^\W\d][\w$]*"
# A path element: a name, a Java constructor, a Python qualname's scope (``f.<locals>.g``).
_EL = rf"(?:{_ID}|<c?l?init>|<(?:locals|lambda|module|genexpr|listcomp|dictcomp|setcomp)>)"
_PARAMS = r"\([^()]*\)"
_RETURN = r"\[*(?:[VZBCSIJFD]|L[^;()\s]+;)"  # a JVM method descriptor's return type
_CLASS = r"[A-Z][\w$]*"  # a Java class's simple name (a Go package's is lower case)
_METHOD_PATH = re.compile(
    rf"{_ID}(?:\.{_EL}){{2,}}(?:{_PARAMS}(?:{_RETURN})?)?"  # com.x.Foo.bar, (...)V: JVM descriptor
    rf"|{_ID}(?:/{_ID})+(?:\.{_EL})+:?{_PARAMS}{_RETURN}"  # com/x/Foo.bar(...)V, javap's .bar:(...)V
    rf"|(?:{_ID}/)+{_CLASS}(?:\.{_EL})+"  # java/io/DataOutputStream.writeInt: async-profiler's frame
    rf"|L{_ID}(?:/{_ID})*;::{_EL}(?:{_PARAMS}{_RETURN})?"  # Ljava/lang/Thread;::run: perf-map-agent's
    rf"|{_ID}(?:(?:\.|::){_ID})*#(?:{_ID}[?!=]?|<c?l?init>)(?:{_PARAMS}(?:{_RETURN})?)?"  # Foo#bar, A::B#m
    rf"|{_ID}(?:\.{_ID})+::{_ID}(?:{_PARAMS})?"  # com.x.Foo::bar: a method reference
    rf"|(?!(?:go|type):){_ID}(?:\.{_ID})*:{_ID}(?:\.{_EL})*"  # pkg.mod:Class.meth: an entry point
)


def method_path(name: str) -> bool:
    """Whether ``name`` names a Java or Python method as a user or an advisory writes one: a dotted
    path of three or more names (a JVM descriptor after its parameter list or not, Python's
    ``f.<locals>.g``), a JVM internal name with its descriptor (``com/x/Foo.bar(I)V``, javap's
    ``com/x/Foo.bar:(I)V``) or of a class named in upper case (async-profiler's frame
    ``java/io/DataOutputStream.writeInt``), perf-map-agent's ``Ljava/lang/Thread;::run``, Javadoc's
    ``com.x.Foo#bar`` (Ruby's ``A::B#m``), a method reference ``com.x.Foo::bar``, a Python entry
    point ``pkg.mod:Class.meth``. No C, C++, Rust or Go name is spelled so: their ``#`` is a
    lambda's or closure's number (``{lambda()#1}``, ``{closure#0}``), a C++ or Rust scope before
    ``::`` has no dot nor ``;``, Go's ``go:``/``type:`` symbols are left out, a Go path with ``/``
    has no descriptor and names a lower-case package before its ``.``; a Go closure
    ``main.main.func1`` or value-receiver method is dotted so too."""
    return bool(_METHOD_PATH.fullmatch(name.strip()))


def method_files(conn: sa.Connection, *, image: str, function: FunctionQuery) -> list[str]:
    """For a function asked of a package whose stored files show no interpreted code: when it is
    named as a method path, the image's files that show it runs interpreted code (sorted). The
    package may hold such code where no row is: a distribution's package of a JAR and its JNI
    library (Fedora's jna) is stored only through the library, the JAR never has a row."""
    return image_files(conn, image=image) if method_path(function.text) else []


# A library directory's subdirectory (``/usr/lib64/jna/``, ``/usr/lib/x86_64-linux-gnu/jni/``), and
# a JVM's file among :func:`image_files` (its directory, launcher, library, a JAR, its entry seen).
_LIB_SUBDIR = re.compile(r"/(?:usr/)?lib(?:32|64|x32)?/(?:[^/]*-linux-[^/]*/)?([^/]+)/")
_JVM_FILE = re.compile(
    r"/jvm/|(?:^|/)(?:java|libjvm\.so|libj9vm[0-9]*\.so)$|\.jar$|\((?:JNI_CreateJavaVM|JavaMain)\)$"
)


def jvm_file(file: str) -> bool:
    """Whether ``file``, one of :func:`image_files`, shows a JVM (a JNI library's only host)."""
    return bool(_JVM_FILE.search(file))


def jni_library(path: str, purl: str) -> bool:
    """Whether ``path``, a stored file of ``purl``'s package, lies where a distribution puts a JNI
    library: a ``jni`` directory (Debian), or the package's own (Fedora's ``%{_libdir}/%{name}/``,
    ``%{name}`` the source package's, so a subpackage ``jffi-native`` has ``jffi``)."""
    found = _LIB_SUBDIR.match(path)
    if found is None:
        return False
    name = purl.partition("?")[0].partition("#")[0].partition("@")[0].rpartition("/")[2].lower()
    folder = found.group(1).lower()
    return folder == "jni" or (bool(name) and (name == folder or name.startswith(folder + "-")))


def jni_files(conn: sa.Connection, *, image: str, purls: list[str]) -> list[str]:
    """For a package (its stored ``purls``) whose stored files show no interpreted code, asked of
    as a whole (no function named): its files in a JNI library's place, the JARs its database lists
    (``listed`` rows: a JNI library anywhere, agent/listed_jars.py), and the image's JVM files, when
    the image runs a JVM (sorted; none else). The JAR beside the library never has a row of a call,
    so "no function of it ran" cannot be said of its Java methods."""
    if not purls:
        return []
    c = hot_symbols.c
    stmt = sa.select(c.purl, c.module, c.evidence_kind).where(
        of_image(conn, c.image_digest, image), c.purl.in_(purls)
    )
    libraries = {m for p, m, k in conn.execute(stmt.distinct()) if k == _LISTED or jni_library(m, p)}
    jvm = [f for f in image_files(conn, image=image) if jvm_file(f)] if libraries else []
    return sorted(libraries.union(jvm)) if jvm else []


def purl_type(purl: str) -> str:
    """The type of a stored purl text (``pkg:<type>/...``), lower case; "" when it has none."""
    head, sep, rest = purl.partition(":")
    return rest.partition("/")[0].lower() if sep and head == "pkg" else ""


def module_file(path: str) -> bool:
    """Whether ``path`` lies where an interpreter's modules do (an extension, a package's file)."""
    return bool(_MODULE_FILE.search(path))


def interpreter_file(path: str) -> bool:
    """Whether ``path`` is an interpreter or a VM itself, by its base name."""
    return bool(_INTERPRETER.fullmatch(path.rpartition("/")[2]))


def interpreter_function(name: str) -> bool:
    """Whether ``name`` is an interpreter's or a VM's own function (its loop, its entry)."""
    return name in _INTERPRETER_FUNCTIONS or name.startswith(_INTERPRETER_STARTS)


def package_files(conn: sa.Connection, *, image: str, purls: list[str]) -> list[str]:
    """The stored files of these purls in ``image`` that show interpreted code (sorted): an
    interpreter's too, whose package holds its standard library (Node's JavaScript is built into
    ``libnode``; Alpine's ``python3`` ships ``libpython3.11.so`` beside its ``.py`` modules)."""
    if not purls:
        return []
    c = hot_symbols.c
    stmt = sa.select(c.purl, c.module).where(
        of_image(conn, c.image_digest, image), c.purl.in_(purls), c.evidence_kind != _LISTED
    )
    return sorted(
        {
            m
            for p, m in conn.execute(stmt.distinct())
            if purl_type(p) in INTERPRETED_TYPES or module_file(m) or interpreter_file(m)
        }
    )


def image_files(conn: sa.Connection, *, image: str) -> list[str]:
    """The stored files of ``image`` that show it runs interpreted code: an interpreted package's,
    one under an interpreter's module directory, an interpreter itself (sorted)."""
    c = hot_symbols.c
    stmt = (
        sa.select(c.purl, c.module)
        .where(of_image(conn, c.image_digest, image), c.evidence_kind != _LISTED)
        .distinct()
    )
    found = {
        m
        for p, m in conn.execute(stmt)
        if purl_type(p) in INTERPRETED_TYPES or module_file(m) or interpreter_file(m)
    }
    if found:
        return sorted(found)
    starts = [sa.func.substr(c.function_name, 1, len(s)) == s for s in _INTERPRETER_STARTS]
    named = sa.or_(c.function_name.in_(_INTERPRETER_FUNCTIONS), *starts)
    stmt = (
        sa.select(c.module, c.function_name).where(of_image(conn, c.image_digest, image), named).limit(1000)
    )
    by_file: dict[str, str] = {}
    for m, f in conn.execute(stmt):
        if interpreter_function(f):
            by_file.setdefault(m, f"{m} ({f})")
    return sorted(by_file.values())


_IN_CHUNK = 500  # bound parameters per IN list (SQLite's limit is 32,766 on its newest builds, 999 before)


def native_name(
    conn: sa.Connection, *, image: str, function: FunctionQuery, purl: PurlQuery | None = None
) -> bool:
    """Whether the index holds ``function`` (asked by name, of ``purl``'s package or of none) as
    native code of ``image`` only: rows of the name in ``image`` (in any period, of the package),
    each an ELF or Go symbol (a build-id), or, with none, a row of the name in any image under the
    build-id of a file ``image`` holds (of the package): its function ID ``<build-id>:<name>+0x0``.
    A row of the name without a build-id (a Python function seen through USDT, code no file holds)
    is interpreted code: False."""
    rows = queries.observed(conn, image=image, function=function, purl=purl)
    if rows:
        return all(r.build_id or r.function_id for r in rows)
    c = hot_symbols.c
    stmt = sa.select(c.build_id).where(of_image(conn, c.image_digest, image), c.build_id != "").distinct()
    if purl is not None:
        stmt = stmt.where(c.purl.in_(queries.matching_purls(conn, image=image, purl=purl)))
    ids = [f"{b}:{n}+0x0" for (b,) in conn.execute(stmt) for n in function.names]
    for i in range(0, len(ids), _IN_CHUNK):
        hit = sa.select(c.function_id).where(c.function_id.in_(ids[i : i + _IN_CHUNK])).limit(1)
        if conn.execute(hit).first() is not None:
            return True
    return False


def unstored_files(
    conn: sa.Connection, *, image: str, function: FunctionQuery | None, purls: list[str]
) -> tuple[list[str], str]:
    """For a package (its stored ``purls``) whose stored files show no interpreted code: the files
    that say it may hold such code no row stands for, and how it was asked (sorted; none else): a
    function named as a method path (:func:`method_files`), the whole package with a JNI library
    (:func:`jni_files`). Not a function of a Go module's or a Rust crate's package: its code is
    compiled into a binary, never a JAR's (a Go closure ``main.main.func1`` is dotted so too)."""
    if function is not None:
        if purls and all(purl_type(p) in COMPILED_TYPES for p in purls):
            return [], ""
        return method_files(conn, image=image, function=function), "named as a method path"
    return jni_files(conn, image=image, purls=purls), "a JNI library's, asked of as a whole"
