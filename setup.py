"""The one compiled part of the package: canonical/_symindex.c (issue 12's cold batch).

Why this file exists: pyproject.toml holds the metadata; setuptools takes C extensions
only from here. The extension is optional: without a compiler (or Python's headers)
the package installs without it and the symbolizer uses its Python path
(canonical/symnative.py), which gives the same answers.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "stellaops_runtime.canonical._symindex",
            ["operator/stellaops_runtime/canonical/_symindex.c"],
            extra_compile_args=[
                "-O2",
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Werror=implicit-function-declaration",
            ],
            optional=True,
        )
    ]
)
