"""Regenerate the vendored JSON schemas under deploy/schemas/ (maintainers only).

CI never runs this; it reads the JSON files it wrote. Run it when moving to a
new Kubernetes or KEDA version:

    pip download --no-deps kubernetes-validate==1.37.0 -d /tmp/kv
    python -m venv /tmp/keda-venv && /tmp/keda-venv/bin/pip install \
        pydantic cloudcoil==0.6.0 cloudcoil-models-keda==2.16.1.0
    python deploy/schemas/vendor.py kubernetes /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl
    /tmp/keda-venv/bin/python deploy/schemas/vendor.py keda

The KubeRay and Strimzi subsets (crds/ray.io, crds/kafka.strimzi.io) are written
by hand; see README.md.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
K8S_VERSION = "v1.33.0"
K8S_FILE = HERE / "kubernetes-v1.33-strict.json"

# The kinds deploy/ uses, plus the types the CRD subsets reference.
K8S_ROOTS = [
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Secret",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.PersistentVolumeClaim",
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.apps.v1.StatefulSet",
    "io.k8s.api.batch.v1.Job",
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
    "io.k8s.api.policy.v1.PodDisruptionBudget",
    "io.k8s.api.networking.v1.NetworkPolicy",
    "io.k8s.api.core.v1.PodTemplateSpec",
    "io.k8s.api.core.v1.ResourceRequirements",
    "io.k8s.api.core.v1.EnvVar",
    "io.k8s.api.core.v1.EnvFromSource",
    "io.k8s.api.core.v1.VolumeMount",
    "io.k8s.api.core.v1.SecurityContext",
    "io.k8s.api.core.v1.Affinity",
    "io.k8s.api.core.v1.Toleration",
]


def _refs(node, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            found.add(ref[len("#/$defs/"):])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def vendor_kubernetes(wheel: Path) -> None:
    """Keep only the definitions reachable from K8S_ROOTS (strict flavour)."""
    name = (
        f"kubernetes_validate/kubernetes-json-schema/{K8S_VERSION}-local-strict/_definitions.json"
    )
    with zipfile.ZipFile(wheel) as zf:
        full = json.loads(zf.read(name))
    defs = full["$defs"]
    keep: set[str] = set()
    todo = list(K8S_ROOTS)
    while todo:
        key = todo.pop()
        if key in keep:
            continue
        keep.add(key)
        found: set[str] = set()
        _refs(defs[key], found)
        todo.extend(found - keep)
    out = {
        "$schema": full["$schema"],
        "$comment": f"Pruned from kubernetes-validate ({wheel.name}), {K8S_VERSION}-local-strict; "
        "regenerate with deploy/schemas/vendor.py",
        "$defs": {k: defs[k] for k in sorted(keep)},
    }
    K8S_FILE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{K8S_FILE}: {len(keep)} definitions")


def _close_objects(node) -> None:
    """additionalProperties: false on every object that lists its properties.

    KEDA's CRD is a structural schema without x-kubernetes-preserve-unknown-fields
    on these objects, so the API server's strict field validation rejects
    unknown fields there; pydantic's export leaves them open.
    """
    if isinstance(node, dict):
        node.pop("title", None)
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for value in node:
            _close_objects(value)


def vendor_keda() -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication

    for model in (ScaledObject, TriggerAuthentication):
        _vendor_keda_kind(model)


def _vendor_keda_kind(model) -> None:
    from importlib.metadata import version

    kind = model.__name__
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema["$defs"]
    # Object metadata is validated by the vendored Kubernetes schema instead.
    for key in ["ObjectMeta", "ManagedFieldsEntry", "OwnerReference", "FieldsV1", "Time"]:
        defs.pop(key, None)
    object_meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    schema["properties"]["metadata"] = {"$ref": f"{K8S_FILE.name}#/$defs/{object_meta}"}
    schema["properties"]["apiVersion"] = {"const": "keda.sh/v1alpha1"}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "spec"})
    _close_objects(schema)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Exported from cloudcoil-models-keda "
        f"{version('cloudcoil-models-keda')} (generated from the KEDA CRDs); "
        "regenerate with deploy/schemas/vendor.py",
        **schema,
    }
    out = HERE / "crds" / "keda.sh" / f"{kind.lower()}-v1alpha1.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {len(defs)} definitions")


if __name__ == "__main__":
    if sys.argv[1:2] == ["kubernetes"]:
        vendor_kubernetes(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["keda"]:
        vendor_keda()
    else:
        sys.exit(__doc__)
