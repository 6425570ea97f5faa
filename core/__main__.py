"""Command line: ``python -m core info``."""

from __future__ import annotations

import argparse
import sys

from core.complexity import count_macs, parameter_count
from core.registry import checkpoint_path, create_model, get_card, list_models

SIZES = ((256, 256), (720, 1280))


def info(_args: argparse.Namespace) -> int:
    header = f"{'model':<14}{'year':>6}{'params':>12}" + "".join(f"{f'GMACs {w}x{h}':>18}" for h, w in SIZES)
    print(header + "  checkpoint")
    for name in list_models():
        card = get_card(name)
        params = parameter_count(create_model(name))
        macs = "".join(f"{count_macs(name, h, w) / 1e9:>18.2f}" for h, w in SIZES)
        weights = "shipped" if checkpoint_path(name).is_file() else "none (untrained)"
        print(f"{name:<14}{card.year:>6}{params / 1e6:>11.3f}M{macs}  {weights}")
        print(f"{'':<14}{card.paper} ({card.venue} {card.year})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Deblurring workbench command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="every registered model: parameters, MACs at 256x256 and 1280x720").set_defaults(
        run=info
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
