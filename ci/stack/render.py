#!/usr/bin/env python3
"""Render every release of helmfile.yaml the way `helmfile sync` would install it, offline.

    render.py --root REPO [--shared ../shared] --out OUTDIR [--helm helm] [-j N]

helmfile.yaml itself is the list: for each release the same name, namespace, values files (in
order; inline values too) and chart version. A repository chart `<repo>/<name>` at `version: V`
is taken from `<shared>/charts/<name>-<V>.tgz` (the upstream chart with its dependencies inside);
a local chart (`./k8s/charts/...`) from the repository. A pinned version without its tgz is an
error that names the missing file.

The render targets the cluster kind creates by default (KUBE_VERSION, kind v0.33's node image)
with the API groups that cluster has once kube-prometheus-stack, metrics-server and
prometheus-adapter are installed: every custom resource the rendered charts ship in their `crds/`
folders (read from the charts, so a bump of the operator follows), plus the aggregated APIs of
metrics-server and prometheus-adapter (API_SERVICES). CRDs are rendered too (`--include-crds`),
as `helm upgrade --install` installs them.

Output, reusable by anything that needs the rendered stack (the checks in ci/stack/verify.py, a
local run of the rendered configuration):

    OUTDIR/<namespace>/<release>.yaml   helm's manifest for that release
    OUTDIR/index.json                   [{name, namespace, chart, version, source, values, file,
                                          kube_version, api_versions}] in helmfile order
    OUTDIR/charts/                      the unpacked upstream charts

`--release NAMESPACE/NAME` renders only that release (repeatable).

Exit status 1 (and one line per problem on stderr) when any release fails to render.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

# kind v0.33.0's default node image is kindest/node:v1.37.0 (its release notes); kind-config.yaml
# pins no image, so this is the cluster `scripts/kind-up.sh` creates.
KUBE_VERSION = "1.37.0"
# Aggregated APIs registered by releases of helmfile.yaml (APIService objects, not CRDs), and the
# API server's own aggregation layer, which helm's built-in list lacks (it comes from client-go's
# scheme): without it charts fall back to apiregistration.k8s.io/v1beta1, gone since 1.22.
API_SERVICES = ["metrics.k8s.io/v1beta1", "custom.metrics.k8s.io/v1beta1", "apiregistration.k8s.io/v1",
                "apiregistration.k8s.io/v1/APIService"]


class RenderError(Exception):
    pass


class ManifestLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's `=` value tag (CRDs contain `- =` enum entries)."""


ManifestLoader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:value"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_docs(text: str) -> list[dict]:
    """The non-empty documents of a rendered manifest."""
    return [d for d in yaml.load_all(text, Loader=ManifestLoader) if d]


def load_helmfile(root: Path) -> dict:
    path = root / "helmfile.yaml"
    if not path.is_file():
        raise RenderError(f"{path} not found")
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("releases"), list):
        raise RenderError(f"{path}: no releases list")
    return doc


def releases(root: Path, shared: Path) -> list[dict]:
    """The releases of helmfile.yaml, each with where its chart comes from and its values files."""
    hf = load_helmfile(root)
    repos = {r["name"] for r in hf.get("repositories") or []}
    out = []
    problems = []
    for rel in hf["releases"]:
        name = rel["name"]
        ns = rel.get("namespace") or "default"
        chart = rel["chart"]
        version = rel.get("version")
        entry = {"name": name, "namespace": ns, "chart": chart, "version": version}
        if chart.startswith(("./", "../", "/")):
            src = (root / chart).resolve()
            if not (src / "Chart.yaml").is_file():
                problems.append(f"release {ns}/{name}: local chart {chart} has no Chart.yaml")
            entry["source"] = str(src)
            entry["kind"] = "local"
        else:
            repo, _, cname = chart.partition("/")
            if repo not in repos:
                problems.append(f"release {ns}/{name}: repository {repo} of chart {chart} is not in helmfile.yaml")
            if not version:
                problems.append(f"release {ns}/{name}: chart {chart} has no pinned version")
                continue
            tgz = shared / "charts" / f"{cname}-{version}.tgz"
            if not tgz.is_file():
                have = sorted(p.name for p in (shared / "charts").glob(f"{cname}-*.tgz"))
                problems.append(
                    f"release {ns}/{name}: helmfile.yaml pins {chart} {version} but {tgz} does not exist"
                    f" (have: {', '.join(have) or 'none'}); add the upstream chart at that version to"
                    " ../shared/charts before bumping the pin")
                continue
            entry["source"] = str(tgz)
            entry["kind"] = "tgz"
            entry["chart_name"] = cname
        vals = []
        for i, v in enumerate(rel.get("values") or []):
            if isinstance(v, str):
                p = root / v
                if not p.is_file():
                    problems.append(f"release {ns}/{name}: values file {v} not found")
                vals.append(str(p))
            elif isinstance(v, dict):
                vals.append({"inline": v, "index": i})
            else:
                problems.append(f"release {ns}/{name}: values entry {i} is neither a file nor a map")
        for s in rel.get("set") or []:
            problems.append(f"release {ns}/{name}: `set:` is not supported by the offline render ({s.get('name')})")
        entry["values"] = vals
        out.append(entry)
    if problems:
        raise RenderError("\n".join(problems))
    return out


