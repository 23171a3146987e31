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
import json
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
    yaml_str,
)
from qwenops.render.docker import image_name
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


def _probe(indent: str, period: int, failures: int, comment: str) -> list[str]:
    return [
        f"{indent}# {comment}",
        f"{indent}httpGet:",
        f"{indent}  path: /health",
        f"{indent}  port: http",
        f"{indent}periodSeconds: {period}",
        f"{indent}timeoutSeconds: {PROBE_TIMEOUT_S}",
        f"{indent}failureThreshold: {failures}",
    ]


def manifests(profile: Profile) -> str:
    """kubernetes/qwenops.yaml for PROFILE: ConfigMap, PVC, Deployment and Service."""
    _refuse_cpu(profile, "the Kubernetes manifests")
    b = budgets(profile)
    name = profile.name
    gpus = gpu_count(profile)
    profile_text = profile_yaml(profile)
    digest = hashlib.sha256(profile_text.encode()).hexdigest()[:16]
    labels = [f"app.kubernetes.io/name: {APP}", f"app.kubernetes.io/instance: {yaml_str(name)}"]
    grace = PRESTOP_PAUSE_S + b.stop_s
    startup_failures = math.ceil(b.start_s / PROBE_PERIOD_S)
    liveness_failures = math.ceil(b.liveness_s / PROBE_PERIOD_S)
    lines = header(profile, "qwenops.yaml: `qwenops serve` on one GPU node (ConfigMap, PVC, Deployment, Service).",
                   f"qwenops render kubernetes --profile {name} -o kubernetes/qwenops.yaml")
    lines += [
        f"# Build and push the image docker/Dockerfile builds ({image_name(profile)}), create the key, apply:",
        f"#   kubectl create secret generic {SECRET_NAME} --from-literal={SECRET_KEY}=\"$(openssl rand -hex 24)\"",
        "#   kubectl apply -f kubernetes/qwenops.yaml",
        "# The profile qwenops serves, resolved (extends followed); edit it here or re-render.",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: qwenops-profile",
        "  labels:",
        *(f"    {label}" for label in labels),
        "data:",
        f"  {name}.yaml: |",
        *(f"    {line}" for line in profile_text.splitlines()),
        "---",
        "# The model cache: weights are downloaded once, not at every pod start.",
        "apiVersion: v1",
        "kind: PersistentVolumeClaim",
        "metadata:",
        "  name: qwenops-cache",
        "  labels:",
        *(f"    {label}" for label in labels),
        "spec:",
        "  accessModes: [ReadWriteOnce]",
        "  resources:",
        "    requests:",
        f"      storage: {_cache_gib(profile)}Gi",
        "---",
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata:",
        f"  name: {APP}",
        "  labels:",
        *(f"    {label}" for label in labels),
        "spec:",
        "  replicas: 1",
        "  # The old pod frees its GPU before the new one starts; a rolling update would wait for a spare GPU.",
        "  strategy:",
        "    type: Recreate",
        "  selector:",
        "    matchLabels:",
        *(f"      {label}" for label in labels),
        "  template:",
        "    metadata:",
        "      labels:",
        *(f"        {label}" for label in labels),
        "      annotations:",
        "        # A changed profile changes the pod template, so the pod restarts with it.",
        f"        qwenops/profile-sha256: {yaml_str(digest)}",
        "    spec:",
        "      # No {SERVICE}_PORT=tcp://... variables: a Service named vllm crashes vLLM through VLLM_PORT.",
        "      enableServiceLinks: false",
        f"      # preStop pause ({PRESTOP_PAUSE_S} s) + drain_timeout_s ({b.drain_s} s) + {b.stop_s - b.drain_s} s "
        "for qwenops to end vLLM's group.",
        f"      terminationGracePeriodSeconds: {grace}",
        "      securityContext:",
        "        runAsNonRoot: true",
        f"        runAsUser: {SERVICE_UID}",
        f"        runAsGroup: {SERVICE_UID}",
        "        # The cache volume becomes writable for the user.",
        f"        fsGroup: {SERVICE_UID}",
        "        seccompProfile:",
        "          type: RuntimeDefault",
        "      # GPU node pools are often tainted so that only GPU pods land there.",
        "      tolerations:",
        "        - key: nvidia.com/gpu",
        "          operator: Exists",
        "          effect: NoSchedule",
        "      containers:",
        "        - name: qwenops",
        f"          image: {image_name(profile)}",
        "          imagePullPolicy: IfNotPresent",
        "          env:",
        "            # The profile from the ConfigMap, looked up before the ones in the image.",
        "            - name: QWENOPS_PROFILE",
        f"              value: {yaml_str(name)}",
        "            - name: QWENOPS_PROFILES_DIR",
        f"              value: {PROFILES_MOUNT}",
        "            - name: QWENOPS_API_KEY",
        "              valueFrom:",
        "                secretKeyRef:",
        f"                  name: {SECRET_NAME}",
        f"                  key: {SECRET_KEY}",
        "          ports:",
        "            - name: http",
        f"              containerPort: {profile.port}",
        "          resources:",
        "            requests:",
        f"              cpu: {yaml_str(str(CPU_REQUEST))}",
        f"              memory: {_memory_gib(profile)}Gi",
        f"              nvidia.com/gpu: {gpus}",
        "            limits:",
        f"              nvidia.com/gpu: {gpus}",
        "          startupProbe:",
        *_probe("            ", PROBE_PERIOD_S, startup_failures,
                f"{PROBE_PERIOD_S} s x {startup_failures} = {startup_failures * PROBE_PERIOD_S} s "
                f"covers the start-up budget ({b.start_s} s: weights download and load)."),
        "          readinessProbe:",
        *_probe("            ", b.health_interval_s, b.health_failures,
                "Out of the Service while vLLM loads or reloads; readiness never restarts a pod."),
        "          livenessProbe:",
        *_probe("            ", PROBE_PERIOD_S, liveness_failures,
                f"A backstop: qwenops restarts an unhealthy vLLM itself; this fires only after "
                f"{liveness_failures * PROBE_PERIOD_S} s, a whole reload."),
        "          lifecycle:",
        "            preStop:",
        "              # Endpoints drop the pod before SIGTERM starts the drain.",
        "              exec:",
        f"                command: [sleep, {yaml_str(str(PRESTOP_PAUSE_S))}]",
        "          securityContext:",
        "            allowPrivilegeEscalation: false",
        "            capabilities:",
        "              drop: [ALL]",
        "          volumeMounts:",
        "            - name: profile",
        f"              mountPath: {PROFILES_MOUNT}",
        "              readOnly: true",
        "            - name: cache",
        f"              mountPath: {CACHE_DIR}",
        "            - name: state",
        f"              mountPath: {STATE_DIR}",
        "            - name: shm",
        "              mountPath: /dev/shm",
        *_gateway_container(profile),
        "      volumes:",
        "        - name: profile",
        "          configMap:",
        "            name: qwenops-profile",
        "        - name: cache",
        "          persistentVolumeClaim:",
        "            claimName: qwenops-cache",
        "        # HOME and qwenops' logs (the pod's output is in kubectl logs as well).",
        "        - name: state",
        "          emptyDir: {}",
        "        # The container runtime's /dev/shm is 64 MiB; vLLM's processes exchange tensors through it.",
        "        - name: shm",
        "          emptyDir:",
        "            medium: Memory",
        f"            sizeLimit: {2 * gpus}Gi",
        "---",
        "apiVersion: v1",
        "kind: Service",
        "metadata:",
        f"  name: {SERVICE_NAME}",
        "  labels:",
        *(f"    {label}" for label in labels),
        "spec:",
        "  type: ClusterIP",
        "  selector:",
        *(f"    {label}" for label in labels),
        "  ports:",
        "    - name: http",
        f"      port: {profile.port}",
        "      targetPort: http",
        "    # qwenops gateway: WebSocket chats (docs/gateway.md).",
        "    - name: ws",
        f"      port: {GATEWAY_PORT}",
        "      targetPort: ws",
    ]
    return "\n".join(lines) + "\n"


