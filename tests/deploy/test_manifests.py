"""deploy/k8s: every kustomization renders, validates against the Kubernetes schemas, and
agrees with the gateway it deploys (port, probe paths, config file, secrets by reference).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.tools import K8S, KUSTOMIZATIONS, REPO, one, render

# What the manifests must agree with. The gateway side of each is checked below where it
# can be: the routes by calling proxy.app.create_app, the config by proxy.config.Settings,
# the UID by deploy/Dockerfile's USER, the drain time by proxy/cli.py.
GATEWAY_PORT = 8080  # `hallgate serve --port 8080`, EXPOSE in deploy/Dockerfile
LIVENESS_PATH = "/healthz"  # never calls the upstream
READINESS_PATH = "/readyz"  # 200 once the upstream answers and detectors are loaded
METRICS_PATH = "/metrics"
CONFIG_DIR = Path("/etc/hallgate")  # where the projected ConfigMaps are mounted
OLDEST_KUBERNETES = "1.29"  # oldest release the manifests are validated against
HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")  # kustomize's content hash on generated names
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.I)
SECRET_VALUE = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}|\bBearer\s+[A-Za-z0-9._-]{8,}")


def pod_spec(manifests: list[dict]) -> dict:
    return one(manifests, "Deployment")["spec"]["template"]["spec"]


def container(manifests: list[dict]) -> dict:
    (main,) = pod_spec(manifests)["containers"]
    return main


def generated_configmaps(manifests: list[dict]) -> dict[str, dict]:
    """Generated ConfigMaps by their name before the hash suffix (the Grafana dashboard,
    which the pod does not mount, is checked in test_grafana.py)."""
    return {HASH_SUFFIX.sub("", m["metadata"]["name"]): m
            for m in manifests if m["kind"] == "ConfigMap"
            and "grafana_dashboard" not in m["metadata"].get("labels", {})}


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_validates_against_kubernetes_schemas_offline(name, rendered, monkeypatch) -> None:
    """Strict schema validation (unknown fields fail) on the oldest and newest release
    kubernetes-validate ships, with the network cut off: the schemas are in the package."""
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for version in (OLDEST_KUBERNETES, kubernetes_validate.latest_version()):
        for manifest in rendered[name]:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_schema_validation_rejects_a_misspelt_field(rendered) -> None:
    deployment = one(rendered["base"], "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST_KUBERNETES, strict=True)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_probes_and_port_match_the_gateway(name, rendered, tmp_path, monkeypatch) -> None:
    main = container(rendered[name])
    (port,) = main["ports"]
    assert (port["name"], port["containerPort"]) == ("http", GATEWAY_PORT)
    args = main["args"]
    assert args[0] == "serve" and args[args.index("--port") + 1] == str(GATEWAY_PORT)
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--config") + 1] == str(CONFIG_DIR / "hallgate.yaml")
    for probe, path in (("startupProbe", LIVENESS_PATH), ("livenessProbe", LIVENESS_PATH),
                        ("readinessProbe", READINESS_PATH)):
        assert main[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    startup = main["startupProbe"]
    settings = load_settings(rendered[name], tmp_path, monkeypatch)
    assert startup["periodSeconds"] * startup["failureThreshold"] > \
        settings.embedded.startup_timeout_s, "the app serves nothing until the model is up"
    annotations = one(rendered[name], "Deployment")["spec"]["template"]["metadata"][
        "annotations"]
    assert annotations["prometheus.io/path"] == METRICS_PATH
    assert annotations["prometheus.io/port"] == str(GATEWAY_PORT)
    service = one(rendered[name], "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_gateway_serves_the_probed_paths_without_a_key(rendered, tmp_path, monkeypatch) -> None:
    """The real app (openai overlay settings, gateway keys on) answers the probe and
    scrape paths without an Authorization header: kubelet and Prometheus send none.
    The app's lifespan is not started, so /healthz must work before the upstream does."""
    from fastapi.testclient import TestClient

    from proxy.app import create_app

    settings = load_settings(rendered["overlays/openai"], tmp_path, monkeypatch)
    assert settings.api_keys, "the openai overlay should turn gateway keys on"
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    assert client.get(LIVENESS_PATH).status_code == 200
    assert client.get(READINESS_PATH).status_code == 503, "not ready before startup"
    assert client.get(METRICS_PATH).status_code == 200
    assert client.post("/v1/chat/completions", json={}).status_code == 401, \
        "the API itself must want a key"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_configmaps_are_generated_and_referenced(name, rendered) -> None:
    manifests = rendered[name]
    configmaps = generated_configmaps(manifests)
    assert set(configmaps) == {"hallgate-config", "hallgate-policy"}
    for cm in configmaps.values():
        assert HASH_SUFFIX.search(cm["metadata"]["name"]), "generated, with a hash suffix"
    volume = next(v for v in pod_spec(manifests)["volumes"] if v["name"] == "config")
    referenced = {s["configMap"]["name"] for s in volume["projected"]["sources"]}
    assert referenced == {cm["metadata"]["name"] for cm in configmaps.values()}
    mount = next(m for m in container(manifests)["volumeMounts"] if m["name"] == "config")
    assert (mount["mountPath"], mount.get("readOnly")) == (str(CONFIG_DIR), True)
    assert set(configmaps["hallgate-config"]["data"]) == {"hallgate.yaml"}
    assert set(configmaps["hallgate-policy"]["data"]) == {"policy.yaml"}


