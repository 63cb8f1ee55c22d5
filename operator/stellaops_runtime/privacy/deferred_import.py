"""Import a library whose modules import a package they use only in code we never call.

Why it exists (issue 13): detect-secrets' plugin modules (whose regex
``denylist`` the privacy filter reuses, privacy/library_rules.py) all run
``import requests`` at the top, for the optional online verification of a
found secret, which the agent never does. ``requests`` with urllib3 and its
character-set detectors cost the idle agent several MB on every node.

:func:`deferred` puts a stand-in module in ``sys.modules`` for the duration
of a ``with`` block, so the library's ``import requests`` binds the stand-in
instead of loading the package. Inside the block, an attribute read from the
stand-in (two plugins annotate a function with ``-> requests.Response``,
evaluated when the function is defined) gives a named placeholder. After the
block the stand-in leaves ``sys.modules`` (a later ``import requests`` anywhere
loads the real package) and becomes a forwarder: the first real use through a
plugin module (``requests.get``, ``requests.exceptions...``) imports the real
package and answers from it. So nothing changes in what the library can do;
only its cost moves to the first use, which in the agent never comes.
Nothing is deferred when the package is already imported.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Iterator
from typing import Any


class _Placeholder:
    """What an attribute of a deferred module is while the library is being imported."""

    __slots__ = ("qualname",)

    def __init__(self, qualname: str) -> None:
        self.qualname = qualname

    def __getattr__(self, name: str) -> _Placeholder:
        return _Placeholder(f"{self.qualname}.{name}")

    def __repr__(self) -> str:
        return f"<deferred {self.qualname}>"


class DeferredModule(types.ModuleType):
    """Stands in for a package: placeholders while importing, the real package afterwards."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_importing"] = True

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self.__dict__["_importing"]:
            return _Placeholder(f"{self.__name__}.{attr}")
        return getattr(importlib.import_module(self.__name__), attr)

    @property
    def loaded(self) -> bool:
        """Whether the real package has been imported (by a use, or by anyone else)."""
        real = sys.modules.get(self.__name__)
        return real is not None and real is not self


@contextlib.contextmanager
def deferred(name: str) -> Iterator[DeferredModule | None]:
    """While the block runs, ``import <name>`` binds a :class:`DeferredModule` (None: the
    package was already imported, and is used as it is)."""
    if name in sys.modules:
        yield None
        return
    stand_in = DeferredModule(name)
    sys.modules[name] = stand_in
    try:
        yield stand_in
    finally:
        stand_in.__dict__["_importing"] = False
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
