"""Profile -> Kubernetes manifests for `qwenops serve`, and values for vLLM's production-stack chart.

The manifests (ConfigMap with the profile, PVC for the model cache, Deployment, Service; the API
key from a Secret the operator creates) run the image docker/Dockerfile builds, so the pod gets the
supervisor. Probes follow the layers: the startupProbe covers the profile's start-up budget; the
readinessProbe takes the pod out of the Service while vLLM loads or reloads; the livenessProbe is
only a backstop that never fires before a whole reload (backoff + start-up) could finish, because
qwenops itself restarts an unhealthy vLLM. A Service named after a program (`vllm`, `qwenops`) would
inject VLLM_PORT / QWENOPS_PORT=tcp://... into pods; enableServiceLinks is off and the Service is
named so that its variables match no setting.

production-stack runs `vllm serve` itself (no qwenops): its values carry the profile's flags, the
same Secret and the same probe budget, for operators who outgrow one box.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from qwenops.config.profile import Profile
from qwenops.render.deploy import (
    CACHE_DIR,
    GATEWAY_DRAIN_S,
    GATEWAY_PORT,
    PRESTOP_PAUSE_S,
    PROFILES_MOUNT,
    SECRET_KEY,
    SECRET_NAME,
    SERVICE_UID,
    STATE_DIR,
    VLLM_IMAGE,
    VLLM_IMAGE_TAG,
    budgets,
    gpu_count,
    header,
    require_gpu_engine,
)
from qwenops.render.docker import image_name
from qwenops.render.emit import NodePath, yaml_document, yaml_documents
from qwenops.render.monitoring import JOB_GATEWAY, JOB_SERVE, JOB_VLLM, Slo, default_slo, notes, rules_groups
from qwenops.render.vllm import flag_pairs

APP = "qwenops"
SERVICE_NAME = "qwenops-api"  # its injected variables (QWENOPS_API_PORT, ...) are no qwenops setting
PROBE_PERIOD_S = 10
PROBE_TIMEOUT_S = 5
# vLLM's own host memory (CUDA context, tokenizer, pinned buffers), plus the profile's cpu_offload_gb.
BASE_MEMORY_GIB = 16
CPU_REQUEST = 4
DEFAULT_CACHE_GIB = 50


def _refuse_cpu(profile: Profile, target: str) -> None:
    require_gpu_engine(profile, target, alternative=(
        "render a GPU profile such as 4090d; for the CPU engine use Docker: "
        f"qwenops render compose --profile {profile.name}"))


def profile_yaml(profile: Profile) -> str:
    """The resolved profile (extends followed) as a standalone profile file for the ConfigMap."""
    import yaml

    data = profile.model_dump(mode="json", exclude={"name"}, exclude_defaults=True)
    # Always state the engine and model, even where they equal a default: the file stands alone.
    data = {"engine": profile.engine, "model": profile.model, **data}
    text: str = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=False)
    return text


def _memory_gib(profile: Profile) -> int:
    return BASE_MEMORY_GIB + math.ceil(profile.cpu_offload_gb or 0)


def _cache_gib(profile: Profile) -> int:
    want = profile.requirements.min_data_disk_gib
    return math.ceil(want) if want else DEFAULT_CACHE_GIB


def _probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "timeoutSeconds": PROBE_TIMEOUT_S,
            "failureThreshold": failures}


def _metadata(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "labels": dict(labels)}


def manifests(profile: Profile) -> str:
    """kubernetes/qwenops.yaml for PROFILE: ConfigMap, PVC, Deployment and Service, one document each."""
    _refuse_cpu(profile, "the Kubernetes manifests")
    b = budgets(profile)
    name = profile.name
    gpus = gpu_count(profile)
    profile_text = profile_yaml(profile)
    digest = hashlib.sha256(profile_text.encode()).hexdigest()[:16]
    labels = _labels(profile)
    serve_port = serve_metrics_port(profile)
    grace = PRESTOP_PAUSE_S + b.stop_s
    startup_failures = math.ceil(b.start_s / PROBE_PERIOD_S)
    liveness_failures = math.ceil(b.liveness_s / PROBE_PERIOD_S)
    top = header(profile, "qwenops.yaml: `qwenops serve` on one GPU node (ConfigMap, PVC, Deployment, Service).",
                 f"qwenops render kubernetes --profile {name} -o kubernetes/qwenops.yaml")
    top += [
        f"Build and push the image docker/Dockerfile builds ({image_name(profile)}), create the key, apply:",
        f"  kubectl create secret generic {SECRET_NAME} --from-literal={SECRET_KEY}=\"$(openssl rand -hex 24)\"",
        "  kubectl apply -f kubernetes/qwenops.yaml",
    ]
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata("qwenops-profile", labels),
        "data": {f"{name}.yaml": profile_text},
    }
    claim = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _metadata("qwenops-cache", labels),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{_cache_gib(profile)}Gi"}}},
    }
    server = {
        **_container("qwenops", profile),
        "ports": [{"name": "http", "containerPort": profile.port}, *(
            [{"name": SERVE_METRICS_PORT_NAME, "containerPort": serve_port}] if serve_port else [])],
        "resources": {
            "requests": {"cpu": str(CPU_REQUEST), "memory": f"{_memory_gib(profile)}Gi", "nvidia.com/gpu": gpus},
            "limits": {"nvidia.com/gpu": gpus},
        },
        "startupProbe": _probe("/health", "http", PROBE_PERIOD_S, startup_failures),
        "readinessProbe": _probe("/health", "http", b.health_interval_s, b.health_failures),
        "livenessProbe": _probe("/health", "http", PROBE_PERIOD_S, liveness_failures),
        **_container_tail(),
        "volumeMounts": [
            {"name": "profile", "mountPath": PROFILES_MOUNT, "readOnly": True},
            {"name": "cache", "mountPath": CACHE_DIR},
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod = {
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": grace,
        "securityContext": {"runAsNonRoot": True, "runAsUser": SERVICE_UID, "runAsGroup": SERVICE_UID,
                            "fsGroup": SERVICE_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [server, _gateway_container(profile)],
        "volumes": [
            {"name": "profile", "configMap": {"name": "qwenops-profile"}},
            {"name": "cache", "persistentVolumeClaim": {"claimName": "qwenops-cache"}},
            {"name": "state", "emptyDir": {}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{2 * gpus}Gi"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(APP, labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels), "annotations": {"qwenops/profile-sha256": digest}},
                         "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": _metadata(SERVICE_NAME, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(labels),
            "ports": [{"name": "http", "port": profile.port, "targetPort": "http"},
                      {"name": "ws", "port": GATEWAY_PORT, "targetPort": "ws"}, *(
                          [{"name": SERVE_METRICS_PORT_NAME, "port": serve_port,
                            "targetPort": SERVE_METRICS_PORT_NAME}] if serve_port else [])],
        },
    }
    spec = ("spec", "template", "spec")
    container = (*spec, "containers", 0)
    deployment_notes: dict[NodePath, list[str]] = {
        ("spec", "strategy"): ["The old pod frees its GPU before the new one starts; a rolling update would wait "
                               "for a spare GPU."],
        ("spec", "template", "metadata", "annotations", "qwenops/profile-sha256"): [
            "A changed profile changes the pod template, so the pod restarts with it."],
        (*spec, "enableServiceLinks"): ["No {SERVICE}_PORT=tcp://... variables: a Service named vllm crashes vLLM "
                                        "through VLLM_PORT."],
        (*spec, "terminationGracePeriodSeconds"): [
            f"preStop pause ({PRESTOP_PAUSE_S} s) + drain_timeout_s ({b.drain_s} s) + {b.stop_s - b.drain_s} s "
            "for qwenops to end vLLM's group."],
        (*spec, "securityContext", "fsGroup"): ["The cache volume becomes writable for the user."],
        (*spec, "tolerations"): ["GPU node pools are often tainted so that only GPU pods land there."],
        (*container, "env", 0): ["The profile from the ConfigMap, looked up before the ones in the image."],
        (*container, "startupProbe", "httpGet"): [
            f"{PROBE_PERIOD_S} s x {startup_failures} = {startup_failures * PROBE_PERIOD_S} s "
            f"covers the start-up budget ({b.start_s} s: weights download and load)."],
        (*container, "readinessProbe", "httpGet"): [
            "Out of the Service while vLLM loads or reloads; readiness never restarts a pod."],
        (*container, "livenessProbe", "httpGet"): [
            f"A backstop: qwenops restarts an unhealthy vLLM itself; this fires only after "
            f"{liveness_failures * PROBE_PERIOD_S} s, a whole reload."],
        (*container, "lifecycle", "preStop", "exec"): ["Endpoints drop the pod before SIGTERM starts the drain."],
        (*spec, "containers", 1): [
            "qwenops gateway (docs/gateway.md): WebSocket chats relayed to the server over the pod's loopback.",
            "A sidecar, not a Deployment of its own: one gateway per server, no extra hop, drained together."],
        (*spec, "volumes", 2): ["HOME and qwenops' logs (the pod's output is in kubectl logs as well)."],
        (*spec, "volumes", 3): ["The container runtime's /dev/shm is 64 MiB; vLLM's processes exchange tensors "
                                "through it."],
        (*spec, "volumes", 4): ["/tmp for torch's compiler and vLLM's IPC sockets: the root file system is "
                                "read-only."],
        **_gateway_notes((*spec, "containers", 1)),
    }
    service_notes: dict[NodePath, list[str]] = {
        ("spec", "ports", 1): ["qwenops gateway: WebSocket chats (docs/gateway.md)."]}
    return yaml_documents([
        (config_map, {}, ["The profile qwenops serves, resolved (extends followed); edit it here or re-render."]),
        (claim, {}, ["The model cache: weights are downloaded once, not at every pod start."]),
        (deployment, deployment_notes, []),
        (service, service_notes, []),
    ], header=top)


def _labels(profile: Profile) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": profile.name}


SERVE_METRICS_PORT_NAME = "serve-metrics"
SCRAPE_INTERVAL = "15s"


def serve_metrics_port(profile: Profile) -> int | None:
    """The port of qwenops serve's metrics when the profile binds them to every interface of the pod
    (supervise.metrics: "0.0.0.0:PORT"); None when they are off or on the pod's loopback only."""
    from qwenops.supervisor.options import parse_listen

    if profile.supervise.metrics is None:
        return None
    host, port = parse_listen(profile.supervise.metrics)
    return port if host in ("0.0.0.0", "::") else None


