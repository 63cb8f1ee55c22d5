"""The container image reference of this release: the one place it is written.

Everything that names the image takes it from here or is checked against it
(tests/integration/test_manifests.py):

- the operator renders agent DaemonSets with :data:`IMAGE` when a
  RuntimeObserver leaves ``spec.agent.image`` unset, so the agents follow the
  operator's version on an upgrade;
- ``manifests/kustomization.yaml`` sets the operator Deployment's image
  through kustomize ``images:`` (name :data:`REPOSITORY`, tag :data:`TAG`);
- ``make image`` (scripts/image/build.sh) and the ``Containerfile`` tag and
  label the image with it.

Operator and agent are one image (``stella-runtime operator`` /
``stella-runtime agent``). A mirror or a private registry changes the
kustomize ``images:`` entry (``newName``) for the operator and
``spec.agent.image`` for the agents.
"""

from __future__ import annotations

from stellaops_runtime import __version__

REPOSITORY = "ghcr.io/stellaops/stellaops-runtime"
TAG = __version__
IMAGE = f"{REPOSITORY}:{TAG}"
SOURCE_URL = "https://github.com/stellaops/stellaops-runtime"

# Inside the image: the virtualenv with the package, its entry point, and the
# unprivileged user the image runs as by default (the agent DaemonSet runs it as root).
VENV = "/opt/stellaops/venv"
ENTRYPOINT = f"{VENV}/bin/stella-runtime"
USER_ID = 65532
USER_NAME = "nonroot"
