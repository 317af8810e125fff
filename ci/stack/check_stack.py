#!/usr/bin/env python3
"""Offline checks of the observability stack: helmfile.yaml, k8s/values/, k8s/dashboards/.

Run through ci/stack/validate.sh, which installs the tools (amtool, prometheus-alertmanager,
promtool, helm, helmfile, yamllint, jsonschema). Every check prints PASS, FAIL or SKIP lines;
the exit status is 1 when any check failed.

    check_stack.py --root REPO [--shared ../shared] [--budget-table]
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

# ----------------------------------------------------------------------------- reporting


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []  # (status, check, detail)

    def ok(self, check: str, detail: str = "") -> None:
        self.rows.append(("PASS", check, detail))
        print(f"PASS  {check}" + (f": {detail}" if detail else ""), flush=True)

    def fail(self, check: str, detail: str) -> None:
        self.rows.append(("FAIL", check, detail))
        print(f"FAIL  {check}: {detail}", flush=True)

    def skip(self, check: str, detail: str) -> None:
        self.rows.append(("SKIP", check, detail))
        print(f"SKIP  {check}: {detail}", flush=True)

    def note(self, text: str) -> None:
        print(f"      {text}", flush=True)

    def outcome(self, check: str, problems: list[str], ok: str, failed: str = "") -> None:
        """PASS with `ok` when `problems` is empty, else each problem as a note and FAIL with
        `failed` (default: how many problems)."""
        if not problems:
            self.ok(check, ok)
            return
        for p in problems:
            self.note(p)
        self.fail(check, failed or f"{len(problems)} problem(s)")

    @property
    def failed(self) -> bool:
        return any(s == "FAIL" for s, _, _ in self.rows)


# ----------------------------------------------------------------------------- helpers


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def helm_merge(defaults, overrides):
    """Values the way helm coalesces them: maps merge, null deletes, anything else replaces."""
    if not isinstance(defaults, dict) or not isinstance(overrides, dict):
        return copy.deepcopy(overrides)
    out = copy.deepcopy(defaults)
    for k, v in overrides.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = helm_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def strip_nulls(values):
    """Our values alone, as helm would see them without chart defaults (null = absent)."""
    if isinstance(values, dict):
        return {k: strip_nulls(v) for k, v in values.items() if v is not None}
    return values


def get_path(values, path: str, sep: str = "/"):
    cur = values
    for part in path.split(sep):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def glob_match(pattern: list[str], path: list[str]) -> bool:
    """Segment glob: '*' one key (fnmatch within it), '**' any number of keys. A pattern
    matches a path when it matches the path or a prefix of it (everything below is free)."""
    if not pattern:
        return True
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(glob_match(rest, path[i:]) for i in range(len(path) + 1))
    if not path:
        return False
    return fnmatch.fnmatchcase(path[0], head) and glob_match(rest, path[1:])


def mib(quantity) -> float:
    """Kubernetes memory quantity -> MiB."""
    s = str(quantity).strip()
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024,
             "k": 1000 / 1048576, "M": 1e6 / 1048576, "G": 1e9 / 1048576, "T": 1e12 / 1048576}
    for u in sorted(units, key=len, reverse=True):
        if s.endswith(u):
            return float(s[: -len(u)]) * units[u]
    return float(s) / 1048576


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ----------------------------------------------------------------------------- context


class Stack:
    def __init__(self, root: Path, shared: Path | None, report: Report) -> None:
        self.root = root
        self.shared = shared if shared and (shared / "charts-values").is_dir() else None
        self.r = report
        self.cfg = load_yaml(root / "ci/stack/stack.yaml")
        self.freeform = load_yaml(root / "ci/stack/freeform.yaml") or {}
        self.helmfile = load_yaml(root / "helmfile.yaml")
        self.releases = {f"{r.get('namespace', 'default')}/{r['name']}": r for r in self.helmfile.get("releases", [])}
        self.tmp = Path(tempfile.mkdtemp(prefix="stack-check-"))

    def by_name(self, name: str) -> dict | None:
        for r in self.releases.values():
            if r["name"] == name:
                return r
        return None

    def values_of(self, name: str) -> dict:
        """Our values for a release: its values files merged in order (nulls kept)."""
        rel = self.by_name(name) or {}
        out: dict = {}
        for v in rel.get("values", []) or []:
            if isinstance(v, str):
                data = load_yaml(self.root / v) or {}
            else:
                data = v
            out = merge_keep_nulls(out, data)
        return out

    def chart_id(self, name: str) -> tuple[str, str] | None:
        rel = self.by_name(name)
        if not rel or "version" not in rel or str(rel["chart"]).startswith("."):
            return None
        return str(rel["chart"]).split("/")[-1], str(rel["version"])

    def defaults_file(self, name: str, suffix: str = "values.yaml") -> Path | None:
        if not self.shared:
            return None
        cid = self.chart_id(name)
        if not cid:
            return None
        p = self.shared / "charts-values" / f"{cid[0]}-{cid[1]}.{suffix}"
        return p if p.is_file() else None

    def effective(self, name: str) -> dict:
        """Values the chart would see: defaults (when available) coalesced with ours."""
        ours = self.values_of(name)
        d = self.defaults_file(name)
        if d:
            return helm_merge(load_yaml(d) or {}, ours)
        return strip_nulls(ours)

    def contracts(self) -> str:
        p = self.root / "docs/CONTRACTS.md"
        return p.read_text(encoding="utf-8") if p.is_file() else ""


def merge_keep_nulls(a, b):
    if not isinstance(a, dict) or not isinstance(b, dict):
        return copy.deepcopy(b)
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_keep_nulls(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# ----------------------------------------------------------------------------- checks


def check_yamllint(st: Stack) -> None:
    files = [st.root / "helmfile.yaml"]
    files += sorted((st.root / "k8s/values").glob("*.yaml"))
    files += sorted((st.root / "ci/stack").glob("*.yaml"))
    files += [p for p in (st.root / "k8s/charts/organism-dashboards/Chart.yaml",
                          st.root / "k8s/charts/organism-dashboards/values.yaml") if p.is_file()]
    cfg_file = next((p for p in (st.root / ".yamllint.yaml", st.root / ".yamllint", st.root / ".yamllint.yml")
                     if p.is_file()), None)
    if cfg_file:
        args = ["-c", str(cfg_file)]
        how = f"config {cfg_file.name}"
    else:
        inline = ("{extends: default, rules: {document-start: disable, line-length: {max: 160}, "
                  "truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}, "
                  "comments-indentation: disable, indentation: {spaces: 2, indent-sequences: consistent}}}")
        args = ["-d", inline]
        how = "inline config (no .yamllint.yaml at the root yet)"
    res = run(["yamllint", "-f", "parsable", *args, *map(str, files)])
    errors = [l for l in res.stdout.splitlines() if "[error]" in l]
    if res.returncode != 0 or errors:
        for line in (errors or res.stdout.splitlines() or res.stderr.splitlines())[:20]:
            st.r.note(line.replace(str(st.root) + "/", ""))
        st.r.fail("yamllint", f"{len(errors) or 'some'} error(s) in {len(files)} files ({how})")
    else:
        warn = len([l for l in res.stdout.splitlines() if "[warning]" in l])
        st.r.ok("yamllint", f"{len(files)} files, {warn} warning(s), {how}")


def check_helmfile(st: Stack) -> None:
    problems: list[str] = []
    hf = st.helmfile
    repos = {r["name"]: r["url"] for r in hf.get("repositories", [])}
    for name, url in st.cfg["repositories"].items():
        if repos.get(name) != url:
            problems.append(f"repository {name} must be {url} (is {repos.get(name)})")
    for want in st.cfg["releases"]:
        key = f"{want['namespace']}/{want['name']}"
        rel = st.releases.get(key)
        if not rel:
            problems.append(f"release {key} missing")
            continue
        if rel.get("chart") != want["chart"]:
            problems.append(f"release {key}: chart {rel.get('chart')} != {want['chart']}")
        if "version" in want and str(rel.get("version")) != str(want["version"]):
            problems.append(f"release {key}: version {rel.get('version')} != {want['version']}")
    for key, rel in st.releases.items():
        chart = str(rel.get("chart", ""))
        if not chart.startswith(".") and not rel.get("version"):
            problems.append(f"release {key}: upstream chart {chart} not pinned")
        if chart.startswith(".") and not (st.root / chart).is_dir():
            if chart != "./k8s/charts/organism":  # the organism chart is another engineer's, may lag
                problems.append(f"release {key}: local chart {chart} missing")
        if chart.split("/")[0] not in repos and not chart.startswith("."):
            problems.append(f"release {key}: repository of {chart} not declared")
        for v in rel.get("values", []) or []:
            if isinstance(v, str) and not (st.root / v).is_file():
                problems.append(f"release {key}: values file {v} missing")
        for need in rel.get("needs", []) or []:
            if need not in st.releases:
                problems.append(f"release {key}: needs {need}, which is not a release (namespace/name)")

    # cycles and the CRD order
    def deps(key: str, seen: tuple = ()) -> set:
        if key in seen:
            problems.append(f"needs cycle: {' -> '.join(seen + (key,))}")
            return set()
        out = set()
        for n in st.releases.get(key, {}).get("needs", []) or []:
            out.add(n)
            out |= deps(n, seen + (key,))
        return out

    crd = st.cfg["crd_release"]
    for key, rel in st.releases.items():
        d = deps(key)
        if key != crd and creates_monitoring_objects(st, rel) and crd not in d:
            problems.append(f"release {key} creates prometheus-operator objects but does not need {crd}")
    st.r.outcome("helmfile", problems, f"{len(st.releases)} releases pinned, values present, needs resolve, CRDs ordered")

    helmfile = shutil.which("helmfile")
    helm3 = shutil.which("helm3")
    if not helmfile or not helm3:
        st.r.skip("helmfile list", "helmfile / helm3 not installed")
        return
    res = run([helmfile, "--helm-binary", helm3, "-f", str(st.root / "helmfile.yaml"), "list", "--output", "json"])
    if res.returncode != 0:
        st.r.fail("helmfile list", (res.stderr or res.stdout).strip().splitlines()[-1] if (res.stderr or res.stdout) else "failed")
    else:
        n = len(json.loads(res.stdout or "[]"))
        st.r.ok("helmfile list", f"helmfile 0.166 parses the state strictly ({n} releases)")


def creates_monitoring_objects(st: Stack, rel: dict) -> bool:
    """ServiceMonitor/PodMonitor/PrometheusRule switched on in the release's values, or a local
    chart whose values enable them."""
    vals = st.values_of(rel["name"])
    chart = str(rel.get("chart", ""))
    if chart.startswith(".") and (st.root / chart / "values.yaml").is_file():
        vals = merge_keep_nulls(load_yaml(st.root / chart / "values.yaml") or {}, vals)

    def walk(x) -> bool:
        if isinstance(x, dict):
            for k, v in x.items():
                if k in ("serviceMonitor", "podMonitor", "prometheusRule") and isinstance(v, dict) and v.get("enabled"):
                    return True
                if walk(v):
                    return True
        return False

    return walk(vals)


def check_keys(st: Stack) -> None:
    if not st.shared:
        st.r.skip("values keys", "../shared/charts-values absent: upstream defaults not available")
        return
    unused_patterns: dict[str, set] = {}
    for key, rel in st.releases.items():
        name = rel["name"]
        cid = st.chart_id(name)
        if not cid:
            continue
        dfile = st.defaults_file(name)
        if not dfile:
            if cid[0] in st.cfg["defaults_required"]:
                st.r.fail(f"values keys {name}", f"no {cid[0]}-{cid[1]}.values.yaml in ../shared/charts-values")
            else:
                st.r.skip(f"values keys {name}", f"no defaults for {cid[0]} {cid[1]} in ../shared/charts-values")
            continue
        defaults = load_yaml(dfile) or {}
        pats = [(p["path"], p["path"].split("/")) for p in st.freeform.get("*", []) + st.freeform.get(cid[0], [])]
        used: set = set()
        unknown: list[str] = []

        def walk(ours, dflt, path):
            """dflt is the chart's default map at this path, or None below an unknown key (then
            only allow-listed leaves pass)."""
            for k, v in ours.items():
                p = path + [str(k)]
                hit = next((raw for raw, pat in pats if glob_match(pat, p)), None)
                if hit:
                    used.add(hit)
                    continue
                known = isinstance(dflt, dict) and k in dflt
                d = dflt[k] if known else None
                if isinstance(v, dict) and v and (not known or isinstance(d, dict) or d is None):
                    walk(v, d if isinstance(d, dict) else None, p)
                elif not known:
                    unknown.append("/".join(p))
                elif isinstance(v, dict) and v and not isinstance(d, dict):
                    unknown.append("/".join(p) + f" (a map where the chart has a {type(d).__name__})")

        walk(st.values_of(name), defaults, [])
        unused_patterns[cid[0]] = {raw for raw, _ in pats if raw not in used and raw in
                                   {p["path"] for p in st.freeform.get(cid[0], [])}}
        if unknown:
            for u in unknown:
                st.r.note(f"{name}: unknown key {u}")
            st.r.fail(f"values keys {name}", f"{len(unknown)} key(s) not in {dfile.name}")
        else:
            st.r.ok(f"values keys {name}", f"every key exists in {dfile.name} or is allow-listed free-form")
    stale = [f"{c}: {p}" for c, ps in unused_patterns.items() for p in sorted(ps)]
    if stale:
        st.r.note("allow-list entries no values file uses (consider removing): " + "; ".join(stale))


def check_schemas(st: Stack) -> None:
    if not st.shared:
        st.r.skip("values schema", "../shared/charts-values absent")
        return
    import jsonschema

    for name in ("loki", "opentelemetry-collector"):
        sfile = st.defaults_file(name, "values.schema.json")
        if not sfile:
            st.r.fail(f"values schema {name}", "no values.schema.json in ../shared/charts-values")
            continue
        schema = json.loads(sfile.read_text(encoding="utf-8"))
        meta = str(schema.get("$schema", ""))
        cls = (jsonschema.Draft202012Validator if "2020-12" in meta else
               jsonschema.Draft201909Validator if "2019-09" in meta else
               jsonschema.Draft7Validator)  # draft-07, or unversioned as helm's validator reads it
        errors = sorted(cls(schema).iter_errors(st.effective(name)), key=lambda e: list(e.absolute_path))
        if errors:
            for e in errors[:15]:
                st.r.note(f"{name}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}")
            st.r.fail(f"values schema {name}", f"{len(errors)} violation(s) of {sfile.name}")
        else:
            st.r.ok(f"values schema {name}", f"defaults + our values validate against {sfile.name}")


# --- collector --------------------------------------------------------------------------

CONNECTOR_TYPES = {  # connector type -> (pipeline type it exports from, pipeline type it receives into)
    "spanmetrics": ("traces", "metrics"),
    "servicegraph": ("traces", "metrics"),
    "count": (None, "metrics"),
    "forward": (None, None),
    "routing": (None, None),
}


def check_collector(st: Stack) -> None:
    vals = st.effective("opentelemetry-collector")
    cfg = vals.get("config") or {}
    svc = cfg.get("service") or {}
    pipelines = svc.get("pipelines") or {}
    problems: list[str] = []
    defined = {kind: set((cfg.get(kind) or {}).keys()) for kind in
               ("receivers", "processors", "exporters", "connectors", "extensions")}
    conn_as_exporter: dict[str, list[str]] = {}
    conn_as_receiver: dict[str, list[str]] = {}
    for pname, p in pipelines.items():
        ptype = pname.split("/")[0]
        if ptype not in ("traces", "metrics", "logs", "profiles"):
            problems.append(f"pipeline {pname}: unknown signal type {ptype}")
        for r in p.get("receivers") or []:
            if r in defined["connectors"]:
                conn_as_receiver.setdefault(r, []).append(pname)
            elif r not in defined["receivers"]:
                problems.append(f"pipeline {pname}: receiver {r} is not defined")
        for x in p.get("processors") or []:
            if x not in defined["processors"]:
                problems.append(f"pipeline {pname}: processor {x} is not defined")
        for e in p.get("exporters") or []:
            if e in defined["connectors"]:
                conn_as_exporter.setdefault(e, []).append(pname)
            elif e not in defined["exporters"]:
                problems.append(f"pipeline {pname}: exporter {e} is not defined")
        procs = p.get("processors") or []
        if not procs or procs[0].split("/")[0] != "memory_limiter":
            problems.append(f"pipeline {pname}: memory_limiter must be the first processor")
        if not any(x.split("/")[0] == "batch" for x in procs):
            problems.append(f"pipeline {pname}: no batch processor")
        if not p.get("receivers") or not p.get("exporters"):
            problems.append(f"pipeline {pname}: needs receivers and exporters")
    for c in defined["connectors"]:
        if c not in conn_as_exporter or c not in conn_as_receiver:
            problems.append(f"connector {c} must be an exporter in one pipeline and a receiver in another "
                            f"(exporter in {conn_as_exporter.get(c, [])}, receiver in {conn_as_receiver.get(c, [])})")
            continue
        kinds = CONNECTOR_TYPES.get(c.split("/")[0])
        if kinds:
            src, dst = kinds
            for pn in conn_as_exporter[c]:
                if src and pn.split("/")[0] != src:
                    problems.append(f"connector {c} consumes {src}, but is an exporter of pipeline {pn}")
            for pn in conn_as_receiver[c]:
                if dst and pn.split("/")[0] != dst:
                    problems.append(f"connector {c} emits {dst}, but is a receiver of pipeline {pn}")
    for e in svc.get("extensions") or []:
        if e not in defined["extensions"]:
            problems.append(f"service extension {e} is not defined")
    # the shape the stack relies on
    otlp = (cfg.get("receivers") or {}).get("otlp") or {}
    if not {"grpc", "http"} <= set((otlp.get("protocols") or {}).keys()):
        problems.append("receiver otlp must accept grpc and http")

    exporters = cfg.get("exporters") or {}

    def used_exporters(signal: str) -> list[str]:
        return [e for pn, p in pipelines.items() if pn.split("/")[0] == signal for e in (p.get("exporters") or [])]

    tempo = [e for e in used_exporters("traces") if e.split("/")[0] in ("otlp", "otlp_grpc")
             and "tempo" in str((exporters.get(e) or {}).get("endpoint", ""))]
    if not tempo:
        problems.append("traces must be exported to Tempo with an otlp exporter")
    loki = [e for e in used_exporters("logs") if e.split("/")[0] in ("otlphttp", "otlp_http")
            and str((exporters.get(e) or {}).get("endpoint", "")).rstrip("/").endswith("/otlp")
            and "loki" in str((exporters.get(e) or {}).get("endpoint", ""))]
    if not loki:
        problems.append("logs must go to Loki's native OTLP endpoint (otlphttp, endpoint .../otlp)")
    for c in ("spanmetrics", "servicegraph"):
        if c not in defined["connectors"]:
            problems.append(f"connector {c} missing")
    if not ((cfg.get("connectors") or {}).get("spanmetrics") or {}).get("exemplars", {}).get("enabled"):
        problems.append("spanmetrics exemplars must be enabled")
    mexp = used_exporters("metrics")
    kps = st.effective("kube-prometheus-stack")
    pspec = ((kps.get("prometheus") or {}).get("prometheusSpec") or {})
    if any(e.split("/")[0] == "prometheusremotewrite" for e in mexp):
        if not pspec.get("enableRemoteWriteReceiver"):
            problems.append("prometheusremotewrite is used but Prometheus' remote-write receiver is off")
    elif any(e.split("/")[0] == "prometheus" for e in mexp):
        pe = next(exporters[e] for e in mexp if e.split("/")[0] == "prometheus")
        if not pe.get("enable_open_metrics"):
            problems.append("prometheus exporter needs enable_open_metrics for exemplars")
    else:
        problems.append("span metrics must reach Prometheus (prometheusremotewrite or prometheus exporter)")
    if "exemplar-storage" not in (pspec.get("enableFeatures") or []):
        problems.append("Prometheus enableFeatures must contain exemplar-storage")
    st.r.outcome("collector pipelines", problems, f"{len(pipelines)} pipelines, {len(defined['connectors'])} connectors wired; "
                 "Tempo, Loki /otlp, remote write with exemplars")


def span_metric_names(st: Stack) -> set[str]:
    cfg = (st.effective("opentelemetry-collector").get("config") or {}).get("connectors") or {}
    names = set()
    sm = cfg.get("spanmetrics")
    if isinstance(sm, dict):
        ns = str(sm.get("namespace", "traces.span.metrics")).replace(".", "_")
        unit = {"s": "seconds", "ms": "milliseconds"}.get(str((sm.get("histogram") or {}).get("unit", "ms")), "milliseconds")
        names |= {f"{ns}_calls_total", f"{ns}_duration_{unit}"}
    if "servicegraph" in cfg:
        for n in ("request_total", "request_failed_total", "request_server_seconds", "request_client_seconds",
                  "unpaired_spans_total", "dropped_spans_total"):
            names.add(f"traces_service_graph_{n}")
    return names


# --- Grafana ----------------------------------------------------------------------------


def grafana_datasources(st: Stack) -> tuple[dict[str, dict], list[str]]:
    """uid -> datasource (as provisioned by kube-prometheus-stack), and problems."""
    g = (st.effective("kube-prometheus-stack").get("grafana") or {})
    ds_cfg = ((g.get("sidecar") or {}).get("datasources") or {})
    out: dict[str, dict] = {}
    problems: list[str] = []
    if ds_cfg.get("enabled", True) and ds_cfg.get("defaultDatasourceEnabled", True):
        uid = ds_cfg.get("uid")
        if not uid:
            problems.append("grafana.sidecar.datasources.uid (Prometheus) must be fixed")
        else:
            ex = ds_cfg.get("exemplarTraceIdDestinations") or {}
            jd = {}
            if ex:
                jd["exemplarTraceIdDestinations"] = [{"datasourceUid": ex.get("datasourceUid"),
                                                      "name": ex.get("traceIdLabelName")}]
            out[uid] = {"name": ds_cfg.get("name", "Prometheus"), "type": "prometheus", "uid": uid, "jsonData": jd}
        am = ds_cfg.get("alertmanager") or {}
        if am.get("enabled"):
            out[am.get("uid", "alertmanager")] = {"name": am.get("name"), "type": "alertmanager", "uid": am.get("uid")}
    for ds in g.get("additionalDataSources") or []:
        if not ds.get("uid"):
            problems.append(f"datasource {ds.get('name')} has no fixed uid")
            continue
        if ds["uid"] in out:
            problems.append(f"datasource uid {ds['uid']} provisioned twice")
        out[ds["uid"]] = ds
    return out, problems


def check_datasources(st: Stack) -> None:
    dss, problems = grafana_datasources(st)
    want = st.cfg["grafana"]["datasource_uids"]
    for uid in want:
        if uid not in dss:
            problems.append(f"datasource uid {uid} is not provisioned")

    def ref(where: str, uid) -> None:
        if uid not in dss:
            problems.append(f"{where} points at datasource uid {uid!r}, which is not provisioned")

    def jd(uid: str) -> dict:
        return (dss.get(uid) or {}).get("jsonData") or {}

    by_type = {d.get("type"): u for u, d in dss.items()}
    prom, loki, tempo = by_type.get("prometheus"), by_type.get("loki"), by_type.get("tempo")
    if prom:
        ex = jd(prom).get("exemplarTraceIdDestinations") or []
        if not ex or not ex[0].get("name"):
            problems.append("Prometheus: exemplarTraceIdDestinations (to Tempo) missing")
        for e in ex:
            ref("Prometheus exemplarTraceIdDestinations", e.get("datasourceUid"))
            if dss.get(e.get("datasourceUid"), {}).get("type") != "tempo":
                problems.append("Prometheus exemplars must open traces in Tempo")
    if loki:
        dfs = jd(loki).get("derivedFields") or []
        if not any(d.get("matcherRegex") == "trace_id" or "trace_id" in str(d.get("matcherRegex")) for d in dfs):
            problems.append("Loki: a derivedField for trace_id is missing")
        for d in dfs:
            ref(f"Loki derivedField {d.get('name')}", d.get("datasourceUid"))
            if "${" in str(d.get("url", "")) and "$${" not in str(d.get("url", "")):
                problems.append(f"Loki derivedField {d.get('name')}: write $${{...}} (Grafana expands ${{...}} from env)")
    if tempo:
        t = jd(tempo)
        for k, typ in (("tracesToLogsV2", "loki"), ("tracesToMetrics", "prometheus"), ("serviceMap", "prometheus"),
                       ("lokiSearch", "loki")):
            uid = (t.get(k) or {}).get("datasourceUid")
            if not uid:
                problems.append(f"Tempo: {k} missing")
                continue
            ref(f"Tempo {k}", uid)
            if dss.get(uid, {}).get("type") != typ:
                problems.append(f"Tempo {k} must point at a {typ} datasource")
        if not (t.get("nodeGraph") or {}).get("enabled"):
            problems.append("Tempo: nodeGraph must be enabled")
        q = str((t.get("tracesToLogsV2") or {}).get("query", ""))
        if q and ("${" in q.replace("$${", "")):
            problems.append("Tempo tracesToLogsV2 query: write $${...} for Grafana variables")
        known = span_metric_names(st)
        for qd in (t.get("tracesToMetrics") or {}).get("queries") or []:
            for m in metric_names(str(qd.get("query", "")).replace("$$", "$")):
                if histogram_base(m) not in known:
                    problems.append(f"Tempo tracesToMetrics query {qd.get('name')!r} uses {m}, which the collector does not produce")
    st.r.outcome("grafana datasources", problems, "fixed UIDs " + ", ".join(sorted(dss)) + "; exemplars, derived fields, trace links resolve")


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                   "offset", "atan2", "inf", "nan", "le"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (strings, label matchers, grouping lists, ranges and
    function names removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s):
        if m.group(2) or m.group(1).lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group(1))
    return names


def histogram_base(name: str) -> str:
    return re.sub(r"_(bucket|count|sum)$", "", name)


def contract_metrics(st: Stack) -> set[str]:
    text = st.contracts()
    sec = re.search(r"^## Metrics.*?(?=^## )", text, re.S | re.M)
    body = sec.group(0) if sec else ""
    return set(re.findall(r"`([a-z_:][a-z0-9_:]*)(?:\{[^`]*\})?`", body))


def dashboard_targets(dash: dict):
    """(panel title, target) for every query target, rows' nested panels included."""
    def panels(ps):
        for p in ps or []:
            yield p
            yield from panels(p.get("panels"))
    for p in panels(dash.get("panels")):
        for t in p.get("targets") or []:
            yield p, t


