#!/usr/bin/python3
"""vendor_crd_schemas.py - extract the OpenAPI schemas that validate.py checks
deploy/kserve/ against, from KServe's own CRDs at a pinned release.

    git clone https://github.com/kserve/kserve && cd kserve && git checkout v0.20.0
    tests/deploy/kserve/vendor_crd_schemas.py /path/to/kserve v0.20.0

Reads config/crd/full/serving.kserve.io_{servingruntimes,inferenceservices}.yaml
at TAG (git show, so the checkout may be anywhere), keeps each CRD's served
storage version's openAPIV3Schema, drops the `description` texts (most of the
size; they do not take part in validation) and writes
tests/deploy/kserve/kserve-crd-schemas.json.gz. KServe is Apache-2.0 licensed:
the output names its source and licence (KSERVE-LICENSE, copied next to it).
"""
import gzip
import json
import pathlib
import subprocess
import sys

import yaml

CRDS = {
    "ServingRuntime": "config/crd/full/serving.kserve.io_servingruntimes.yaml",
    "InferenceService": "config/crd/full/serving.kserve.io_inferenceservices.yaml",
}
HERE = pathlib.Path(__file__).resolve().parent


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    repo, tag = sys.argv[1], sys.argv[2]
    commit = subprocess.run(["git", "-C", repo, "rev-list", "-n", "1", tag], check=True,
                            capture_output=True, text=True).stdout.strip()
    out = {"source": f"https://github.com/kserve/kserve/tree/{tag} ({commit})",
           "license": "Apache-2.0 (KSERVE-LICENSE); descriptions removed",
           "tag": tag, "schemas": {}}
    for kind, path in CRDS.items():
        text = subprocess.run(["git", "-C", repo, "show", f"{tag}:{path}"], check=True,
                              capture_output=True, text=True).stdout
        crd = next(d for d in yaml.safe_load_all(text) if d)
        assert crd["spec"]["names"]["kind"] == kind
        for v in crd["spec"]["versions"]:
            if v.get("served") and v.get("storage"):
                out["schemas"][kind] = {
                    "apiVersion": f"{crd['spec']['group']}/{v['name']}",
                    "schema": strip(v["schema"]["openAPIV3Schema"]),
                }
    lic = subprocess.run(["git", "-C", repo, "show", f"{tag}:LICENSE"], check=True,
                         capture_output=True, text=True).stdout
    (HERE / "KSERVE-LICENSE").write_text(lic)
    data = (json.dumps(out, separators=(",", ":")) + "\n").encode()
    with gzip.GzipFile(HERE / "kserve-crd-schemas.json.gz", "wb", mtime=0) as f:
        f.write(data)


if __name__ == "__main__":
    main()
