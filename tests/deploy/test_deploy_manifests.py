"""Kubernetes manifests under deploy/k8s/: schemas, then the wiring between them."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from deploy_schemas import (
    DEPLOY,
    K8S_DIR,
    REPO,
    SCHEMAS,
    Manifest,
    find,
    load_manifests,
    ray_clusters,
    schema_registry,
    validation_errors,
)

MANIFESTS = load_manifests()
TOPIC = "ccrec.interactions"
DLQ = "ccrec.interactions.dlq"
# Every YAML file under deploy/ is checked by one of these tests.
NON_MANIFEST_YAML = {
    "compose/compose.yaml": "test_deploy_compose.py",
    "feast/feature_store.yaml": "test_feast_production.py",
    "serve/serve_config.yaml": "test_serve_config_is_a_valid_serve_config",
}


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m.id)
def test_manifest_matches_its_schema(manifest: Manifest) -> None:
    errors = validation_errors(manifest.body)
    assert not errors, f"{manifest.id}:\n" + "\n".join(errors)


def test_every_yaml_under_deploy_is_checked() -> None:
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        rel = path.relative_to(DEPLOY).as_posix()
        checked = (
            rel.startswith("k8s/") or rel.startswith("schemas/") or rel in NON_MANIFEST_YAML
        )
        assert checked, f"deploy/{rel} is checked by no test: move it or add a check"
    assert len(MANIFESTS) >= 15


def test_unknown_kind_fails() -> None:
    with pytest.raises(LookupError, match="no vendored schema"):
        validation_errors({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}})
    with pytest.raises(LookupError):  # right kind, wrong version
        validation_errors({"apiVersion": "ray.io/v1alpha1", "kind": "RayCluster"})


def _one(kind: str, name: str) -> dict:
    (manifest,) = find(MANIFESTS, kind, name)
    return copy.deepcopy(manifest.body)


def _set(body: dict, path: str, value) -> dict:
    *parents, leaf = path.split(".")
    node = body
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[leaf] = value
    return body


BROKEN = [
    # (kind, name, dotted path, value, what the error must mention)
    ("Deployment", "ccrec-stream", "spec.template.spec.containers.0.imagee", "x", "imagee"),
    ("Deployment", "ccrec-stream", "spec.replicas", "one", "replicas"),
    ("StatefulSet", "redis", "spec.template.spec.containers.0.resources.request", {}, "request"),
    ("RayCluster", "ccrec-train", "spec.workerGroupSpecs.0.maxReplica", 3, "maxReplica"),
    ("RayCluster", "ccrec-train", "spec.autoscalerOptions.upscalingMode", "Fast", "upscalingMode"),
    ("RayCluster", "ccrec-train", "spec.headGroupSpec.template.spec.containers.0.envfrom", [],
     "envfrom"),
    ("RayService", "ccrec-serve", "spec.serveConfigV2", {"applications": []}, "serveConfigV2"),
    ("RayService", "ccrec-serve", "spec.rayClusterConfig.workerGroupSpecs.0.template.spec.volume",
     [], "volume"),
    ("RayJob", "ccrec-train-", "spec.clusterSelector", {"ray.io/cluster": "x"}, "spec"),
    ("RayJob", "ccrec-tune-", "spec.entryPoint", "ccrec tune", "entryPoint"),
    ("ScaledObject", "ccrec-stream", "spec.maxReplicas", 3, "maxReplicas"),
    ("ScaledObject", "ccrec-stream", "spec.triggers.0.metadata.lagThreshold", 5000, "lagThreshold"),
    ("Kafka", "ccrec-kafka", "spec.kafka.listeners.0.type", "internl", "type"),
    ("Kafka", "ccrec-kafka", "spec.zookeeper", {"replicas": 3}, "zookeeper"),
    ("KafkaNodePool", "dual-role", "spec.roles", ["leader"], "roles"),
    ("KafkaNodePool", "dual-role", "spec.storage.volumes.0.sizee", "1Gi", "sizee"),
    ("KafkaTopic", "ccrec-interactions", "spec.partitions", "twelve", "partitions"),
    ("KafkaTopic", "ccrec-interactions", "spec.replication", 3, "replication"),
    ("Job", "feast-apply", "spec.template.spec.restartPolicy", 7, "restartPolicy"),
    ("ConfigMap", "ccrec-config", "data.KAFKA_PORT", 9092, "KAFKA_PORT"),
]


@pytest.mark.parametrize(
    "kind,name,path,value,mention", BROKEN, ids=[f"{b[0]}.{b[2]}" for b in BROKEN]
)
def test_a_broken_field_fails(kind, name, path, value, mention) -> None:
    body = _set(_one(kind, name), path, value)
    errors = validation_errors(body)
    assert errors, f"{kind}/{name}: {path}={value!r} passed validation"
    assert any(mention in e for e in errors), errors


def test_vendored_schemas_are_valid_and_small() -> None:
    registry, index = schema_registry()
    total = 0
    for path in sorted(SCHEMAS.rglob("*")):
        if path.is_file():
            total += path.stat().st_size
        if path.suffix == ".json" and "compose" not in path.parts:
            jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
        elif path.suffix == ".yaml":
            jsonschema.Draft202012Validator.check_schema(yaml.safe_load(path.read_text()))
    assert total < 5 * 2**20
    assert (SCHEMAS / "README.md").is_file()
    kinds = {kind for _, kind in index}
    assert {"RayCluster", "RayJob", "RayService", "Kafka", "KafkaNodePool", "KafkaTopic",
            "ScaledObject", "Deployment", "StatefulSet", "Service", "ConfigMap", "Job"} <= kinds


# ---- wiring between the manifests ---------------------------------------------------------


def _all_by_kind() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m in MANIFESTS:
        out.setdefault(m.kind, set()).add(m.name)
    return out


def _walk(node, key: str):
    """Every value stored under ``key`` anywhere in node."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)