def monitoring_manifests(profile: Profile, slo: Slo | None = None) -> str:
    """kubernetes/qwenops-monitoring.yaml: a ServiceMonitor and a PrometheusRule (prometheus-operator's
    CRDs), apart from qwenops.yaml because a cluster without the operator refuses unknown kinds."""
    _refuse_cpu(profile, "the Kubernetes monitoring manifests")
    slo = slo or default_slo()
    labels = _labels(profile)
    top = header(profile, "qwenops-monitoring.yaml: a ServiceMonitor and a PrometheusRule for prometheus-operator.",
                 f"qwenops render kubernetes-monitoring --profile {profile.name} -o kubernetes/qwenops-monitoring.yaml")
    top += [
        "Needs prometheus-operator's CRDs (kube-prometheus-stack installs them); apply after qwenops.yaml:",
        "  kubectl apply -f kubernetes/qwenops-monitoring.yaml",
        "A Prometheus picks these up when its serviceMonitorSelector and ruleSelector match their labels",
        "(kube-prometheus-stack selects release: <its release name>: add that label here, or set",
        "serviceMonitorSelectorNilUsesHelmValues and ruleSelectorNilUsesHelmValues to false).",
        *(f"Note: {text}" for text in notes(profile, slo)),
    ]

    def endpoint(port: str, job: str) -> dict[str, Any]:
        # The job label the rules and the dashboard select on; the operator would name it after the Service.
        return {"port": port, "path": "/metrics", "interval": SCRAPE_INTERVAL,
                "relabelings": [{"action": "replace", "targetLabel": "job", "replacement": job}]}

    endpoints = [endpoint("http", JOB_VLLM), endpoint("ws", JOB_GATEWAY)]
    serve_port = serve_metrics_port(profile)
    if serve_port:
        endpoints.insert(1, endpoint(SERVE_METRICS_PORT_NAME, JOB_SERVE))
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": _metadata(APP, labels),
        "spec": {"selector": {"matchLabels": dict(labels)}, "endpoints": endpoints},
    }
    rule = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": _metadata(APP, labels),
        "spec": {"groups": rules_groups(profile, slo)},
    }
    serve_words = (f"qwenops serve's metrics on port {serve_port}." if serve_port else
                   "qwenops serve is not scraped: supervise.metrics is off or binds the pod's loopback; "
                   "\"0.0.0.0:9402\" adds its port here and to the Service.")
    monitor_notes: dict[NodePath, list[str]] = {
        ("spec", "selector"): [f"The Service {SERVICE_NAME} (qwenops.yaml), by its labels."],
        ("spec", "endpoints"): ["vLLM's /metrics (not behind the API key) and the gateway's; " + serve_words],
    }
    return yaml_documents([
        (monitor, monitor_notes, ["Scrape jobs named as the rules and the dashboard select on (docs/monitoring.md)."]),
        (rule, {}, ["The alert rules of `qwenops render prometheus-rules`, each with its troubleshoot runbook."]),
    ], header=top)


