"""deploy/ is secure by construction: hardened containers, NetworkPolicies for Ray, Redis and
Kafka, Kafka over SASL_SSL only, Redis behind an ACL user, Ray's dashboard / Jobs API never
outside the cluster, API keys and passwords only in Secrets; the same in docker compose,
whose secret files make-secrets.sh writes (run here with openssl)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from deploy_schemas import DEPLOY, find, load_manifests, ray_clusters

MANIFESTS = load_manifests()
COMPOSE = DEPLOY / "compose" / "compose.yaml"
KUBERAY_NAMESPACE = {"kubernetes.io/metadata.name": "kuberay-system"}


def _pod_specs():
    """(manifest id, pod spec, pod labels) of every pod template, wherever it sits."""
    def walk(node, where):
        if isinstance(node, dict):
            if isinstance(node.get("spec"), dict) and "containers" in node["spec"]:
                yield where, node["spec"], (node.get("metadata") or {}).get("labels", {})
            for value in node.values():
                yield from walk(value, where)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value, where)

    for m in MANIFESTS:
        yield from walk(m.body, m.id)


PODS = list(_pod_specs())


def _hardened(security: dict) -> bool:
    return (security.get("allowPrivilegeEscalation") is False
            and security.get("readOnlyRootFilesystem") is True
            and security.get("capabilities", {}).get("drop") == ["ALL"])


def test_every_container_is_hardened() -> None:
    assert len(PODS) >= 10
    for where, spec, _ in PODS:
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        writable = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in spec["containers"]:
            assert _hardened(container.get("securityContext", {})), (where, container["name"])
            if container["image"].startswith("ccrec:"):
                # Ray, Feast and Python write under /tmp: an emptyDir, the root stays read-only
                tmp = [vm for vm in container.get("volumeMounts", []) if vm["mountPath"] == "/tmp"]
                assert tmp and tmp[0]["name"] in writable, (where, container["name"])
    # the sidecars KubeRay adds (autoscaler) and the containers Strimzi runs
    for m, cluster in ray_clusters(MANIFESTS):
        assert _hardened(cluster["autoscalerOptions"]["securityContext"]), m.id
    for pool in find(MANIFESTS, "KafkaNodePool"):
        template = pool.body["spec"]["template"]
        assert template["pod"]["securityContext"]["runAsNonRoot"] is True
        assert _hardened(template["kafkaContainer"]["securityContext"]), pool.id


def _policies() -> dict[str, dict]:
    return {m.name: m.body["spec"] for m in find(MANIFESTS, "NetworkPolicy")}


def _ports(rule: dict) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


def test_ingress_is_denied_unless_a_policy_admits_it() -> None:
    policies = _policies()
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    redis = policies["redis"]
    (statefulset,) = find(MANIFESTS, "StatefulSet", "redis")
    assert redis["podSelector"]["matchLabels"].items() <= \
        statefulset.body["spec"]["template"]["metadata"]["labels"].items()
    (rule,) = redis["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of":
                                                             "ccrec"}}}]
    assert _ports(rule) == {6379}


def test_ray_dashboards_and_jobs_apis_stay_inside_the_cluster() -> None:
    """Each Ray cluster: a ClusterIP head Service, its nodes labelled for their own policy,
    which admits its own nodes, KubeRay's operator on the dashboard ports, and (serving
    only) the HTTP API; nothing else, from nowhere else."""
    policies = _policies()
    services = [m.body["spec"].get("type", "ClusterIP") for m in find(MANIFESTS, "Service")]
    assert set(services) == {"ClusterIP"}
    seen = set()
    for m, cluster in ray_clusters(MANIFESTS):
        assert cluster["headGroupSpec"]["serviceType"] == "ClusterIP", m.id
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        (name,) = {g["template"]["metadata"]["labels"]["ccrec.io/ray-cluster"] for g in groups}
        for group in groups:
            assert group["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ccrec"
        policy = policies[f"ray-{name}"]
        own = {"podSelector": {"matchLabels": {"ccrec.io/ray-cluster": name}}}
        assert policy["podSelector"] == own["podSelector"]
        for rule in policy["ingress"]:
            if rule.get("from") == [own]:
                continue  # GCS, raylets, object store, workers: their own cluster
            if "from" in rule:
                assert rule["from"] == [{"namespaceSelector": {"matchLabels": KUBERAY_NAMESPACE}}]
                assert _ports(rule) == {8265, 52365}, m.id
            else:  # open to any client: only Serve's HTTP port, which checks API keys
                assert name == "serve" and _ports(rule) == {8000}, (m.id, rule)
        seen.add(name)
    assert seen == {"train", "train-job", "serve"}
    for job in find(MANIFESTS, "RayJob"):  # submitted by the operator, no submitter pod
        assert job.body["spec"]["submissionMode"] == "HTTPMode", job.id


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _mounts(spec: dict, container: dict) -> dict[str, dict]:
    """mount path → the volume mounted there."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    return {vm["mountPath"]: volumes[vm["name"]] for vm in container.get("volumeMounts", [])
            if vm["name"] in volumes}


