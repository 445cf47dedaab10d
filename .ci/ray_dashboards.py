"""Write Ray's own Grafana dashboards into the chart (helm/pairaug/dashboards/ray/), from the Ray installed.

Ray generates its dashboards (the cluster's default one, Ray Data's and Ray Train's) into the head's
session folder at start; Grafana never sees them there, so the Ray dashboard's embedded panels stay
empty. The chart ships them as ConfigMaps for Grafana's dashboard sidecar (metrics.grafanaDashboard).
They follow the Ray version: after upgrading Ray, run

    .venv/bin/python .ci/ray_dashboards.py            # rewrite them
    .venv/bin/python .ci/ray_dashboards.py --check    # exit 1 when they differ (tests/test_helm.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "helm" / "pairaug" / "dashboards" / "ray"
GENERATORS = {
    "default.json": "generate_default_grafana_dashboard",
    "data.json": "generate_data_grafana_dashboard",
    "train.json": "generate_train_grafana_dashboard",
}


def generated() -> dict[str, str]:
    from ray.dashboard.modules.metrics import grafana_dashboard_factory as factory

    out = {}
    for name, fn in GENERATORS.items():
        content, _uid = getattr(factory, fn)()
        # Compact: Grafana does not mind, and each ConfigMap must stay under 1 MiB.
        out[name] = json.dumps(json.loads(content), separators=(",", ":"), sort_keys=True) + "\n"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    stale = []
    for name, text in generated().items():
        path = OUT / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path} ({len(text):,} bytes)")
    if stale:
        print(f"stale: {', '.join(stale)}: run .venv/bin/python .ci/ray_dashboards.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
