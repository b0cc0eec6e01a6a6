"""infra/kubernetes held to the compose files and to the rules of docs/kubernetes.md.

The committed manifests are read as they are on disk: schema-checked against Kubernetes 1.37
(each base file, and each overlay as kustomize would build it), held to the rules (workload
kinds, probes, securityContext, service links, PDBs, NetworkPolicies, Ingress), and compared
field by field with the production compose model (images, setting names, secrets, limits),
besides a byte-for-byte comparison with a fresh render. The compose model needs Compose v2
(the CLI only, no engine); `nox -s kubernetes` installs it where it is missing.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from coach.settings import Settings
from ops.cli.kubernetes import RENDER
from ops.errors import ConfigError
from ops.host import engine
from ops.kubernetes import kustomize, render
from ops.kubernetes.render import K8S_DIR, NETWORK_LABEL, Model, secret_name
from ops.stack import roles

K8S_VERSION = "1.37.0"
Doc = dict[str, Any]


def _read(path: str) -> str | None:
    file = K8S_DIR / path
    return file.read_text() if file.is_file() else None


def base_docs() -> list[Doc]:
    return [
        doc
        for path in sorted((K8S_DIR / "base").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
    ]


BASE = base_docs()


def find(kind: str, name: str, docs: list[Doc] = BASE) -> Doc:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def pods(docs: list[Doc] = BASE) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def model() -> Model:
    # `nox -s kubernetes` installs Compose first (invoke docker.ensure): never a skip here.
    assert engine.compose_answers(), "Compose v2 does not answer: run `invoke docker.ensure`"
    return render.compose_model()


# --- against the compose files --------------------------------------------------------------


def test_committed_manifests_are_a_fresh_render(model: Model) -> None:
    assert render.stale(render.render(model)) == [], "run `invoke kubernetes.render`"


def disagreements(docs: list[Doc], model: Model) -> list[str]:
    """Where the manifests and the compose model differ on an image, a setting name, a
    secret or a limit (each service of the model that has a workload here)."""
    services = model.config["services"]
    found = []
    for name, pod in pods(docs):
        compose = services[name]
        (container,) = pod["containers"]
        if container["image"] != compose["image"]:
            found.append(f"{name}: image {container['image']} != {compose['image']}")
        if container.get("env") or container["envFrom"] != [
            {"configMapRef": {"name": f"{name}-env"}}
        ]:
            found.append(f"{name}: settings from elsewhere than its ConfigMap {name}-env")
        config = find("ConfigMap", f"{name}-env", docs)["data"]
        extra = render.Renderer(model).extra_env(name)
        expected = set(compose.get("environment") or {}) | set(extra)
        if set(config) != expected:
            found.append(f"{name}: settings {sorted(set(config) ^ expected)} differ")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounted = {
            volumes[m["name"]]["secret"]["secretName"]: (m["mountPath"], m.get("subPath"))
            for m in container["volumeMounts"]
            if "secret" in volumes.get(m["name"], {})
        }
        wanted = {
            secret_name(s["source"]): (
                s.get("target") or f"/run/secrets/{s['source']}",
                s["source"],
            )
            for s in compose.get("secrets") or []
        }
        if mounted != wanted:
            found.append(f"{name}: secrets {mounted} != {wanted}")
        for key, value in (compose.get("environment") or {}).items():
            paths = {path for path, _ in mounted.values()}
            if (
                key.endswith("_FILE")
                and value
                and str(value).startswith("/")
                and value not in paths
            ):
                found.append(f"{name}: {key}={value} is not a mounted secret")
        limits = render.resources(compose)
        if container["resources"] != limits:
            found.append(f"{name}: resources {container['resources']} != {limits}")
    return found


def test_manifests_agree_with_compose_on_images_settings_secrets_and_limits(
    model: Model,
) -> None:
    assert disagreements(BASE, model) == []
    rendered = set(render.Renderer(model).workloads())
    assert {name for name, _ in pods()} == rendered


@pytest.mark.parametrize(
    "edit",
    ["image", "setting", "secret", "limit"],
)
def test_an_edited_manifest_is_a_disagreement(model: Model, edit: str) -> None:
    docs = copy.deepcopy(BASE)
    pod = find("Deployment", "backend", docs)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    if edit == "image":
        container["image"] = container["image"] + "-other"
    elif edit == "setting":
        data = find("ConfigMap", "backend-env", docs)["data"]
        data["LOG_LEVL"] = data.pop("LOG_LEVEL")
    elif edit == "secret":
        pod["volumes"][0]["secret"]["secretName"] = "another-secret"
    else:
        container["resources"]["limits"]["memory"] = "2Gi"
    (problem,) = disagreements(docs, model)
    assert problem.startswith("backend: ")
    edited = Path(K8S_DIR / "base" / "backend.yaml")
    files = {**render.render(model), "base/backend.yaml": edited.read_text() + "# edited\n"}
    assert render.stale(files) == ["base/backend.yaml"]


def test_the_command_fails_on_a_stale_file_and_writes_it_again(
    model: Model,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    copy = tmp_path / "kubernetes"
    shutil.copytree(K8S_DIR, copy)
    monkeypatch.setattr(render, "K8S_DIR", copy)
    monkeypatch.setattr(render, "compose_model", lambda: model)
    assert RENDER.main(["--check"]) == 0
    edited = copy / "base" / "backend.yaml"
    edited.write_text(edited.read_text().replace("memory: 1Gi", "memory: 2Gi"))
    leftover = copy / "base" / "gone.yaml"
    leftover.write_text("kind: ConfigMap\n")
    capsys.readouterr()
    assert RENDER.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "base/backend.yaml, base/gone.yaml" in err
    assert "memory: 2Gi" in edited.read_text()  # --check changes nothing
    assert RENDER.main([]) == 0
    assert edited.read_text() == (K8S_DIR / "base" / "backend.yaml").read_text()
    assert not leftover.exists()
    assert RENDER.main(["--check"]) == 0


def test_data_services_listen_where_the_app_connects(model: Model) -> None:
    env = find("ConfigMap", "backend-env")["data"]
    fields = Settings.model_fields
    # Where the app's settings point: a host and its default port, or a URL.
    connects = {
        f"{env['POSTGRES_HOST']}:{fields['postgres_port'].default}",
        f"{env['REDIS_HOST']}:{fields['redis_port'].default}",
        urlsplit(env["QDRANT_URL"]).netloc,
        urlsplit(env["S3_ENDPOINT_URL"]).netloc,
    }
    listens = set()
    for store in render.STORE_PORTS:
        service = roles.store_service(model.config, store)  # type: ignore[arg-type]
        spec = find("Service", service)["spec"]
        assert spec["clusterIP"] == "None"
        listens |= {f"{service}:{p['port']}" for p in spec["ports"]}
    assert connects == listens


def test_network_policies_are_the_compose_networks(model: Model) -> None:
    services = model.config["services"]
    for name, _ in pods():
        labels = find(_kind(name), name)["spec"]["template"]["metadata"]["labels"]
        networks = {k.removeprefix(NETWORK_LABEL) for k in labels if k.startswith(NETWORK_LABEL)}
        assert networks == set(services[name]["networks"]), name
    for network, spec in model.config["networks"].items():
        if not any(network in services[n]["networks"] for n, _ in pods()):
            continue
        policy = find("NetworkPolicy", f"network-{network}")["spec"]
        members = {"matchLabels": {NETWORK_LABEL + network: "true"}}
        assert policy["podSelector"] == members
        assert {"from": [{"podSelector": members}]} in policy["ingress"]
        outside = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]} in policy["egress"]
        assert outside is not spec.get("internal", False), network
    deny = find("NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def _kind(name: str) -> str:
    (kind,) = {d["kind"] for d in BASE if d["metadata"]["name"] == name} & {
        "Deployment",
        "StatefulSet",
        "Job",
    }
    return str(kind)


# --- schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", [None, "dev", "prod"])
def test_every_document_validates_against_the_kubernetes_schemas(overlay: str | None) -> None:
    docs = BASE if overlay is None else kustomize.build(f"overlays/{overlay}", _read)
    assert len(docs) > 20
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_schema_error_is_caught() -> None:
    doc = copy.deepcopy(find("Deployment", "backend"))
    doc["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_overlays_set_namespace_replicas_and_provide_every_secret() -> None:
    mounted = {
        v["secret"]["secretName"]
        for _, pod in pods()
        for v in pod.get("volumes", [])
        if "secret" in v
    }
    for overlay, values in render.OVERLAYS.items():
        docs = kustomize.build(f"overlays/{overlay}", _read)
        assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
            values["namespace"]
        }
        assert find("Deployment", "backend", docs)["spec"]["replicas"] == values["web_replicas"]
        hpa = find("HorizontalPodAutoscaler", "celery-worker", docs)["spec"]
        assert hpa["maxReplicas"] == values["worker_max"]
        assert {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"} == mounted


def test_the_overlay_build_refuses_what_it_cannot_apply() -> None:
    files = {"o/kustomization.yaml": "resources: []\ncommonLabels: {a: b}\n"}
    with pytest.raises(ConfigError, match="commonLabels"):
        kustomize.build("o", files.get)
    files = {
        "o/kustomization.yaml": "resources: [d.yaml]\npatches: [{target: {kind: ConfigMap, "
        'name: x}, patch: \'[{"op": "remove", "path": "/data"}]\'}]\n',
        "o/d.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {}\n",
    }
    with pytest.raises(ConfigError, match="remove"):
        kustomize.build("o", files.get)


def test_no_secret_value_is_committed() -> None:
    committed = [doc for overlay in render.OVERLAYS for doc in _overlay_files(overlay)]
    assert not [d for d in BASE + committed if d.get("kind") == "Secret"]
    for overlay in render.OVERLAYS:
        ignore = (K8S_DIR / "overlays" / overlay / "secrets" / ".gitignore").read_text()
        assert ignore.split() == ["*", "!.gitignore"]


def _overlay_files(overlay: str) -> list[Doc]:
    return [
        doc
        for path in sorted((K8S_DIR / "overlays" / overlay).glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]


# --- the rules -------------------------------------------------------------------------------


def test_workload_kinds() -> None:
    for name in ("backend", "celery-worker", "celery-beat"):
        find("Deployment", name)
    for name in ("postgres", "redis", "qdrant", "minio"):
        spec = find("StatefulSet", name)["spec"]
        assert spec["volumeClaimTemplates"], name
        assert spec["serviceName"] == name
    for name in ("migrate", "minio-init"):
        assert find("Job", name)["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    beat = find("Deployment", "celery-beat")["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}
    hpa = find("HorizontalPodAutoscaler", "celery-worker")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "celery-worker"
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    for name in ("backend", "celery-worker"):
        assert find("PodDisruptionBudget", name)["spec"]["selector"] == {
            "matchLabels": {render.NAME: name}
        }
    assert not [name for name, _ in pods() if name == "nginx"]


def test_backend_probes_are_the_health_endpoints() -> None:
    (container,) = find("Deployment", "backend")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": 8000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": 8000}
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    for name, pod in pods():
        if find(_kind(name), name)["kind"] != "Job":
            assert "livenessProbe" in pod["containers"][0], name


@pytest.mark.parametrize("name", [name for name, _ in pods()])
def test_every_pod_is_locked_down(name: str) -> None:
    pod = dict(pods())[name]
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["resources"]["requests"] == container["resources"]["limits"]


def test_ingress_routes_the_public_paths_to_the_backend() -> None:
    spec = find("Ingress", "nginx")["spec"]
    (rule,) = spec["rules"]
    paths = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
    assert paths == {("/api", "Prefix"), ("/health/live", "Exact"), ("/health/ready", "Exact")}
    assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {"backend"}
    ingress_from = find("NetworkPolicy", "network-edge")["spec"]["ingress"]
    assert any("namespaceSelector" in peer for rule_ in ingress_from for peer in rule_["from"])
