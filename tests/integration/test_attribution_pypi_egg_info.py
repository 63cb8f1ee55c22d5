"""Legacy installs: ``<name>-<version>-py3.X.egg-info/`` with ``PKG-INFO`` and ``installed-files.txt``.

pip before 23.1 installed an sdist without a wheel build ("setup.py install")
this way, and images built then still carry such packages. ``installed-files.txt``
lists the files relative to the ``.egg-info`` directory (``../yaml/__init__.py``,
``../../../../bin/tool``); ``pip show -f`` is the truth the test compares
with. Before the fix only ``*.dist-info`` was
read, so every file of such a package was unattributed and the package read
"not observed" while its code ran. An ``.egg-info`` without a file list
(distutils, Debian's own packages) lists nothing and claims nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stellaops_runtime.attribution import langdb
from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.attribution.rootfs import RootFS

SITE = "/usr/local/lib/python3.8/site-packages"
EGG = "PyYAML-5.4.1-py3.8.egg-info"
INSTALLED = [
    "../yaml/__init__.py",
    "../yaml/_yaml.cpython-38-x86_64-linux-gnu.so",
    "../../../../bin/yaml-tool",
    "PKG-INFO",
    "SOURCES.txt",
    "top_level.txt",
]


def _write(root: Path, rel: str, data: str) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data)


def test_egg_info_installed_files_attribute_like_importlib_metadata(tmp_path: Path) -> None:
    root = tmp_path / "root"
    egg = f"{SITE}/{EGG}"
    _write(root, f"{egg}/PKG-INFO", "Metadata-Version: 2.1\nName: PyYAML\nVersion: 5.4.1\n")
    _write(root, f"{egg}/installed-files.txt", "\n".join(INSTALLED) + "\n")
    _write(root, f"{egg}/SOURCES.txt", "")
    _write(root, f"{egg}/top_level.txt", "yaml\n")
    _write(root, f"{SITE}/yaml/__init__.py", "")
    _write(root, f"{SITE}/yaml/_yaml.cpython-38-x86_64-linux-gnu.so", "")
    _write(root, "/usr/local/bin/yaml-tool", "#!/usr/local/bin/python3.8\n")
    _write(root, f"{SITE}/yaml/unlisted.py", "")
    # distutils' single-file egg-info and a directory without a file list: nothing to claim
    _write(root, f"{SITE}/six-1.16.0.egg-info", "Metadata-Version: 1.0\nName: six\nVersion: 1.16.0\n")
    _write(root, f"{SITE}/idna-3.4.egg-info/PKG-INFO", "Metadata-Version: 2.1\nName: idna\nVersion: 3.4\n")

    # what pip show -f lists for it (paths relative to the site directory)
    env = {**os.environ, "PYTHONPATH": str(root) + SITE}
    show = [sys.executable, "-m", "pip", "show", "-f", "--disable-pip-version-check", "PyYAML"]
    out = subprocess.run(show, capture_output=True, text=True, timeout=120, env=env, check=True).stdout
    listed = out.split("Files:\n", 1)[1].split()
    assert {"yaml/__init__.py", "../../../bin/yaml-tool"} <= set(listed), out

    att = Attributor()
    for path in (f"{SITE}/yaml/__init__.py", f"{SITE}/yaml/_yaml.cpython-38-x86_64-linux-gnu.so"):
        a = att.attribute_file(image_digest="sha256:" + "ee" * 32, root=str(root), path=path)
        assert (a.purl, a.source) == ("pkg:pypi/pyyaml@5.4.1", "pypi"), path
    tool = att.attribute_file(
        image_digest="sha256:" + "ee" * 32, root=str(root), path="/usr/local/bin/yaml-tool"
    )
    assert tool.purl == "pkg:pypi/pyyaml@5.4.1"
    unlisted = att.attribute_file(
        image_digest="sha256:" + "ee" * 32, root=str(root), path=f"{SITE}/yaml/unlisted.py"
    )
    assert unlisted.purl is None
    assert att.image_errors("sha256:" + "ee" * 32) == {}
    built = langdb.build_site_packages(RootFS(str(root)), SITE)  # six/idna: no list, no error
    assert built.errors == [] and built.index is not None and len(built.index.packages) == 1