def check_dashboards(st: Stack) -> None:
    ddir = st.root / "k8s/dashboards"
    files = sorted(ddir.glob("*.json"))
    dss, _ = grafana_datasources(st)
    names = {d.get("name"): u for u, d in dss.items() if d.get("name")}
    builtin = set(st.cfg["grafana"]["builtin_uids"])
    known = contract_metrics(st) | set(st.cfg["external_metrics"]) | span_metric_names(st)
    problems: list[str] = []
    uids, titles = {}, {}
    exprs: list[tuple[str, str, str]] = []  # (file, panel, expr)
    if not files:
        problems.append("no dashboards under k8s/dashboards")
    for f in files:
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            problems.append(f"{f.name}: invalid JSON: {e}")
            continue
        if not isinstance(d, dict) or not d.get("uid") or not d.get("title") or "panels" not in d:
            problems.append(f"{f.name}: not a dashboard (uid, title, panels)")
            continue
        for seen, key in ((uids, "uid"), (titles, "title")):
            if d[key] in seen:
                problems.append(f"{f.name}: {key} {d[key]!r} also used by {seen[d[key]]}")
            seen[d[key]] = f.name
        variables = {v.get("name") for v in (d.get("templating") or {}).get("list", [])}

        def check_ds(where: str, ds) -> None:
            if ds is None:
                return
            if isinstance(ds, str):
                if ds.startswith("$") and ds.strip("${}") in variables:
                    return
                if ds not in names and ds not in builtin:
                    problems.append(f"{f.name}: {where}: datasource {ds!r} is not provisioned")
                return
            uid = ds.get("uid")
            if uid is None or (isinstance(uid, str) and uid.startswith("$") and uid.strip("${}") in variables):
                return
            if uid not in dss and uid not in builtin:
                problems.append(f"{f.name}: {where}: datasource uid {uid!r} is not provisioned")

        def walk(x, where):
            if isinstance(x, dict):
                for k, v in x.items():
                    if k == "datasource":
                        check_ds(where, v)
                    else:
                        walk(v, f"{where}/{k}" if not isinstance(v, (str, int, float, bool)) else where)
            elif isinstance(x, list):
                for i, v in enumerate(x):
                    title = v.get("title") if isinstance(v, dict) else None
                    walk(v, f"{where}[{title or i}]")

        walk(d, f.stem)
        for p, t in dashboard_targets(d):
            ds = t.get("datasource") or p.get("datasource") or {}
            dtype = ds.get("type") if isinstance(ds, dict) else dss.get(names.get(ds, ""), {}).get("type")
            if dtype == "prometheus" and t.get("expr"):
                exprs.append((f.name, p.get("title", "?"), t["expr"]))
        text = json.dumps([t.get("expr", "") for _, t in dashboard_targets(d)])
        for needle in (st.cfg.get("dashboards") or {}).get(f.name, []):
            if needle.replace('"', '\\"') not in text:
                problems.append(f"{f.name}: must query {needle}")
    for want in (st.cfg.get("dashboards") or {}):
        if not (ddir / want).is_file():
            problems.append(f"dashboard {want} missing")
    for fname, panel, expr in exprs:
        for m in metric_names(expr):
            if m not in known and histogram_base(m) not in known:
                problems.append(f"{fname}: panel {panel!r}: metric {m} is not in docs/CONTRACTS.md, "
                                "the collector's span metrics or external_metrics")
    problems += promql_syntax(st, exprs)
    st.r.outcome("dashboards", problems, f"{len(files)} dashboards: JSON, unique uids, datasource UIDs provisioned, "
                 f"{len(exprs)} PromQL queries parse (promtool) and use known metrics",
                 f"{len(problems)} problem(s) in {len(files)} dashboards")