def test_namespaced_objects_live_in_the_ccrec_namespace() -> None:
    (namespace,) = find(MANIFESTS, "Namespace")
    for m in MANIFESTS:
        if m.kind != "Namespace":
            assert m.body["metadata"].get("namespace") == namespace.name, m.id


def test_references_resolve() -> None:
    defined = _all_by_kind()
    for m in MANIFESTS:
        for ref in _walk(m.body, "configMapRef"):
            assert ref["name"] in defined["ConfigMap"], (m.id, ref)
        for ref in _walk(m.body, "secretRef"):
            assert ref["name"] in defined["Secret"], (m.id, ref)
        for ref in _walk(m.body, "persistentVolumeClaim"):
            assert ref["claimName"] in defined["PersistentVolumeClaim"], (m.id, ref)
        spec = m.body.get("spec") or {}
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        for containers in _walk(m.body, "containers"):
            mounts = {v["name"] for v in _volumes_near(m.body, containers)} | claims
            for c in containers:
                for vm in c.get("volumeMounts", []):
                    assert vm["name"] in mounts, (m.id, c["name"], vm["name"])


def _volumes_near(body, containers) -> list[dict]:
    """The volumes of the pod spec that holds ``containers``."""
    for spec in _walk(body, "spec"):
        if isinstance(spec, dict) and spec.get("containers") is containers:
            return spec.get("volumes", [])
    return []


def test_images_are_the_ccrec_image_or_pinned_by_digest() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    seen = 0
    for m in MANIFESTS:
        for image in _walk(m.body, "image"):
            name, _, digest = image.partition("@")
            repo, _, tag = name.rpartition(":")
            assert repo and tag and tag != "latest", (m.id, image)
            if repo == "ccrec":
                assert tag.split("-")[0] == version and not digest, (m.id, image, version)
            else:  # third-party: the tag says what it is, the digest what is pulled
                assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), (m.id, image)
                seen += 1
    assert seen >= 1


def test_kafka_topics_and_clusters() -> None:
    (kafka,) = find(MANIFESTS, "Kafka")
    topics = {m.body["spec"].get("topicName", m.name): m.body["spec"] for m in find(MANIFESTS,
                                                                                      "KafkaTopic")}
    assert set(topics) == {TOPIC, DLQ, "ccrec.recommendations"}  # + the impression log
    for m in find(MANIFESTS, "KafkaTopic") + find(MANIFESTS, "KafkaNodePool"):
        assert m.body["metadata"]["labels"]["strimzi.io/cluster"] == kafka.name, m.id
    assert kafka.body["metadata"]["annotations"] == {
        "strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"
    }
    pools = find(MANIFESTS, "KafkaNodePool")
    brokers = sum(p.body["spec"]["replicas"] for p in pools if "broker" in p.body["spec"]["roles"])
    controllers = [p for p in pools if "controller" in p.body["spec"]["roles"]]
    assert controllers and all(t["replicas"] <= brokers for t in topics.values())
    min_isr = int(topics[TOPIC]["config"]["min.insync.replicas"])
    assert min_isr < topics[TOPIC]["replicas"]


