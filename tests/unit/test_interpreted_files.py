"""Which stored files show interpreted code (evidence/interpreted.py): the module directories and
extension names of Python, Node.js, Ruby, Perl, PHP, the JVM..., and the interpreters themselves;
a native library keeps its "not called"."""

from __future__ import annotations

import pytest

from stellaops_runtime.evidence.interpreted import (
    INTERPRETED_TYPES,
    interpreter_file,
    interpreter_function,
    module_file,
    purl_type,
)


@pytest.mark.parametrize(
    "path",
    [
        "/usr/lib/python3/dist-packages/_yaml.cpython-311-x86_64-linux-gnu.so",  # deb python3-yaml
        "/opt/conda/lib/python3.11/site-packages/yaml/_yaml.cpython-311-x86_64-linux-gnu.so",  # conda
        "/usr/lib/python3.11/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so",  # libpython3.11-stdlib
        "/usr/local/lib/python3.12/site-packages/cryptography/hazmat/bindings/_rust.abi3.so",
        "/app/node_modules/bcrypt/lib/binding/napi-v3/bcrypt_lib.node",
        "/usr/lib/x86_64-linux-gnu/nodejs/sqlite3/build/Release/libsqlite3.so",  # a deb's node-*
        "/usr/lib/x86_64-linux-gnu/ruby/3.1.0/psych.so",
        "/var/lib/gems/3.1.0/gems/nokogiri-1.15.0/lib/nokogiri/nokogiri.so",
        "/usr/lib/x86_64-linux-gnu/perl5/5.36/auto/YAML/XS/LibYAML/LibYAML.so",
        "/usr/lib/x86_64-linux-gnu/perl/5.36/auto/POSIX/POSIX.so",
        "/usr/lib/x86_64-linux-gnu/perl-base/auto/POSIX/POSIX.so",
        "/usr/lib/php/20220829/yaml.so",
        "/usr/lib/jvm/java-17-openjdk-amd64/lib/libzip.so",
        # missed before (review RA): PyPy's standard library and its extension modules
        "/opt/pypy/lib/pypy3.10/_cffi_backend.so",
        "/opt/pypy/lib/foo/_yaml.pypy310-pp73-x86_64-linux-gnu.so",
        # missed before (s42/NO3): R packages of Debian (r-cran-*) and of install.packages (rocker),
        # Alpine's versioned PHP, Tcl, Guile and Octave extensions, OpenResty's Lua modules
        "/usr/lib/R/site-library/xml2/libs/xml2.so",
        "/usr/local/lib/R/site-library/curl/libs/curl.so",
        "/home/u/R/x86_64-pc-linux-gnu-library/4.3/Rcpp/libs/Rcpp.so",
        "/usr/lib/php82/modules/yaml.so",
        "/usr/lib/php8.3/modules/yaml.so",
        "/usr/lib/tcltk/x86_64-linux-gnu/tclreadline2.4.0/libtclreadline-2.4.0.so",
        "/usr/lib64/tcl8.6/tdbc1.1.5/libtdbc1.1.5.so",
        "/usr/lib/x86_64-linux-gnu/guile/3.0/extensions/guile-readline.so",
        "/usr/lib/x86_64-linux-gnu/octave/packages/io-2.6.4/x86_64-pc-linux-gnu-api-v59/__oct_time__.oct",
        "/usr/local/openresty/lualib/cjson.so",
        # missed before (review RNO3): thread-safe PHP's extensions (FrankenPHP's php-zts packages,
        # Fedora's and Remi's zts-php)
        "/usr/lib/php-zts/modules/redis.so",
        "/usr/lib64/php-zts/modules/apcu.so",
        "/usr/lib/php-nts/modules/redis.so",
    ],
)
def test_a_file_among_an_interpreters_modules(path: str) -> None:
    assert module_file(path)