def promql_syntax(st: Stack, exprs) -> list[str]:
    if not shutil.which("promtool"):
        return ["promtool not installed: PromQL not checked"]
    groups = []
    for i, (fname, panel, expr) in enumerate(exprs):
        e = re.sub(r"\$\{?__(rate_interval|interval|range)(_ms|_s)?\}?", "5m", expr)
        e = re.sub(r"\$\{?(\w+)(:\w+)?\}?", "x", e)
        groups.append({"name": f"{i}: {fname} / {panel}", "rules": [{"record": f"dashboard:query:{i}", "expr": e}]})
    f = st.tmp / "dashboard-queries.rules.yaml"
    f.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    res = run(["promtool", "check", "rules", str(f)])
    if res.returncode != 0:
        return [f"PromQL: {l.strip()}" for l in (res.stderr + res.stdout).splitlines()
                if "group" in l or "parse" in l or "error" in l.lower()][:10] or ["promtool check rules failed"]
    return []


def check_dashboard_chart(st: Stack) -> None:
    chart = st.root / "k8s/charts/organism-dashboards"
    helm = shutil.which("helm")
    if not chart.is_dir():
        st.r.fail("dashboard ConfigMaps", "k8s/charts/organism-dashboards missing")
        return
    if not helm:
        st.r.skip("dashboard ConfigMaps", "helm not installed")
        return
    res = run([helm, "template", "organism-dashboards", str(chart), "--namespace", "monitoring"])
    if res.returncode != 0:
        st.r.fail("dashboard ConfigMaps", f"helm template failed: {res.stderr.strip()[-300:]}")
        return
    g = st.effective("kube-prometheus-stack").get("grafana") or {}
    sc = (g.get("sidecar") or {}).get("dashboards") or {}
    label, value = sc.get("label", "grafana_dashboard"), str(sc.get("labelValue", "1"))
    problems = []
    if not sc.get("enabled", True):
        problems.append("grafana.sidecar.dashboards.enabled is off")
    rendered: dict[str, str] = {}
    for doc in yaml.safe_load_all(res.stdout):
        if not doc:
            continue
        if doc.get("kind") != "ConfigMap":
            problems.append(f"unexpected {doc.get('kind')}")
            continue
        if (doc["metadata"].get("labels") or {}).get(label) != value:
            problems.append(f"ConfigMap {doc['metadata']['name']} lacks label {label}: \"{value}\"")
        rendered.update(doc.get("data") or {})
    for f in sorted((st.root / "k8s/dashboards").glob("*.json")):
        if f.name not in rendered:
            problems.append(f"{f.name} is not rendered into a ConfigMap")
        elif rendered[f.name].strip() != f.read_text(encoding="utf-8").strip():
            problems.append(f"{f.name}: ConfigMap content differs from the file")
        elif len(rendered[f.name].encode()) > 1_000_000:
            problems.append(f"{f.name}: too large for a ConfigMap")
    st.r.outcome("dashboard ConfigMaps", problems, f"helm template renders {len(rendered)} ConfigMaps labelled {label}=\"{value}\"")