def test_stream_worker_scales_on_the_interactions_lag() -> None:
    (config,) = find(MANIFESTS, "ConfigMap", "ccrec-config")
    (kafka,) = find(MANIFESTS, "Kafka")
    bootstrap = config.body["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap.startswith(f"{kafka.name}-kafka-bootstrap.")
    (listener,) = kafka.body["spec"]["kafka"]["listeners"]  # TLS + SCRAM: test_deploy_security
    assert bootstrap.endswith(f":{listener['port']}")
    (scaled,) = find(MANIFESTS, "ScaledObject")
    (deployment,) = find(MANIFESTS, "Deployment", scaled.body["spec"]["scaleTargetRef"]["name"])
    command = deployment.body["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["ccrec", "stream", "run"]
    (trigger,) = scaled.body["spec"]["triggers"]
    # KEDA must watch the lag of the group the worker really consumes in.
    assert trigger["metadata"]["consumerGroup"] == command[command.index("--group-id") + 1]
    assert command[command.index("--feast-env") + 1] == "production"
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == TOPIC
    assert trigger["metadata"]["bootstrapServers"] == bootstrap
    (topic,) = [m for m in find(MANIFESTS, "KafkaTopic") if m.body["spec"]["topicName"] == TOPIC]
    # More consumers than partitions would sit idle.
    assert scaled.body["spec"]["maxReplicaCount"] <= topic.body["spec"]["partitions"]
    assert 1 <= scaled.body["spec"]["minReplicaCount"] <= scaled.body["spec"]["maxReplicaCount"]


def test_ray_clusters_autoscale_within_an_elastic_range() -> None:
    constraints = (REPO / "constraints.txt").read_text()
    ray_version = re.search(r"^ray==(\S+)$", constraints, re.M).group(1)
    for m, spec in ray_clusters(MANIFESTS):
        assert spec["enableInTreeAutoscaling"] is True, m.id
        assert spec["rayVersion"] == ray_version, m.id
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", m.id
        for group in spec["workerGroupSpecs"]:
            lo, n, hi = group["minReplicas"], group["replicas"], group["maxReplicas"]
            assert 0 <= lo <= n <= hi and lo < hi, (m.id, group["groupName"])


def test_ray_jobs_run_ccrec_train_and_tune() -> None:
    jobs = {m.path.name: m.body["spec"] for m in find(MANIFESTS, "RayJob")}
    train = jobs["rayjob-train.yaml"]["entrypoint"].split()
    assert train[:2] == ["ccrec", "train"]
    assert {"--dataset", "--address", "--num-workers"} <= set(train)
    assert train[train.index("--address") + 1] == "auto"
    assert jobs["rayjob-train.yaml"]["shutdownAfterJobFinishes"] is True
    tune = jobs["rayjob-tune.yaml"]
    assert tune["entrypoint"].startswith("ccrec tune")
    assert tune["clusterSelector"]["ray.io/cluster"] in _all_by_kind()["RayCluster"]
    # generateName objects are created per run, so they stay out of `kubectl apply -f k8s/`
    # (which does not descend into subdirectories); so does the example Secret.
    for m in MANIFESTS:
        if "generateName" in m.body["metadata"]:
            assert m.path.parent == K8S_DIR / "jobs", m.id
        if m.kind == "Secret":
            assert m.path.parent == K8S_DIR / "secrets", m.id


# ---- the Serve configuration (compose: serve run; Kubernetes: RayService) ------------------


def _check_known_keys(data: dict, model, where: str) -> None:
    """Ray's Serve schemas accept unknown keys; a misspelt option must fail here."""
    fields = set(model.model_fields)
    unknown = set(data) - fields
    assert not unknown, f"{where}: unknown keys {sorted(unknown)}"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_serve_config_is_a_valid_serve_config() -> None:
    from ray.serve.config import HTTPOptions
    from ray.serve.schema import (
        DeploymentSchema,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    config = yaml.safe_load((DEPLOY / "serve" / "serve_config.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    _check_known_keys(config, ServeDeploySchema, "serve_config")
    _check_known_keys(config["http_options"], HTTPOptions, "http_options")
    assert config["http_options"]["port"] == 8000
    (app,) = config["applications"]
    _check_known_keys(app, ServeApplicationSchema, "application")
    assert app["import_path"] == "serve.deployments:app"
    for dep in app["deployments"]:
        _check_known_keys(dep, DeploymentSchema, dep["name"])
        _check_known_keys(dep.get("ray_actor_options", {}), RayActorOptionsSchema, dep["name"])
        # autoscaling is set once, in serve/deployments.py
        assert "autoscaling_config" not in dep, dep["name"]
    assert [d["name"] for d in app["deployments"]] == ["Ingress", "Sampler", "Scorer"]

    # The RayService serves exactly this application.
    (service,) = find(MANIFESTS, "RayService")
    v2 = yaml.safe_load(service.body["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(v2)
    assert v2["applications"] == config["applications"]
    assert v2["proxy_location"] == config["proxy_location"]


def test_manifest_files_parse_as_yaml_streams() -> None:
    # kubectl reads each file as a stream of documents; an empty document or a
    # top-level list would apply nothing.
    for path in sorted(Path(K8S_DIR).rglob("*.y*ml")):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(d, dict) for d in docs), path


def test_pods_on_the_shared_volume_run_as_the_image_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+) ccrec", dockerfile).group(1))
    seen = 0
    for m in MANIFESTS:
        for spec in _walk(m.body, "spec"):
            if not (isinstance(spec, dict) and "containers" in spec):
                continue
            claims = {v.get("persistentVolumeClaim", {}).get("claimName")
                      for v in spec.get("volumes", [])}
            if "ccrec-data" in claims:
                seen += 1
                security = spec.get("securityContext", {})
                assert security.get("runAsUser") == uid, m.id
                assert security.get("fsGroup") == uid, m.id
    assert seen >= 5