GATEWAY_SECRET = "qwenops-gateway-token"


def _gateway_container(profile: Profile) -> dict[str, Any]:
    """`qwenops gateway` as a sidecar: it reaches the server over the pod's loopback and drains with it."""
    base = _container("gateway", profile)
    return {
        "name": base["name"], "image": base["image"], "imagePullPolicy": base["imagePullPolicy"],
        "command": ["dumb-init", "--", "qwenops", "gateway", "--host", "0.0.0.0", "--port", str(GATEWAY_PORT),
                    "--drain", str(GATEWAY_DRAIN_S)],
        "env": [*base["env"], {"name": "QWENOPS_GATEWAY_TOKEN", "valueFrom": {
            "secretKeyRef": {"name": GATEWAY_SECRET, "key": "QWENOPS_GATEWAY_TOKEN"}}}],
        "ports": [{"name": "ws", "containerPort": GATEWAY_PORT}],
        "resources": {"requests": {"cpu": "1", "memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "ws"}, "periodSeconds": 5, "timeoutSeconds": 5,
                           "failureThreshold": 3},
        **_container_tail(),
        "volumeMounts": [{"name": "profile", "mountPath": PROFILES_MOUNT, "readOnly": True}],
    }


def _container(name: str, profile: Profile) -> dict[str, Any]:
    """What the server's container and the gateway's sidecar share, written once: the image, and the
    profile and key they are both configured by."""
    return {
        "name": name,
        "image": image_name(profile),
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "QWENOPS_PROFILE", "value": profile.name},
            {"name": "QWENOPS_PROFILES_DIR", "value": PROFILES_MOUNT},
            {"name": "QWENOPS_API_KEY", "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": SECRET_KEY}}},
        ],
    }


