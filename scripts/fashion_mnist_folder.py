"""Write Fashion-MNIST as class folders of PNG files (DIR/train/<class>/*.png, DIR/test/<class>/*.png).

A real image folder to try `gdas search --dataset folder` on, and the data of the folder measurements in
docs/performance.md and docs/quality.md:

    python scripts/fashion_mnist_folder.py runs/fm-folder --train 60000 --test 10000
    gdas search --preset fashion-mnist --dataset folder --data-dir runs/fm-folder --image-size 28
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from PIL import Image

from gdas.data.images import FASHION_MNIST_DEFAULT_DIR, read_idx

CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to create (must not exist)")
    parser.add_argument("--train", type=int, default=60000, help="training images to write (the first N)")
    parser.add_argument("--test", type=int, default=10000, help="test images to write (the first N)")
    parser.add_argument("--data-dir", default=FASHION_MNIST_DEFAULT_DIR, help="the Fashion-MNIST IDX files")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; choose a new folder")
    for split, count in (("train", args.train), ("test", args.test)):
        images_file, labels_file = (os.path.join(args.data_dir, name) for name in FILES[split])
        images, labels = read_idx(images_file, 3), read_idx(labels_file, 1)
        for index in range(min(count, len(images))):
            folder = args.out / split / CLASSES[labels[index]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index]).save(folder / f"{index:05d}.png")
    print(f"wrote {args.out}/train and {args.out}/test")


if __name__ == "__main__":
    main()
