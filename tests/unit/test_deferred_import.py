"""detect-secrets' rules load without ``requests`` (privacy/deferred_import.py), and nothing is lost.

Each check runs in a fresh interpreter (this test process may have imported
requests already): the real library, the real rule loader, then what a user of
the plugin modules would do: their online verification path still reaches the
real ``requests``, and a later ``import requests`` elsewhere gets the real package.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def _run(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_rules_load_without_requests_and_the_library_still_works() -> None:
    out = _run(
        """
        import json, sys
        from stellaops_runtime.privacy.library_rules import KNOWN_PLUGINS, library_rules
        rules = library_rules()
        loaded = sorted(m for m in ("requests", "urllib3", "charset_normalizer", "chardet", "certifi")
                        if m in sys.modules)
        from detect_secrets.plugins import slack, ibm_cloud_iam
        stand_in = type(slack.requests).__name__
        annotation = repr(ibm_cloud_iam.verify_cloud_iam_api_key.__annotations__["return"])
        # A use through a plugin module imports the real package and answers from it.
        exc = slack.requests.exceptions.RequestException
        import requests
        print(json.dumps({
            "rules": sorted(r.name for r in rules), "known": sorted(KNOWN_PLUGINS), "loaded": loaded,
            "stand_in": stand_in, "annotation": annotation,
            "real_after_use": exc is requests.exceptions.RequestException and "urllib3" in sys.modules,
            "import_is_real": type(requests).__name__ == "module" and hasattr(requests, "Session"),
            "found": next(r for r in rules if r.name == "AWSKeyDetector").spans("AKIAIOSFODNN7EXAMPLE"),
        }))
        """
    )
    assert out["loaded"] == []
    assert set(out["rules"]) <= set(out["known"]) and len(out["rules"]) >= 20  # every regex plugin
    assert out["stand_in"] == "DeferredModule" and out["annotation"] == "<deferred requests.Response>"
    assert out["real_after_use"] and out["import_is_real"]
    assert out["found"] == [[0, 20]]


def test_an_already_imported_package_is_used_as_it_is() -> None:
    out = _run(
        """
        import json, sys
        import requests
        from stellaops_runtime.privacy.library_rules import library_rules
        library_rules()
        from detect_secrets.plugins import slack
        print(json.dumps({"same": slack.requests is requests}))
        """
    )
    assert out == {"same": True}


def test_rules_load_without_multiprocessing_and_its_scan_still_works() -> None:
    # detect-secrets' package imports multiprocessing (for scanning many files at once, which
    # the agent never does): deferred like requests, ~0.16 MB of modules the agent does not hold.
    out = _run(
        """
        import json, sys
        from stellaops_runtime.privacy.library_rules import library_rules
        rules = library_rules()
        loaded = sorted(m for m in sys.modules if m == "multiprocessing" or m.startswith("multiprocessing."))
        from detect_secrets.core import secrets_collection
        stand_in = type(secrets_collection.mp).__name__
        # A use through the library's module imports the real package and answers from it.
        cpus = secrets_collection.mp.cpu_count()
        import multiprocessing
        real = "multiprocessing.context" in sys.modules
        print(json.dumps({
            "loaded": loaded, "rules": len(rules), "stand_in": stand_in,
            "real_after_use": cpus == multiprocessing.cpu_count() and real,
            "import_is_real": type(multiprocessing).__name__ == "module" and hasattr(multiprocessing, "Pool"),
        }))
        """
    )
    assert out["loaded"] == [] and out["rules"] >= 20
    assert out["stand_in"] == "DeferredModule"
    assert out["real_after_use"] and out["import_is_real"]