GATEWAY_SECRET = "qwenops-gateway-token"


def _gateway_container(profile: Profile) -> list[str]:
    """`qwenops gateway` as a sidecar: it reaches the server over the pod's loopback and drains with it."""
    return [
        "        # qwenops gateway (docs/gateway.md): WebSocket chats relayed to the server over the pod's loopback.",
        "        # A sidecar, not a Deployment of its own: one gateway per server, no extra hop, drained together.",
        "        - name: gateway",
        f"          image: {image_name(profile)}",
        "          imagePullPolicy: IfNotPresent",
        "          command: [dumb-init, --, qwenops, gateway, --host, 0.0.0.0, "
        f'--port, "{GATEWAY_PORT}", --drain, "{GATEWAY_DRAIN_S}"]',
        "          env:",
        "            - name: QWENOPS_PROFILE",
        f"              value: {yaml_str(profile.name)}",
        "            - name: QWENOPS_PROFILES_DIR",
        f"              value: {PROFILES_MOUNT}",
        "            # Sent to the server (the same Secret as the server's).",
        "            - name: QWENOPS_API_KEY",
        "              valueFrom:",
        "                secretKeyRef:",
        f"                  name: {SECRET_NAME}",
        f"                  key: {SECRET_KEY}",
        "            # What clients present; it binds 0.0.0.0, so it refuses to start without one.",
        "            - name: QWENOPS_GATEWAY_TOKEN",
        "              valueFrom:",
        "                secretKeyRef:",
        f"                  name: {GATEWAY_SECRET}",
        "                  key: QWENOPS_GATEWAY_TOKEN",
        "          ports:",
        "            - name: ws",
        f"              containerPort: {GATEWAY_PORT}",
        "          resources:",
        "            requests:",
        '              cpu: "1"',
        "              memory: 256Mi",
        "          readinessProbe:",
        "            # Out of the Service while draining (/healthz answers 503 then).",
        "            httpGet:",
        "              path: /healthz",
        "              port: ws",
        "            periodSeconds: 5",
        "            timeoutSeconds: 5",
        "            failureThreshold: 3",
        "          lifecycle:",
        "            preStop:",
        "              exec:",
        f'                command: [sleep, "{PRESTOP_PAUSE_S}"]',
        "          securityContext:",
        "            allowPrivilegeEscalation: false",
        "            readOnlyRootFilesystem: true",
        "            capabilities:",
        "              drop: [ALL]",
        "          volumeMounts:",
        "            - name: profile",
        f"              mountPath: {PROFILES_MOUNT}",
        "              readOnly: true",
    ]


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
            extra += words
    startup_failures = math.ceil(b.start_s / PROBE_PERIOD_S)
    lines = header(profile, "production-stack-values.yaml: the profile as values for vLLM's production-stack chart.",
                   f"qwenops render helm-values --profile {name} -o kubernetes/production-stack-values.yaml")
    lines += [
        "# For more than one box: the chart runs `vllm serve` (no qwenops), one Deployment per model, a router.",
        "#   helm repo add vllm https://vllm-project.github.io/production-stack",
        f"#   kubectl create secret generic {SECRET_NAME} --from-literal={SECRET_KEY}=\"$(openssl rand -hex 24)\"",
        "#   helm install qwen3 vllm/vllm-stack -f kubernetes/production-stack-values.yaml",
        "servingEngineSpec:",
        "  # The same Secret as kubernetes/qwenops.yaml; vLLM gets it as VLLM_API_KEY.",
        "  vllmApiKey:",
        f"    secretName: {SECRET_NAME}",
        f"    secretKey: {SECRET_KEY}",
        f"  containerPort: {profile.port}",
        "  # One GPU per pod and nodes with one GPU: the old pod frees it before the new one starts.",
        "  strategy:",
        "    type: Recreate",
        "  startupProbe:",
        "    # Covers the start-up budget; liveness only starts once this succeeded.",
        "    initialDelaySeconds: 0",
        f"    periodSeconds: {PROBE_PERIOD_S}",
        f"    failureThreshold: {startup_failures}",
        "    httpGet:",
        "      path: /health",
        f"      port: {profile.port}",
        "  livenessProbe:",
        "    # Without qwenops, the kubelet is what restarts a dead engine.",
        "    initialDelaySeconds: 0",
        f"    periodSeconds: {PROBE_PERIOD_S}",
        f"    failureThreshold: {b.health_failures}",
        "    httpGet:",
        "      path: /health",
        f"      port: {profile.port}",
        "  securityContext:",
        "    runAsNonRoot: true",
        f"    runAsUser: {SERVICE_UID}",
        f"    runAsGroup: {SERVICE_UID}",
        f"    fsGroup: {SERVICE_UID}",
        "  containerSecurityContext:",
        "    runAsNonRoot: true",
        "    allowPrivilegeEscalation: false",
        "    capabilities:",
        "      drop: [ALL]",
        "  modelSpec:",
        f"    - name: {yaml_str(name)}",
        f"      # {VLLM_IMAGE_TAG}: the same vLLM as docker/Dockerfile (CUDA 12.4 drivers).",
        f"      repository: {yaml_str(VLLM_IMAGE)}",
        f"      tag: {yaml_str(VLLM_IMAGE_TAG)}",
        f"      modelURL: {yaml_str(profile.model)}",
        "      replicaCount: 1",
        f"      requestCPU: {CPU_REQUEST}",
        f"      requestMemory: {yaml_str(f'{_memory_gib(profile)}Gi')}",
        f"      requestGPU: {gpu_count(profile)}",
        "      # The chart mounts it at /data and points HF_HOME there.",
        f"      pvcStorage: {yaml_str(f'{_cache_gib(profile)}Gi')}",
        f"      shmSize: {yaml_str(f'{2 * gpu_count(profile)}Gi')}",
        "      vllmConfig:",
        "        # The chart renders --no-enable-prefix-caching unless this is true; true keeps vLLM's default.",
        "        enablePrefixCaching: true",
        *(f"        {key}: {json.dumps(value)}" for key, value in vllm_config.items()),
        "        # The profile's other flags, as `qwenops render flags` renders them.",
        "        extraArgs:",
        *(f"          - {yaml_str(word)}" for word in extra),
        "      env:",
        "        # The image runs as root by default; as a non-root user HOME and the JIT caches must be writable.",
        "        - name: HOME",
        "          value: /tmp",
        "        - name: XDG_CACHE_HOME",
        "          value: /data/cache",
        "        - name: VLLM_CACHE_ROOT",
        "          value: /data/vllm",
        "        - name: TRITON_CACHE_DIR",
        "          value: /data/triton",
        *(line for key, value in sorted(profile.env.items())
          for line in (f"        - name: {key}", f"          value: {yaml_str(value)}")),
    ]
    return "\n".join(lines) + "\n"