# --- wiring -------------------------------------------------------------------------------


def contract_services(st: Stack) -> dict[str, int]:
    out = {}
    for m in re.finditer(r"^\|\s*([a-z][a-z-]+)\s*\|\s*(\d{4,5})\s*\|", st.contracts(), re.M):
        out[m.group(1)] = int(m.group(2))
    return out


def check_wiring(st: Stack) -> None:
    services = {k: set(v) for k, v in st.cfg["services"].items()}
    for name, port in contract_services(st).items():
        services.setdefault(f"{name}.organism", set()).add(port)
    problems = []
    found = 0
    pat = re.compile(r"(?:https?://)?([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?(?::(\d+))?")
    def strings(x):
        if isinstance(x, dict):
            for v in x.values():
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)
        elif isinstance(x, str):
            yield x

    for f in sorted((st.root / "k8s/values").glob("*.yaml")):
        for text in strings(load_yaml(f)):
            for m in pat.finditer(text):
                found += 1
                host = f"{m.group(1)}.{m.group(2)}"
                port = int(m.group(3)) if m.group(3) else None
                if host not in services:
                    problems.append(f"{f.name}: {m.group(0)}: no such Service in the stack")
                elif port is not None and port not in services[host]:
                    problems.append(f"{f.name}: {m.group(0)}: {host} listens on {sorted(services[host])}")
    # the organism chart points its services at these too (another engineer's file: read only)
    ov = st.root / "k8s/charts/organism/values.yaml"
    if ov.is_file():
        o = load_yaml(ov) or {}
        col = ((o.get("otel") or {}).get("collector") or {})
        if col:
            host = f"{col.get('service')}.{col.get('namespace')}"
            if host not in services or int(col.get("grpcPort", 4317)) not in services[host]:
                problems.append(f"organism chart sends OTLP to {host}:{col.get('grpcPort')}, not a collector Service here")
            rel = st.by_name(str(col.get("service")))
            if not rel or rel.get("namespace") != col.get("namespace"):
                problems.append(f"organism chart expects a collector release {col.get('service')} in {col.get('namespace')}")
        mon = o.get("monitoring") or {}
        if mon.get("release") and not st.by_name(str(mon["release"])):
            problems.append(f"organism chart labels ServiceMonitors for release {mon['release']}, which helmfile.yaml lacks")
        for key in ("prometheus", "alertmanager"):
            url = str((mon.get(key) or {}).get("url", ""))
            m = pat.search(url)
            if url and (not m or f"{m.group(1)}.{m.group(2)}" not in services):
                problems.append(f"organism chart monitoring.{key}.url {url} is not a Service of the stack")
    st.r.outcome("service wiring", problems, f"{found} in-cluster URLs in k8s/values resolve to the stack's Services and ports"
                 + ("; organism chart agrees" if ov.is_file() else ""))


