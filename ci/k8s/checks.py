#!/usr/bin/env python3
"""Checks on a rendered chart, for ci/k8s/validate.sh.

Subcommands (each prints what it checked and exits non-zero on any finding):
  split RENDER OUTDIR             parse the render (duplicate keys are errors), write
                                  OUTDIR/builtin.yaml and OUTDIR/custom.yaml
  crds SCHEMA_DIR RENDER...       validate custom resources against the CRD openAPIV3Schemas,
                                  unknown fields rejected (as the API server prunes/rejects them)
  rules-extract RENDER SOURCE OUT write the rendered PrometheusRule's groups to OUT as a plain
                                  rule file and check they equal SOURCE's groups
  rules-lint RULES TESTS OUT      rule metadata (severity, annotations, remediation) and test
                                  coverage: every alert has a firing and a silent case; writes a
                                  copy of TESTS to OUT that loads RULES
  policy RENDER...                security and operability policy on every workload and RBAC rule
  contracts ROOT CHART_DIR        services and ports agree between docs/CONTRACTS.md, the chart's
                                  values, docker/Dockerfile and kind-config.yaml
  mutate FAULT CHART_DIR          self-test: inject one fault into a copy of the chart
"""
from __future__ import annotations

import copy
import json
import os
import re
import sys
from pathlib import Path

import yaml

# --------------------------------------------------------------------------- loading


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (the API server would keep only one)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") \
                or not (d.get("metadata") or {}).get("name"):
            raise SystemExit(f"render: object without apiVersion/kind/metadata.name: {str(d)[:200]}")
    return docs


def ref(d: dict) -> str:
    md = d.get("metadata") or {}
    ns = md.get("namespace")
    return f"{d['kind']}/{(ns + '/') if ns else ''}{md.get('name')}"


BUILTIN_GROUPS = {"", "v1", "apps", "batch", "autoscaling", "policy", "networking.k8s.io",
                  "rbac.authorization.k8s.io", "coordination.k8s.io", "storage.k8s.io",
                  "discovery.k8s.io", "events.k8s.io", "scheduling.k8s.io"}


def api_group(d: dict) -> str:
    av = d["apiVersion"]
    return av.split("/")[0] if "/" in av else ""


def is_builtin(d: dict) -> bool:
    return api_group(d) in BUILTIN_GROUPS


# --------------------------------------------------------------------------- split


def cmd_split(render: str, outdir: str) -> int:
    docs = load_docs(render)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    builtin = [d for d in docs if is_builtin(d)]
    custom = [d for d in docs if not is_builtin(d)]
    (out / "builtin.yaml").write_text(yaml.safe_dump_all(builtin, sort_keys=False))
    (out / "custom.yaml").write_text(yaml.safe_dump_all(custom, sort_keys=False))
    kinds: dict[str, int] = {}
    for d in docs:
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    names = [ref(d) for d in docs]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        print(f"render: objects rendered twice: {', '.join(dups)}")
        return 1
    print(f"render: {len(docs)} objects ({len(builtin)} built-in, {len(custom)} custom): "
          + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())))
    return 0


# --------------------------------------------------------------------------- CRDs


def strictify(schema):
    """openAPIV3Schema -> JSON Schema that rejects unknown fields wherever the schema lists
    properties and does not say x-kubernetes-preserve-unknown-fields (structural schemas prune
    those fields on the server), and understands nullable and int-or-string."""
    if isinstance(schema, dict):
        for k, v in list(schema.items()):
            if k in ("properties", "patternProperties"):
                for sub in v.values():
                    strictify(sub)
            elif k in ("items", "additionalProperties", "not") and isinstance(v, dict):
                strictify(v)
            elif k in ("allOf", "anyOf", "oneOf") and isinstance(v, list):
                for sub in v:
                    strictify(sub)
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        if schema.get("x-kubernetes-int-or-string"):
            schema.pop("type", None)
            schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if schema.get("nullable") and isinstance(schema.get("type"), str):
            schema["type"] = [schema["type"], "null"]
    return schema


def cmd_crds(schema_dir: str, *renders: str) -> int:
    import jsonschema

    docs = [d for r in renders for d in load_docs(r) if not is_builtin(d)]
    sdir = Path(schema_dir)
    validators: dict[str, object] = {}
    failures = 0
    counts: dict[str, int] = {}
    for d in docs:
        group = api_group(d)
        version = d["apiVersion"].split("/")[-1]
        fname = f"{d['kind'].lower()}-{group.split('.')[0]}-{version}.json"
        path = sdir / fname
        if not path.exists():
            print(f"FAIL {ref(d)}: no schema {fname} for {d['apiVersion']} {d['kind']}")
            failures += 1
            continue
        if fname not in validators:
            schema = strictify(json.loads(path.read_text()))
            validators[fname] = jsonschema.Draft7Validator(schema)
        errors = sorted(validators[fname].iter_errors(d), key=lambda e: list(e.absolute_path))
        for e in errors:
            where = ".".join(str(p) for p in e.absolute_path) or "(root)"
            print(f"FAIL {ref(d)}: {where}: {e.message}")
        failures += bool(errors)
        counts[d["kind"]] = counts.get(d["kind"], 0) + 1
    print(f"crd-schema: {len(docs)} custom resources in {len(renders)} renders against {sdir}: "
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
          + f"; {failures} invalid")
    if not docs:
        print("crd-schema: no custom resources rendered (expected ServiceMonitors and a PrometheusRule)")
        return 1
    return 1 if failures else 0


