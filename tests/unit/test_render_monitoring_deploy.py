"""The monitoring the deployments carry: compose's `monitoring` profile (Prometheus with the profile's
scrape config and rules inline) and `render kubernetes-monitoring` (a ServiceMonitor and a PrometheusRule).

kubernetes-validate has no schema for prometheus-operator's kinds (it warns "Couldn't find schema for
kind ServiceMonitor" and passes), so the two objects are checked here against the CRDs' own
openAPIV3Schema, pruned to the fields qwenops writes and made strict (CRD_SCHEMAS); the rules inside
them and the Prometheus files inside the compose file are checked by the real promtool.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from qwenops.config.loader import load_profile
from qwenops.render.docker import PROMETHEUS_IMAGE, compose
from qwenops.render.kubernetes import monitoring_manifests
from qwenops.render.monitoring import rules_groups, slo_from_files
from qwenops.render.run import render_deploy
from tests.unit.test_render_hostile import clean_profile, compose_config_text, hostile_profile, load

# prometheus-operator v0.93.0's CRDs (example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
# and _prometheusrules.yaml): the openAPIV3Schema of each kind, pruned to the fields qwenops renders, with
# additionalProperties false wherever the CRD lists properties (the API server prunes unknown fields).
CRD_SCHEMAS: dict[str, Any] = json.loads("""
{
 "ServiceMonitor": {
  "required": [
   "spec"
  ],
  "type": "object",
  "properties": {
   "spec": {
    "required": [
     "endpoints",
     "selector"
    ],
    "type": "object",
    "properties": {
     "selector": {
      "type": "object",
      "properties": {
       "matchLabels": {
        "type": "object",
        "additionalProperties": {
         "type": "string"
        }
       }
      },
      "additionalProperties": false
     },
     "endpoints": {
      "type": "array",
      "items": {
       "type": "object",
       "properties": {
        "port": {
         "type": "string"
        },
        "path": {
         "type": "string"
        },
        "interval": {
         "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
         "type": "string"
        },
        "relabelings": {
         "type": "array",
         "items": {
          "type": "object",
          "properties": {
           "action": {
            "enum": [
             "replace",
             "Replace",
             "keep",
             "Keep",
             "drop",
             "Drop",
             "hashmod",
             "HashMod",
             "labelmap",
             "LabelMap",
             "labeldrop",
             "LabelDrop",
             "labelkeep",
             "LabelKeep",
             "lowercase",
             "Lowercase",
             "uppercase",
             "Uppercase",
             "keepequal",
             "KeepEqual",
             "dropequal",
             "DropEqual"
            ],
            "type": "string"
           },
           "targetLabel": {
            "type": "string"
           },
           "replacement": {
            "type": "string"
           }
          },
          "additionalProperties": false
         }
        }
       },
       "additionalProperties": false
      }
     }
    },
    "additionalProperties": false
   }
  },
  "additionalProperties": false
 },
 "PrometheusRule": {
  "required": [
   "spec"
  ],
  "type": "object",
  "properties": {
   "spec": {
    "type": "object",
    "properties": {
     "groups": {
      "type": "array",
      "items": {
       "required": [
        "name"
       ],
       "type": "object",
       "properties": {
        "name": {
         "minLength": 1,
         "type": "string"
        },
        "rules": {
         "type": "array",
         "items": {
          "required": [
           "expr"
          ],
          "type": "object",
          "properties": {
           "alert": {
            "type": "string"
           },
           "expr": {
            "anyOf": [
             {
              "type": "integer"
             },
             {
              "type": "string"
             }
            ],
            "x-kubernetes-int-or-string": true
           },
           "for": {
            "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
            "type": "string"
           },
           "labels": {
            "type": "object",
            "additionalProperties": {
             "type": "string"
            }
           },
           "annotations": {
            "type": "object",
            "additionalProperties": {
             "type": "string"
            }
           }
          },
          "additionalProperties": false
         }
        }
       },
       "additionalProperties": false
      }
     }
    },
    "additionalProperties": false
   }
  },
  "additionalProperties": false
 }
}
""")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: scripts/test.sh installs it (apt-get install prometheus)")
        pytest.skip("promtool is not installed here (apt-get install prometheus)")
    return found


def promtool_check(tmp_path: Path, what: str, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    done = subprocess.run([promtool(), "check", what, str(path)], capture_output=True, text=True, timeout=60,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def objects(text: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(text)}


@pytest.mark.parametrize("data", [clean_profile(), hostile_profile(),
                                  hostile_profile(supervise={"metrics": "0.0.0.0:9402"})],
                         ids=["clean", "hostile", "serve-metrics"])
def test_the_operator_objects_fit_the_crds(data: dict[str, Any], tmp_path: Path) -> None:
    found = objects(monitoring_manifests(load(tmp_path, data)))
    assert sorted(found) == ["PrometheusRule", "ServiceMonitor"]
    for kind, doc in found.items():
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        jsonschema.validate({"spec": doc["spec"]}, CRD_SCHEMAS[kind])


def test_control_the_crd_schema_refuses_a_misspelt_field() -> None:
    doc = objects(render_deploy("kubernetes-monitoring", "4090d").text)["ServiceMonitor"]
    doc["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.validate({"spec": doc["spec"]}, CRD_SCHEMAS["ServiceMonitor"])


def test_the_service_monitor_selects_the_service_and_names_the_jobs_the_rules_read() -> None:
    text = render_deploy("kubernetes", "4090d").text
    service = next(d for d in yaml.safe_load_all(text) if d["kind"] == "Service")
    monitor = objects(render_deploy("kubernetes-monitoring", "4090d").text)["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"] == service["metadata"]["labels"]
    ports = {port["name"] for port in service["spec"]["ports"]}
    jobs = {e["port"]: e["relabelings"][0]["replacement"] for e in monitor["spec"]["endpoints"]}
    assert jobs == {"http": "vllm", "ws": "qwenops-gateway"} and set(jobs) <= ports


def test_serve_metrics_on_every_interface_get_a_port_and_a_job(tmp_path: Path) -> None:
    profile = load(tmp_path, clean_profile() | {"supervise": {"metrics": "0.0.0.0:9402"}})
    monitor = objects(monitoring_manifests(profile))["ServiceMonitor"]
    assert [e["relabelings"][0]["replacement"] for e in monitor["spec"]["endpoints"]] == [
        "vllm", "qwenops-serve", "qwenops-gateway"]
    from qwenops.render.kubernetes import manifests

    docs = {d["kind"]: d for d in yaml.safe_load_all(manifests(profile))}
    assert {"name": "serve-metrics", "port": 9402, "targetPort": "serve-metrics"} in docs["Service"]["spec"]["ports"]
    server = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "serve-metrics", "containerPort": 9402} in server["ports"]
    targets = yaml.safe_load(compose_config_text(compose(profile), "prometheus-config"))["scrape_configs"]
    assert {job["job_name"]: job["static_configs"][0]["targets"] for job in targets} == {
        "vllm": ["qwenops:8000"], "qwenops-serve": ["qwenops:9402"], "qwenops-gateway": ["gateway:8090"]}


def test_the_prometheus_rule_holds_the_rules_promtool_accepts(tmp_path: Path) -> None:
    rule = objects(render_deploy("kubernetes-monitoring", "4090d").text)["PrometheusRule"]
    profile = load_profile("4090d", env={})
    assert rule["spec"]["groups"] == rules_groups(profile, slo_from_files([]))
    promtool_check(tmp_path, "rules", "rules.yml", yaml.safe_dump({"groups": rule["spec"]["groups"]}))


@pytest.mark.parametrize("name", ["4090d", "cpu-tiny"])
def test_compose_prometheus_is_optional_loopback_and_unprivileged(name: str, tmp_path: Path) -> None:
    text = render_deploy("compose", name).text
    data = yaml.safe_load(text)
    service = data["services"]["prometheus"]
    assert service["profiles"] == ["monitoring"]
    assert "profiles" not in data["services"]["qwenops"] and "profiles" not in data["services"]["gateway"]
    assert service["image"] == PROMETHEUS_IMAGE and PROMETHEUS_IMAGE.split(":")[1].startswith("v")
    assert service["ports"] == ["127.0.0.1:9090:9090"]
    assert service["cap_drop"] == ["ALL"] and service["security_opt"] == ["no-new-privileges:true"]
    assert service["user"] == "65534:65534" and "privileged" not in service
    assert {c["mode"] for c in service["configs"]} == {0o444}
    # What the container gets, checked by promtool: the config names the rules file beside it.
    (tmp_path / "etc").mkdir()
    config = compose_config_text(text, "prometheus-config")
    rules = compose_config_text(text, "prometheus-rules")
    assert yaml.safe_load(config)["rule_files"] == ["/etc/prometheus/qwenops-rules.yml"]
    promtool_check(tmp_path, "rules", "qwenops-rules.yml", rules)
    promtool_check(tmp_path, "config", "prometheus.yml",
                   config.replace("/etc/prometheus/qwenops-rules.yml", str(tmp_path / "qwenops-rules.yml")))
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in yaml.safe_load(config)["scrape_configs"]}
    port = load_profile(name, env={}).port
    assert jobs == {"vllm": [f"qwenops:{port}"], "qwenops-gateway": ["gateway:8090"]}  # serve: metrics are off


def test_compose_rules_carry_the_tune_slo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "p.yaml").write_text("# SLO: TTFT <= 1500 ms, TPOT <= 80 ms\n"
                                     + yaml.safe_dump(clean_profile()), encoding="utf-8")
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(profiles))
    compose_text = render_deploy("compose", "p").text
    monitor_text = render_deploy("kubernetes-monitoring", "p").text
    rules = yaml.safe_load(compose_config_text(compose_text, "prometheus-rules"))["groups"][0]["rules"]
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert exprs["VllmTtftP99AboveSlo"].endswith("> 1.5") and exprs["VllmTpotP99AboveSlo"].endswith("> 0.08")
    rule = objects(monitor_text)["PrometheusRule"]
    assert rule["spec"]["groups"][0]["rules"] == rules