# --- Alertmanager -------------------------------------------------------------------------


def alertmanager_config(st: Stack) -> tuple[dict, Path]:
    kps = st.effective("kube-prometheus-stack")
    cfg = (kps.get("alertmanager") or {}).get("config") or {}
    path = st.tmp / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return cfg, path


def check_alertmanager(st: Stack) -> None:
    if not st.shared:
        st.r.note("Alertmanager: ../shared absent, checking our config without the chart's defaults merged")
    cfg, path = alertmanager_config(st)
    kps = st.effective("kube-prometheus-stack")
    spec = (kps.get("alertmanager") or {}).get("alertmanagerSpec") or {}
    amtool = shutil.which("amtool")
    if not amtool:
        st.r.fail("alertmanager config", "amtool not installed")
        return
    res = run([amtool, "check-config", str(path)])
    if res.returncode != 0:
        for l in (res.stdout + res.stderr).splitlines()[-8:]:
            st.r.note(l)
        st.r.fail("amtool check-config", "configuration rejected")
        return
    st.r.ok("amtool check-config", "Alertmanager configuration from kube-prometheus-stack values is valid")

    problems = []
    secrets = set(spec.get("secrets") or [])
    base = st.cfg["token_secret_dir"].rstrip("/")
    wanted = st.cfg["webhooks"]
    seen_urls = {}
    for rcv in cfg.get("receivers") or []:
        for wh in rcv.get("webhook_configs") or []:
            seen_urls[rcv["name"]] = wh.get("url")
            http = wh.get("http_config") or {}
            auth = http.get("authorization") or {}
            if "credentials" in auth or "bearer_token" in http or (http.get("basic_auth") or {}).get("password"):
                problems.append(f"receiver {rcv['name']}: a credential is written in the values (use credentials_file)")
            cf = auth.get("credentials_file") or http.get("bearer_token_file")
            if not cf:
                problems.append(f"receiver {rcv['name']}: no bearer token (http_config.authorization.credentials_file)")
                continue
            m = re.match(rf"^{re.escape(base)}/([^/]+)/[^/]+$", cf)
            if not m or m.group(1) not in secrets:
                problems.append(f"receiver {rcv['name']}: {cf} is not in a Secret mounted by alertmanagerSpec.secrets {sorted(secrets)}")
    for name, url in wanted.items():
        if seen_urls.get(name) != url:
            problems.append(f"receiver {name} must post to {url} (docs/CONTRACTS.md), has {seen_urls.get(name)}")
    st.r.outcome("alertmanager receivers", problems, "webhook URLs per CONTRACTS.md, bearer tokens from mounted Secret files only")

    tests = load_yaml(st.root / "ci/stack/alertmanager-tests.yaml") or {}
    failed = []
    for t in tests.get("routes") or []:
        want = ",".join(t["receivers"])
        labels = [f"{k}={v}" for k, v in t["labels"].items()]
        res = run([amtool, "config", "routes", "test", f"--config.file={path}", f"--verify.receivers={want}", *labels])
        if res.returncode != 0:
            got = res.stdout.strip().splitlines()[0] if res.stdout.strip() else "?"
            failed.append(f"{t['name']}: expected {want}, got {got}")
    total = len(tests.get("routes") or [])
    st.r.outcome("alertmanager routes", failed, f"{total} route tests (amtool config routes test)",
                 f"{len(failed)} of {total} route tests failed")
    check_inhibition(st, path, tests.get("inhibitions") or [])


