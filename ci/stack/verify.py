#!/usr/bin/env python3
"""Checks on the rendered stack (the output of ci/stack/render.py), across every release.

    verify.py --render DIR --shared ../shared [--only CHECK,...]   run the checks
    verify.py --render DIR --shared ../shared --self-test            inject each breakage into a
                                                                     copy of the render, require
                                                                     the check meant for it to fail

Checks (each prints PASS/FAIL lines; exit 1 on any FAIL):
  schema      every built-in object: kubernetes-validate --strict at the render's Kubernetes
              version; every custom resource: the openAPIV3Schema of its CRD as the rendered
              kube-prometheus-stack ships it, and ../shared/schemas/crds, unknown fields rejected
  monitors    every ServiceMonitor / PodMonitor selects a rendered Service / pod that has the
              named port
  selectors   the Prometheus resource's selectors pick every ServiceMonitor, PodMonitor and
              PrometheusRule of the render
  urls        every in-cluster URL or host in container env/args/command, ConfigMaps, Secrets
              (Alertmanager's config) and the Prometheus/Alertmanager resources resolves to a
              rendered Service with that port
  grafana     dashboards and datasource cross-links (…datasourceUid) name provisioned UIDs
  hpa         every HPA targets a rendered workload; Pods/Object/External metrics are produced by
              a prometheus-adapter rule, CPU/memory by a rendered metrics-server
  netpol      the flow matrix (REQUIRED_FLOWS allowed, FORBIDDEN_FLOWS denied) under the rendered
              NetworkPolicies with Kubernetes semantics (a pod selected by a policy is default-deny
              for that direction)
  rbac        least privilege: no ClusterRole of ours with workload writes, cluster-wide grants of
              the auto-healer limited to node repair, ConfigMap writes by resourceNames, per-namespace
              Roles, no Secret read outside the allow-list, no grant the services never use;
              Grafana's sidecars on ConfigMaps of their own namespace
  resources   every container (and the operator's Prometheus/Alertmanager pods) has memory and CPU
              requests and a memory limit
  tokens      every *_TOKEN env of ours is a required reference to a rendered Secret key; every
              Alertmanager webhook to our services sends, from a mounted rendered Secret, the same
              token the receiver reads
"""

from __future__ import annotations

import argparse
import base64
import copy
import ipaddress
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.dont_write_bytecode = True  # no __pycache__ beside the sources
sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import load_docs  # noqa: E402

# One CRD-schema strictifier for both validators (ci/k8s/checks.py has it).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "k8s"))
from checks import strictify  # noqa: E402

