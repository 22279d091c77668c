#!/usr/bin/python3
"""Write example /predict request bodies from the Fashion-MNIST test set.

Creates models/examples/sample_<i>.json (i = 0..3), each a request
{"inputs": <nested [1,1,28,28] list of pixel/255>}, and
models/examples/labels.json mapping each file name to its true label.

Usage: /usr/bin/python3 models/make_examples.py [--count N] [--out DIR]
Try one: curl -X POST -H 'Content-Type: application/json' \
    --data @models/examples/sample_0.json http://localhost:8080/predict
"""
import argparse
import json
import os

import fashion_mnist_data as data


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--out", default=os.path.join(here, "examples"))
    args = ap.parse_args()

    x, y = data.load("test")
    os.makedirs(args.out, exist_ok=True)
    labels = {}
    for i in range(args.count):
        # float32 -> Python float, rounded so that the files stay small;
        # 6 decimals still distinguish all 256 pixel levels.
        image = [[[round(float(v), 6) for v in row] for row in x[i, 0]]]
        name = f"sample_{i}.json"
        with open(os.path.join(args.out, name), "w") as f:
            json.dump({"inputs": [image]}, f, separators=(",", ":"))
            f.write("\n")
        labels[name] = data.LABELS[int(y[i])]
    with open(os.path.join(args.out, "labels.json"), "w") as f:
        json.dump(labels, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {args.count} samples and labels.json to {args.out}")


if __name__ == "__main__":
    main()
