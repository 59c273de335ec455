"""Image data: the real MNIST / Fashion-MNIST / mnist-5k files (counts and labels everyone knows), the
numpy-only unpickler, class-per-folder images through Pillow, normalisation and augmentation."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroforge.data import images as I
from zeroforge.errors import DataError

# ----------------------------------------------------------------------------- real datasets


@pytest.fixture(scope="module")
def mnist_train() -> I.ImageData:
    return I.load_images("mnist", "train")


@pytest.mark.network
def test_mnist_splits_and_well_known_facts(mnist_train: I.ImageData) -> None:
    test = I.load_images("mnist", "test")
    assert mnist_train.images.shape == (60_000, 1, 28, 28) and mnist_train.images.dtype == np.uint8
    assert test.images.shape == (10_000, 1, 28, 28)
    assert mnist_train.labels[:5].tolist() == [5, 0, 4, 1, 9]  # the first digits of LeCun's training file
    assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist_train.images.max() == 255 and mnist_train.class_names == [str(d) for d in range(10)]
    part = I.load_images("mnist", "val-10k")
    assert np.array_equal(part.images, mnist_train.images[50_000:])


@pytest.mark.network
def test_mnist_5k_is_a_subset_of_mnist_with_the_same_labels(mnist_train: I.ImageData) -> None:
    small = I.load_images("mnist-5k")
    assert small.images.shape == (5000, 1, 28, 28) and sorted(set(small.labels.tolist())) == list(range(10))
    where = {mnist_train.images[i].tobytes(): i for i in range(len(mnist_train))}
    found = [where.get(small.images[i].tobytes()) for i in range(len(small))]
    assert all(i is not None for i in found)
    assert np.array_equal(mnist_train.labels[np.array(found)], small.labels)


def test_fashion_mnist() -> None:
    if not (I.FASHION_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    train, test = I.load_images("fashion-mnist", "train"), I.load_images("fashion-mnist", "test")
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert (
        np.bincount(train.labels).tolist() == [6000] * 10 and np.bincount(test.labels).tolist() == [1000] * 10
    )
    assert train.labels[0] == 9 and train.class_names[9] == "Ankle boot"
    # the IDX reader against a plain numpy parse of the same file
    raw = gzip.decompress((I.FASHION_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert np.array_equal(test.images[:, 0], np.frombuffer(raw[16:], np.uint8).reshape(10_000, 28, 28))


def test_missing_fashion_mnist_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(I, "FASHION_DIR", tmp_path)
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))  # nothing fetched yet
    monkeypatch.setenv("PATH", str(tmp_path))  # and no apt-get to fetch the package with
    with pytest.raises(DataError, match="apt-get download dataset-fashion-mnist=.* failed.*apt-get install"):
        I.load_images("fashion-mnist", "test")


def test_unknown_names_and_splits() -> None:
    with pytest.raises(DataError, match="unknown image dataset .* not a folder"):
        I.load_images("cifar10")
    with pytest.raises(DataError, match="mnist-5k: unknown split 'test'"):
        I.load_images("mnist-5k", "test")


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def test_the_unpickler_accepts_numpy_arrays_only() -> None:
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2]))
    loaded = I.read_numpy_pickle(pickle.dumps(arrays, protocol=3), "ok.pkl")
    assert all(np.array_equal(a, b) for a, b in zip(loaded, arrays))
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os|nt)\.system"):
        I.read_numpy_pickle(pickle.dumps(_Evil()), "evil.pkl")
    with pytest.raises(DataError, match="bad.pkl: not a readable numpy pickle"):
        I.read_numpy_pickle(b"\x80\x02garbage", "bad.pkl")


def test_idx_header_is_checked() -> None:
    with pytest.raises(DataError, match="bad magic"):
        I.read_idx(b"\x00\x00\x0d\x01" + b"\x00" * 8, "x.idx")
    with pytest.raises(DataError, match=r"does not match the header's shape \(3,\)"):
        I.read_idx(b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "y.idx")


# ----------------------------------------------------------------------------- your own images


def _write_folder(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> None:
    from PIL import Image

    for k, (name, shapes) in enumerate(sizes.items()):
        (root / name).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            Image.new("RGB", (w, h), color=(40 * k + i, 100, 200)).save(root / name / f"{i}.png")


def test_image_folder(tmp_path: Path) -> None:
    _write_folder(tmp_path, {"dog": [(6, 8), (6, 8)], "cat": [(6, 8)]})
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = I.load_image_folder(tmp_path)
    assert data.class_names == ["cat", "dog"] and data.labels.tolist() == [0, 1, 1]
    # sorted classes: cat (written second, red 40), then dog's two images (red 0 and 1)
    assert data.images.shape == (3, 3, 6, 8) and data.images[0, :, 0, 0].tolist() == [40, 100, 200]
    assert data.images[2, :, 0, 0].tolist() == [1, 100, 200]
    grey = I.load_image_folder(tmp_path, image_size=4, grayscale=True)
    assert grey.images.shape == (3, 1, 4, 4)
    assert I.load_images(str(tmp_path)).images.shape == (3, 3, 6, 8)  # a path works where a name does


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image folder not found"):
        I.load_image_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no class subfolders"):
        I.load_image_folder(tmp_path)
    _write_folder(tmp_path, {"a": [(6, 8)], "b": [(5, 5)]})
    with pytest.raises(DataError, match=r"0.png: image is 5x5, earlier ones are 6x8; pass image_size="):
        I.load_image_folder(tmp_path)
    (tmp_path / "b" / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"1.jpg: cannot read the image"):
        I.load_image_folder(tmp_path, image_size=4)
    (tmp_path / "b" / "1.jpg").unlink()
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="no image files"):
        I.load_image_folder(tmp_path, image_size=4)


# ----------------------------------------------------------------------------- tensors


def test_float_normalise_resize_rgb() -> None:
    pixels = torch.randint(0, 256, (20, 2, 5, 5), dtype=torch.uint8)
    x = I.to_float(pixels)
    assert (
        x.dtype == torch.float32 and x.max() <= 1 and torch.equal((x * 255).round().to(torch.uint8), pixels)
    )
    mean, std = I.channel_stats(x)
    z = I.normalize(x, mean, std)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3)), torch.ones(2), atol=1e-5, rtol=0)
    assert I.resize(x, 9).shape == (20, 2, 9, 9)
    assert I.to_rgb(x[:, :1]).shape == (20, 3, 5, 5)
    with pytest.raises(DataError, match="one mean and std per channel"):
        I.normalize(x, [0.5], [0.5])
    with pytest.raises(DataError, match="expected uint8 pixels"):
        I.to_float(x)


def test_random_crop_is_a_shift_with_zero_fill() -> None:
    torch.manual_seed(0)
    x = torch.rand(32, 1, 6, 6) + 1.0  # strictly positive, so padding zeros are recognisable
    out = I.Augment(crop_padding=2)(x)
    shifts = set()
    for i in range(32):
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        match = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[:, dy : dy + 6, dx : dx + 6], out[i])
        ]
        assert match, f"sample {i} is not a shifted crop"
        shifts.add(match[0])
    assert len(shifts) > 5  # offsets really vary per sample


def test_random_flip_and_determinism() -> None:
    x = torch.rand(200, 3, 4, 5)
    torch.manual_seed(1)
    out = I.Augment(flip=True)(x)
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(200)])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(200)])
    assert bool((flipped | kept).all()) and 70 < int(flipped.sum()) < 130
    torch.manual_seed(1)
    assert torch.equal(I.Augment(flip=True)(x), out)