def unpack(tgz: Path, dest: Path, cname: str) -> Path:
    """Unpack a chart tgz once per version (dest/<name>-<version>/<name>)."""
    target = dest / tgz.name[: -len(".tgz")]
    chart = target / cname
    stamp = target / ".unpacked"
    if stamp.is_file() and stamp.read_text() == str(tgz.stat().st_mtime_ns):
        return chart
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(tgz) as tf:
        tf.extractall(target, filter="data")
    if not (chart / "Chart.yaml").is_file():
        raise RenderError(f"{tgz}: no {cname}/Chart.yaml inside")
    stamp.write_text(str(tgz.stat().st_mtime_ns))
    return chart


def crd_api_versions(chart_dirs: list[Path]) -> list[str]:
    """group/version and group/version/Kind of every CRD in the charts' crds/ folders."""
    found = set()
    for d in chart_dirs:
        for f in sorted(d.rglob("crds/*.yaml")) + sorted(d.rglob("crds/*.yml")):
            if "templates" in f.parts:
                continue
            try:
                docs = list(yaml.safe_load_all(f.read_text(encoding="utf-8")))
            except yaml.YAMLError:
                continue
            for doc in docs:
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc.get("spec") or {}
                group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
                for ver in spec.get("versions") or []:
                    if ver.get("served", True):
                        found.add(f"{group}/{ver['name']}")
                        found.add(f"{group}/{ver['name']}/{kind}")
    return sorted(found)


def render(root: Path, shared: Path, out: Path, helm: str = "helm", jobs: int = 2,
           only: list[str] | None = None) -> list[dict]:
    rels = releases(root, shared)
    if only:
        unknown = set(only) - {f"{r['namespace']}/{r['name']}" for r in rels}
        if unknown:
            raise RenderError(f"no release {', '.join(sorted(unknown))} in helmfile.yaml")
        rels = [r for r in rels if f"{r['namespace']}/{r['name']}" in only]
    out.mkdir(parents=True, exist_ok=True)
    charts_dir = out / "charts"
    for rel in rels:
        if rel["kind"] == "tgz":
            rel["chart_dir"] = str(unpack(Path(rel["source"]), charts_dir, rel["chart_name"]))
        else:
            rel["chart_dir"] = rel["source"]
    api_versions = crd_api_versions([Path(r["chart_dir"]) for r in rels]) + API_SERVICES
    inline_dir = Path(tempfile.mkdtemp(prefix="render-values-"))

    def one(rel: dict) -> str | None:
        files = []
        for v in rel["values"]:
            if isinstance(v, dict):
                p = inline_dir / f"{rel['namespace']}-{rel['name']}-{v['index']}.yaml"
                p.write_text(yaml.safe_dump(v["inline"]))
                files.append(str(p))
            else:
                files.append(v)
        cmd = [helm, "template", rel["name"], rel["chart_dir"], "--namespace", rel["namespace"],
               "--kube-version", KUBE_VERSION, "--include-crds"]
        for a in api_versions:
            cmd += ["--api-versions", a]
        for f in files:
            cmd += ["--values", f]
        res = subprocess.run(cmd, capture_output=True, text=True)
        dest = out / rel["namespace"] / f"{rel['name']}.yaml"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if res.returncode != 0:
            dest.unlink(missing_ok=True)
            err = (res.stderr or res.stdout).strip()
            return f"release {rel['namespace']}/{rel['name']} ({rel['chart']} {rel.get('version') or 'local'}) does not render:\n  {err}"
        dest.write_text(res.stdout)
        rel["file"] = str(dest.relative_to(out))
        return None

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            errors = [e for e in pool.map(one, rels) if e]
    finally:
        shutil.rmtree(inline_dir, ignore_errors=True)
    index = []
    for rel in rels:
        index.append({
            "name": rel["name"], "namespace": rel["namespace"], "chart": rel["chart"],
            "version": rel.get("version"), "source": os.path.relpath(rel["source"], root),
            "values": [v if isinstance(v, str) else f"(inline values #{v['index']})" for v in rel["values"]],
            "file": rel.get("file"), "kube_version": KUBE_VERSION, "api_versions": api_versions,
        })
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    if errors:
        raise RenderError("\n".join(errors))
    return index


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--shared", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--helm", default=os.environ.get("HELM", "helm"))
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--release", action="append", help="only this NAMESPACE/NAME (repeatable)")
    a = ap.parse_args()
    root = a.root.resolve()
    shared = (a.shared or root / ".." / "shared").resolve()
    try:
        index = render(root, shared, a.out.resolve(), a.helm, a.jobs, a.release)
    except RenderError as e:
        for line in str(e).splitlines():
            print(f"render: {line}", file=sys.stderr)
        return 1
    for rel in index:
        n = len(load_docs((a.out / rel["file"]).read_text()))
        print(f"rendered {rel['namespace']}/{rel['name']} ({rel['chart']} {rel['version'] or 'local'}): {n} objects -> {rel['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
