"""Images in: decoded with PIL to square RGB uint8 arrays, batched, optionally cached decoded, and turned
into normalised (optionally augmented) float batches on the training device.

Workers and the cache move uint8 pixels (a quarter of the bytes of float32); normalisation and augmentation
run on the device, where they cost next to nothing on a GPU.
"""

import hashlib
import io
import os
import uuid
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from trainers.interface import Example, Opener

# The ImageNet channel statistics: any fixed pair would do for training from scratch; this one is familiar.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # example indices, uint8 images (B, S, S, 3), targets


def decode_image(data: bytes, size: int) -> np.ndarray:
    """RGB uint8 (size, size, 3), squashed to a square: JPEGs are decoded at a reduced scale when large."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size, size))  # lets libjpeg skip most of the work for big photos
        return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


class DecodedImages(Dataset):
    """Item i: (i, the i-th example's image decoded, its target). Reads the whole object first, so the
    opener's stream need not be seekable (http)."""

    def __init__(self, examples: Sequence[Example], opener: Opener, image_size: int):
        self.examples = examples
        self.opener = opener
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, int]:
        example = self.examples[index]
        with self.opener(example.uri) as stream:
            data = stream.read()
        return index, decode_image(data, self.image_size), example.target


def collate(items: list[tuple[int, np.ndarray, int]]) -> Batch:
    indices, images, targets = zip(*items, strict=True)
    return torch.tensor(indices), torch.from_numpy(np.stack(images)), torch.tensor(targets)