def _container_tail() -> dict[str, Any]:
    """The stop and the sandbox both containers share: a preStop pause (endpoints drop the pod before
    SIGTERM starts the drain), no privilege gain, no capability, a read-only root file system (every
    writable path is a volume)."""
    return {
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_PAUSE_S)]}}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }


def _gateway_notes(at: NodePath) -> dict[NodePath, list[str]]:
    return {
        (*at, "env", 2): ["Sent to the server (the same Secret as the server's)."],
        (*at, "env", 3): ["What clients present; it binds 0.0.0.0, so it refuses to start without one."],
        (*at, "readinessProbe", "httpGet"): ["Out of the Service while draining (/healthz answers 503 then)."],
    }


# Profile fields production-stack's chart renders itself (vllmConfig keys); the rest go to extraArgs.
_CHART_FIELDS = {
    "max_model_len": "maxModelLen",
    "dtype": "dtype",
    "tensor_parallel_size": "tensorParallelSize",
    "max_num_seqs": "maxNumSeqs",
    "gpu_memory_utilization": "gpuMemoryUtilization",
}
# The chart passes --host 0.0.0.0 and --port itself.
_CHART_OWNS = ("host", "port")


def _kubelet_literal(text: str) -> str:
    """TEXT as the kubelet passes it on: it expands `$(NAME)` in a container's command, args and env values
    (a profile's `--chat-template $(VLLM_API_KEY)` would put the key in argv and the logs) and turns `$$`
    into `$`, so every `$` is doubled. The chart places these values there verbatim."""
    return text.replace("$", "$$")


def _rfc1123_label(name: str) -> str:
    """NAME (a profile name: letters, digits, '.', '_', '-', first and last a letter or digit) as an RFC 1123
    label, which production-stack's chart builds its Deployment, Service and PVC names from: lower case,
    '_' and '.' as '-'."""
    return name.lower().replace("_", "-").replace(".", "-")


