"""Batched augmentation: exact crop windows, flips, cutout squares, normalisation and reproducibility."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gdas.data.augment import BatchAugment, batch_indices, normalize
from gdas.errors import GdasError

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def images(b: int = 8, c: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def numbered(b: int, size: int = 6) -> torch.Tensor:
    """Copies of one image whose pixels (1..size*size, all channels) are distinct and non-zero."""
    one = torch.arange(1, size * size + 1, dtype=torch.uint8).view(1, 1, size, size)
    return one.expand(b, 3, size, size).contiguous() + torch.tensor([0, 100, 200], dtype=torch.uint8).view(1, 3, 1, 1)


def windows(x: torch.Tensor, padding: int, flips: bool) -> list[torch.Tensor]:
    """Every crop (and mirrored crop) of one zero-padded uint8 image, normalised."""
    _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    out = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            for view in ([crop, crop.flip(-1)] if flips else [crop]):
                out.append(normalize(view[None], MEAN, STD)[0])
    return out


def match(out: torch.Tensor, candidates: list[torch.Tensor]) -> int:
    hits = [i for i, c in enumerate(candidates) if torch.equal(out, c)]
    assert len(hits) == 1, "output is not exactly one window of the padded input"
    return hits[0]


def test_normalize_values_and_formats():
    x = images()
    y = normalize(x, MEAN, STD)
    want = (x.double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / \
        torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    assert y.dtype == torch.float32 and y.shape == x.shape and y.is_contiguous()
    torch.testing.assert_close(y.double(), want, rtol=0, atol=1e-5)
    z = normalize(x, MEAN, STD, channels_last=True)
    assert z.is_contiguous(memory_format=torch.channels_last) and torch.equal(z, y)
    with pytest.raises(ValueError):
        normalize(x.float(), MEAN, STD)
    with pytest.raises(ValueError):
        normalize(x, MEAN[:1], STD[:1])


def test_shapes_dtypes_and_channels_last():
    x = images(b=5, size=10)
    out = BatchAugment(MEAN, STD, cutout=3)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32 and out.is_contiguous()
    out = BatchAugment(MEAN, STD, channels_last=True)(x, torch.Generator().manual_seed(0))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert "crop_padding=4" in repr(BatchAugment(MEAN, STD))


def test_no_padding_no_flip_is_normalisation():
    x = images()
    out = BatchAugment(MEAN, STD, crop_padding=0, flip=False)(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, normalize(x, MEAN, STD))


def test_crop_is_a_shifted_window_of_the_padded_image():
    x = numbered(64)
    out = BatchAugment(MEAN, STD, crop_padding=2, flip=False)(x, torch.Generator().manual_seed(0))
    candidates = windows(x[0], 2, flips=False)
    offsets = {match(o, candidates) for o in out}
    assert len(offsets) > 10  # per-image offsets, spread over the 25 possible windows


def test_flip_mirrors_exactly():
    x = images(b=64)
    out = BatchAugment(MEAN, STD, crop_padding=0, flip=True)(x, torch.Generator().manual_seed(0))
    plain, mirrored = normalize(x, MEAN, STD), normalize(x.flip(-1), MEAN, STD)
    is_plain = [torch.equal(o, p) for o, p in zip(out, plain)]
    is_mirrored = [torch.equal(o, m) for o, m in zip(out, mirrored)]
    assert all(a != b for a, b in zip(is_plain, is_mirrored))
    assert 10 < sum(is_mirrored) < 54


def test_crop_and_flip_together_cover_both():
    x = numbered(64, size=5)
    out = BatchAugment(MEAN, STD, crop_padding=1)(x, torch.Generator().manual_seed(3))
    candidates = windows(x[0], 1, flips=True)
    hits = [match(o, candidates) for o in out]
    assert {h % 2 for h in hits} == {0, 1}  # both plain and mirrored windows occur


@pytest.mark.parametrize("length", [4, 5])
def test_cutout_zeroes_a_clipped_square_after_normalisation(length):
    x = images(b=64, size=12)  # no pixel normalises to exactly 0 with these means (k/255 != mean)
    out = BatchAugment(MEAN, STD, crop_padding=0, flip=False, cutout=length)(x, torch.Generator().manual_seed(0))
    reference = normalize(x, MEAN, STD)
    assert (reference != 0).all()
    full = 0
    for o, r in zip(out, reference):
        zero = o == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])  # same square on all channels
        assert torch.equal(o[~zero], r[~zero])
        rows, cols = zero[0].any(1), zero[0].any(0)
        assert torch.equal(zero[0], rows[:, None] & cols[None, :])  # a rectangle
        h, w = int(rows.sum()), int(cols.sum())
        assert 1 <= h <= length and 1 <= w <= length
        for line in (rows, cols):  # contiguous
            idx = line.nonzero().flatten()
            assert idx[-1] - idx[0] + 1 == len(idx)
        full += h == length and w == length
    assert full > 10  # unclipped squares have side exactly `length`


def test_reproducible_from_the_generator():
    x = images(b=32, size=16)
    aug = BatchAugment(MEAN, STD, crop_padding=4, cutout=6)
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)
    d = aug(x)
    torch.manual_seed(0)
    assert torch.equal(d, aug(x))


def test_bad_options_and_inputs():
    with pytest.raises(GdasError):
        BatchAugment(MEAN, STD, crop_padding=-1)
    with pytest.raises(ValueError):
        BatchAugment(MEAN, STD)(images().float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_with_a_cuda_generator():
    x = numbered(64).cuda()
    aug = BatchAugment(MEAN, STD, crop_padding=2, cutout=0)
    out = aug(x, torch.Generator(device="cuda").manual_seed(0))
    assert out.is_cuda and torch.equal(out, aug(x, torch.Generator(device="cuda").manual_seed(0)))
    candidates = windows(x[0].cpu(), 2, flips=True)
    for o in out.cpu():
        match(o, candidates)


def test_batch_indices():
    g = torch.Generator().manual_seed(0)
    batches = batch_indices(10, 4, g)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10)) and torch.cat(batches).tolist() != list(range(10))
    assert [len(b) for b in batch_indices(10, 4, g, drop_last=True)] == [4, 4]
    assert torch.cat(batch_indices(10, 3, g, shuffle=False)).tolist() == list(range(10))
    same = [b.tolist() for b in batch_indices(10, 4, torch.Generator().manual_seed(0))]
    assert same == [b.tolist() for b in batches]
    assert batch_indices(0, 4, g) == [] and batch_indices(3, 4, g, drop_last=True) == []
    with pytest.raises(GdasError, match="batch size must be at least 1"):
        batch_indices(10, 0, g)