@pytest.mark.parametrize(
    "path",
    [
        "/usr/bin/python3.11",
        "/usr/local/bin/python3",
        "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
        "/usr/bin/node",
        "/usr/lib/x86_64-linux-gnu/libnode.so.108",
        "/usr/bin/ruby3.1",
        "/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1.2",
        "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
        "/usr/bin/perl",
        "/usr/lib/x86_64-linux-gnu/libperl.so.5.36.0",
        "/usr/sbin/php-fpm8.2",
        "/usr/lib/erlang/erts-13.1.5/bin/beam.smp",
        # missed before (review RA): JavaScript runtimes other than Node, PyPy, PHP's CGI
        "/usr/bin/deno",
        "/usr/local/bin/bun",
        "/opt/pypy/bin/pypy3.10",
        "/usr/bin/pypy3",
        "/opt/pypy/bin/libpypy3.10-c.so",
        "/usr/bin/php-cgi8.2",
        "/usr/bin/php-cgi",
        # missed before (review RA): free-threaded and debug CPython builds, embedded Mono, Tcl,
        # Guile, Julia
        "/usr/bin/python3.13t",
        "/usr/lib/x86_64-linux-gnu/libpython3.13t.so.1.0",
        "/usr/lib/x86_64-linux-gnu/libpython3.12d.so.1.0",
        "/usr/lib/x86_64-linux-gnu/libmono-2.0.so.1",
        "/usr/lib/libmonosgen-2.0.so.1",
        "/usr/bin/tclsh8.6",
        "/usr/lib/x86_64-linux-gnu/libtcl8.6.so",
        "/usr/bin/guile-3.0",
        "/usr/lib/x86_64-linux-gnu/libguile-3.0.so.1",
        "/usr/bin/julia",
        "/usr/lib/x86_64-linux-gnu/libjulia.so.1",
        # missed before (s39/A): HHVM, QuickJS, GJS and the SpiderMonkey it and polkit embed,
        # Electron/CEF/V8/JavaScriptCore embedded as libraries, OCaml bytecode, Racket, SBCL,
        # SWI-Prolog, Octave, GraalPy, WebAssembly runtimes (JIT code under no symbol)
        "/usr/bin/hhvm",
        "/usr/bin/qjs",
        "/usr/bin/gjs-console",
        "/usr/lib/x86_64-linux-gnu/libgjs.so.0",
        "/usr/lib/x86_64-linux-gnu/libmozjs-102.so.0.0.0",
        "/opt/app/electron",
        "/opt/app/libcef.so",
        "/usr/lib/libv8.so",
        "/usr/lib/x86_64-linux-gnu/libjavascriptcoregtk-4.1.so.0",
        "/usr/bin/ocamlrun",
        "/usr/bin/racket",
        "/usr/bin/sbcl",
        "/usr/lib/swi-prolog/bin/x86_64-linux/swipl",
        "/usr/bin/octave-cli",
        "/usr/lib/x86_64-linux-gnu/octave/8.4.0/liboctinterp.so.11",
        "/opt/graalpy/bin/graalpy",
        "/usr/local/bin/wasmtime",
        "/usr/local/lib/libwasmtime.so",
        "/usr/local/bin/wasmer",
        "/usr/local/bin/wasmedge",
        "/usr/local/lib/libwasmedge.so.0",
        "/usr/local/bin/iwasm",
        # missed before (review RNO3): thread-safe PHP (FrankenPHP's libphp-zts-85.so and php-zts,
        # Fedora's zts-php), FrankenPHP itself (PHP built into its static build)
        "/usr/lib/libphp-zts-85.so",
        "/usr/lib64/libphp-zts.so",
        "/usr/bin/php-zts",
        "/usr/bin/zts-php",
        "/usr/local/bin/frankenphp",
    ],
)
def test_an_interpreter_itself(path: str) -> None:
    assert interpreter_file(path)


@pytest.mark.parametrize(
    "path",
    [
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libyaml-0.so.2",  # libyaml-0-2: C, though PyYAML uses it
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/usr/bin/curl",
        "/app/server",
        "/usr/bin/pythonista",
        "/usr/lib/x86_64-linux-gnu/libpythonic.so",
        "/usr/bin/bunzip2",
        "/usr/bin/denoise",
        "/usr/bin/qjsc",  # QuickJS's compiler: runs no script
        "/usr/bin/gjs-tool",
        "/usr/lib/x86_64-linux-gnu/libwasm-utils.so",
        "/usr/lib/x86_64-linux-gnu/libphp-embed.so.foo",  # none of the new directories: a name only
        "/usr/lib/Rlibrary/libfoo.so",
        "/usr/lib/tclsh/libfoo.so",
        "/opt/phpmyadmin-tools/bin/helper",
        "/usr/lib/php-tools/libfoo.so",
        "/usr/bin/php-ztsfoo",
    ],
)
def test_native_code_is_neither(path: str) -> None:
    assert not module_file(path) and not interpreter_file(path)


def test_purl_type() -> None:
    assert purl_type("pkg:pypi/pyyaml@6.0.1") == "pypi"
    assert purl_type("pkg:NPM/bcrypt") == "npm"
    assert purl_type("pkg:pypi/") == "pypi"
    assert purl_type("pkg:py") == "py"
    assert purl_type("") == purl_type("deb/debian/zlib1g") == ""