def test_editing_the_policy_renames_its_configmap(kubectl, rendered, tmp_path) -> None:
    """A policy edit changes the generated name, so `kubectl apply -k` rolls the pods."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    shutil.copytree(K8S.parent / "grafana", tmp_path / "grafana")  # a component of overlays
    policy = tree / "base" / "policy.yaml"
    policy.write_text(policy.read_text() + "\n# edited\n")
    before = rendered["overlays/openai"]
    after = render(kubectl, tree / "overlays" / "openai")
    old, new = generated_configmaps(before), generated_configmaps(after)
    old_name = old["hallgate-policy"]["metadata"]["name"]
    new_name = new["hallgate-policy"]["metadata"]["name"]
    assert new_name != old_name
    assert new["hallgate-config"]["metadata"]["name"] == \
        old["hallgate-config"]["metadata"]["name"]
    volume = next(v for v in pod_spec(after)["volumes"] if v["name"] == "config")
    assert new_name in {s["configMap"]["name"] for s in volume["projected"]["sources"]}


def test_policy_configmap_is_the_example_policy(rendered) -> None:
    """deploy/k8s/base/policy.yaml is a copy of the example (kustomize reads no file outside
    deploy/k8s). The two must mean the same policy; comments may differ."""
    from policies.loader import load_policy, load_policy_text

    example = load_policy(REPO / "policies" / "examples" / "default.yaml")
    mounted = generated_configmaps(rendered["base"])["hallgate-policy"]["data"]["policy.yaml"]
    assert load_policy_text(mounted, "policy.yaml") == example, (
        "deploy/k8s/base/policy.yaml no longer matches policies/examples/default.yaml; "
        "refresh it: cp policies/examples/default.yaml deploy/k8s/base/policy.yaml")


# ---- the gateway's settings as the pod sees them -----------------------------------------

def pod_environment(manifests: list[dict]) -> tuple[dict[str, str], set[str]]:
    """(env as the container gets it, names set from Secrets). Downward-API CPU values
    become "2"; each Secret reference gets a placeholder value."""
    env: dict[str, str] = {}
    from_secrets: set[str] = set()
    for var in container(manifests).get("env", []):
        source = var.get("valueFrom", {})
        if "secretKeyRef" in source:
            from_secrets.add(var["name"])
            env[var["name"]] = f"placeholder-{var['name'].lower()}"
        elif "resourceFieldRef" in source:
            env[var["name"]] = "2"
        else:
            env[var["name"]] = var["value"]
    return env, from_secrets


def load_settings(manifests: list[dict], tmp_path: Path, monkeypatch):
    """proxy.config.Settings from the rendered hallgate.yaml and the pod's environment."""
    from proxy.config import Settings

    config = tmp_path / "hallgate.yaml"
    config.write_text(generated_configmaps(manifests)["hallgate-config"]["data"]["hallgate.yaml"])
    env, _ = pod_environment(manifests)
    unknown = {k.split("__")[0].removeprefix("HALLGATE_").lower() for k in env
               if k.startswith("HALLGATE_")} - set(Settings.model_fields)
    assert not unknown, f"HALLGATE_* variables that name no setting: {unknown}"
    for name in [k for k in os.environ if k.startswith("HALLGATE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.load(config)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_settings_load_and_point_at_mounted_files(name, rendered, tmp_path, monkeypatch):
    manifests = rendered[name]
    settings = load_settings(manifests, tmp_path, monkeypatch)
    assert settings.resolved_policy_file() == CONFIG_DIR / "policy.yaml"
    mounts = {m["mountPath"]: m["name"] for m in container(manifests)["volumeMounts"]}
    empty_dirs = {v["name"] for v in pod_spec(manifests)["volumes"] if "emptyDir" in v}
    assert settings.audit.path, "the audit log is on in every overlay"
    assert mounts.get(str(Path(settings.audit.path).parent)) in empty_dirs, \
        "the audit log needs a writable volume under readOnlyRootFilesystem"
    assert mounts.get("/tmp") in empty_dirs, "the embedded model needs a writable /tmp"
    assert settings.embedded.n_threads == 2, "llama.cpp threads follow the CPU limit"
    assert settings.use_embedded() == (name != "overlays/openai")


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_key_comes_from_a_secret(name, rendered, tmp_path, monkeypatch) -> None:
    manifests = rendered[name]
    settings = load_settings(manifests, tmp_path, monkeypatch)
    _, from_secrets = pod_environment(manifests)
    wanted = {m.api_key_env for m in settings.models if m.api_key_env}
    wanted |= {k.key_env for k in settings.api_keys}
    assert wanted <= from_secrets, f"set from no Secret: {wanted - from_secrets}"
    for model in settings.models:
        assert model.api_key(), f"{model.name}: its key variable is not set in the pod"


def test_openai_overlay_targets_gpt_4o_mini(rendered, tmp_path, monkeypatch) -> None:
    manifests = rendered["overlays/openai"]
    settings = load_settings(manifests, tmp_path, monkeypatch)
    (model,) = settings.models
    assert (model.name, model.provider, model.model, model.api_base, model.api_key_env) == (
        "gpt-4o-mini", "openai", "gpt-4o-mini", "https://api.openai.com/v1", "OPENAI_API_KEY")
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container(manifests)["env"]
            if "secretKeyRef" in v.get("valueFrom", {})}
    assert refs["OPENAI_API_KEY"] == {"name": "hallgate-upstream", "key": "OPENAI_API_KEY"}
    assert {r["name"] for r in refs.values()} == {"hallgate-upstream", "hallgate-api-keys",
                                                  "hallgate-store"}


def test_openai_overlay_keeps_its_store_in_postgresql_from_a_secret(rendered, tmp_path,
                                                                      monkeypatch) -> None:
    """The replicas share one PostgreSQL store whose URL (with its password) comes from a
    Secret; the pod's settings turn the store on with that URL."""
    from proxy.store.database import database_url

    manifests = rendered["overlays/openai"]
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container(manifests)["env"]
            if "secretKeyRef" in v.get("valueFrom", {})}
    assert refs["HALLGATE_STORE__URL"] == {"name": "hallgate-store", "key": "STORE_URL"}
    env, _ = pod_environment(manifests)
    env["HALLGATE_STORE__URL"] = "postgresql://u:p@db:5432/hallgate"
    config = tmp_path / "hallgate.yaml"
    config.write_text(generated_configmaps(manifests)["hallgate-config"]["data"]["hallgate.yaml"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from proxy.config import Settings

    settings = Settings.load(config)
    assert settings.store.enabled and settings.store.migrate == "auto"
    assert not settings.store.include_prompt
    assert database_url(settings) == "postgresql+asyncpg://u:p@db:5432/hallgate"
    for name in ("base", "overlays/local-model"):
        assert "HALLGATE_STORE__URL" not in {v["name"] for v in container(rendered[name])
                                             .get("env", [])}


def test_no_plain_text_secrets_anywhere(rendered) -> None:
    for name, manifests in rendered.items():
        assert not [m for m in manifests if m["kind"] == "Secret"], \
            f"{name}: Secrets are created with kubectl, never shipped in the repo"
        for var in container(manifests).get("env", []):
            if SECRET_ENV_NAME.search(var["name"]):
                assert "secretKeyRef" in var.get("valueFrom", {}), f"{name}: {var['name']}"
    for path in (REPO / "deploy").rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not SECRET_VALUE.search(text), f"{path}: looks like a credential"
            if path.name == "kustomization.yaml":
                assert "secretGenerator" not in yaml.safe_load(text), path


# ---- hardening, scaling, shutdown ---------------------------------------------------------

def dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\d+)", (REPO / "deploy" / "Dockerfile").read_text(), re.M)
    return int(users[-1])


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pod_is_locked_down(name, rendered) -> None:
    pod = pod_spec(rendered[name])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    hardening = container(rendered[name])["securityContext"]
    assert hardening["readOnlyRootFilesystem"] is True
    assert hardening["allowPrivilegeEscalation"] is False
    assert hardening["capabilities"] == {"drop": ["ALL"]}
    assert hardening["seccompProfile"] == {"type": "RuntimeDefault"}


def memory_gib(quantity: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(Mi|Gi)", quantity).groups()
    return float(number) / (1024 if unit == "Mi" else 1)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_resources_are_bounded(name, rendered) -> None:
    resources = container(rendered[name])["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind
    assert memory_gib(resources["requests"]["memory"]) <= memory_gib(
        resources["limits"]["memory"])


def test_local_model_overlay_is_one_bigger_replica(rendered) -> None:
    local, base = rendered["overlays/local-model"], rendered["base"]
    assert one(local, "Deployment")["spec"]["replicas"] == 1
    assert not [m for m in local if m["kind"] == "HorizontalPodAutoscaler"]
    assert memory_gib(container(local)["resources"]["limits"]["memory"]) > memory_gib(
        container(base)["resources"]["limits"]["memory"])


@pytest.mark.parametrize("name", ["base", "overlays/openai"])
def test_autoscaler_owns_the_replica_count(name, rendered) -> None:
    manifests = rendered[name]
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "hallgate"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert "replicas" not in one(manifests, "Deployment")["spec"], \
        "a replicas field would fight the autoscaler on every apply"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_selectors_match_the_pods(name, rendered) -> None:
    manifests = rendered[name]
    labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = [one(manifests, "Service")["spec"]["selector"],
                 one(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                 one(manifests, "Deployment")["spec"]["selector"]["matchLabels"]]
    for selector in selectors:
        assert selector.items() <= labels.items()
    pdb = one(manifests, "PodDisruptionBudget")["spec"]
    assert pdb.get("maxUnavailable") == 1, "lets a one-replica overlay drain a node"


def gateway_drain_seconds() -> int:
    """uvicorn's graceful-shutdown timeout as `hallgate serve` sets it (proxy/cli.py)."""
    found = re.search(r"timeout_graceful_shutdown\s*=\s*(\d+)",
                      (REPO / "proxy" / "cli.py").read_text())
    assert found, "proxy/cli.py no longer sets timeout_graceful_shutdown; update this test"
    return int(found.group(1))


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_grace_period_covers_prestop_and_drain(name, rendered) -> None:
    pod = pod_spec(rendered[name])
    command = container(rendered[name])["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(command[1]) + gateway_drain_seconds()


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_image_tag_is_the_package_version(name, rendered) -> None:
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert container(rendered[name])["image"] == f"hallgate:{version.group(1)}"
