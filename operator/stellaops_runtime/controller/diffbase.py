"""kopf's "last handled" record of a policy as a digest, not a copy of its spec.

kopf remembers the last state it handled of each object with a change
handler (our policies, for their delete handler's finalizer) in an
annotation: ``AnnotationsDiffBaseStorage`` writes the whole "essence"
(spec, labels, annotations) as JSON. A pod's or a custom resource's
annotations share one 256 KiB limit on the API server, and ``kubectl apply``
(or a GitOps tool applying client-side) already keeps a copy of the object in
``kubectl.kubernetes.io/last-applied-configuration``: a policy whose spec is
above about 128 KiB (a scanner's list of every function of a library) made
kopf's write 422 "metadata.annotations: Too long" on every event, retried
with kopf's throttling (up to 10 minutes between attempts), a traceback at
ERROR each time.

Our handlers never read the old state (the delete handler needs only the
finalizer), so the record only has to tell "changed" from "unchanged". This
storage keeps ``{"sha256": <digest of the essence>}`` under the same key:

- ``fetch`` returns the current essence when the stored digest matches it
  (nothing changed: kopf writes nothing), an empty essence when it does not
  (a change: kopf stores the new digest), and an older full-JSON record as it
  is (an operator upgraded over existing policies writes nothing until the
  next change);
- ``store`` writes the digest (about 80 bytes), whatever the spec's size.

``fetch`` rebuilds the essence without kopf's "extra fields", which exist only
for handlers with field filters; ours have none (a test holds that), and
one added with them would make every event look like a change here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

import kopf

DIGEST_FIELD = "sha256"


def essence_digest(essence: Any) -> str:
    """SHA-256 of the essence as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(essence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """``kopf.AnnotationsDiffBaseStorage`` keeping a digest of the essence (see the module docstring)."""

    def fetch(self, *, body: Any) -> Any:
        for full_key in self.make_keys(self.key, body=body):
            encoded = body.metadata.annotations.get(full_key, None)
            if encoded is None:
                continue
            try:
                decoded = json.loads(encoded)
            except ValueError:
                return {}  # unreadable: a change, which stores a fresh digest
            if isinstance(decoded, dict) and set(decoded) == {DIGEST_FIELD}:
                current = self.build(body=body)
                return current if decoded[DIGEST_FIELD] == essence_digest(current) else {}
            return cast(Any, decoded)  # a full essence written by an earlier version
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        encoded = json.dumps({DIGEST_FIELD: essence_digest(essence)}, separators=(",", ":")) + "\n"
        for full_key in self.make_keys(self.key, body=body):
            patch.metadata.annotations[full_key] = encoded
        self._store_marker(prefix=self.prefix, patch=patch, body=body)