@pytest.mark.parametrize(
    "name",
    [
        "_PyEval_EvalFrameDefault",
        "Builtins_JSEntry",
        "Builtins_InterpreterEntryTrampoline",
        "v8::internal::Execution::Call(v8::internal::Isolate*)",
        "node::Start(int, char**)",
        "JSC::Interpreter::executeProgram(JSC::SourceCode const&)",
        "coreclr_execute_assembly",
        "JNI_CreateJavaVM",
        "rb_vm_exec",
        "execute_ex",
        "Perl_runops_standard",
        "luaV_execute",
    ],
)
def test_an_interpreters_own_function(name: str) -> None:
    assert interpreter_function(name)


@pytest.mark.parametrize("name", ["crc32", "main", "v8_helper", "nodes::walk(int)", "Py_helper_of_mine"])
def test_a_native_function_is_no_interpreters(name: str) -> None:
    assert not interpreter_function(name)


@pytest.mark.parametrize("kind", ["pypi", "npm", "bower", "otp", "julia", "vscode-extension", "hex", "pub"])
def test_purl_types_of_interpreted_code(kind: str) -> None:
    """bower (JavaScript), otp (Erlang/OTP's applications, BEAM code), julia (JIT code under no
    symbol) and vscode-extension (JavaScript run by Node) were missed before (review RA)."""
    assert kind in INTERPRETED_TYPES and purl_type(f"pkg:{kind}/x@1") in INTERPRETED_TYPES


@pytest.mark.parametrize("kind", ["deb", "rpm", "apk", "golang", "cargo", "conan", "generic", "swift"])
def test_purl_types_of_native_or_unknown_code(kind: str) -> None:
    assert kind not in INTERPRETED_TYPES


@pytest.mark.parametrize(
    "name",
    [
        "com.sun.jna.Native.load",
        "com.sun.jna.Native.load(java.lang.String, java.lang.Class)",
        "org.apache.logging.log4j.core.lookup.JndiLookup.lookup",
        "org.x.Outer$Inner.lambda$run$0",
        "org.x.Foo.<init>(int)",
        "yaml.constructor.FullConstructor.construct_object",
        "time.Time.String",  # a Go method of a value receiver too: unknown is the safe direction
        "main.main.func1",  # and a Go closure
        # other spellings of a JVM or Python method (s42/NO3; RAT2 s41 noticed them): Javadoc's
        # ``#``, a Java/Kotlin method reference ``::``, a JVM descriptor, a Python entry point
        # ``module:qualname``, a Python qualname with ``<locals>``, Ruby's instance method ``A::B#m``
        "com.sun.jna.Native#load",
        "com.sun.jna.Native#load(java.lang.String, java.lang.Class)",
        "Native#load",
        "org.x.Outer$Inner#run",
        "Nokogiri::XML::Document#root",
        "com.sun.jna.Native::load",
        "org.x.Foo::new",
        "com.sun.jna.Native.load(Ljava/lang/String;Ljava/lang/Class;)Lcom/sun/jna/Library;",
        "com.sun.jna.Native.load(Ljava/lang/String;)V",
        "com/sun/jna/Native.load(Ljava/lang/String;)[I",
        "yaml.cli:main",
        "pkg.mod:Class.meth",
        "yaml:full_load",
        "pkg.mod.outer.<locals>.inner",
        "pkg.mod.<lambda>",
        # missed before (review RNO3): a profiler's spelling of a Java frame, async-profiler's
        # (internal name, no descriptor: ``java/io/DataOutputStream.writeInt``), perf-map-agent's
        # (``Ljava/lang/Thread;::run``, its ``sig`` option adds the descriptor), javap's ``Foo.m:(I)V``
        "com/sun/jna/Native.load",
        "java/io/DataOutputStream.writeInt",
        "org/x/Outer$Inner.lambda$run$0",
        "org/x/Foo.<init>",
        "Lcom/sun/jna/Native;::load",
        "Ljava/lang/Thread;::run()V",
        "Lorg/x/Foo;::<init>",
        "com/sun/jna/Native.load:(Ljava/lang/String;)V",
    ],
)
def test_a_method_path_is_named_as_interpreted_code_is(name: str) -> None:
    from stellaops_runtime.evidence.interpreted import method_path

    assert method_path(name)