def epoch_batches(count: int, batch_size: int, shuffle_seed: int | None) -> list[list[int]]:
    """Index batches for one epoch, shuffled when a seed is given. A last batch of one example joins the one
    before it: batch norm cannot train on a single example, and every example is seen each epoch."""
    if shuffle_seed is None:
        order = list(range(count))
    else:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(shuffle_seed)).tolist()
    batches = [sorted(order[start : start + batch_size]) for start in range(0, count, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()  # popped first: `batches[-2] += batches.pop()` would store into the wrong batch
        batches[-1] += last
    return batches


def shuffle_seed(seed: int, epoch: int) -> int:
    """The order seed of one epoch of a run's seed (a 63-bit integer, independent across epochs)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


class ShuffledBatches:
    """A DataLoader batch sampler whose order is a pure function of `shuffle_seed` (None: in order), set
    before each epoch: the DataLoader may iterate its sampler more than once per epoch (with workers, it
    does on the first), so drawing from a running generator here would make runs differ."""

    def __init__(self, count: int, batch_size: int):
        self.count, self.batch_size = count, batch_size
        self.shuffle_seed: int | None = None
        self.length = len(epoch_batches(count, batch_size, None))

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[list[int]]:
        return iter(epoch_batches(self.count, self.batch_size, self.shuffle_seed))


def decoding_loader(
    dataset: DecodedImages, batches: ShuffledBatches, *, num_workers: int, pin_memory: bool
) -> DataLoader:
    # torch's default of two batches ahead per worker: they travel through /dev/shm, often small in containers.
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


class DecodedCache:
    """Every example's decoded image in one memory-mapped .npy file of shape (N, S, S, 3) uint8.

    The file is named by the examples' URIs and the image size, so a later run over the same frozen slice at
    the same size (with the same `cache_dir`) reuses it. It is filled while the first epoch decodes and
    renamed into place only when complete; a half-written file never looks complete.
    """

    def __init__(self, cache_dir: Path, examples: Sequence[Example], image_size: int):
        digest = hashlib.sha256(f"{image_size}\n".encode())
        for example in examples:
            digest.update(example.uri.encode() + b"\n")
        self.path = cache_dir / f"decoded-{image_size}px-{len(examples)}-{digest.hexdigest()[:24]}.npy"
        self.shape = (len(examples), image_size, image_size, 3)
        self.array: np.ndarray | None = None
        self._partial: Path | None = None
        if self.path.exists():
            array = np.load(self.path, mmap_mode="r")
            if array.shape == self.shape and array.dtype == np.uint8:
                self.array = array

    @property
    def complete(self) -> bool:
        return self.array is not None and self._partial is None

    def start_filling(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(f"{self.path.stem}.{uuid.uuid4().hex[:8]}.partial")
        self.array = np.lib.format.open_memmap(self._partial, mode="w+", dtype=np.uint8, shape=self.shape)

    def write(self, indices: torch.Tensor, images: torch.Tensor) -> None:
        assert self.array is not None, "start_filling() first"
        self.array[indices.numpy()] = images.numpy()

    def finish(self) -> None:
        assert isinstance(self.array, np.memmap) and self._partial is not None, "start_filling() first"
        self.array.flush()
        os.replace(self._partial, self.path)  # atomic: concurrent builders of the same file write the same bytes
        self._partial = None
        self.array = np.load(self.path, mmap_mode="r")

    def discard(self) -> None:
        if self._partial is not None:
            self.array = None
            self._partial.unlink(missing_ok=True)
            self._partial = None


def filling_cache(batches: Iterator[Batch], cache: DecodedCache) -> Generator[Batch]:
    """Pass decoded batches through while a background thread copies them into the cache."""
    cache.start_filling()
    completed = False
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer") as writer:
            pending: list[Future] = []
            for batch in batches:
                pending.append(writer.submit(cache.write, batch[0], batch[1]))
                yield batch
            for write in pending:
                write.result()
        cache.finish()
        completed = True
    finally:  # an epoch cut short (a cancelled run) leaves no partial file behind
        if not completed:
            cache.discard()


def cached_batches(
    cache: DecodedCache, targets: torch.Tensor, batches: list[list[int]], *, pin_memory: bool, threads: int
) -> Generator[Batch]:
    """Batches gathered from the memory-mapped cache by a few threads, a few batches ahead of the consumer,
    straight into (pinned) tensors ready for a non-blocking copy to the GPU."""
    array = cache.array
    assert array is not None, "a complete cache"

    def gather(indices: list[int]) -> Batch:
        index = torch.tensor(indices, dtype=torch.long)
        images = torch.empty((len(indices), *array.shape[1:]), dtype=torch.uint8, pin_memory=pin_memory)
        # mode "clip" lets numpy write straight into `out` (the indices are valid anyway)
        np.take(array, index.numpy(), axis=0, out=images.numpy(), mode="clip")
        return index, images, targets[index]

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cache-reader") as readers:
        ahead: deque[Future] = deque()
        for indices in batches:
            ahead.append(readers.submit(gather, indices))
            if len(ahead) > threads * 2:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


class DeviceImages:
    """uint8 (B, S, S, 3) batches on the device -> normalised float (B, 3, S, S) in channels-last layout,
    with light augmentation when asked: a random horizontal flip and a small random zoom and shift."""

    def __init__(self, device: torch.device, *, augment_seed: int | None):
        self.device = device
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
        # Augmentation parameters come from a CPU generator: the same for a seed on any device.
        self.generator = torch.Generator().manual_seed(augment_seed) if augment_seed is not None else None

    def __call__(self, images: torch.Tensor, *, augment: bool) -> torch.Tensor:
        batch = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        batch = (batch - self.mean) / self.std
        if augment and self.generator is not None:
            batch = self._augment(batch)
        return batch

    def _augment(self, batch: torch.Tensor) -> torch.Tensor:
        count = batch.shape[0]
        flip = torch.where(torch.rand(count, generator=self.generator) < 0.5, -1.0, 1.0)
        scale = 0.85 + 0.15 * torch.rand(count, generator=self.generator)
        shift = (torch.rand(count, 2, generator=self.generator) - 0.5) * 0.2
        theta = torch.zeros(count, 2, 3)
        theta[:, 0, 0] = scale * flip
        theta[:, 1, 1] = scale
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta.to(self.device, non_blocking=True), list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
