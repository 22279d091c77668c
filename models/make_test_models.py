#!/usr/bin/python3
"""Generate small TorchScript test models for inferd's integration tests.

    /usr/bin/python3 models/make_test_models.py OUTPUT_REPOSITORY_DIR

writes one folder per model (model.pt + config.json) into the given model
repository:

    two_io     a FP32 [-1,4], b INT64 [-1,4]
               -> sum FP32 [-1,4] = a + b, prod_sum FP32 [-1,1] = sum(a * b, dim 1)
               (forward returns a tuple)
    dict_out   x FP32 [-1,3] -> {"double": 2x, "neg": -x} (forward returns a dict)
    all_types  one input per datatype BOOL, UINT8, INT8, INT16, INT32, INT64,
               FP16, FP64 (x_bool, x_uint8, ...), each [-1,2]; forward returns
               each input unchanged, in order, as the outputs o_bool, o_uint8,
               ... (same datatypes). FP32 is left out (two_io and dict_out
               cover it) to stay within inferd's limit of 8 inputs.
    no_batch   max_batch_size 0: x FP32 [3] -> y FP32 [3] = x + 1

The models have no weights; the seed is fixed anyway so that reruns write the
same files. Needs python3-torch (Debian's 1.13 is what the tests use).
"""
import json
import sys
from pathlib import Path
from typing import Dict, Tuple

import torch

SEED = 0

# Datatype name (KServe v2) -> short suffix, for the all_types model.
ALL_TYPES = [("BOOL", "bool"), ("UINT8", "uint8"), ("INT8", "int8"), ("INT16", "int16"),
             ("INT32", "int32"), ("INT64", "int64"), ("FP16", "fp16"), ("FP64", "fp64")]


class TwoIO(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        bf = b.float()
        return a + bf, (a * bf).sum(1, keepdim=True)


class DictOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"double": x * 2, "neg": -x}


class AllTypes(torch.nn.Module):
    def forward(self, x_bool: torch.Tensor, x_uint8: torch.Tensor, x_int8: torch.Tensor,
                x_int16: torch.Tensor, x_int32: torch.Tensor, x_int64: torch.Tensor,
                x_fp16: torch.Tensor, x_fp64: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                           torch.Tensor, torch.Tensor, torch.Tensor]:
        return x_bool, x_uint8, x_int8, x_int16, x_int32, x_int64, x_fp16, x_fp64


class NoBatch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


def _io(name, datatype, shape):
    return {"name": name, "datatype": datatype, "shape": shape}


MODELS = {
    "two_io": (TwoIO, {
        "inputs": [_io("a", "FP32", [-1, 4]), _io("b", "INT64", [-1, 4])],
        "outputs": [_io("sum", "FP32", [-1, 4]), _io("prod_sum", "FP32", [-1, 1])],
        "max_batch_size": 8,
        "max_queue_delay_us": 1000,
    }),
    "dict_out": (DictOut, {
        "inputs": [_io("x", "FP32", [-1, 3])],
        "outputs": [_io("double", "FP32", [-1, 3]), _io("neg", "FP32", [-1, 3])],
        "max_batch_size": 8,
        "max_queue_delay_us": 1000,
    }),
    "all_types": (AllTypes, {
        "inputs": [_io(f"x_{s}", dt, [-1, 2]) for dt, s in ALL_TYPES],
        "outputs": [_io(f"o_{s}", dt, [-1, 2]) for dt, s in ALL_TYPES],
        "max_batch_size": 8,
        "max_queue_delay_us": 1000,
    }),
    "no_batch": (NoBatch, {
        "inputs": [_io("x", "FP32", [3])],
        "outputs": [_io("y", "FP32", [3])],
        "max_batch_size": 0,
        "max_queue_delay_us": 0,
    }),
}


def make_model(repo, name):
    """Write repo/<name>/model.pt and config.json; return the folder."""
    cls, config = MODELS[name]
    torch.manual_seed(SEED)
    folder = Path(repo) / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(cls().eval()).save(str(folder / "model.pt"))
    body = {"name": name, "file": "model.pt", **config}
    (folder / "config.json").write_text(json.dumps(body, indent=2) + "\n")
    return folder


def make_all(repo):
    """Write every test model into repo; return {name: folder}."""
    Path(repo).mkdir(parents=True, exist_ok=True)
    return {name: make_model(repo, name) for name in MODELS}


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for name, folder in make_all(argv[1]).items():
        print(f"{name}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
