"""lifecycle/scrub.py: labels, annotations and image references through the privacy filter.

The keys the observer, the lookup and the opt-out read are kept as they are
(filtering them would change what is observed); every other value is filtered
as an environment entry; a key holding ``=`` loses its value.
"""

from __future__ import annotations

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.lifecycle import POD_NAME_LABEL, POD_NAMESPACE_LABEL, SCAN_ID_LABEL
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION, OBSERVE_OFF_LABEL
from stellaops_runtime.lifecycle.docker_observer import record_from_inspect
from stellaops_runtime.lifecycle.registry import POD_UID_LABEL, ContainerRecord
from stellaops_runtime.lifecycle.scrub import scrub, scrub_map, scrub_ref
from stellaops_runtime.privacy.filter import PrivacyFilter

SECRET = "scrub-s3cret-77aa"
PRIVACY = PrivacyFilter(PrivacyConfig.model_validate({}))


def test_secret_values_are_masked_and_identity_kept() -> None:
    values = {
        "db.password": SECRET,
        "deploy.note": f"mysql -u app --password={SECRET}",
        "a=b": SECRET,
        "team": "payments",
        POD_NAMESPACE_LABEL: "shop",
        POD_NAME_LABEL: "cart-1",
        POD_UID_LABEL: "0f0e-uid",
        SCAN_ID_LABEL: "scan-42",
        OBSERVE_OFF_LABEL: "true",
        OBSERVE_LEVEL_ANNOTATION: "None",
    }
    out = scrub_map(values, PRIVACY)
    assert SECRET not in repr(out), out
    assert out["db.password"] == "[REDACTED]" and out["a=b"] == "[REDACTED]"
    assert out["deploy.note"].startswith("mysql -u app --password=")
    assert out["team"] == "payments"
    for k in (POD_NAMESPACE_LABEL, POD_NAME_LABEL, POD_UID_LABEL, SCAN_ID_LABEL, OBSERVE_OFF_LABEL,
              OBSERVE_LEVEL_ANNOTATION):  # fmt: skip
        assert out[k] == values[k], k


def test_image_refs_lose_credentials_only() -> None:
    assert scrub_ref(f"https://ci:{SECRET}@reg.io/app:1", PRIVACY) == "https://ci:[REDACTED]@reg.io/app:1"
    assert SECRET not in scrub_ref(f"reg.io/app:1?token={SECRET}", PRIVACY)
    for ref in ("localhost:5000/app:1", "ghcr.io/org/app:v1.2.3", "reg.io/a/b:t@sha256:" + "b" * 64,
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1",
                "app:3f2a9c0d1e2b3c4d5e6f708192a3b4c5d6e7f809", ""):  # fmt: skip
        assert scrub_ref(ref, PRIVACY) == ref


def test_a_record_is_scrubbed_whole() -> None:
    rec = ContainerRecord(
        container_id="c1",
        namespace="k8s.io",
        image_ref=f"ci:{SECRET}@reg.io/app:1",
        labels={"api-token": SECRET},
        annotations={"vault.token": SECRET},
        pod_annotations={OBSERVE_LEVEL_ANNOTATION: "Passive"},
    )
    scrub(rec, PRIVACY)
    assert SECRET not in repr(rec.to_json()), rec
    assert rec.pod_annotations == {OBSERVE_LEVEL_ANNOTATION: "Passive"}


def test_docker_inspect_labels_are_not_filtered_before_the_observer_scrubs() -> None:
    """record_from_inspect is pure; the observer scrubs what it returns (docker_observer)."""
    info = {"Id": "c2", "Config": {"Image": "reg.io/app:1", "Labels": {"db-password": SECRET}, "Env": []}}
    rec = scrub(record_from_inspect(info, digest="", env_filter=PRIVACY.filter_env), PRIVACY)
    assert rec.labels == {"db-password": "[REDACTED]"}