# --------------------------------------------------------------------------- rules


def cmd_rules_extract(render: str, source: str, out: str) -> int:
    rules = [d for d in load_docs(render) if d["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        print(f"rules: expected exactly one PrometheusRule in the render, found {len(rules)}")
        return 1
    groups = rules[0]["spec"]["groups"]
    Path(out).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    with open(source, encoding="utf-8") as f:
        src = yaml.load(f, Loader=StrictLoader)
    if src.get("groups") != groups:
        print(f"rules: the rendered PrometheusRule differs from {source} (the chart must wrap it unchanged)")
        return 1
    n = sum(len(g["rules"]) for g in groups)
    print(f"rules: PrometheusRule {ref(rules[0])} wraps {source} unchanged ({len(groups)} groups, {n} rules)")
    return 0


SEVERITIES = {"critical", "warning", "info"}
REMEDIATIONS = {"restart-pod", "rollout-restart", "rollback", "scale-up", "raise-memory", "cordon-drain", "uncordon", "cleanup"}
# Where the healer must never act (it cannot fix these by acting on our pods).
NO_REMEDIATION = {"BrainLatencyHigh", "UserServiceDatabaseDown"}


def cmd_rules_lint(rules_path: str, tests_path: str, out: str) -> int:
    with open(rules_path, encoding="utf-8") as f:
        rules = yaml.load(f, Loader=StrictLoader)
    with open(tests_path, encoding="utf-8") as f:
        tests = yaml.load(f, Loader=StrictLoader)
    problems = []
    alerts = []
    for g in rules["groups"]:
        for r in g["rules"]:
            if "alert" not in r:
                continue
            name = r["alert"]
            alerts.append(name)
            labels = r.get("labels") or {}
            ann = r.get("annotations") or {}
            if labels.get("severity") not in SEVERITIES:
                problems.append(f"{name}: severity label must be one of {sorted(SEVERITIES)}")
            if not labels.get("service"):
                problems.append(f"{name}: no service label")
            for a in ("summary", "description", "runbook_url"):
                if not ann.get(a):
                    problems.append(f"{name}: no {a} annotation")
            rem = labels.get("remediation")
            if rem is not None and rem not in REMEDIATIONS:
                problems.append(f"{name}: remediation {rem!r} is not one of {sorted(REMEDIATIONS)}")
            if rem is not None and (name in NO_REMEDIATION or labels.get("dependency")):
                problems.append(f"{name}: must not carry a remediation label (the healer cannot fix it)")
            if not r.get("for"):
                problems.append(f"{name}: no `for:` duration")
    dup = sorted({a for a in alerts if alerts.count(a) > 1})
    if dup:
        problems.append(f"alerts defined twice: {dup}")

    firing: dict[str, int] = {}
    silent: dict[str, int] = {}
    for t in tests.get("tests") or []:
        for a in t.get("alert_rule_test") or []:
            exp = a.get("exp_alerts") or []
            if exp:
                firing[a["alertname"]] = firing.get(a["alertname"], 0) + 1
                for e in exp:
                    if not e.get("exp_annotations"):
                        problems.append(f"{a['alertname']}: a firing case without exp_annotations")
            else:
                silent[a["alertname"]] = silent.get(a["alertname"], 0) + 1
    for name in alerts:
        if name not in firing:
            problems.append(f"{name}: no test case in which it fires")
        if name not in silent:
            problems.append(f"{name}: no test case in which it stays silent")
    for name in sorted(set(firing) | set(silent)):
        if name not in alerts:
            problems.append(f"{name}: tested but not defined")

    tests = copy.deepcopy(tests)
    tests["rule_files"] = [os.path.abspath(rules_path)]
    Path(out).write_text(yaml.safe_dump(tests, sort_keys=False))

    for p in problems:
        print(f"FAIL {p}")
    print(f"rules-lint: {len(alerts)} alerts; test cases firing {sum(firing.values())}, "
          f"silent {sum(silent.values())}; {len(problems)} problems")
    return 1 if problems else 0


# --------------------------------------------------------------------------- policy

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
NEEDS_PROBES = {"Deployment", "StatefulSet", "DaemonSet"}


def pod_spec(d: dict) -> dict:
    if d["kind"] == "Pod":
        return d.get("spec") or {}
    if d["kind"] == "CronJob":
        return d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return d["spec"]["template"]["spec"]


def check_workload(d: dict) -> list[str]:
    out = []
    spec = pod_spec(d)
    psc = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            out.append(f"{ref(d)}: {flag} is true")
    for v in spec.get("volumes") or []:
        if "hostPath" in v:
            out.append(f"{ref(d)}: hostPath volume {v.get('name')}")
    groups = [("container", spec.get("containers") or []),
              ("initContainer", spec.get("initContainers") or [])]
    for label, containers in groups:
        for c in containers:
            where = f"{ref(d)} {label} {c.get('name')}"
            sc = c.get("securityContext") or {}
            non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            if non_root is not True:
                out.append(f"{where}: runAsNonRoot is not true")
            if uid == 0:
                out.append(f"{where}: runAsUser is 0 (root)")
            if sc.get("privileged"):
                out.append(f"{where}: privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                out.append(f"{where}: readOnlyRootFilesystem is not true")
            caps = sc.get("capabilities") or {}
            if caps.get("add"):
                out.append(f"{where}: adds capabilities {caps['add']}")
            if "ALL" not in (caps.get("drop") or []):
                out.append(f"{where}: does not drop ALL capabilities")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                out.append(f"{where}: seccompProfile is not RuntimeDefault/Localhost")
            image = c.get("image") or ""
            if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1]
                                            or image.endswith(":latest")):
                out.append(f"{where}: image {image!r} is not pinned (no tag, or :latest)")
            if label == "container" and d["kind"] in NEEDS_PROBES:
                for probe in ("livenessProbe", "readinessProbe"):
                    if not c.get(probe):
                        out.append(f"{where}: no {probe}")
                res = c.get("resources") or {}
                for kind in ("limits", "requests"):
                    for r in ("cpu", "memory"):
                        if not (res.get(kind) or {}).get(r):
                            out.append(f"{where}: no resources.{kind}.{r}")
    return out


def check_rbac(d: dict) -> list[str]:
    out = []
    for i, rule in enumerate(d.get("rules") or []):
        for field in ("verbs", "resources", "apiGroups", "nonResourceURLs", "resourceNames"):
            vals = rule.get(field) or []
            if any("*" in str(v) for v in vals):
                out.append(f"{ref(d)}: rules[{i}].{field} contains a wildcard: {vals}")
    return out


def cmd_policy(*renders: str) -> int:
    docs = [d for r in renders for d in load_docs(r)]
    problems = []
    n_containers = n_rbac = 0
    for d in docs:
        if d["kind"] in WORKLOADS:
            problems += check_workload(d)
            spec = pod_spec(d)
            n_containers += len(spec.get("containers") or []) + len(spec.get("initContainers") or [])
        elif d["kind"] in ("Role", "ClusterRole"):
            problems += check_rbac(d)
            n_rbac += len(d.get("rules") or [])
    for p in problems:
        print(f"FAIL {p}")
    print(f"policy: {n_containers} containers, {n_rbac} RBAC rules in {len(renders)} renders; "
          f"{len(problems)} violations")
    return 1 if problems else 0


# --------------------------------------------------------------------------- contracts


def cmd_contracts(root: str, chart: str) -> int:
    r = Path(root)
    problems = []
    contracts = (r / "docs/CONTRACTS.md").read_text()
    table = dict(re.findall(r"^\|\s*([a-z][a-z-]+)\s*\|\s*(\d{4,5})\s*\|\s*$", contracts, re.M))
    if len(table) < 7:
        problems.append(f"docs/CONTRACTS.md: expected the services/ports table, parsed {table}")
    values = yaml.load((Path(chart) / "values.yaml").read_text(), Loader=StrictLoader)
    chart_ports = {k: str(v.get("port")) for k, v in values["services"].items()}
    if chart_ports != table:
        problems.append(f"chart services/ports {chart_ports} != docs/CONTRACTS.md {table}")
    m = re.search(r'^ARG SERVICES="([^"]*)"', (r / "docker/Dockerfile").read_text(), re.M)
    image = set(m.group(1).split()) if m else set()
    if image != set(table):
        problems.append(f"docker/Dockerfile SERVICES {sorted(image)} != {sorted(table)}")
    ignore = (r / ".dockerignore").read_text().split()
    if not any(line.strip("/*") == "target" for line in ignore):
        problems.append(".dockerignore does not exclude target/")
    kind = yaml.load((r / "kind-config.yaml").read_text(), Loader=StrictLoader)
    roles = [n["role"] for n in kind["nodes"]]
    if roles.count("control-plane") != 1 or roles.count("worker") != 2:
        problems.append(f"kind-config.yaml: nodes {roles}, want 1 control-plane + 2 workers")
    mappings = {m["containerPort"]: m["hostPort"] for n in kind["nodes"]
                for m in n.get("extraPortMappings") or []}
    gw = values["services"]["api-gateway"]["service"]
    want = {gw["nodePort"]: 8080, 30300: 3000, 30090: 9090, 30093: 9093}
    for node_port, host_port in want.items():
        if mappings.get(node_port) != host_port:
            problems.append(f"kind-config.yaml: NodePort {node_port} is not mapped to localhost:{host_port}")
    for p in problems:
        print(f"FAIL {p}")
    print(f"contracts: {len(table)} services/ports agree across CONTRACTS.md, values, Dockerfile; "
          f"kind maps {len(mappings)} NodePorts; {len(problems)} problems")
    return 1 if problems else 0


# --------------------------------------------------------------------------- self-test faults


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise SystemExit(f"mutate: anchor {old!r} not found in {path}")
    path.write_text(text.replace(old, new, 1))


def cmd_mutate(fault: str, chart: str) -> int:
    c = Path(chart)
    if fault == "broken-rule-expr":
        # A PromQL syntax error in one rule of the plain rule file.
        p = c / "files/prometheus-rules.yaml"
        doc = yaml.safe_load(p.read_text())
        doc["groups"][0]["rules"][0]["expr"] = 'sum(rate(heart_beats_total{job="heart"}[2m]) == 0'
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
    elif fault == "unknown-deployment-field":
        # A misspelt pod spec field (shareProcessNamespace) in the Deployment template.
        _edit(c / "templates/deployments.yaml", "      enableServiceLinks: false\n",
              "      enableServiceLinks: false\n      shareProcessNamespaces: true\n")
    elif fault == "insecure-container":
        # Someone "fixes" a permission problem by running heart privileged, as root.
        p = c / "values.yaml"
        values = yaml.safe_load(p.read_text())
        values["services"]["heart"]["securityContext"] = {
            "privileged": True, "runAsUser": 0, "runAsNonRoot": False,
            "allowPrivilegeEscalation": True}
        p.write_text(yaml.safe_dump(values, sort_keys=False))
    elif fault == "rbac-wildcard":
        # A catch-all rule appended to the rendered ClusterRoles (the values schema forbids "*").
        _edit(c / "templates/rbac.yaml", "  {{- toYaml .clusterRules | nindent 2 }}\n",
              "  {{- toYaml .clusterRules | nindent 2 }}\n"
              "  - apiGroups: [\"*\"]\n    resources: [\"*\"]\n    verbs: [\"*\"]\n")
    elif fault == "untested-alert":
        # A new alert nobody wrote a test for.
        p = c / "files/prometheus-rules.yaml"
        doc = yaml.safe_load(p.read_text())
        doc["groups"][0]["rules"].append({
            "alert": "HeartTooFast", "expr": 'sum(rate(heart_beats_total{job="heart"}[2m])) > 1000',
            "for": "1m", "labels": {"severity": "info", "service": "heart"},
            "annotations": {"summary": "fast", "description": "fast",
                            "runbook_url": "https://example.invalid/#hearttoofast"}})
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
    elif fault == "weakened-rule":
        # The gateway error-ratio threshold raised so far that the alert can no longer fire.
        _edit(c / "files/prometheus-rules.yaml", "          > 0.05\n", "          > 0.95\n")
    elif fault == "missing-probe":
        # The readiness probe dropped from the Deployment template.
        _edit(c / "templates/deployments.yaml",
              "          readinessProbe:\n"
              "            httpGet:\n"
              "              path: {{ .readiness.path }}\n"
              "              port: http\n"
              "            periodSeconds: {{ .readiness.periodSeconds }}\n"
              "            timeoutSeconds: {{ .readiness.timeoutSeconds }}\n"
              "            failureThreshold: {{ .readiness.failureThreshold }}\n", "")
    elif fault == "unknown-service-value":
        # A values key that is no service of docs/CONTRACTS.md (typo): values.schema.json says no.
        p = c / "values.yaml"
        values = yaml.safe_load(p.read_text())
        values["services"]["hearts"] = copy.deepcopy(values["services"]["heart"])
        p.write_text(yaml.safe_dump(values, sort_keys=False))
    else:
        raise SystemExit(f"mutate: unknown fault {fault}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    table = {
        "split": cmd_split, "crds": cmd_crds, "rules-extract": cmd_rules_extract,
        "rules-lint": cmd_rules_lint, "policy": cmd_policy, "contracts": cmd_contracts,
        "mutate": cmd_mutate,
    }
    if cmd not in table:
        print(__doc__)
        return 2
    try:
        return table[cmd](*args)
    except (yaml.YAMLError, KeyError, TypeError) as e:
        print(f"{cmd}: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