def test_kafka_is_sasl_ssl_only_and_its_clients_log_in() -> None:
    (kafka,) = find(MANIFESTS, "Kafka")
    spec = kafka.body["spec"]["kafka"]
    for listener in spec["listeners"]:
        assert listener["tls"] is True and listener["authentication"] == {"type": "scram-sha-512"}
        peers = listener["networkPolicyPeers"]
        assert {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "ccrec"}}} in peers
    assert spec["authorization"] == {"type": "simple"}
    (user,) = find(MANIFESTS, "KafkaUser")
    assert user.body["spec"]["authentication"] == {"type": "scram-sha-512"}
    topics = {t["resource"]["name"] for t in user.body["spec"]["authorization"]["acls"]
              if t["resource"]["type"] == "topic"}
    assert topics == {"ccrec."}  # the ccrec.* topics, nothing else
    (config,) = find(MANIFESTS, "ConfigMap", "ccrec-config")
    env = config.body["data"]
    assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"],
            env["KAFKA_SASL_USERNAME"]) == ("SASL_SSL", "SCRAM-SHA-512", user.name)
    # the pods that talk to Kafka: the stream worker, the serve workers (POST /v1/events,
    # the impression log), the online accuracy consumer
    clients = 0
    for where, pod, _ in PODS:
        for container in pod["containers"]:
            password = _env(container).get("KAFKA_SASL_PASSWORD")
            if password is None:
                continue
            clients += 1
            assert password["valueFrom"]["secretKeyRef"] == {"name": user.name,
                                                             "key": "password"}, where
            ca_dir, _, ca_file = env["KAFKA_SSL_CAFILE"].rpartition("/")
            ca = _mounts(pod, container)[ca_dir]["secret"]
            assert ca["secretName"] == f"{kafka.name}-cluster-ca-cert", where
            assert {"key": "ca.crt", "path": ca_file} in ca["items"], where
    assert clients == 3
    (scaled,) = find(MANIFESTS, "ScaledObject")
    (trigger,) = scaled.body["spec"]["triggers"]
    assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
    (auth,) = find(MANIFESTS, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth.body["spec"]["secretTargetRef"]}
    assert refs == {"password": (user.name, "password"),
                    "ca": (f"{kafka.name}-cluster-ca-cert", "ca.crt")}


def _example_secrets() -> dict[str, dict]:
    return {m.name: m.body["stringData"] for m in find(MANIFESTS, "Secret")}


def test_redis_admits_only_the_acl_user_and_its_password_is_secret() -> None:
    (statefulset,) = find(MANIFESTS, "StatefulSet", "redis")
    pod = statefulset.body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    acl_path = command[command.index("--aclfile") + 1]
    directory, _, file = acl_path.rpartition("/")
    assert _mounts(pod, container)[directory]["secret"]["secretName"] == "ccrec-redis-acl"
    secrets = _example_secrets()
    acl = secrets["ccrec-redis-acl"][file].splitlines()
    assert acl[0] == "user default off"
    assert acl[1].startswith("user ccrec on #") and "-@dangerous" in acl[1]
    assert "username=ccrec,password=" in secrets["ccrec-secrets"]["CCREC_REDIS_URL"]
    assert _env(container)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": "ccrec-secrets", "key": "REDIS_PASSWORD"}
    # nothing secret in a ConfigMap
    for m in find(MANIFESTS, "ConfigMap"):
        for key, value in m.body["data"].items():
            assert "PASSWORD" not in key and "password" not in str(value), (m.id, key)
            assert key not in {"CCREC_REDIS_URL", "FEAST_REGISTRY_URL"}, (m.id, key)