@pytest.mark.parametrize(
    "name",
    [
        "ffi_call",
        "Java_com_sun_jna_Native_invokeInt",  # a JNI library's own (C) symbol
        "crc32.part.0",
        "crc32.constprop.0.isra.0",
        "f.cold",
        "ns::Class::method(int)",
        "mycrate::a::b",
        "net/http.(*Server).Serve",
        "regexp.(*Regexp).Match",
        "strings.Index",
        "yaml.full_load",  # two elements: a Go package's function as well
        "Nokogiri::XML::Document.parse",  # Ruby's form: '::' is C++'s too
        "a.b.1",
        "a..b.c",
        "",
        "a.b.c\x00",
        # ``#``, ``::`` and ``:`` where native names have them: a C++ lambda, a Rust closure, a C++
        # scope, Go's linker symbols, a function ID's build-id
        "foo()::{lambda(int)#1}::operator()(int) const",
        "mycrate::f::{closure#0}",
        "a.b#1",
        "a#",
        "#m",
        "ns::Class::method",
        "Foo::bar",  # a Java class with no package is spelled as C++ is: not a method path
        "a.b::c::d",
        "a.b::c(int) const",
        "go:buildid",
        "type:.eq.main.T",
        "go:main.inittasks",
        "a:b:c",
        "a:.b",
        "net/http.(*conn).serve",
        "encoding/json.Marshal",  # a JVM internal name only with a descriptor: Go's too
        "com.x.Foo.bar()X",
        "com.x.Foo.bar()Lcom/x/Y",
        "pkg.mod.<script>.f",
        # a Go package path's function or value method: its package is lower case, a Java class not
        "net/http/pprof.Index",
        "crypto/x509/pkix.Name.String",
        "vendor/golang.org/x/net/http2.ReadFrame",
        "internal/poll.(*FD).Read",
        "Lexer::next",  # a C++ scope starting with L: perf-map-agent's class ends with ';'
        "a::operator/(a const&, a const&)",
        "com/x/Foo.bar:I",
        "org/x/foo.bar",  # a lower-case class without its descriptor: a Go package's spelling (limit)
        "acme@2.1/org.acme.Lib.test(Lib.java:80)",  # a Java 9 frame's module: asked without it (limit)
    ],
)
def test_a_native_name_is_no_method_path(name: str) -> None:
    from stellaops_runtime.evidence.interpreted import method_path

    assert not method_path(name)


@pytest.mark.parametrize(
    ("path", "purl", "jni"),
    [
        ("/usr/lib64/jna/libjnidispatch.so", "pkg:rpm/fedora/jna@5.13.0-4.fc39?arch=x86_64", True),
        ("/usr/lib/jna/libjnidispatch.so", "pkg:rpm/fedora/jna", True),  # %{_prefix}/lib/%{name}
        ("/usr/lib64/jffi/libjffi-1.2.so", "pkg:rpm/fedora/jffi-native@1.3.9-1.fc39", True),  # a subpackage
        ("/usr/lib/x86_64-linux-gnu/jni/libjnidispatch.so", "pkg:deb/debian/libjna-jni@5.13.0-2", True),
        ("/usr/lib/jni/libatk-wrapper.so", "pkg:deb/debian/libatk-wrapper-java-jni", True),
        ("/usr/lib64/libz.so.1.2.13", "pkg:rpm/fedora/zlib@1.2.13-5.fc39", False),
        ("/usr/lib64/sasl2/libplain.so.3", "pkg:rpm/fedora/cyrus-sasl-lib@2.1.28", False),
        ("/usr/lib64/jna/libjnidispatch.so", "pkg:rpm/fedora/nss@3.95", False),  # another package's dir
        ("/opt/jna/libjnidispatch.so", "pkg:rpm/fedora/jna", False),
        ("/usr/lib64/jna/libjnidispatch.so", "", False),
        ("/usr/lib64/jna/libjnidispatch.so", "pkg:rpm/fedora/", False),
        ("/usr/lib64/\x00/x.so", "pkg:rpm/fedora/jna\x00", False),  # hostile text: no crash
    ],
)
def test_a_jni_library_lies_where_the_distributions_put_one(path: str, purl: str, jni: bool) -> None:
    from stellaops_runtime.evidence.interpreted import jni_library

    assert jni_library(path, purl) is jni


@pytest.mark.parametrize(
    ("file", "jvm"),
    [
        ("/usr/lib/jvm/java-17-openjdk-17.0.9.0.9-3.fc39.x86_64/lib/server/libjvm.so", True),
        ("/opt/java/openjdk/bin/java", True),
        ("/opt/java/openjdk/lib/default/libj9vm29.so", True),  # OpenJ9
        ("/app/lib/app.jar", True),
        ("/app/bin/launcher (JNI_CreateJavaVM)", True),  # a JVM seen by its entry on the stacks
        ("/usr/bin/python3.12", False),
        ("/usr/bin/node", False),
        ("/usr/lib64/libjavascriptcoregtk-4.1.so.0", False),
        ("/usr/bin/javascript", False),
    ],
)
def test_a_jvm_file_hosts_jni_libraries(file: str, jvm: bool) -> None:
    from stellaops_runtime.evidence.interpreted import jvm_file

    assert jvm_file(file) is jvm
