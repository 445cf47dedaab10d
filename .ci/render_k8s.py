#!/usr/bin/env python3
"""Render the plain manifests of k8s/ from the Helm chart, so the two cannot drift.

    python .ci/render_k8s.py [--helm .tools/helm]           # write k8s/serviceaccount.yaml, k8s/rayjob-*.yaml
    python .ci/render_k8s.py --check                        # exit 1 with a diff if they differ from the chart

`helm template` renders helm/pairaug with k8s/values.yaml; each object goes to its file under a
header that says how to use it. Helm's bookkeeping labels (helm.sh/chart, managed-by: Helm) are left
out: nothing manages these objects but kubectl. k8s/rayservice-vllm.yaml and k8s/submitter-rbac.yaml
have no counterpart in the chart and are written by hand.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
DROPPED_LABELS = ("    helm.sh/chart: ", "    app.kubernetes.io/managed-by: ")

USE = """\
#   kubectl -n pairaug apply -f k8s/serviceaccount.yaml -f k8s/{file}
#   kubectl -n pairaug get rayjob {name} -w
#   kubectl -n pairaug logs -f job/{name}
"""
HEADERS = {
    "serviceaccount.yaml": """\
# The account every Ray pod of the RayJobs in this folder runs as. S3 access comes from its cloud role,
# not from keys: replace the annotation with your IRSA role (EKS). On GKE the pipeline reaches GCS
# through its S3 API with HMAC keys instead (docs/deployment.md, "Give the pods access to S3").
""",
    "rayjob-augment.yaml": """\
# The augment job (validate -> rewrite -> generate -> score -> prune) as a one-shot RayJob on a
# RayCluster of its own: KubeRay creates the cluster, runs `pairaug augment`, and deletes the cluster
# an hour after the job ends; a retry (backoffLimit) runs on a fresh cluster and every stage resumes
# from S3. Needs the KubeRay operator v1.7 and k8s/serviceaccount.yaml. Edit the image, the config URI
# (s3://) and the GPU node selector, then:
""",
    "rayjob-train.yaml": """\
# CLIP pretraining (Ray Train, DDP with gathered negatives) as a one-shot RayJob on its own RayCluster.
# Put train.storage_path on S3: a retry (backoffLimit) runs on a fresh cluster and resumes from the
# latest checkpoint there. Edit the image, the config URI and the GPU node selector, then:
""",
    "rayjob-evaluate.yaml": """\
# Evaluation of a trained CLIP as a one-shot RayJob on its own RayCluster. Edit the image, the config
# URI and the GPU node selector, then:
""",
}
GENERATED = (
    "# Generated from helm/pairaug with presets/production.yaml and k8s/values.yaml by `make k8s`\n"
    "# (.ci/render_k8s.py): edit those.\n"
)


def render(helm: str) -> dict[str, str]:
    """File name -> content, from the chart."""
    out = subprocess.run(
        [
            helm,
            "template",
            "pairaug",
            str(REPO / "helm" / "pairaug"),
            "--namespace",
            "pairaug",
            # The manifests are for a GPU cluster: the production sizes, then this folder's values.
            "-f",
            str(REPO / "helm" / "pairaug" / "presets" / "production.yaml"),
            "-f",
            str(K8S / "values.yaml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files: dict[str, str] = {}
    for doc in out.split("\n---\n"):
        lines = [ln for ln in doc.strip("-\n").splitlines() if not ln.startswith("# Source:")]
        lines = [ln for ln in lines if not ln.startswith(DROPPED_LABELS)]
        if not lines:
            continue
        kind = next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("kind:"))
        name = next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("  name:"))
        file = (
            "serviceaccount.yaml"
            if kind == "ServiceAccount"
            else f"rayjob-{name.removeprefix('pairaug-')}.yaml"
        )
        header = HEADERS[file] + (USE.format(file=file, name=name) if kind == "RayJob" else "")
        files[file] = GENERATED + header + "\n".join(lines) + "\n"
    return files


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--helm", default=str(REPO / ".tools" / "helm"))
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--dir", default=str(K8S), help="the folder of the manifests (default: k8s/)")
    args = parser.parse_args()
    files = render(args.helm)
    stale = []
    for name, text in files.items():
        path = Path(args.dir) / name
        old = path.read_text() if path.exists() else ""
        if old == text:
            continue
        if args.check:
            stale.append(name)
            sys.stdout.writelines(
                difflib.unified_diff(old.splitlines(True), text.splitlines(True), f"k8s/{name}", "rendered")
            )
        else:
            path.write_text(text)
            print(f"wrote k8s/{name}")
    if stale:
        print(
            f"\nk8s/{', k8s/'.join(stale)} differ from the chart's rendering: run `make k8s`", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
