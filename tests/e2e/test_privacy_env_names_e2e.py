"""End to end: a container's secret environment variables, whatever their name's spelling, never reach
``stella-runtime containers`` output.

Kubernetes accepts any printable variable name but ``=`` (Spring reads
``spring.datasource.password``, others ``db-password``). The privacy filter
once matched only names of letters, digits and ``_``, so such a variable's
value was shown by the CLI as it was. The image here carries each spelling;
the real CLI, in a subprocess, lists the running container from a real
containerd.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.containerd_harness import Containerd, Image, build_image, running
from tests.e2e.harness import cli

pytestmark = pytest.mark.e2e

SECRETS = {
    "spring.datasource.password": "SpringPw-7c1e",
    "db-password": "DashPw-2b9a",
    "app.secret-key": "DotKey-5d3f",
    "DB_PASSWORD": "PlainPw-8e4c",
}


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir, env=(*(f"{k}={v}" for k, v in SECRETS.items()), "LOG_LEVEL=debug"))
    ctd.import_image(img)
    return img


def test_containers_cli_shows_no_secret_of_any_name_spelling(ctd: Containerd, image: Image) -> None:
    name = f"envname-{uuid.uuid4().hex[:8]}"
    ctd.ctr("run", "-d", image.ref, name)
    try:
        r = cli("containers", "--address", ctd.socket, "--namespace", "k8s.io", "--json")
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line)["registry"] for line in r.stdout.splitlines()]
        row = next(x for x in rows if x["container_id"] == name)
        for key, secret in SECRETS.items():
            assert f"{key}=[REDACTED]" in row["env_vars"], row["env_vars"]
            assert secret not in r.stdout and secret not in r.stderr
        assert "LOG_LEVEL=debug" in row["env_vars"]  # an innocent variable keeps its value
    finally:
        ctd.remove_all()