def helm_values(profile: Profile) -> str:
    """kubernetes/production-stack-values.yaml: the profile as values for vLLM's production-stack chart."""
    _refuse_cpu(profile, "production-stack's chart")
    b = budgets(profile)
    name = profile.name
    vllm_config: dict[str, Any] = {}
    extra: list[str] = []
    for field, words in flag_pairs(profile):
        if field in _CHART_OWNS:
            continue
        if field in _CHART_FIELDS:
            vllm_config[_CHART_FIELDS[field]] = getattr(profile, field)
        else:
            extra += [_kubelet_literal(word) for word in words]
    startup_failures = math.ceil(b.start_s / PROBE_PERIOD_S)
    top = header(profile, "production-stack-values.yaml: the profile as values for vLLM's production-stack chart.",
                 f"qwenops render helm-values --profile {name} -o kubernetes/production-stack-values.yaml")
    top += [
        "For more than one box: the chart runs `vllm serve` (no qwenops), one Deployment per model, a router.",
        "  helm repo add vllm https://vllm-project.github.io/production-stack",
        f"  kubectl create secret generic {SECRET_NAME} --from-literal={SECRET_KEY}=\"$(openssl rand -hex 24)\"",
        "  helm install qwen3 vllm/vllm-stack -f kubernetes/production-stack-values.yaml",
    ]
    chart_name = _rfc1123_label(name)
    if chart_name != name:
        top.append(f"modelSpec name {chart_name}: the chart names Kubernetes objects after it (lower case, "
                   "letters, digits and '-')")
    health = {"path": "/health", "port": profile.port}
    model = {
        "name": chart_name,
        "repository": VLLM_IMAGE,
        "tag": VLLM_IMAGE_TAG,
        "modelURL": _kubelet_literal(profile.model),
        "replicaCount": 1,
        "requestCPU": CPU_REQUEST,
        "requestMemory": f"{_memory_gib(profile)}Gi",
        "requestGPU": gpu_count(profile),
        "pvcStorage": f"{_cache_gib(profile)}Gi",
        "shmSize": f"{2 * gpu_count(profile)}Gi",
        "vllmConfig": {"enablePrefixCaching": True, **vllm_config, "extraArgs": extra},
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "XDG_CACHE_HOME", "value": "/data/cache"},
            {"name": "VLLM_CACHE_ROOT", "value": "/data/vllm"},
            {"name": "TRITON_CACHE_DIR", "value": "/data/triton"},
            *({"name": key, "value": _kubelet_literal(value)} for key, value in sorted(profile.env.items())),
        ],
    }
    values = {"servingEngineSpec": {
        "vllmApiKey": {"secretName": SECRET_NAME, "secretKey": SECRET_KEY},
        "containerPort": profile.port,
        "strategy": {"type": "Recreate"},
        "startupProbe": {"initialDelaySeconds": 0, "periodSeconds": PROBE_PERIOD_S,
                         "failureThreshold": startup_failures, "httpGet": dict(health)},
        "livenessProbe": {"initialDelaySeconds": 0, "periodSeconds": PROBE_PERIOD_S,
                          "failureThreshold": b.health_failures, "httpGet": dict(health)},
        "securityContext": {"runAsNonRoot": True, "runAsUser": SERVICE_UID, "runAsGroup": SERVICE_UID,
                            "fsGroup": SERVICE_UID},
        "containerSecurityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                     "capabilities": {"drop": ["ALL"]}},
        "modelSpec": [model],
    }}
    at = ("servingEngineSpec",)
    spec = (*at, "modelSpec", 0)
    notes: dict[NodePath, list[str]] = {
        (*at, "vllmApiKey"): ["The same Secret as kubernetes/qwenops.yaml; vLLM gets it as VLLM_API_KEY."],
        (*at, "strategy"): ["One GPU per pod and nodes with one GPU: the old pod frees it before the new one starts."],
        (*at, "startupProbe", "initialDelaySeconds"): [
            "Covers the start-up budget; liveness only starts once this succeeded."],
        (*at, "livenessProbe", "initialDelaySeconds"): ["Without qwenops, the kubelet is what restarts a dead engine."],
        (*spec, "repository"): [f"{VLLM_IMAGE_TAG}: the same vLLM as docker/Dockerfile (CUDA 12.4 drivers)."],
        (*spec, "pvcStorage"): ["The chart mounts it at /data and points HF_HOME there."],
        (*spec, "vllmConfig", "enablePrefixCaching"): [
            "The chart renders --no-enable-prefix-caching unless this is true; true keeps vLLM's default."],
        (*spec, "vllmConfig", "extraArgs"): ["The profile's other flags, as `qwenops render flags` renders them."],
        (*spec, "env", 0): ["The image runs as root by default; as a non-root user HOME and the JIT caches must be "
                            "writable."],
    }
    return yaml_document(values, notes, header=top)