CLUSTER_SCOPED = {
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "APIService", "Namespace",
    "PersistentVolume", "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "IngressClass", "RuntimeClass",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}

# ------------------------------------------------------------------------------------ the kind
# What a kind cluster (kind v0.33, default config) provides beside the rendered objects.
KIND_SERVICE_CIDR = "10.96.0.0/16"
KIND_POD_CIDR = "10.244.0.0/16"
KIND_API_VIP = "10.96.0.1"          # Service kubernetes.default, port 443
KIND_API_NODE = "172.18.0.2"        # the control-plane node on docker's "kind" network, :6443
EXTERNAL_CLIENT = "203.0.113.10"    # a user's machine (TEST-NET-3)
EXTERNAL_SMTP = "198.51.100.25"     # an SMTP relay / chat webhook on the internet (TEST-NET-2)

# The releases that are ours (the rest are upstream charts we configure).
OURS = {"organism/organism", "monitoring/organism-dashboards"}


class Fail(Exception):
    pass


# ------------------------------------------------------------------------------------ model


@dataclass
class Obj:
    release: str          # namespace/name of the helmfile release
    doc: dict

    @property
    def kind(self) -> str:
        return self.doc.get("kind", "")

    @property
    def name(self) -> str:
        return (self.doc.get("metadata") or {}).get("name", "")

    @property
    def ns(self) -> str | None:
        if self.kind in CLUSTER_SCOPED:
            return None
        return (self.doc.get("metadata") or {}).get("namespace") or self.release.split("/")[0]

    def ref(self) -> str:
        return f"{self.kind} {self.ns + '/' if self.ns else ''}{self.name} [{self.release}]"


@dataclass
class Pod:
    ns: str
    name: str               # workload name
    labels: dict
    ports: list             # [(name, port, protocol)]
    ip: str
    release: str = ""
    synthetic: str = ""     # why it is not rendered (operator-made, kind's)
    spec: dict = field(default_factory=dict)


@dataclass
class Stack:
    objs: list
    index: list
    shared: Path | None

    def of(self, *kinds: str) -> list:
        return [o for o in self.objs if o.kind in kinds]

    def namespaces(self) -> set:
        ns = {o.ns for o in self.objs if o.ns}
        return ns | {"kube-system", "default"}

    def pods(self) -> list:
        if hasattr(self, "_pods"):
            return self._pods
        pods = []
        n = 0

        def ip() -> str:
            nonlocal n
            n += 1
            return f"10.244.{n // 250}.{n % 250 + 2}"

        for o in self.objs:
            if is_test_hook(o):
                continue
            if o.kind in WORKLOADS or o.kind == "Pod":
                tmpl = o.doc["spec"].get("template") or {} if o.kind != "Pod" else o.doc
                if o.kind == "Job":
                    tmpl = o.doc["spec"]["template"]
                spec = tmpl.get("spec") or {}
                labels = (tmpl.get("metadata") or {}).get("labels") or {}
                pods.append(Pod(o.ns, o.name, labels, container_ports(spec), ip(), o.release, "", spec))
        for o in self.of("Prometheus"):
            s = o.doc.get("spec") or {}
            labels = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/instance": o.name,
                      "app.kubernetes.io/managed-by": "prometheus-operator", "prometheus": o.name,
                      "operator.prometheus.io/name": o.name, "operator.prometheus.io/shard": "0"}
            labels.update(((s.get("podMetadata") or {}).get("labels")) or {})
            pods.append(Pod(o.ns, f"prometheus-{o.name}", labels,
                            [(s.get("portName") or "web", 9090, "TCP"), ("reloader-web", 8080, "TCP")],
                            ip(), o.release, "made by prometheus-operator"))
        for o in self.of("Alertmanager"):
            s = o.doc.get("spec") or {}
            labels = {"app.kubernetes.io/name": "alertmanager", "app.kubernetes.io/instance": o.name,
                      "app.kubernetes.io/managed-by": "prometheus-operator", "alertmanager": o.name}
            labels.update(((s.get("podMetadata") or {}).get("labels")) or {})
            pods.append(Pod(o.ns, f"alertmanager-{o.name}", labels,
                            [(s.get("portName") or "web", 9093, "TCP"), ("mesh-tcp", 9094, "TCP"),
                             ("reloader-web", 8080, "TCP")], ip(), o.release, "made by prometheus-operator"))
        pods.append(Pod("kube-system", "coredns", {"k8s-app": "kube-dns"},
                        [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")],
                        ip(), "", "kind's CoreDNS"))
        self._pods = pods
        return pods

    def services(self) -> list:
        svcs = [(o.ns, o.name, o.doc.get("spec") or {}) for o in self.of("Service")]
        svcs.append(("default", "kubernetes", {"ports": [{"name": "https", "port": 443, "targetPort": 6443}],
                     "_labels": {"component": "apiserver", "provider": "kubernetes"}}))
        # The kubelet Service prometheus-operator maintains (--kubelet-service=NS/NAME).
        for o in self.of("Deployment"):
            for c in o.doc["spec"]["template"]["spec"]["containers"]:
                for a in c.get("args") or []:
                    if a.startswith("--kubelet-service="):
                        ns, _, name = a.split("=", 1)[1].partition("/")
                        svcs.append((ns, name, {"ports": [
                            {"name": "https-metrics", "port": 10250}, {"name": "http-metrics", "port": 10255},
                            {"name": "cadvisor", "port": 4194}],
                            "_labels": {"app.kubernetes.io/name": "kubelet", "k8s-app": "kubelet"}}))
        svcs.append(("kube-system", "kube-dns", {"selector": {"k8s-app": "kube-dns"}, "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}))
        # Services prometheus-operator creates for its StatefulSets.
        for o in self.of("Prometheus"):
            svcs.append((o.ns, "prometheus-operated", {"selector": {"app.kubernetes.io/name": "prometheus"},
                         "ports": [{"name": "web", "port": 9090, "targetPort": "web"}]}))
        for o in self.of("Alertmanager"):
            svcs.append((o.ns, "alertmanager-operated", {"selector": {"app.kubernetes.io/name": "alertmanager"},
                         "ports": [{"name": "web", "port": 9093, "targetPort": "web"},
                                   {"name": "tcp-mesh", "port": 9094, "targetPort": 9094}]}))
        return svcs


def is_test_hook(o) -> bool:
    """`helm test` pods: rendered, never installed by helmfile sync."""
    hook = ((o.doc.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
    return "test" in hook


def container_ports(spec: dict) -> list:
    out = []
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for p in c.get("ports") or []:
            out.append((p.get("name"), p["containerPort"], p.get("protocol", "TCP")))
    return out


def load_stack(render: Path, shared: Path | None) -> Stack:
    index = json.loads((render / "index.json").read_text())
    objs = []
    for rel in index:
        if not rel.get("file"):
            raise Fail(f"release {rel['namespace']}/{rel['name']} was not rendered")
        for d in load_docs((render / rel["file"]).read_text()):
            objs.append(Obj(f"{rel['namespace']}/{rel['name']}", d))
    return Stack(objs, index, shared)


def match_labels(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector (matchLabels + matchExpressions); {} matches everything."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def ns_labels(ns: str) -> dict:
    return {"kubernetes.io/metadata.name": ns}


# ------------------------------------------------------------------------------------ schema


def crd_schemas(st: Stack) -> dict:
    """(group, version, kind) -> (origin, schema) from the rendered CRDs."""
    out = {}
    for o in st.of("CustomResourceDefinition"):
        spec = o.doc["spec"]
        for v in spec.get("versions") or []:
            s = (v.get("schema") or {}).get("openAPIV3Schema")
            if s:
                out[(spec["group"], v["name"], spec["names"]["kind"])] = (f"CRD {o.name} [{o.release}]", s)
    return out


def check_schema(st: Stack, r) -> None:
    import jsonschema
    import kubernetes_validate

    kube_version = st.index[0]["kube_version"]
    crds = crd_schemas(st)
    shared = {}
    if st.shared and (st.shared / "schemas" / "crds").is_dir():
        for p in sorted((st.shared / "schemas" / "crds").glob("*.json")):
            shared[p.stem] = json.loads(p.read_text())
    validators = {}
    problems = []
    n_builtin = n_custom = 0
    for o in st.objs:
        api = o.doc.get("apiVersion", "")
        group, _, version = api.rpartition("/")
        custom = [(origin, s) for (g, v, k), (origin, s) in crds.items() if (g, v, k) == (group, version, o.kind)]
        sh = shared.get(f"{o.kind.lower()}-{group.split('.')[0]}-{version}") if group else None
        if sh is not None:
            custom.append(("../shared/schemas/crds", sh))
        if custom:
            n_custom += 1
            for origin, s in custom:
                key = (origin, group, version, o.kind)
                if key not in validators:
                    validators[key] = jsonschema.Draft7Validator(strictify(copy.deepcopy(s)))
                for e in sorted(validators[key].iter_errors(o.doc), key=lambda e: list(e.absolute_path))[:3]:
                    where = ".".join(str(p) for p in e.absolute_path) or "(root)"
                    problems.append(f"{o.ref()}: {where}: {e.message[:200]} (schema: {origin})")
            continue
        n_builtin += 1
        try:
            kubernetes_validate.validate(o.doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(root)"
            problems.append(f"{o.ref()}: {where}: {e.message[:200]} (Kubernetes {kube_version}, strict)")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
            problems.append(f"{o.ref()}: no schema for {api} {o.kind} in Kubernetes {kube_version} "
                            f"and no CRD in the render ({type(e).__name__})")
    report(r, "schema", problems,
           f"{n_builtin} built-in objects strict against Kubernetes {kube_version}, {n_custom} custom "
           f"resources against {len(crds)} rendered CRD versions + {len(shared)} ../shared schemas")


# ------------------------------------------------------------------------------------ monitors


def ns_selected(sel: dict | None, own: str, target: str) -> bool:
    """A prometheus-operator NamespaceSelector (any / matchNames; absent = own namespace)."""
    if not sel:
        return target == own
    if sel.get("any"):
        return True
    if sel.get("matchNames"):
        return target in sel["matchNames"]
    return target == own


def check_monitors(st: Stack, r) -> None:
    problems = []
    n = 0
    for o in st.of("ServiceMonitor"):
        n += 1
        spec = o.doc.get("spec") or {}
        svcs = [(ns, name, s) for ns, name, s in st.services()
                if ns_selected(spec.get("namespaceSelector"), o.ns, ns)
                and match_labels(spec.get("selector") or {}, labels_of_service(st, ns, name))]
        if not svcs:
            problems.append(f"{o.ref()}: selector {spec.get('selector')} matches no rendered Service")
            continue
        for ep in spec.get("endpoints") or []:
            port = ep.get("port")
            tport = ep.get("targetPort")
            if port and not any(p.get("name") == port for _, _, s in svcs for p in s.get("ports") or []):
                problems.append(f"{o.ref()}: endpoint port {port!r} is not a port name of "
                                + ", ".join(f"{ns}/{nm}" for ns, nm, _ in svcs))
            if tport is not None and not port:
                ok = False
                for ns, nm, s in svcs:
                    for pod in pods_of_service(st, ns, s):
                        ok |= any(tport in (pn, pp) for pn, pp, _ in pod.ports)
                if not ok:
                    problems.append(f"{o.ref()}: targetPort {tport!r} is on no pod behind the selected Services")
        # the Service must have pods behind it
        for ns, nm, s in svcs:
            if s.get("selector") and not pods_of_service(st, ns, s):
                problems.append(f"{o.ref()}: Service {ns}/{nm} selects no rendered pod")
    for o in st.of("PodMonitor"):
        n += 1
        spec = o.doc.get("spec") or {}
        pods = [p for p in st.pods() if ns_selected(spec.get("namespaceSelector"), o.ns, p.ns)
                and match_labels(spec.get("selector") or {}, p.labels)]
        if not pods:
            problems.append(f"{o.ref()}: selector matches no rendered pod")
            continue
        for ep in spec.get("podMetricsEndpoints") or []:
            port = ep.get("port") or ep.get("portNumber")
            if port and not any(port in (pn, pp) for p in pods for pn, pp, _ in p.ports):
                problems.append(f"{o.ref()}: port {port!r} is on none of its pods")
    report(r, "monitors", problems, f"{n} ServiceMonitors/PodMonitors each select a Service/pod with the named port")


def labels_of_service(st: Stack, ns: str, name: str) -> dict:
    for n_, nm, s in st.services():
        if (n_, nm) == (ns, name) and "_labels" in s:
            return s["_labels"]
    for o in st.of("Service"):
        if o.ns == ns and o.name == name:
            return (o.doc.get("metadata") or {}).get("labels") or {}
    return {}


def pods_of_service(st: Stack, ns: str, spec: dict) -> list:
    sel = spec.get("selector")
    if not sel:
        return []
    return [p for p in st.pods() if p.ns == ns and all(p.labels.get(k) == v for k, v in sel.items())]


def check_selectors(st: Stack, r) -> None:
    problems = []
    proms = st.of("Prometheus")
    if not proms:
        report(r, "selectors", ["no Prometheus resource rendered"], "")
        return
    pairs = [("ServiceMonitor", "serviceMonitorSelector", "serviceMonitorNamespaceSelector"),
             ("PodMonitor", "podMonitorSelector", "podMonitorNamespaceSelector"),
             ("PrometheusRule", "ruleSelector", "ruleNamespaceSelector")]
    n = 0
    for kind, sel_key, ns_key in pairs:
        for o in st.of(kind):
            n += 1
            labels = (o.doc.get("metadata") or {}).get("labels") or {}
            picked = False
            for p in proms:
                s = p.doc.get("spec") or {}
                sel, nsel = s.get(sel_key), s.get(ns_key)
                # operator semantics: a nil selector selects nothing, {} everything; a nil
                # namespace selector means the Prometheus' own namespace only.
                if sel is None:
                    continue
                if nsel is None and o.ns != p.ns:
                    continue
                if nsel is not None and not match_labels(nsel, ns_labels(o.ns)):
                    continue
                picked |= match_labels(sel, labels)
            if not picked:
                problems.append(f"{o.ref()}: labels {labels} are not picked by any Prometheus "
                                f"{sel_key} ({', '.join(str((p.doc.get('spec') or {}).get(sel_key)) for p in proms)})")
    report(r, "selectors", problems, f"{n} monitors and rules picked by {len(proms)} Prometheus")


# ------------------------------------------------------------------------------------ urls

URL_RE = re.compile(r"\b(?P<scheme>https?|grpcs?|postgres(?:ql)?|smtp)://(?:[^@/\s\"']*@)?"
                    r"(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d+))?")
SVC_RE = re.compile(r"(?<![A-Za-z0-9.-])(?P<host>[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
                    r"\.svc(?:\.cluster\.local)?)(?::(?P<port>\d+))?\b")
DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443, "postgres": 5432,
                 "postgresql": 5432, "smtp": 25}


def strings_of(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from strings_of(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings_of(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def url_sources(st: Stack):
    """(object, where, text) for every place a URL or host can hide."""
    for o in st.objs:
        if o.kind in WORKLOADS or o.kind == "Pod":
            tmpl = o.doc if o.kind == "Pod" else o.doc["spec"]["template"]
            spec = tmpl.get("spec") or {}
            for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
                for e in c.get("env") or []:
                    if "value" in e:
                        yield o, f"{c['name']} env {e['name']}", str(e["value"])
                for i, a in enumerate((c.get("args") or []) + (c.get("command") or [])):
                    yield o, f"{c['name']} args[{i}]", str(a)
        elif o.kind == "ConfigMap":
            labels = (o.doc.get("metadata") or {}).get("labels") or {}
            if "grafana_dashboard" in labels:
                continue  # dashboards: panel links and docs, checked by the grafana check
            for k, v in (o.doc.get("data") or {}).items():
                yield o, f"data.{k}", v
        elif o.kind == "Secret":
            for k, v in (o.doc.get("stringData") or {}).items():
                yield o, f"stringData.{k}", v
            for k, v in (o.doc.get("data") or {}).items():
                try:
                    yield o, f"data.{k}", base64.b64decode(v).decode()
                except (ValueError, UnicodeDecodeError):
                    pass
        elif o.kind in ("Prometheus", "Alertmanager"):
            for where, v in strings_of(o.doc.get("spec") or {}):
                yield o, f"spec.{where}", v


def resolve_host(st: Stack, host: str, own_ns: str):
    """(namespace, service) of an in-cluster host name, or None when it is not one."""
    h = host.lower().rstrip(".")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", h):
        return None  # placeholders (${env:MY_POD_IP}), addresses with odd characters
    if h.endswith(".cluster.local"):
        h = h[: -len(".cluster.local")]
    if h.endswith(".svc"):
        parts = h[:-4].split(".")
        if len(parts) >= 2:
            return parts[-1], parts[-2]
        return None
    parts = h.split(".")
    if len(parts) == 2 and parts[1] in st.namespaces():
        return parts[1], parts[0]
    if len(parts) == 1 and h not in ("localhost",) and not h.replace("-", "").isdigit():
        return own_ns, h
    return None


def dicts_of(value):
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from dicts_of(v)
    elif isinstance(value, list):
        for v in value:
            yield from dicts_of(v)


def check_urls(st: Stack, r) -> None:
    services = {(ns, name): s for ns, name, s in st.services()}
    problems, seen = [], set()
    n = 0
    for o, where, text in url_sources(st):
        found = []
        for m in URL_RE.finditer(text):
            port = int(m["port"]) if m["port"] else DEFAULT_PORTS.get(m["scheme"])
            found.append((m["host"], port, m.group(0)))
        for m in SVC_RE.finditer(text):
            if any(m["host"] == h for h, _, _ in found):
                continue
            found.append((m["host"], int(m["port"]) if m["port"] else None, m.group(0)))
        # host + port given apart in a YAML config (e.g. alert-service's smtp: {host, port})
        if o.kind == "ConfigMap" and ("host:" in text and "port:" in text):
            try:
                cfg = yaml.safe_load(text)
            except yaml.YAMLError:
                cfg = None
            for d in dicts_of(cfg):
                h, pt = d.get("host"), d.get("port")
                if isinstance(h, str) and isinstance(pt, int):
                    found = [f for f in found if f[0] != h] + [(h, pt, f"host {h} port {pt}")]
        for host, port, literal in found:
            target = resolve_host(st, host, o.ns or "default")
            if not target:
                continue
            # single-label hosts only count in a URL with a scheme
            if "." not in host and "://" not in literal and not literal.startswith("host "):
                continue
            n += 1
            key = (o.ref(), where, literal)
            if key in seen:
                continue
            seen.add(key)
            ns, name = target
            if (ns, name) not in services:
                problems.append(f"{o.ref()} {where}: {literal} -> no Service {ns}/{name} in the render")
                continue
            ports = [p.get("port") for p in services[(ns, name)].get("ports") or []]
            if port is not None and port not in ports:
                problems.append(f"{o.ref()} {where}: {literal} -> Service {ns}/{name} has no port {port} (has {ports})")
    report(r, "urls", problems, f"{n} in-cluster URLs/hosts resolve to a rendered Service and port")


# ------------------------------------------------------------------------------------ grafana


def grafana_datasources(st: Stack) -> tuple[dict, list]:
    """uid -> datasource, from ConfigMaps the Grafana sidecar (label grafana_datasource) or the
    chart's provisioning loads."""
    out, where = {}, []
    for o in st.of("ConfigMap", "Secret"):
        labels = (o.doc.get("metadata") or {}).get("labels") or {}
        if "grafana_datasource" not in labels and not o.name.endswith("grafana-datasource"):
            continue
        data = dict(o.doc.get("data") or {})
        if o.kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        for k, v in data.items():
            doc = yaml.safe_load(v) or {}
            for ds in doc.get("datasources") or []:
                out[ds.get("uid") or ds.get("name")] = ds
            where.append(f"{o.ref()} {k}")
    return out, where


def uid_refs(value, path=""):
    """(path, uid) of every datasource reference in a dashboard or datasource jsonData."""
    if isinstance(value, dict):
        for k, v in value.items():
            p = f"{path}.{k}" if path else k
            if k == "datasource":
                if isinstance(v, dict) and isinstance(v.get("uid"), str):
                    yield p, v["uid"]
                elif isinstance(v, str):
                    yield p, v
            elif k.lower().endswith("datasourceuid") and isinstance(v, str):
                yield p, v
            else:
                yield from uid_refs(v, p)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from uid_refs(v, f"{path}[{i}]")


def check_grafana(st: Stack, r) -> None:
    dss, where = grafana_datasources(st)
    problems = []
    if not dss:
        report(r, "grafana", ["no Grafana datasource provisioning found in the render"], "")
        return
    builtin = {"-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --", "__expr__"}
    n_dash = n_refs = 0
    for uid, ds in dss.items():
        for p, ref in uid_refs(ds.get("jsonData") or {}):
            n_refs += 1
            if ref not in dss:
                problems.append(f"datasource {uid}: jsonData.{p} = {ref!r} is not a provisioned datasource UID")
    for o in st.of("ConfigMap"):
        labels = (o.doc.get("metadata") or {}).get("labels") or {}
        if "grafana_dashboard" not in labels:
            continue
        for k, v in (o.doc.get("data") or {}).items():
            if not k.endswith(".json"):
                continue
            dash = json.loads(v)
            n_dash += 1
            variables = {t.get("name") for t in (dash.get("templating") or {}).get("list") or []}
            for p, ref in uid_refs(dash):
                n_refs += 1
                if ref in builtin or ref.startswith("$") or ref in variables:
                    continue
                if ref not in dss and not any(ds.get("name") == ref for ds in dss.values()):
                    problems.append(f"{o.ref()} {k}: {p} = {ref!r} is not a provisioned datasource UID")
    report(r, "grafana", problems,
           f"{n_dash} dashboards, {n_refs} datasource references, UIDs {sorted(dss)}")


# ------------------------------------------------------------------------------------ hpa


def go_regex_sub(pattern: str, repl: str, s: str) -> str | None:
    m = re.fullmatch(pattern.replace("(?P<", "(?P<"), s) or re.search(pattern, s)
    if not m:
        return None
    out = re.sub(r"\$\{?(\d+)\}?", lambda g: m.group(int(g.group(1))) or "", repl)
    return out


def adapter_metrics(st: Stack) -> tuple[dict, list]:
    """name -> rule for every custom/external metric the prometheus-adapter rules produce."""
    out, where = {}, []
    for o in st.of("ConfigMap"):
        for k, v in (o.doc.get("data") or {}).items():
            if k != "config.yaml":
                continue
            doc = yaml.safe_load(v) or {}
            if not isinstance(doc, dict) or not ({"rules", "externalRules"} & set(doc)):
                continue
            where.append(o.ref())
            for kind in ("rules", "externalRules"):
                for rule in doc.get(kind) or []:
                    series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule.get("seriesQuery", ""))
                    if not series:
                        continue
                    name = rule.get("name") or {}
                    matches = name.get("matches") or ".*"
                    default_as = "$1" if re.compile(matches).groups else "$0"
                    exposed = go_regex_sub(matches, name.get("as") or default_as, series.group(1))
                    if exposed is None and name.get("as") and "$" not in name["as"]:
                        exposed = name["as"]
                    if exposed:
                        out[exposed] = dict(rule, _kind=kind)
    return out, where


def check_hpa(st: Stack, r) -> None:
    problems = []
    metrics, where = adapter_metrics(st)
    apisvc = {(o.doc.get("spec") or {}).get("group") for o in st.of("APIService")}
    workloads = {(o.kind, o.ns, o.name) for o in st.objs if o.kind in WORKLOADS}
    n = 0
    for o in st.of("HorizontalPodAutoscaler"):
        spec = o.doc.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        if (ref.get("kind"), o.ns, ref.get("name")) not in workloads:
            problems.append(f"{o.ref()}: scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not rendered")
        for m in spec.get("metrics") or []:
            n += 1
            t = m.get("type")
            if t in ("Resource", "ContainerResource"):
                if "metrics.k8s.io" not in apisvc:
                    problems.append(f"{o.ref()}: {t} metric needs metrics.k8s.io (metrics-server), not rendered")
                continue
            body = m.get({"Pods": "pods", "Object": "object", "External": "external"}.get(t, ""), {})
            name = (body.get("metric") or {}).get("name")
            group = "external.metrics.k8s.io" if t == "External" else "custom.metrics.k8s.io"
            if group not in apisvc:
                problems.append(f"{o.ref()}: {t} metric {name} needs the {group} APIService, not rendered")
            rule = metrics.get(name)
            if not rule:
                problems.append(f"{o.ref()}: {t} metric {name!r} is produced by no prometheus-adapter rule "
                                f"(adapter metrics: {sorted(metrics) or 'none'})")
                continue
            want_kind = "externalRules" if t == "External" else "rules"
            if rule["_kind"] != want_kind:
                problems.append(f"{o.ref()}: {t} metric {name} comes from adapter {rule['_kind']}, needs {want_kind}")
            if t == "Pods":
                ov = (rule.get("resources") or {}).get("overrides") or {}
                res = {v.get("resource") for v in ov.values()}
                tmpl = (rule.get("resources") or {}).get("template")
                if not ({"pod", "namespace"} <= res or tmpl):
                    problems.append(f"{o.ref()}: adapter rule for {name} does not map series to pod and namespace")
    report(r, "hpa", problems, f"{n} HPA metrics, adapter produces {sorted(metrics)}")


# ------------------------------------------------------------------------------------ netpol


@dataclass
class Endpoint:
    label: str
    pod: Pod | None = None
    ip: str = ""


def np_peer_matches(peer: dict, policy_ns: str, dst: Endpoint) -> bool:
    if "ipBlock" in peer:
        ipb = peer["ipBlock"]
        ip = ipaddress.ip_address(dst.pod.ip if dst.pod else dst.ip)
        if ip not in ipaddress.ip_network(ipb["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(x) for x in ipb.get("except") or [])
    if dst.pod is None:
        return False
    ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_sel is not None:
        if not match_labels(ns_sel, ns_labels(dst.pod.ns)):
            return False
    elif dst.pod.ns != policy_ns:
        return False
    return pod_sel is None or match_labels(pod_sel, dst.pod.labels)


def np_port_matches(ports: list | None, dst: Endpoint, port: int, proto: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != proto:
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            if dst.pod and any(pn == want and pp == port and pr == proto for pn, pp, pr in dst.pod.ports):
                return True
            continue
        if want <= port <= (p.get("endPort") or want):
            return True
    return False


def np_allowed(st: Stack, src: Endpoint, dst: Endpoint, port: int, proto: str) -> tuple[bool, str]:
    for side, peer, kind in ((src, dst, "Egress"), (dst, src, "Ingress")):
        denying = np_denying(st, side, peer, kind, dst, port, proto)
        if denying:
            return False, f"{kind.lower()} of {side.label} denied by {', '.join(p.name for p in denying)}"
    return True, "allowed"


def np_denying(st: Stack, ep: Endpoint, peer: Endpoint, kind: str, dst: Endpoint, port: int, proto: str) -> list:
    """The policies selecting `ep`'s pod for `kind` (Egress/Ingress) when none of their rules lets
    `peer` through on `dst`'s `port`; empty when allowed or when no policy selects the pod."""
    if not ep.pod:
        return []
    rules_key, peer_key = ("egress", "to") if kind == "Egress" else ("ingress", "from")
    sel = [p for p in st.of("NetworkPolicy") if p.ns == ep.pod.ns and kind in policy_types(p.doc)
           and match_labels(p.doc["spec"].get("podSelector") or {}, ep.pod.labels)]
    if sel and not any(np_peer_ok(rule.get(peer_key), p.ns, peer) and np_port_matches(rule.get("ports"), dst, port, proto)
                       for p in sel for rule in p.doc["spec"].get(rules_key) or []):
        return sel
    return []


def np_peer_ok(peers: list | None, policy_ns: str, ep: Endpoint) -> bool:
    """A rule's from/to: empty or missing matches every peer (NetworkPolicy API)."""
    if not peers:
        return True
    return any(np_peer_matches(pe, policy_ns, ep) for pe in peers)


def policy_types(doc: dict) -> list:
    spec = doc.get("spec") or {}
    if spec.get("policyTypes"):
        return spec["policyTypes"]
    return ["Ingress"] + (["Egress"] if "egress" in spec else [])


# Flows are written as: pod:<ns>/<workload>, svc:<ns>/<service>:<port>[/UDP], ip:<addr>:<port>,
# or the names "client" (outside the cluster), "apiserver" (both the Service VIP :443 and the
# node :6443, as kube-proxy rewrites it), "internet-smtp:<port>".
ORGANS = ["api-gateway", "heart", "brain", "user-service"]
NERVES = ["health-monitor", "auto-healer", "alert-service"]
MON = "monitoring"
APP = "organism"
PROM = f"pod:{MON}/prometheus-kube-prometheus-stack-prometheus"
AM = f"pod:{MON}/alertmanager-kube-prometheus-stack-alertmanager"

REQUIRED_FLOWS = (
    [("client", f"svc:{APP}/api-gateway:8080", "the front door (NodePort)")]
    + [(f"pod:{APP}/api-gateway", f"svc:{APP}/{s}:{p}", "gateway -> organ")
       for s, p in [("heart", 8081), ("brain", 8082), ("user-service", 8083)]]
    + [(f"pod:{APP}/brain", f"svc:{APP}/heart:8081", "brain -> heart")]
    + [(f"pod:{APP}/{s}", f"svc:{MON}/opentelemetry-collector:4317", "OTLP to the collector")
       for s in ORGANS + NERVES]
    + [(f"pod:{APP}/{s}", "svc:kube-system/kube-dns:53/UDP", "DNS") for s in ORGANS + NERVES]
    + [(f"pod:{APP}/{s}", "svc:kube-system/kube-dns:53", "DNS over TCP") for s in ORGANS + NERVES]
    + [(f"pod:{MON}/opentelemetry-collector", f"svc:{MON}/loki:3100", "collector -> Loki"),
       (f"pod:{MON}/opentelemetry-collector", f"svc:{MON}/tempo:4317", "collector -> Tempo"),
       (f"pod:{MON}/opentelemetry-collector", f"svc:{MON}/kube-prometheus-stack-prometheus:9090",
        "collector -> Prometheus (remote write)")]
    + [(AM, f"svc:{APP}/alert-service:8086", "Alertmanager webhook -> alert-service"),
       (AM, f"svc:{APP}/auto-healer:8085", "Alertmanager webhook -> auto-healer"),
       (f"pod:{APP}/alert-service", f"svc:{APP}/auto-healer:8085", "alert-service digest -> auto-healer actions")]
    + [(f"pod:{APP}/health-monitor", f"svc:{MON}/kube-prometheus-stack-prometheus:9090", "PromQL"),
       (f"pod:{APP}/health-monitor", f"svc:{MON}/kube-prometheus-stack-alertmanager:9093", "alerts API"),
       (f"pod:{APP}/health-monitor", "apiserver", "watches"),
       (f"pod:{APP}/auto-healer", "apiserver", "remediation"),
       (f"pod:{APP}/auto-healer", f"svc:{MON}/kube-prometheus-stack-alertmanager:9093", "alerts API"),
       (f"pod:{APP}/alert-service", "apiserver", "enrichment")]
    + [(f"pod:{APP}/health-monitor", f"pod:{APP}/{s}:8080" if s == "api-gateway" else f"pod:{APP}/{s}:http",
        "health-monitor asks a not-ready pod for /readyz") for s in ORGANS + NERVES if s != "health-monitor"]
    + [(f"pod:{APP}/user-service", f"svc:{APP}/postgres:5432", "users database"),
       (f"pod:{APP}/alert-service", f"svc:{APP}/postgres:5432", "alert outbox database"),
       (f"pod:{APP}/alert-service", f"svc:{MON}/mailpit:1025", "SMTP sink on kind"),
       (f"pod:{APP}/alert-service", "internet:587", "SMTP relay"),
       (f"pod:{APP}/alert-service", "internet:443", "Slack / Teams webhook")]
    + [(f"pod:{MON}/kube-prometheus-stack-grafana", f"svc:{MON}/{s}", "Grafana datasource")
       for s in ["kube-prometheus-stack-prometheus:9090", "loki:3100", "tempo:3200",
                 "kube-prometheus-stack-alertmanager:9093"]]
)
# Prometheus -> every port a ServiceMonitor/PodMonitor scrapes is added from the render.

FORBIDDEN_FLOWS = (
    [(f"pod:{APP}/{s}", f"svc:{APP}/postgres:5432", "only user-service and alert-service reach the database")
     for s in ORGANS + NERVES if s not in ("user-service", "alert-service")]
    + [(f"pod:{MON}/{s}", f"pod:{APP}/postgres:5432", "no monitoring pod reaches the database")
       for s in ["kube-prometheus-stack-grafana", "opentelemetry-collector"]]
    + [(f"pod:{MON}/opentelemetry-collector", f"pod:{APP}/postgres:5432", "collector -> database")]
    + [(f"pod:{APP}/{s}", "apiserver", "organs never talk to the API server") for s in ORGANS]
    + [(f"pod:{APP}/{s}", "internet:443", "organs have no internet egress") for s in ORGANS + ["health-monitor", "auto-healer"]]
    + [("client", f"pod:{APP}/{s}:http", "only the gateway is public")
       for s in ["heart", "brain", "user-service"] + NERVES]
    + [("client", f"pod:{APP}/postgres:5432", "the database is not public")]
    + [(f"pod:{APP}/api-gateway", f"svc:{APP}/{s}", "the gateway cannot reach the nervous system")
       for s in ["auto-healer:8085", "alert-service:8086", "health-monitor:8084"]]
    + [(f"pod:{APP}/heart", f"svc:{APP}/brain:8082", "heart calls nobody"),
       (f"pod:{APP}/user-service", f"svc:{APP}/heart:8081", "user-service calls nobody")]
    + [(f"pod:{APP}/alert-service", f"svc:{APP}/heart:8081", "alert-service's internet egress is not a way into the cluster"),
       (f"pod:{APP}/alert-service", f"pod:{MON}/kube-prometheus-stack-grafana:3000", "alert-service -> Grafana")]
    + [(f"pod:{APP}/{s}", f"svc:{APP}/auto-healer:8085", "only Alertmanager and alert-service call the auto-healer")
       for s in ORGANS]
)


def resolve_flow_end(st: Stack, spec: str, as_source: bool) -> list:
    """[(Endpoint, port, proto, description)] for one end of a flow."""
    pods = st.pods()
    if spec == "client":
        return [(Endpoint("client", ip=EXTERNAL_CLIENT), 0, "TCP", "client")]
    if spec == "apiserver":
        return [(Endpoint("API server (Service VIP)", ip=KIND_API_VIP), 443, "TCP", f"{KIND_API_VIP}:443"),
                (Endpoint("API server (node)", ip=KIND_API_NODE), 6443, "TCP", f"{KIND_API_NODE}:6443")]
    kind, _, rest = spec.partition(":")
    if kind == "internet":
        return [(Endpoint("internet", ip=EXTERNAL_SMTP), int(rest), "TCP", f"{EXTERNAL_SMTP}:{rest}")]
    if kind == "pod":
        target, _, port = rest.partition(":")
        ns, _, name = target.partition("/")
        matches = [p for p in pods if p.ns == ns and p.name == name]
        if not matches:
            raise Fail(f"flow end {spec}: no rendered pod {ns}/{name}")
        p = matches[0]
        if as_source:
            return [(Endpoint(f"{ns}/{name}", pod=p), 0, "TCP", f"{ns}/{name}")]
        if port.isdigit():
            return [(Endpoint(f"{ns}/{name}", pod=p), int(port), "TCP", f"{ns}/{name}:{port}")]
        named = [(pp, pr) for pn, pp, pr in p.ports if pn == port]
        if not named:
            raise Fail(f"flow end {spec}: pod {ns}/{name} has no port named {port}")
        return [(Endpoint(f"{ns}/{name}", pod=p), named[0][0], named[0][1], f"{ns}/{name}:{port}")]
    if kind == "svc":
        target, _, port = rest.partition(":")
        port, _, proto = port.partition("/")
        proto = proto or "TCP"
        ns, _, name = target.partition("/")
        svc = next((s for n_, nm, s in st.services() if n_ == ns and nm == name), None)
        if svc is None:
            raise Fail(f"flow end {spec}: no Service {ns}/{name}")
        sp = next((p for p in svc.get("ports") or [] if p["port"] == int(port) and p.get("protocol", "TCP") == proto), None)
        if sp is None:
            raise Fail(f"flow end {spec}: Service {ns}/{name} has no port {port}/{proto}")
        backs = pods_of_service(st, ns, svc)
        if not backs:
            raise Fail(f"flow end {spec}: Service {ns}/{name} selects no pod")
        out = []
        for p in backs:
            tp = sp.get("targetPort", sp["port"])
            if isinstance(tp, str):
                num = next((pp for pn, pp, pr in p.ports if pn == tp), None)
                if num is None:
                    raise Fail(f"flow end {spec}: pod {p.ns}/{p.name} has no port named {tp}")
                tp = num
            out.append((Endpoint(f"{p.ns}/{p.name}", pod=p), tp, proto, f"{ns}/{name}:{port} -> pod {p.name}:{tp}"))
        return out
    raise Fail(f"flow end {spec}: unknown form")


def scrape_flows(st: Stack) -> list:
    flows = []
    for o in st.of("ServiceMonitor"):
        spec = o.doc.get("spec") or {}
        for ns, name, s in st.services():
            if not s.get("selector"):
                continue  # endpoints outside the pod network (API server, kubelets): no policy applies
            if not (ns_selected(spec.get("namespaceSelector"), o.ns, ns)
                    and match_labels(spec.get("selector") or {}, labels_of_service(st, ns, name))):
                continue
            for ep in spec.get("endpoints") or []:
                sp = next((p for p in s.get("ports") or [] if p.get("name") == ep.get("port")), None)
                if sp:
                    flows.append((PROM, f"svc:{ns}/{name}:{sp['port']}", f"scrape ({o.name})"))
    return flows


def check_netpol(st: Stack, r, required=None, forbidden=None) -> None:
    required = (REQUIRED_FLOWS if required is None else required) + scrape_flows(st)
    forbidden = FORBIDDEN_FLOWS if forbidden is None else forbidden
    problems = []
    n_ok = 0
    for want, flows in ((True, required), (False, forbidden)):
        for src, dst, why in flows:
            try:
                srcs = resolve_flow_end(st, src, True)
                dsts = resolve_flow_end(st, dst, False)
            except Fail as e:
                if want:
                    problems.append(f"required flow {src} -> {dst} ({why}): {e}")
                else:
                    n_ok += 1  # nothing rendered to reach: closed
                continue
            for s_ep, _, _, _ in srcs:
                for d_ep, port, proto, desc in dsts:
                    ok, reason = np_allowed(st, s_ep, d_ep, port, proto)
                    if ok != want:
                        problems.append(f"{'required' if want else 'forbidden'} flow {s_ep.label} -> {desc} "
                                        f"({why}): {'denied: ' + reason if want else 'ALLOWED by the policies'}")
                    else:
                        n_ok += 1
    default_deny = [p for p in st.of("NetworkPolicy") if p.ns == APP and p.doc["spec"].get("podSelector") == {}
                    and set(policy_types(p.doc)) == {"Ingress", "Egress"} and not p.doc["spec"].get("ingress")
                    and not p.doc["spec"].get("egress")]
    if not default_deny:
        problems.append(f"no default-deny (ingress and egress) NetworkPolicy in namespace {APP}")
    for p in st.of("NetworkPolicy"):
        for rule in (p.doc["spec"].get("egress") or []):
            for peer in rule.get("to") or []:
                cidr = (peer.get("ipBlock") or {}).get("cidr")
                ports = {x.get("port") for x in rule.get("ports") or []}
                if cidr == "0.0.0.0/0" and (not ports or 6443 in ports or 443 in ports) \
                        and not (peer["ipBlock"].get("except")):
                    problems.append(f"{p.ref()}: egress to 0.0.0.0/0 on {sorted(map(str, ports)) or 'every port'} "
                                    "without excepting the cluster's ranges")
    report(r, "netpol", problems, f"{len(required)} required flows allowed, {len(forbidden)} forbidden flows "
           f"denied ({n_ok} pod-level paths), default deny in {APP}")


# ------------------------------------------------------------------------------------ rbac

WORKLOAD_RESOURCES = {"deployments", "statefulsets", "daemonsets", "replicasets", "deployments/scale",
                      "statefulsets/scale", "replicasets/scale", "pods", "jobs", "cronjobs",
                      "horizontalpodautoscalers", "replicationcontrollers"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}
READ_VERBS = {"get", "list", "watch", "*"}
# Secret reads outside kube-state-metrics: none of ours; prometheus-operator is the one upstream
# component that must (it writes the generated Prometheus/Alertmanager config Secrets and reads the
# credentials monitors reference), so it is named here and nowhere else.
SECRET_READERS = {"kube-prometheus-stack-kube-state-metrics", "kube-prometheus-stack-operator"}
# What each of our services may hold, from its Kubernetes calls (services/*/src: auto-healer
# k8s/mod.rs, state.rs, lease.rs; health-monitor kube_watch.rs; alert-service enrich.rs):
# scope -> {(apiGroup, resource): verbs}.
AUTO_HEALER_CLUSTER = {("", "nodes"): {"get", "list", "patch"}, ("", "pods"): {"list"},
                       ("", "pods/eviction"): {"create"}}
AUTO_HEALER_NS = {("apps", "deployments"): {"get", "patch"}, ("apps", "statefulsets"): {"get", "patch"},
                  ("apps", "daemonsets"): {"get", "patch"}, ("apps", "deployments/scale"): {"get", "patch"},
                  ("apps", "statefulsets/scale"): {"get", "patch"}, ("apps", "replicasets"): {"get", "list"},
                  ("", "pods"): {"get", "list", "delete"}, ("autoscaling", "horizontalpodautoscalers"): {"list", "patch"},
                  ("batch", "jobs"): {"list", "delete"}, ("events.k8s.io", "events"): {"create"}}
AUTO_HEALER_OWN = {("coordination.k8s.io", "leases"): {"get", "create", "update"},
                   ("", "configmaps"): {"get", "update"}}
HEALTH_MONITOR_CLUSTER = {("", "pods"): {"list", "watch"}, ("", "nodes"): {"list", "watch"},
                          ("", "events"): {"list", "watch"}, ("apps", "deployments"): {"list", "watch"},
                          ("apps", "statefulsets"): {"list", "watch"}, ("apps", "daemonsets"): {"list", "watch"},
                          ("discovery.k8s.io", "endpointslices"): {"list", "watch"},
                          ("autoscaling", "horizontalpodautoscalers"): {"list", "watch"}}
ALERT_SERVICE_NS = {("", "pods"): {"get"}, ("", "pods/log"): {"get"}, ("", "events"): {"list"}}
BROAD_ROLES = {"cluster-admin", "admin", "edit", "view"}
# Roles the API server itself provides (bound by metrics-server and prometheus-adapter).
SYSTEM_ROLE_PREFIXES = ("system:", "extension-apiserver-authentication-reader")
ALLOWED = {
    "auto-healer": {"cluster": AUTO_HEALER_CLUSTER, "namespace": AUTO_HEALER_NS, "own": AUTO_HEALER_OWN},
    "health-monitor": {"cluster": HEALTH_MONITOR_CLUSTER, "namespace": {}, "own": {}},
    "alert-service": {"cluster": {}, "namespace": ALERT_SERVICE_NS, "own": {}},
}


def rule_grants(rule: dict):
    for g in rule.get("apiGroups") or [""]:
        for res in rule.get("resources") or []:
            for v in rule.get("verbs") or []:
                yield g, res, v


def bindings_of(st: Stack) -> list:
    """(binding obj, role obj or None, scope ns or None, [(sa ns, sa name)])"""
    roles = {(o.kind, o.ns, o.name): o for o in st.of("Role", "ClusterRole")}
    out = []
    for b in st.of("RoleBinding", "ClusterRoleBinding"):
        rr = b.doc["roleRef"]
        role = roles.get((rr["kind"], b.ns if rr["kind"] == "Role" else None, rr["name"]))
        subs = [(s.get("namespace") or b.ns, s["name"]) for s in b.doc.get("subjects") or []
                if s.get("kind") == "ServiceAccount"]
        out.append((b, role, b.ns if b.kind == "RoleBinding" else None, subs))
    return out


def check_rbac(st: Stack, r) -> None:
    problems = []
    # 1. any role of any release: no Secret read outside the allow-list
    for o in st.of("Role", "ClusterRole"):
        for rule in o.doc.get("rules") or []:
            for g, res, v in rule_grants(rule):
                if g == "" and res in ("secrets", "*") and v in READ_VERBS and o.name not in SECRET_READERS:
                    problems.append(f"{o.ref()}: reads Secrets ({v})"
                                    + (f" by name {rule['resourceNames']}" if rule.get("resourceNames") else ""))
                    break
    # 2. ours: no ClusterRole with workload writes; every grant is one the code uses, in its scope
    ours = [o for o in st.of("Role", "ClusterRole") if o.release in OURS]
    for o in ours:
        if o.kind == "ClusterRole":
            for rule in o.doc.get("rules") or []:
                for g, res, v in rule_grants(rule):
                    if res in WORKLOAD_RESOURCES and v in WRITE_VERBS:
                        problems.append(f"{o.ref()}: cluster-wide workload write {v} {g or 'core'}/{res}")
        for rule in o.doc.get("rules") or []:
            if "*" in (rule.get("verbs") or []) + (rule.get("resources") or []) + (rule.get("apiGroups") or []):
                problems.append(f"{o.ref()}: wildcard in {rule}")
            if o.kind == "Role":
                for g, res, v in rule_grants(rule):
                    if res in ("configmaps", "leases") and v in ("update", "patch", "delete") and not rule.get("resourceNames"):
                        problems.append(f"{o.ref()}: {v} {res} not limited by resourceNames")
    rel_ns = {rel["namespace"] for rel in st.index if f"{rel['namespace']}/{rel['name']}" in OURS and rel["name"] == "organism"}
    app_ns = next(iter(rel_ns), APP)
    for b, role, scope, subs in bindings_of(st):
        if b.release not in OURS:
            continue
        if role is None:
            problems.append(f"{b.ref()}: binds {b.doc['roleRef']['kind']} {b.doc['roleRef']['name']}, not rendered")
            continue
        for sa_ns, sa in subs:
            allowed = ALLOWED.get(sa)
            if allowed is None:
                problems.append(f"{b.ref()}: grants {role.name} to {sa_ns}/{sa}, which has no RBAC allowance")
                continue
            if scope is None:
                table, where = allowed["cluster"], "cluster-wide"
            elif scope == app_ns:
                table = merge_grants(allowed["namespace"], allowed["own"])
                where = f"in its own namespace {scope}"
            else:
                table, where = allowed["namespace"], f"in namespace {scope}"
            for rule in role.doc.get("rules") or []:
                for g, res, v in rule_grants(rule):
                    if v not in table.get((g, res), set()):
                        problems.append(f"{role.ref()} bound {where} to {sa}: {v} {g or 'core'}/{res} "
                                        "is not a call the service makes there")
    # 3. the calls the services do make are granted (so the list above is not vacuous)
    for sa, allowed in ALLOWED.items():
        granted = {"cluster": set(), "ns": set()}
        for b, role, scope, subs in bindings_of(st):
            if role and (app_ns, sa) in subs:
                for rule in role.doc.get("rules") or []:
                    for g, res, v in rule_grants(rule):
                        granted["cluster" if scope is None else "ns"].add((g, res, v, scope))
        for (g, res), verbs in allowed["cluster"].items():
            for v in verbs:
                if (g, res, v, None) not in granted["cluster"]:
                    problems.append(f"{sa}: needs {v} {g or 'core'}/{res} cluster-wide, not granted")
        for (g, res), verbs in merge_grants(allowed["namespace"], allowed["own"]).items():
            for v in verbs:
                if (g, res, v, app_ns) not in granted["ns"]:
                    problems.append(f"{sa}: needs {v} {g or 'core'}/{res} in {app_ns}, not granted")
    # 4. only the services that call the API server get a ServiceAccount token in their pods
    sa_auto = {(o.ns, o.name): o.doc.get("automountServiceAccountToken", True) for o in st.of("ServiceAccount")}
    for o in st.objs:
        if o.release not in OURS or o.kind not in WORKLOADS:
            continue
        spec = o.doc["spec"]["template"]["spec"]
        sa = spec.get("serviceAccountName") or "default"
        mounted = spec.get("automountServiceAccountToken", sa_auto.get((o.ns, sa), True))
        if mounted and sa not in ALLOWED:
            problems.append(f"{o.ref()}: mounts a ServiceAccount token ({sa}) but makes no API calls")
    # 5. every binding of every release: a rendered role or a built-in system role; never one of
    #    the broad user-facing roles
    for b, role, scope, subs in bindings_of(st):
        rr = b.doc["roleRef"]
        if rr["name"] in BROAD_ROLES:
            problems.append(f"{b.ref()}: binds {rr['kind']} {rr['name']}")
        elif role is None and not rr["name"].startswith(SYSTEM_ROLE_PREFIXES):
            problems.append(f"{b.ref()}: binds {rr['kind']} {rr['name']}, which no release renders")
    # 6. Grafana's sidecars: ConfigMaps of Grafana's own namespace only
    n_side = 0
    for o in st.of("Deployment"):
        if "grafana" not in o.name:
            continue
        for c in o.doc["spec"]["template"]["spec"].get("containers") or []:
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            if "RESOURCE" not in env or "LABEL" not in env:
                continue
            n_side += 1
            if env["RESOURCE"] != "configmap":
                problems.append(f"{o.ref()} sidecar {c['name']}: RESOURCE={env['RESOURCE']!r}, want 'configmap'")
            if env.get("NAMESPACE") not in (None, o.ns):
                problems.append(f"{o.ref()} sidecar {c['name']}: NAMESPACE={env.get('NAMESPACE')!r}, want its own ({o.ns})")
    report(r, "rbac", problems, f"{len(ours)} roles of ours least-privilege; {n_side} Grafana sidecars on "
           f"their namespace's ConfigMaps; Secret reads only by "
           f"{sorted(SECRET_READERS)}")


def merge_grants(a: dict, b: dict) -> dict:
    out = {k: set(v) for k, v in a.items()}
    for k, v in b.items():
        out.setdefault(k, set()).update(v)
    return out


# ------------------------------------------------------------------------------------ tokens

AM_SECRET_PATH = re.compile(r"/etc/alertmanager/secrets/([^/\s]+)/([^\s\"']+)")


def secret_data(o: Obj) -> dict:
    out = {k: base64.b64decode(v).decode() for k, v in (o.doc.get("data") or {}).items()}
    out.update(o.doc.get("stringData") or {})
    return out


# Credentials that are not named *_TOKEN but must come from a rendered Secret all the same.
SECRET_ENVS = {"ACK_SIGNING_KEY"}


def check_tokens(st: Stack, r) -> None:
    """Closed by default: every *_TOKEN env comes from a rendered Secret key through a required
    reference; Alertmanager's credentials_file paths name a key of a Secret it mounts, rendered in
    its namespace, and holding the same value as the token the receiving service reads."""
    problems = []
    secrets = {(o.ns, o.name): o for o in st.of("Secret")}
    token_of = {}  # (service workload, env) -> value
    n = 0
    for o in st.objs:
        if o.release not in OURS or o.kind not in WORKLOADS:
            continue
        for c in o.doc["spec"]["template"]["spec"].get("containers") or []:
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref.get("optional"):
                    problems.append(f"{o.ref()}: {e['name']} is an optional secret reference "
                                    "(a missing Secret must stop the pod, not go unnoticed)")
                    continue
                if not (e["name"].endswith("_TOKEN") or e["name"] in SECRET_ENVS):
                    continue
                n += 1
                if ref is None:
                    problems.append(f"{o.ref()}: {e['name']} is not read from a Secret")
                    continue
                sec = secrets.get((o.ns, ref["name"]))
                if sec is None:
                    problems.append(f"{o.ref()}: {e['name']} reads Secret {o.ns}/{ref['name']}, which no release renders")
                    continue
                data = secret_data(sec)
                if ref["key"] not in data:
                    problems.append(f"{o.ref()}: {e['name']} reads key {ref['key']} of {sec.ref()}, which has {sorted(data)}")
                    continue
                token_of[(o.name, e["name"])] = data[ref["key"]]
    receivers = {"auto-healer": "AUTO_HEALER_TOKEN", "alert-service": "ALERT_SERVICE_TOKEN"}
    for am in st.of("Alertmanager"):
        mounted = set((am.doc.get("spec") or {}).get("secrets") or [])
        for name in mounted:
            if (am.ns, name) not in secrets:
                problems.append(f"{am.ref()}: mounts Secret {name}, which no release renders in {am.ns}")
        cfg = next((o for o in st.of("Secret") if o.ns == am.ns and "alertmanager.yaml" in (o.doc.get("data") or {})), None)
        if cfg is None:
            problems.append(f"{am.ref()}: no rendered configuration Secret")
            continue
        conf = yaml.safe_load(secret_data(cfg)["alertmanager.yaml"]) or {}
        for rcv in conf.get("receivers") or []:
            for wh in rcv.get("webhook_configs") or []:
                n += 1
                url = wh.get("url", "")
                auth = ((wh.get("http_config") or {}).get("authorization") or {})
                path = auth.get("credentials_file", "")
                target = next((svc for svc in receivers if f"//{svc}." in url), None)
                if target is None:
                    continue
                m = AM_SECRET_PATH.fullmatch(path) if path else None
                if not m:
                    problems.append(f"receiver {rcv['name']}: webhook {url} sends no bearer token from a mounted Secret")
                    continue
                sname, key = m.groups()
                if sname not in mounted:
                    problems.append(f"receiver {rcv['name']}: {path}: Secret {sname} is not in alertmanagerSpec.secrets")
                    continue
                sec = secrets.get((am.ns, sname))
                if sec is None:
                    continue
                data = secret_data(sec)
                if key not in data:
                    problems.append(f"receiver {rcv['name']}: {path}: Secret {am.ns}/{sname} has no key {key} ({sorted(data)})")
                    continue
                want = token_of.get((target, receivers[target]))
                if want is None:
                    problems.append(f"receiver {rcv['name']}: {target} reads no {receivers[target]}")
                elif data[key] != want:
                    problems.append(f"receiver {rcv['name']}: {path} holds another token than {target}'s {receivers[target]}")
    report(r, "tokens", problems, f"{n} token references required and wired; Alertmanager sends the tokens the receivers expect")


# ------------------------------------------------------------------------------------ resources


def check_resources(st: Stack, r) -> None:
    """Every container of every release (and the pods the operator makes from the Prometheus and
    Alertmanager resources) has memory and CPU requests and a memory limit: the budget in
    docs/cluster.md counts on it."""
    problems = []
    n = 0

    def need(where: str, res: dict | None) -> None:
        nonlocal n
        n += 1
        res = res or {}
        for k, key in (("requests", "memory"), ("requests", "cpu"), ("limits", "memory")):
            if key not in (res.get(k) or {}):
                problems.append(f"{where}: no {k}.{key}")

    for o in st.objs:
        if is_test_hook(o):
            continue
        if o.kind in WORKLOADS:
            spec = o.doc["spec"]["template"]["spec"]
            for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
                need(f"{o.ref()} container {c['name']}", c.get("resources"))
        elif o.kind in ("Prometheus", "Alertmanager"):
            need(f"{o.ref()} spec.resources", (o.doc.get("spec") or {}).get("resources"))
    report(r, "resources", problems, f"{n} containers with memory/CPU requests and a memory limit")


# ------------------------------------------------------------------------------------ driver

CHECKS = {"schema": check_schema, "monitors": check_monitors, "selectors": check_selectors,
          "urls": check_urls, "grafana": check_grafana, "hpa": check_hpa, "netpol": check_netpol,
          "rbac": check_rbac, "tokens": check_tokens, "resources": check_resources}


class Report:
    def __init__(self, quiet=False):
        self.rows = []
        self.quiet = quiet

    def add(self, status, check, detail):
        self.rows.append((status, check, detail))
        if not self.quiet:
            print(f"{status}  {check}: {detail}", flush=True)

    def failed(self, check=None):
        return [d for s, c, d in self.rows if s == "FAIL" and (check is None or c == check)]


def report(r: Report, check: str, problems: list, ok_detail: str) -> None:
    if problems:
        for p in problems:
            r.add("FAIL", check, p)
    else:
        r.add("PASS", check, ok_detail)


def run_checks(st: Stack, names, r: Report) -> None:
    for n in names:
        try:
            CHECKS[n](st, r)
        except Fail as e:
            r.add("FAIL", n, str(e))


# ------------------------------------------------------------------------------------ self-test


def find(st: Stack, kind: str, name: str, ns: str | None = None) -> Obj:
    for o in st.objs:
        if o.kind == kind and o.name == name and (ns is None or o.ns == ns):
            return o
    raise Fail(f"self-test: no {kind} {name} in the render")


def deployment_container(st, name):
    return find(st, "Deployment", name, APP).doc["spec"]["template"]["spec"]["containers"][0]


def mut_env(st, name, var, value):
    for e in deployment_container(st, name)["env"]:
        if e["name"] == var:
            e["value"] = value
            return
    raise Fail(f"self-test: {name} has no env {var}")


def mut_cm(st, name, ns, fn):
    o = find(st, "ConfigMap", name, ns)
    for k in o.doc["data"]:
        o.doc["data"][k] = fn(k, o.doc["data"][k])


def mut_secret_am(st, old, new):
    o = next(o for o in st.of("Secret") if "alertmanager.yaml" in (o.doc.get("data") or {}))
    text = base64.b64decode(o.doc["data"]["alertmanager.yaml"]).decode()
    if old not in text:
        raise Fail(f"self-test: {old!r} not in the Alertmanager config")
    o.doc["data"]["alertmanager.yaml"] = base64.b64encode(text.replace(old, new).encode()).decode()


def replace_in_cm(st, name, ns, old, new):
    hit = []

    def fn(k, v):
        if old in v:
            hit.append(k)
        return v.replace(old, new)
    mut_cm(st, name, ns, fn)
    if not hit:
        raise Fail(f"self-test: {old!r} not in ConfigMap {ns}/{name}")


def np(st, name):
    return find(st, "NetworkPolicy", name, APP).doc["spec"]


def role_rules(st, kind, name, ns=None):
    return find(st, kind, name, ns).doc["rules"]


def first_dashboard_cm(st):
    return next(o for o in st.of("ConfigMap") if "grafana_dashboard" in ((o.doc.get("metadata") or {}).get("labels") or {}))


def mut_dashboard_uid(st):
    o = first_dashboard_cm(st)
    k = next(k for k in o.doc["data"] if k.endswith(".json"))
    d = json.loads(o.doc["data"][k])
    for p in d.get("panels") or []:
        if isinstance(p.get("datasource"), dict):
            p["datasource"]["uid"] = "no-such-datasource"
            break
    else:
        raise Fail("self-test: no panel with a datasource")
    o.doc["data"][k] = json.dumps(d)


def mut_datasource_xlink(st):
    for o in st.of("ConfigMap"):
        labels = (o.doc.get("metadata") or {}).get("labels") or {}
        if "grafana_datasource" in labels:
            for k, v in o.doc["data"].items():
                if "datasourceUid: tempo" in v:
                    o.doc["data"][k] = v.replace("datasourceUid: tempo", "datasourceUid: jaeger", 1)
                    return
    raise Fail("self-test: no datasourceUid: tempo in the datasource ConfigMaps")


def mut_unknown_field(st):
    deployment_container(st, "heart")["resourcez"] = {}


def mut_cr_unknown_field(st):
    find(st, "ServiceMonitor", "heart", APP).doc["spec"]["endpoints"][0]["intervall"] = "10s"


def mut_monitor_port(st):
    find(st, "ServiceMonitor", "heart", APP).doc["spec"]["endpoints"][0]["port"] = "metrics"


def mut_monitor_selector(st):
    find(st, "ServiceMonitor", "brain", APP).doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "brian"


def mut_release_label(st):
    find(st, "PrometheusRule", "organism", APP).doc["metadata"]["labels"]["release"] = "prometheus"


def mut_hpa_metric(st):
    h = find(st, "HorizontalPodAutoscaler", "heart", APP)
    for m in h.doc["spec"]["metrics"]:
        if m["type"] == "Pods":
            m["pods"]["metric"]["name"] = "heart_beats_per_minute"
            return
    raise Fail("self-test: heart's HPA has no Pods metric")


def mut_netpol_gateway_db(st):
    spec = np(st, "postgres")
    spec["ingress"][0]["from"].append({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "api-gateway"}}})
    np(st, "api-gateway")["egress"].append(
        {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgres"}}}], "ports": [{"port": 5432}]})


def mut_netpol_no_dns(st):
    st.objs = [o for o in st.objs if not (o.kind == "NetworkPolicy" and o.name == "allow-dns")]


def mut_netpol_api_wide(st):
    spec = np(st, "heart")
    spec.setdefault("egress", []).append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]})
    if "Egress" not in spec["policyTypes"]:
        spec["policyTypes"].append("Egress")


def mut_netpol_webhook(st):
    spec = np(st, "auto-healer")
    spec["ingress"] = [r_ for r_ in spec["ingress"] if "alertmanager" not in json.dumps(r_)]


def mut_netpol_default_deny(st):
    st.objs = [o for o in st.objs if not (o.kind == "NetworkPolicy" and o.name == "default-deny-all")]


def mut_rbac_cluster_write(st):
    role_rules(st, "ClusterRole", "organism-auto-healer").append(
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]})


def mut_rbac_secret(st):
    role_rules(st, "ClusterRole", "organism-health-monitor").append(
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})


def mut_rbac_cm_any(st):
    for rule in role_rules(st, "Role", "auto-healer", APP):
        if "configmaps" in rule.get("resources", []):
            rule.pop("resourceNames", None)
            return
    raise Fail("self-test: auto-healer Role has no configmaps rule")


def mut_rbac_unused(st):
    role_rules(st, "ClusterRole", "organism-health-monitor").append(
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list", "watch"]})


def mut_grafana_secrets(st):
    for o in st.objs:
        if o.kind in ("Role", "ClusterRole") and "grafana" in o.name:
            o.doc.setdefault("rules", []).append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]})
            return
    raise Fail("self-test: no Grafana role")


def mut_grafana_all_ns(st):
    for c in find(st, "Deployment", "kube-prometheus-stack-grafana", MON).doc["spec"]["template"]["spec"]["containers"]:
        env = c.get("env") or []
        if any(e["name"] == "RESOURCE" for e in env):
            env[:] = [e for e in env if e["name"] != "NAMESPACE"] + [{"name": "NAMESPACE", "value": "ALL"}]
            return
    raise Fail("self-test: no Grafana sidecar")


def mut_token_optional(st):
    for e in deployment_container(st, "heart")["env"]:
        if e["name"] == "CHAOS_TOKEN":
            e["valueFrom"]["secretKeyRef"]["optional"] = True
            return
    raise Fail("self-test: heart has no CHAOS_TOKEN")


def mut_am_token_key(st):
    mut_secret_am(st, "alertmanager-webhook-tokens/auto-healer", "alertmanager-webhook-tokens/autohealer")


def mut_am_token_value(st):
    for o in st.of("Secret"):
        if o.name == "alertmanager-webhook-tokens":
            o.doc["data"]["alert-service"] = base64.b64encode(b"stale-token").decode()
            return
    raise Fail("self-test: no alertmanager-webhook-tokens Secret")


def mut_bind_cluster_admin(st):
    b = find(st, "ClusterRoleBinding", "organism-health-monitor")
    b.doc["roleRef"]["name"] = "cluster-admin"


def mut_no_limits(st):
    for c in find(st, "StatefulSet", "tempo", MON).doc["spec"]["template"]["spec"]["containers"]:
        (c.get("resources") or {}).pop("limits", None)


def mut_organ_token(st):
    find(st, "Deployment", "heart", APP).doc["spec"]["template"]["spec"]["automountServiceAccountToken"] = True


FAULTS = [
    # (name, check, text the FAIL line must contain, mutation)
    ("unknown field in a Deployment", "schema", "resourcez", mut_unknown_field),
    ("unknown field in a ServiceMonitor", "schema", "intervall", mut_cr_unknown_field),
    ("ServiceMonitor names a port the Service lacks", "monitors", "'metrics' is not a port name", mut_monitor_port),
    ("ServiceMonitor selects no Service", "monitors", "matches no rendered Service", mut_monitor_selector),
    ("PrometheusRule label Prometheus does not select", "selectors", "PrometheusRule organism/organism", mut_release_label),
    ("OTLP endpoint to a Service that does not exist", "urls", "no Service monitoring/otel-collector",
     lambda st: mut_env(st, "heart", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.monitoring.svc.cluster.local:4317")),
    ("Prometheus URL on a wrong port", "urls", "has no port 9091",
     lambda st: mut_env(st, "health-monitor", "PROMETHEUS_URL", "http://kube-prometheus-stack-prometheus.monitoring.svc:9091")),
    ("Alertmanager webhook to a wrong Service", "urls", "no Service organism/autohealer",
     lambda st: mut_secret_am(st, "auto-healer.organism.svc:8085", "autohealer.organism.svc:8085")),
    ("collector exports to Tempo on a wrong port", "urls", "Service monitoring/tempo has no port 4319",
     lambda st: replace_in_cm(st, "opentelemetry-collector", MON, "tempo.monitoring.svc:4317", "tempo.monitoring.svc:4319")),
    ("Grafana datasource URL to a missing Service", "urls", "no Service monitoring/lokii",
     lambda st: [replace_in_cm(st, o.name, MON, "loki.monitoring.svc:3100", "lokii.monitoring.svc:3100")
                 for o in st.of("ConfigMap") if "grafana_datasource" in ((o.doc.get("metadata") or {}).get("labels") or {})
                 and "loki.monitoring.svc:3100" in json.dumps(o.doc.get("data"))]),
    ("prometheus-adapter queries a wrong Prometheus", "urls", "no Service monitoring/prometheus",
     lambda st: [c["args"].__setitem__(i, a.replace("kube-prometheus-stack-prometheus.monitoring", "prometheus.monitoring"))
                 for c in find(st, "Deployment", "prometheus-adapter", MON).doc["spec"]["template"]["spec"]["containers"]
                 for i, a in enumerate(c.get("args") or [])]),
    ("alert-service's SMTP port is not mailpit's", "urls", "host mailpit.monitoring.svc port 2525",
     lambda st: replace_in_cm(st, "alert-service-config", APP, "port: 1025", "port: 2525")),
    ("dashboard panel names a missing datasource UID", "grafana", "'no-such-datasource'", mut_dashboard_uid),
    ("Loki derived field links to a missing datasource", "grafana", "'jaeger'", mut_datasource_xlink),
    ("HPA metric no adapter rule produces", "hpa", "heart_beats_per_minute", mut_hpa_metric),
    ("postgres accepts the gateway", "netpol", "forbidden flow organism/api-gateway -> organism/postgres", mut_netpol_gateway_db),
    ("DNS egress policy dropped", "netpol", "DNS", mut_netpol_no_dns),
    ("heart may reach 0.0.0.0/0:443 (the API server)", "netpol", "forbidden flow organism/heart -> 10.96.0.1:443", mut_netpol_api_wide),
    ("auto-healer webhook closed to Alertmanager", "netpol", "Alertmanager webhook -> auto-healer", mut_netpol_webhook),
    ("default deny removed", "netpol", "no default-deny", mut_netpol_default_deny),
    ("cluster-wide Deployment patch for the auto-healer", "rbac", "cluster-wide workload write patch apps/deployments", mut_rbac_cluster_write),
    ("health-monitor reads Secrets", "rbac", "reads Secrets", mut_rbac_secret),
    ("auto-healer ConfigMap writes without resourceNames", "rbac", "not limited by resourceNames", mut_rbac_cm_any),
    ("health-monitor granted a kind it does not watch", "rbac", "list apps/replicasets", mut_rbac_unused),
    ("Grafana sidecar reads Secrets", "rbac", "reads Secrets", mut_grafana_secrets),
    ("heart mounts a ServiceAccount token", "rbac", "Deployment organism/heart [organism/organism]: mounts a ServiceAccount token", mut_organ_token),
    ("health-monitor bound to cluster-admin", "rbac", "binds ClusterRole cluster-admin", mut_bind_cluster_admin),
    ("Grafana sidecar searches every namespace", "rbac", "NAMESPACE='ALL'", mut_grafana_all_ns),
    ("tempo without limits", "resources", "StatefulSet monitoring/tempo [monitoring/tempo] container tempo: no limits.memory", mut_no_limits),
    ("chaos token reference made optional", "tokens", "CHAOS_TOKEN is an optional secret reference", mut_token_optional),
    ("Alertmanager reads a token key the Secret lacks", "tokens", "has no key autohealer", mut_am_token_key),
    ("Alertmanager's token differs from alert-service's", "tokens", "holds another token than alert-service", mut_am_token_value),
]


def self_test(render: Path, shared: Path | None) -> int:
    import time
    t0 = time.time()
    base = load_stack(render, shared)
    r = Report(quiet=True)
    run_checks(base, list(CHECKS), r)
    if r.failed():
        for line in r.failed():
            print(f"  BROKEN baseline: {line}")
        print("self-test: the clean render fails, injected faults would prove nothing")
        return 1
    print("  ok      clean render passes every check")
    caught = 0
    for name, check, text, mutate in FAULTS:
        # CRDs are large and only read: share them, copy everything a fault can touch
        st = Stack([o if o.kind == "CustomResourceDefinition" else Obj(o.release, copy.deepcopy(o.doc))
                    for o in base.objs], base.index, base.shared)
        try:
            mutate(st)
        except Fail as e:
            print(f"  MISSED  {name}: could not inject ({e})")
            continue
        rr = Report(quiet=True)
        run_checks(st, [check], rr)
        hits = [line for line in rr.failed(check) if text in line]
        if hits:
            caught += 1
            print(f"  caught  {name}\n          by {check}: {hits[0][:220]}")
        else:
            print(f"  MISSED  {name}: {check} did not report {text!r} (failures: {rr.failed(check)[:3]})")
    print(f"self-test: {caught}/{len(FAULTS)} injected faults caught ({time.time() - t0:.1f} s)")
    return 0 if caught == len(FAULTS) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--render", type=Path, required=True)
    ap.add_argument("--shared", type=Path)
    ap.add_argument("--only", default="")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test(a.render, a.shared)
    names = [n for n in a.only.split(",") if n] or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"unknown checks: {unknown}; known: {list(CHECKS)}", file=sys.stderr)
        return 2
    st = load_stack(a.render, a.shared)
    r = Report()
    run_checks(st, names, r)
    bad = r.failed()
    print(f"verify: {len(names)} checks, {len(bad)} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
