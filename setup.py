"""The compiled parts of the package: canonical/_symindex.c (issue 12's cold batch), _kallsyms.c.

Why this file exists: pyproject.toml holds the metadata; setuptools takes C extensions
only from here. The extension is optional: without a compiler (or Python's headers)
the package installs without it and the symbolizer uses its Python path
(canonical/symnative.py), which gives the same answers.
"""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]

_DIR = "operator/stellaops_runtime/canonical"
# _kallsyms: /proc/kallsyms parsed and its table built natively (issue 13's kernel table load); it
# deflates the names with zlib (zlib.h: zlib1g-dev, which python3-dev brings)
_SOURCES = {"_symindex": (["_symindex.c"], []), "_kallsyms": (["_kallsyms.c", "_kallsyms_table.c"], ["z"])}

setup(
    ext_modules=[
        Extension(
            f"stellaops_runtime.canonical.{name}",
            [f"{_DIR}/{source}" for source in sources],
            depends=[f"{_DIR}/_kallsyms.h"] if name == "_kallsyms" else [],
            extra_compile_args=_FLAGS,
            libraries=libraries,
            optional=True,
        )
        for name, (sources, libraries) in _SOURCES.items()
    ]
)
