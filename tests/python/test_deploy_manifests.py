"""The Kubernetes deployment (config/deploy/helm/llmopsd) and the container image recipe (Dockerfile), without a
cluster, a helm binary, docker or the network.

The chart is rendered by Helm's own template engine: helm-python-sdk binds Helm v4's Go SDK (the library the helm
CLI is built on, shipped inside the wheel). Every object it renders is validated against the OpenAPI schemas of
Kubernetes 1.30 (kubernetes-validate, which ships them; strict: an unknown or misspelt field is an error). The
ServiceMonitor is a CRD without a schema there, so its shape is checked by hand against the Service it scrapes.
The daemon's config the chart renders must parse as TOML and use only keys config/llmopsd.example.toml documents.
The Dockerfile checks are text-level (it cannot be built here): stages, user, the build command and flags.
"""

from __future__ import annotations

import base64
import os
import platform
import re
import subprocess
import sys
import tomllib
from typing import Any, Iterator

import pytest
import yaml

import kubernetes_validate
from conftest import REPO_ROOT, binary

# helm-python-sdk's wheels carry Helm for Linux x86-64 (and macOS, Windows), not Linux on Arm: there the
# requirement is skipped (tests/python/requirements.txt), and so are these tests. Elsewhere it must be installed.
if sys.platform == "linux" and platform.machine() != "x86_64":
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk has no wheel for Linux on this CPU")
else:
    try:
        import helm_python as helm
    except ImportError as error:
        raise ImportError("helm_python is missing: run scripts/setup.sh (tests/python/requirements.txt)") from error

CHART = REPO_ROOT / "config" / "deploy" / "helm" / "llmopsd"
DOCKERFILE = REPO_ROOT / "Dockerfile"
KUBERNETES_VERSION = "1.30"
RELEASE, NAMESPACE = "llmops", "gpu"
FULLNAME = "llmops-llmopsd"

# Tables whose children are named by the operator ([engines.NAME], [routes.NAME]).
NAMED_TABLES = {"engines", "routes"}

CERT = "-----BEGIN CERTIFICATE-----\nMIIBserver\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEkey\n-----END PRIVATE KEY-----\n"
CA = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n"
# The least an install needs: the admin token and the TLS pair (README's helm install).
MINIMAL = {"secret": {"token": "admin-token"}, "grpc": {"tls": {"cert": CERT, "key": KEY}}}
EXTRA_CONFIG = """[engines.vllm]
kind = "openai"
base_url = "http://vllm.inference.svc:8000/v1"
models = ["Qwen/Qwen2.5-7B-Instruct"]

[routes.chat]
targets = [{ engine = "vllm", model = "Qwen/Qwen2.5-7B-Instruct" }]
"""