def check_inhibition(st: Stack, config: Path, cases: list) -> None:
    if not cases:
        st.r.fail("alertmanager inhibition", "no inhibition tests")
        return
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not binary:
        st.r.fail("alertmanager inhibition", "prometheus-alertmanager not installed")
        return
    port = free_port()
    data = st.tmp / "am-data"
    data.mkdir(exist_ok=True)
    log = open(st.tmp / "alertmanager.log", "w")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.path={data}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    problems: list[str] = []
    try:
        deadline = time.time() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                st.r.fail("alertmanager inhibition", f"Alertmanager did not start (see {st.tmp}/alertmanager.log)")
                return
            time.sleep(0.1)
        now = datetime.now(timezone.utc)
        alerts, expect = [], []
        for case in cases:
            for a in case["alerts"]:
                alerts.append({"labels": {k: str(v) for k, v in a["labels"].items()},
                               "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat()})
                expect.append((case["name"], a["labels"], a["expect"]))
        req = urllib.request.Request(f"{url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=5).read()
        deadline = time.time() + 10
        while True:
            with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as r:
                got = json.loads(r.read())
            state = {json.dumps(a["labels"], sort_keys=True): a["status"] for a in got}
            problems = []
            for name, labels, want in expect:
                s = state.get(json.dumps({k: str(v) for k, v in labels.items()}, sort_keys=True))
                actual = "missing" if s is None else ("inhibited" if s.get("inhibitedBy") else
                                                      "silenced" if s.get("silencedBy") else "active")
                if actual != want:
                    problems.append(f"{name}: {labels.get('alertname')} {dict(labels)} is {actual}, expected {want}")
            if not problems or time.time() > deadline:
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    n = sum(len(c["alerts"]) for c in cases)
    st.r.outcome("alertmanager inhibition", problems,
                 f"{len(cases)} cases, {n} alerts posted to a real Alertmanager behave as expected",
                 f"{len(problems)} expectation(s) not met by a real Alertmanager")


# --- budget --------------------------------------------------------------------------------


def kind_nodes(st: Stack) -> int:
    p = st.root / "kind-config.yaml"
    if p.is_file():
        cfg = load_yaml(p) or {}
        return max(1, len(cfg.get("nodes") or [{}]))
    return 1


def budget_rows(st: Stack) -> tuple[list[dict], list[str]]:
    rows, problems = [], []
    nodes = kind_nodes(st)
    for w in st.cfg["budget"]["workloads"]:
        rel = st.by_name(w["release"])
        if not rel:
            problems.append(f"budget: release {w['release']} not in helmfile.yaml")
            continue
        res = get_path(strip_nulls(st.values_of(w["release"])), w["path"]) or {}
        count = w.get("count", 1) * (nodes if w.get("per_node") else 1)
        rows.append(row_of(f"{w['release']}: {w['name']}", res, count, problems,
                           f"k8s/values/{w['release']}.yaml {w['path']}", per_node=w.get("per_node")))
    ov = st.root / st.cfg["budget"]["organism_values"]
    if ov.is_file():
        o = load_yaml(ov) or {}
        kind = load_yaml(st.root / "k8s/values/organism-kind.yaml") if (st.root / "k8s/values/organism-kind.yaml").is_file() else {}
        o = helm_merge(o, kind or {})
        dflt = o.get("defaults") or {}
        for name, svc in (o.get("services") or {}).items():
            if not svc or not svc.get("enabled", True):
                continue
            merged = helm_merge(dflt, svc)
            auto = merged.get("autoscaling") or {}
            reps = auto.get("minReplicas", 1) if auto.get("enabled") else merged.get("replicas", 1)
            row = row_of(f"organism: {name}", merged.get("resources") or {}, int(reps), problems,
                         f"{ov.relative_to(st.root)} services.{name}")
            if auto.get("enabled"):
                row["max_count"] = int(auto.get("maxReplicas", reps))
            rows.append(row)
        pg = o.get("postgresql") or {}
        if pg.get("enabled"):
            rows.append(row_of("organism: postgresql", pg.get("resources") or {}, 1, problems, "postgresql.resources"))
    else:
        problems.append(f"budget: {ov.relative_to(st.root)} not there yet, the organism's own pods are not counted")
    return rows, problems


def row_of(name, res, count, problems, where, per_node=False) -> dict:
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    for k, d in (("memory", req), ("cpu", req), ("memory", lim), ("cpu", lim)):
        if k not in d:
            problems.append(f"{name}: no {'requests' if d is req else 'limits'}.{k} ({where})")
    return {"name": name, "count": count, "max_count": count, "per_node": per_node,
            "req": mib(req["memory"]) if "memory" in req else 0.0,
            "lim": mib(lim["memory"]) if "memory" in lim else 0.0,
            "cpu_req": req.get("cpu", "-"), "cpu_lim": lim.get("cpu", "-")}


def budget_totals(rows: list[dict]) -> dict:
    return {"req": sum(r["req"] * r["count"] for r in rows),
            "lim": sum(r["lim"] * r["count"] for r in rows),
            "req_max": sum(r["req"] * r["max_count"] for r in rows),
            "lim_max": sum(r["lim"] * r["max_count"] for r in rows)}


def docker_memory_needed(st: Stack, totals: dict) -> int:
    """MiB the Docker engine needs: requests with every HPA at its maximum, plus kind's own
    (control plane, kubelets, CoreDNS), rounded up to 512 MiB."""
    need = totals["req_max"] + st.cfg["budget"]["kind_overhead_mib"]
    return int(-(-need // 512) * 512)


def budget_table(st: Stack) -> str:
    rows, problems = budget_rows(st)
    lines = ["| workload | containers (HPA max) | memory request | memory limit | CPU request | CPU limit |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        cnt = f"{r['count']}" + (" (one per node)" if r["per_node"] else "")
        if r["max_count"] != r["count"]:
            cnt += f" ({r['max_count']})"
        lines.append(f"| {r['name']} | {cnt} | {r['req']:.0f} Mi | {r['lim']:.0f} Mi | {r['cpu_req']} | {r['cpu_lim']} |")
    t = budget_totals(rows)
    n_min = sum(r["count"] for r in rows)
    n_max = sum(r["max_count"] for r in rows)
    lines.append(f"| **total** (containers × size) | {n_min} ({n_max}) | **{t['req']:.0f} Mi** | {t['lim']:.0f} Mi | | |")
    lines.append(f"| **total at the HPA maxima** | {n_max} | **{t['req_max']:.0f} Mi** | {t['lim_max']:.0f} Mi | | |")
    lines.append("")
    lines.append(f"{st.cfg['budget']['docs_marker']} **{t['req']:.0f} MiB** ({t['req'] / 1024:.2f} GiB); limits add up to {t['lim']:.0f} MiB.")
    lines.append(f"{st.cfg['budget']['docs_marker_max']} **{t['req_max']:.0f} MiB** ({t['req_max'] / 1024:.2f} GiB); "
                 f"limits then add up to {t['lim_max']:.0f} MiB.")
    lines.append(f"Docker engine memory `scripts/kind-up.sh` requires (requests at the HPA maxima + "
                 f"{st.cfg['budget']['kind_overhead_mib']} MiB for kind's control plane, kubelets and CoreDNS, "
                 f"rounded up to 512 MiB): **{docker_memory_needed(st, t)} MiB**.")
    for p in problems:
        lines.append(f"<!-- {p} -->")
    return "\n".join(lines)


def check_budget(st: Stack) -> None:
    rows, problems = budget_rows(st)
    missing = [p for p in problems if "no requests" in p or "no limits" in p or "not in helmfile" in p]
    totals = budget_totals(rows)
    total = totals["req"]
    limits = totals["lim"]
    limit = st.cfg["budget"]["limit_mib"]
    for p in problems:
        st.r.note(p)
    if missing:
        st.r.fail("resource budget", f"{len(missing)} container(s) without requests/limits")
    elif total > limit:
        st.r.fail("resource budget", f"memory requests {total:.0f} MiB exceed the {limit} MiB budget")
    else:
        st.r.ok("resource budget", f"memory requests {total:.0f} MiB (limits {limits:.0f} MiB) over "
                f"{sum(r['count'] for r in rows)} containers, within {limit} MiB")
    docs = st.root / st.cfg["budget"]["docs"]
    marker = st.cfg["budget"]["docs_marker"]
    if docs.is_file():
        text = docs.read_text(encoding="utf-8")
        m = re.search(re.escape(marker) + r"\s*\*\*(\d+) MiB\*\*", text)
        if not m:
            st.r.fail("budget in docs", f"{docs.name} lacks '{marker} **N MiB**'")
        elif int(m.group(1)) != round(total):
            st.r.fail("budget in docs", f"{docs.name} says {m.group(1)} MiB, the values add up to {total:.0f} MiB "
                      "(regenerate: ci/stack/validate.sh --budget --write)")
        else:
            m2 = re.search(re.escape(st.cfg["budget"]["docs_marker_max"]) + r"\s*\*\*(\d+) MiB\*\*", text)
            if not m2 or int(m2.group(1)) != round(totals["req_max"]):
                st.r.fail("budget in docs", f"{docs.name} lacks or misstates '{st.cfg['budget']['docs_marker_max']} "
                          f"**{totals['req_max']:.0f} MiB**' (regenerate: ci/stack/validate.sh --budget --write)")
            else:
                st.r.ok("budget in docs", f"{docs.name} states {m.group(1)} MiB, {m2.group(1)} MiB at the HPA maxima, as computed")
    need = docker_memory_needed(st, totals)
    kind_up = st.root / "scripts" / "kind-up.sh"
    if kind_up.is_file():
        m = re.search(r"^DOCKER_MEMORY_MIN_MIB=(\d+)", kind_up.read_text(encoding="utf-8"), re.M)
        if not m or int(m.group(1)) != need:
            st.r.fail("budget in kind-up.sh", f"scripts/kind-up.sh must say DOCKER_MEMORY_MIN_MIB={need} "
                      f"(requests at the HPA maxima {totals['req_max']:.0f} MiB + kind's "
                      f"{st.cfg['budget']['kind_overhead_mib']} MiB), has {m.group(1) if m else 'none'}")
        else:
            st.r.ok("budget in kind-up.sh", f"kind-up.sh requires {need} MiB of Docker memory, as computed")
    else:
        st.r.fail("budget in docs", f"{docs} missing")


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--shared", type=Path)
    ap.add_argument("--budget-table", action="store_true", help="print the resource budget table (markdown)")
    ap.add_argument("--write", action="store_true",
                    help="with --budget-table: replace the table between the budget markers in the docs")
    args = ap.parse_args()
    report = Report()
    st = Stack(args.root.resolve(), args.shared.resolve() if args.shared else None, report)
    if args.budget_table:
        table = budget_table(st)
        print(table)
        if args.write:
            docs = st.root / st.cfg["budget"]["docs"]
            text = docs.read_text(encoding="utf-8")
            begin, end = "<!-- budget:begin -->", "<!-- budget:end -->"
            if begin not in text or end not in text:
                print(f"{docs}: markers {begin} / {end} missing", file=sys.stderr)
                return 1
            head, rest = text.split(begin, 1)
            docs.write_text(head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")
            print(f"updated {docs.relative_to(st.root)}", file=sys.stderr)
        return 0
    if not st.shared:
        report.note(f"../shared/charts-values not found ({args.shared}): upstream-defaults checks are skipped")
    checks = [check_yamllint, check_helmfile, check_keys, check_schemas, check_collector, check_datasources,
              check_dashboards, check_dashboard_chart, check_wiring, check_alertmanager, check_budget]
    for c in checks:
        try:
            c(st)
        except Exception as e:  # a crashing check is a failing check
            report.fail(c.__name__.replace("check_", ""), f"{type(e).__name__}: {e}")
    shutil.rmtree(st.tmp, ignore_errors=True)
    n = {s: sum(1 for r in report.rows if r[0] == s) for s in ("PASS", "FAIL", "SKIP")}
    print(f"stack: {n['PASS']} passed, {n['FAIL']} failed, {n['SKIP']} skipped")
    for s, c, d in report.rows:
        if s == "SKIP":
            print(f"  skipped: {c} ({d})")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