def test_the_serve_workers_read_the_api_keys_from_a_secret() -> None:
    from serve.auth import parse_keys

    (config,) = find(MANIFESTS, "ConfigMap", "ccrec-config")
    directory, _, file = config.body["data"]["CCREC_API_KEYS_FILE"].rpartition("/")
    (service,) = find(MANIFESTS, "RayService")
    (workers,) = service.body["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    pod = workers["template"]["spec"]
    (container,) = pod["containers"]
    secret = _mounts(pod, container)[directory]["secret"]
    assert secret["secretName"] == "ccrec-api-keys" and {"key": file, "path": file} in \
        secret["items"]
    assert len(parse_keys(_example_secrets()["ccrec-api-keys"][file])) == 1


# ---- docker compose -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_containers_are_hardened_and_publish_on_loopback(compose) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service.get("security_opt") == ["no-new-privileges:true"], name
        assert service.get("cap_drop") == ["ALL"], name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
        if "build" in service:  # CCRec's image
            assert service["user"] == "1000:1000" and service["read_only"] is True, name
            assert "/tmp" in service["tmpfs"], name
    head = services["ray-head"]["command"]
    assert "--dashboard-host=127.0.0.1" in head
    ray = services["ray-head"]["environment"]
    assert ray["RAY_AUTH_MODE"] == "token" and ray["RAY_AUTH_TOKEN"] == "${RAY_AUTH_TOKEN}"
    assert not any(p.endswith(":8265") for p in services["ray-head"].get("ports", []))


def test_compose_kafka_and_redis_need_credentials(compose) -> None:
    services = compose["services"]
    kafka = services["kafka"]["environment"]
    protocols = dict(x.split(":") for x in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = dict(x.split("://") for x in kafka["KAFKA_LISTENERS"].split(","))
    for name, protocol in protocols.items():
        # clients only over SASL_SSL; the KRaft controller listens on the loopback
        assert protocol == "SASL_SSL" or listeners[name].startswith("localhost:"), name
    client = services["stream"]["environment"]
    assert client["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert client["KAFKA_SSL_CAFILE"] == "/run/secrets/kafka_ca"
    assert client["KAFKA_SASL_PASSWORD"] == "${KAFKA_CLIENT_PASSWORD}"
    assert "username=ccrec,password=${REDIS_PASSWORD}" in client["CCREC_REDIS_URL"]
    assert client["CCREC_API_KEYS_FILE"] == "/run/secrets/api_keys"
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--aclfile") + 1] == "/run/secrets/redis_acl"


def test_make_secrets_writes_every_file_compose_mounts(compose, tmp_path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (the development machine and CI have it)")
    from click.testing import CliRunner

    from serve.cli import serve

    here = tmp_path / "compose"
    here.mkdir()
    shutil.copy(DEPLOY / "compose" / "make-secrets.sh", here)
    (here / ".env").write_text("REDIS_PASSWORD=r3dis\nKAFKA_CLIENT_PASSWORD=k4fka\n")
    done = subprocess.run(["sh", str(here / "make-secrets.sh")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    made = CliRunner().invoke(serve, ["keys", "--name", "web", "--scope", "events:write",
                                      "--file", str(here / "secrets" / "api_keys.yaml")])
    assert made.exit_code == 0, made.output
    paths = [s["file"] for s in compose["secrets"].values()]
    paths += [v.split(":")[0] for svc in compose["services"].values()
              for v in svc.get("volumes", []) if v.startswith("./")]
    for path in paths:
        assert (here / path).exists(), path
    kafka = compose["services"]["kafka"]["environment"]
    secrets = here / "secrets" / "kafka"
    for key in ("KAFKA_SSL_KEYSTORE_FILENAME", "KAFKA_SSL_KEYSTORE_CREDENTIALS",
                "KAFKA_SSL_KEY_CREDENTIALS"):
        assert (secrets / kafka[key]).is_file(), key
    assert "user_ccrec=\"k4fka\"" in (secrets / "kafka_server_jaas.conf").read_text()
    # the CA's key stays out of every mounted directory
    assert not list((here / "secrets" / "kafka").glob("*.key"))
    assert (here / "secrets" / "redis-users.acl").read_text().startswith("user default off\n")