# Value sets covering each branch of the templates; every one must render valid objects.
VARIANTS: dict[str, dict[str, Any]] = {
    "minimal": MINIMAL,
    "everything-on": {
        "secret": {"token": "admin-token", "readToken": "read-token"},
        "grpc": {"tls": {"cert": CERT, "key": KEY, "verifyClients": True, "clientCA": CA}},
        "priorityClassName": "system-node-critical",
        "runtimeClassName": "nvidia",
        "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}},
        "otlp": {"endpoint": "http://otel-collector.observability:4318", "profile": "langfuse", "headers": "a=b"},
        "extraConfig": EXTRA_CONFIG,
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "config": {"server": {"max_body_bytes": 1048576, "cors_origins": ["https://chat.example.com"]}},
    },
    "existing-secrets": {
        "existingSecret": "llmops-tokens",
        "grpc": {"tls": {"existingSecret": "llmops-grpc-tls", "verifyClients": True}},
    },
    "plain-grpc-emptydir": {
        "secret": {"token": "admin-token"},
        "grpc": {"tls": {"enabled": False}},
        "persistence": {"type": "emptyDir"},
        "volumePermissions": {"enabled": False},
        # null, not {}: Helm merges a map into the default map, and deletes a key set to null.
        "nodeSelector": None,
    },
    "shared-claim": {**MINIMAL, "persistence": {"type": "pvc", "pvc": {"claimName": "llmops-data"}}},
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's objects as `helm template` would print them (NOTES.txt aside)."""
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for name, text in sorted(files.items()):
        if name.endswith(".yaml"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["llmopsd"]
    return containers[0]


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c["env"]}


def daemon_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return tomllib.loads(one(objects, "ConfigMap")["data"]["llmopsd.toml"])


def key_paths(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in table.items():
        name = "*" if len(prefix) == 1 and prefix[0] in NAMED_TABLES else key
        if isinstance(value, dict):
            yield from key_paths(value, prefix + (name,))
        else:
            yield prefix + (name,)


def documented_keys() -> set[tuple[str, ...]]:
    example = tomllib.loads((REPO_ROOT / "config" / "llmopsd.example.toml").read_text())
    return set(key_paths(example))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_is_valid_for_kubernetes(variant: str) -> None:
    objects = render(VARIANTS[variant])
    kinds = sorted(o["kind"] for o in objects)
    assert {"ConfigMap", "DaemonSet", "Service", "ServiceAccount"} <= set(kinds), kinds
    problems = []
    for obj in objects:
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
        if obj["kind"] == "ServiceMonitor":
            continue  # a CRD: test_service_monitor_scrapes_the_services_http_port checks it
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: {where}: {error.message}")
    if problems:
        pytest.fail(f"{variant}: invalid for Kubernetes {KUBERNETES_VERSION}:\n" + "\n".join(problems), pytrace=False)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_chart_lints_clean(variant: str) -> None:
    report = helm.lint(str(CHART), VARIANTS[variant], strict=True, kube_version=f"{KUBERNETES_VERSION}.0")
    assert report["errors"] == [], report
    # Helm's severities: 1 info ("icon is recommended"), 2 warning, 3 error.
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_daemonset_runs_the_daemon_on_gpu_nodes_with_its_config() -> None:
    objects = render(MINIMAL)
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "priorityClassName" not in pod, "no priority class unless asked (system-node-critical is kube-system's)"
    assert pod["automountServiceAccountToken"] is False
    c = container(objects)
    assert c["command"] == ["/usr/local/bin/llmopsd"] and c["args"] == ["--config", "/etc/llmops/llmopsd.toml"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/llmops/llmopsd.toml" and mounts["config"]["subPath"] == "llmopsd.toml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == one(objects, "ConfigMap")["metadata"]["name"]
    assert volumes["data"]["hostPath"] == {"path": "/var/lib/llmops", "type": "DirectoryOrCreate"}
    # Where the daemon writes is where the volume is.
    config = daemon_config(objects)["server"]
    assert mounts["data"]["mountPath"] == config["data_dir"] == "/var/lib/llmops"
    # The config file is read once at start: a changed ConfigMap must roll the pods.
    annotations = one(objects, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])
    changed = one(render({**MINIMAL, "extraConfig": EXTRA_CONFIG}), "DaemonSet")
    assert changed["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != annotations["checksum/config"]

    requests, limits = c["resources"]["requests"], c["resources"]["limits"]
    assert {"cpu", "memory"} <= set(requests) and {"cpu", "memory"} <= set(limits)

    everything = one(render(VARIANTS["everything-on"]), "DaemonSet")["spec"]["template"]["spec"]
    assert everything["priorityClassName"] == "system-node-critical"
    assert everything["runtimeClassName"] == "nvidia"
    assert "nodeSelector" not in one(render(VARIANTS["plain-grpc-emptydir"]), "DaemonSet")["spec"]["template"]["spec"]


def test_probes_ask_healthz_and_readyz_on_the_named_http_port() -> None:
    objects = render(MINIMAL)
    c = container(objects)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "grpc": 50051}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # The listeners the config opens are the ports the pod declares.
    server = daemon_config(objects)["server"]
    assert server["http_listen"] == f"0.0.0.0:{ports['http']}"
    assert server["grpc_listen"] == f"0.0.0.0:{ports['grpc']}"


def test_pod_and_containers_run_unprivileged() -> None:
    objects = render(MINIMAL)
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == dockerfile_uid()
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(objects)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert any(m["mountPath"] == "/tmp" for m in container(objects)["volumeMounts"]), "writable /tmp"
    # The one root container: chown of the data directory, with CHOWN as its only capability.
    (init,) = pod["initContainers"]
    assert init["command"] == ["chown", f"{dockerfile_uid()}:{dockerfile_uid()}", "/var/lib/llmops"]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert "initContainers" not in one(render(VARIANTS["plain-grpc-emptydir"]), "DaemonSet")["spec"]["template"]["spec"]


def test_node_name_and_tokens_reach_the_daemon_as_environment() -> None:
    objects = render(MINIMAL)
    env = env_of(container(objects))
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    secret = one(objects, "Secret")
    assert secret["metadata"]["name"] == FULLNAME
    assert env["LLMOPS_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "token"}
    read = env["LLMOPS_READ_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert read == {"name": secret["metadata"]["name"], "key": "read-token", "optional": True}
    assert base64.b64decode(secret["data"]["token"]).decode() == "admin-token"
    assert "read-token" not in secret["data"], "no read-only token unless one is given"
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    # The variables the config names are the ones the pod sets.
    server = daemon_config(objects)["server"]
    assert server["grpc_token_env"] == "LLMOPS_TOKEN" and server["grpc_read_token_env"] == "LLMOPS_READ_TOKEN"
    assert "LLMOPS_OTLP_HEADERS" not in env, "OTLP is off by default"

    both = render(VARIANTS["everything-on"])
    data = one(both, "Secret")["data"]
    assert base64.b64decode(data["read-token"]).decode() == "read-token"
    assert base64.b64decode(data["otlp-headers"]).decode() == "a=b"
    headers = env_of(container(both))["LLMOPS_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"]
    assert headers["key"] == "otlp-headers" and headers["optional"] is True


def test_tls_files_are_mounted_where_the_config_looks() -> None:
    objects = render(VARIANTS["everything-on"])
    server = daemon_config(objects)["server"]
    assert server["grpc_insecure"] is False
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    tls_mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "tls")
    assert tls_mount["readOnly"] is True
    tls_volume = next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]
    files = {f"{tls_mount['mountPath']}/{item['path']}": item["key"] for item in tls_volume["items"]}
    assert files == {
        server["grpc_tls_cert"]: "tls.crt",
        server["grpc_tls_key"]: "tls.key",
        server["grpc_tls_client_ca"]: "ca.crt",
    }
    # Readable by the daemon's group (fsGroup), by no one else; the tokens are not among the files.
    assert tls_volume["defaultMode"] == 0o440
    data = one(objects, "Secret")["data"]
    assert {k: base64.b64decode(data[k]).decode() for k in ("tls.crt", "tls.key", "ca.crt")} == {
        "tls.crt": CERT,
        "tls.key": KEY,
        "ca.crt": CA,
    }
    assert daemon_config(render(MINIMAL))["server"]["grpc_tls_client_ca"] == "", "mTLS only when asked"

    plain = render(VARIANTS["plain-grpc-emptydir"])
    server = daemon_config(plain)["server"]
    assert server["grpc_insecure"] is True and server["grpc_tls_cert"] == ""
    assert all(m["name"] != "tls" for m in container(plain)["volumeMounts"])


def test_a_numeric_token_is_kept_as_text() -> None:
    # `--set secret.token=123456` hands the chart a number, not a string.
    data = one(render({**MINIMAL, "secret": {"token": 123456, "readToken": 654321}}), "Secret")["data"]
    assert (base64.b64decode(data["token"]), base64.b64decode(data["read-token"])) == (b"123456", b"654321")
    assert "must differ" in render_error({**MINIMAL, "secret": {"token": 7, "readToken": "7"}})


def test_existing_secrets_replace_the_charts() -> None:
    objects = render(VARIANTS["existing-secrets"])
    assert [o for o in objects if o["kind"] == "Secret"] == [], "the chart makes no Secret beside an existing one"
    env = env_of(container(objects))
    assert env["LLMOPS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "llmops-tokens"
    assert env["LLMOPS_READ_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "llmops-tokens"
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]
    assert tls["secretName"] == "llmops-grpc-tls"
    assert [i["key"] for i in tls["items"]] == ["tls.crt", "tls.key", "ca.crt"]
    assert "checksum/secret" not in one(objects, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]


def test_storage_options() -> None:
    pod = one(render(VARIANTS["plain-grpc-emptydir"]), "DaemonSet")["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "data")["emptyDir"] == {"sizeLimit": "10Gi"}

    objects = render(VARIANTS["shared-claim"])
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "data")["persistentVolumeClaim"] == {"claimName": "llmops-data"}
    # One SQLite database per node: each daemon in its own subdirectory of the shared claim.
    for c in (container(objects), pod["initContainers"][0]):
        data = next(m for m in c["volumeMounts"] if m["name"] == "data")
        assert data["subPathExpr"] == "$(NODE_NAME)"
        assert env_of(c)["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_service_exposes_http_and_grpc_of_the_pods() -> None:
    objects = render(MINIMAL)
    service = one(objects, "Service")
    template = one(objects, "DaemonSet")["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"http": (8080, "http"), "grpc": (50051, "grpc")}
    assert {p["name"] for p in container(objects)["ports"]} >= {target for _, target in ports.values()}


def test_service_monitor_scrapes_the_services_http_port() -> None:
    assert all(o["kind"] != "ServiceMonitor" for o in render(MINIMAL)), "off by default (needs the operator's CRDs)"
    objects = render(VARIANTS["everything-on"])
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels"}, spec
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == "http" and endpoint["port"] in service_ports
    assert endpoint["path"] == "/metrics" and endpoint["scheme"] == "http"
    assert re.fullmatch(r"\d+[smh]", endpoint["interval"]) and re.fullmatch(r"\d+[smh]", endpoint["scrapeTimeout"])
    assert isinstance(endpoint["honorLabels"], bool)
    for relabel in endpoint["relabelings"]:
        assert set(relabel) <= {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"}


def test_daemon_config_uses_only_documented_keys() -> None:
    known = documented_keys()
    for variant, values in VARIANTS.items():
        config = daemon_config(render(values))
        unknown = sorted(".".join(p) for p in set(key_paths(config)) - known)
        assert unknown == [], f"{variant}: keys config/llmopsd.example.toml does not document: {unknown}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_release_daemon_accepts_the_rendered_config(variant: str, tmp_path) -> None:
    """`llmopsd check-config` validates as the daemon does at start (keys, values, addresses, TLS settings)."""
    config = one(render(VARIANTS[variant]), "ConfigMap")["data"]["llmopsd.toml"]
    path = tmp_path / "llmopsd.toml"
    path.write_text(config)
    result = subprocess.run(
        [str(binary("llmopsd")), "check-config", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{variant}: llmopsd refused the chart's config:\n{result.stderr}\n{config}"
    assert "configuration is valid" in result.stderr


def test_daemon_config_values() -> None:
    config = daemon_config(render(MINIMAL))
    assert set(config) == {"server"}, "nothing but [server] unless OTLP or extraConfig asks"
    assert config["server"] == {
        "data_dir": "/var/lib/llmops",
        "http_listen": "0.0.0.0:8080",
        "grpc_listen": "0.0.0.0:50051",
        "grpc_token_env": "LLMOPS_TOKEN",
        "grpc_read_token_env": "LLMOPS_READ_TOKEN",
        "grpc_tls_cert": "/etc/llmops/tls/tls.crt",
        "grpc_tls_key": "/etc/llmops/tls/tls.key",
        "grpc_tls_client_ca": "",
        "grpc_insecure": False,
        "log_format": "json",
        "shutdown_grace_secs": 10,
    }

    config = daemon_config(render(VARIANTS["everything-on"]))
    assert config["export"]["otlp"] == {
        "endpoint": "http://otel-collector.observability:4318",
        "protocol": "http",
        "profile": "langfuse",
        "headers_env": "LLMOPS_OTLP_HEADERS",
    }
    assert config["engines"]["vllm"]["base_url"] == "http://vllm.inference.svc:8000/v1"
    assert config["routes"]["chat"]["targets"] == [{"engine": "vllm", "model": "Qwen/Qwen2.5-7B-Instruct"}]
    assert config["server"]["max_body_bytes"] == 1048576
    assert config["server"]["cors_origins"] == ["https://chat.example.com"]

    # config.server cannot move what the probes, mounts and secrets depend on.
    overridden = {**MINIMAL, "config": {"server": {"http_listen": "127.0.0.1:9999", "data_dir": "/elsewhere"}}}
    server = daemon_config(render(overridden))["server"]
    assert (server["http_listen"], server["data_dir"]) == ("0.0.0.0:8080", "/var/lib/llmops")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grpc": {"tls": {"cert": CERT, "key": KEY}}}, "secret.token is required"),
        ({**MINIMAL, "secret": {"token": "same", "readToken": "same"}}, "must differ from secret.token"),
        ({"secret": {"token": "t"}}, "grpc.tls.cert and grpc.tls.key are required"),
        (
            {**MINIMAL, "grpc": {"tls": {"cert": CERT, "key": KEY, "verifyClients": True}}},
            "verifyClients needs grpc.tls.clientCA",
        ),
        ({**MINIMAL, "otlp": {"endpoint": "http://otel:4318", "protocol": "thrift"}}, 'otlp.protocol "thrift"'),
        ({**MINIMAL, "otlp": {"endpoint": "http://otel:4318", "profile": "zipkin"}}, 'otlp.profile "zipkin"'),
        ({**MINIMAL, "persistence": {"type": "nfs"}}, 'persistence.type "nfs"'),
        ({**MINIMAL, "persistence": {"type": "pvc"}}, "needs persistence.pvc.claimName"),
    ],
    ids=["no-token", "same-tokens", "no-certificate", "mtls-without-ca", "otlp-protocol", "otlp-profile",
         "storage-type", "claim-name"],
)
def test_values_the_daemon_would_refuse_fail_the_install(values: dict[str, Any], message: str) -> None:
    assert message in render_error(values)


def test_chart_version_is_the_workspace_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    cargo = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())
    assert chart["appVersion"] == cargo["workspace"]["package"]["version"]
    objects = render(MINIMAL)
    assert container(objects)["image"] == f"llmopsd:{chart['appVersion']}"


# --- Dockerfile: text-level checks (no docker here to build it) -----------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuation lines joined, comments dropped) grouped by stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def instructions(stage: list[str], name: str) -> list[str]:
    return [line[len(name) + 1 :].strip() for line in stage if line.upper().startswith(name + " ")]


def dockerfile_uid() -> int:
    (user,) = instructions(dockerfile_stages()[-1], "USER")
    return int(user.split(":")[0])


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    stages = dockerfile_stages()
    assert len(stages) == 2, "a builder stage and a runtime stage"
    builder, runtime = stages
    assert re.fullmatch(r"FROM rust:[\w.]+-bookworm AS builder", builder[0]), builder[0]
    assert re.fullmatch(r"FROM debian:bookworm-slim", runtime[0]), runtime[0]
    assert dockerfile_uid() >= 1000
    assert dockerfile_uid() == yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]["runAsUser"]
    assert instructions(runtime, "ENTRYPOINT") == ['["/usr/local/bin/llmopsd"]']
    assert instructions(runtime, "EXPOSE") == ["8080 50051"]
    # Only what the binaries and the model need: no compiler or Python in the runtime image.
    copies = instructions(runtime, "COPY")
    assert copies == ["--from=builder /out/bin/ /usr/local/bin/", "--from=builder /out/models/ /opt/llmops/models/"]
    runtime_text = "\n".join(runtime)
    assert "ca-certificates" in runtime_text and "libgomp1" in runtime_text
    assert not re.search(r"\b(python3|cmake|clang|gcc|cargo)\b", runtime_text.replace("/usr/local/bin/llmopsd", ""))
    # The daemon finds the model the builder pulled (model_cache::cache_dir reads LLMOPS_MODEL_DIR).
    assert re.search(r"ENV LLMOPS_MODEL_DIR=/opt/llmops/models\b", runtime_text)


def test_dockerfile_builds_like_scripts_run_sh() -> None:
    builder = "\n".join(dockerfile_stages()[0])
    run_sh = (REPO_ROOT / "scripts" / "run.sh").read_text()
    # run.sh's build: `source scripts/build-env.sh` then its cargo command; the image sources the same file
    # (`.` in /bin/sh) and runs the same command, adding only --locked.
    assert "source scripts/build-env.sh" in run_sh
    (cargo_build,) = re.findall(r"^cargo build .*$", run_sh, re.MULTILINE)
    assert ". scripts/build-env.sh" in builder
    assert cargo_build in builder.replace(" --locked", "")
    assert "target-cpu=native" not in builder and "RUSTFLAGS" not in builder, "the portable build of .cargo/config.toml"
    assert "ARG LLMOPS_TARGET_CPU" in builder
    # The system packages scripts/setup.sh installs to build llama.cpp.
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    (packages,) = re.findall(r"^for package in (.*); do$", setup, re.MULTILINE)
    for package in packages.split():
        if package == "cmake" or package.startswith("libclang"):
            assert package in builder, f"{package} (scripts/setup.sh) not installed in the builder"
    # The model is fetched at build time, so a pod never needs the network for it.
    assert re.search(r"LLMOPS_MODEL_DIR=/out/models /out/bin/llmopsd model pull\b", builder)


def test_dockerignore_keeps_build_outputs_out_of_the_context() -> None:
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()}
    assert {"target/", ".venv/", ".git/", ".llmops-data/"} <= ignored
    assert not any(line.startswith(".cargo") for line in ignored), ".cargo/config.toml sets the portable target CPU"


SNAPSHOT = REPO_ROOT / "config" / "deploy" / "rendered" / "llmopsd.yaml"
SNAPSHOT_HEADER = (
    "# What `helm template llmops config/deploy/helm/llmopsd -n gpu` renders with every option on (the values of\n"
    "# `everything-on` in tests/python/test_deploy_manifests.py; tokens and certificates are placeholders).\n"
    "# Generated: LLMOPS_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/python/test_deploy_manifests.py\n"
)


class _BlockStrings(yaml.SafeDumper):
    """Multi-line strings (the daemon's TOML, certificates) as `|` blocks, as one would write them."""


_BlockStrings.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None),
)


def test_rendered_manifests_match_the_snapshot() -> None:
    """A chart change shows up in review as a change of the manifests it renders."""
    objects = render(VARIANTS["everything-on"])
    rendered = SNAPSHOT_HEADER + yaml.dump_all(objects, Dumper=_BlockStrings, sort_keys=False, width=120)
    if os.environ.get("LLMOPS_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(rendered)
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT}: run with LLMOPS_UPDATE_SNAPSHOTS=1"
    assert rendered == SNAPSHOT.read_text(), (
        f"the chart renders differently from {SNAPSHOT.relative_to(REPO_ROOT)}: review the change, then regenerate "
        "it with LLMOPS_UPDATE_SNAPSHOTS=1"
    )
