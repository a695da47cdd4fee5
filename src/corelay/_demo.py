"""The pipeline of ``corelay-io demo``: four NumPy steps, each cached with ``memoize``.

Synthetic images of four patterns -> attribution maps of a small random-feature classifier
(SmoothGrad-like gradient times input) -> a spectral embedding of the maps (``numpy.linalg.eigh``
of the normalised affinity of their nearest neighbours) -> k-means clusters of the embedding.
Each step takes a fraction of a second; cached, it takes milliseconds.
"""

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar, cast

import h5py
import numpy as np

from corelay.io.journal import open_journaled
from corelay.io.memoize import memoize
from corelay.io.storage import HashedHDF5

__all__ = ["STEPS", "DemoResult", "check_cache_file", "run_demo"]

Array = np.ndarray[Any, Any]
_SIDE = 32
_N_SAMPLES = 1000
_N_CLASSES = 4

_Step = TypeVar("_Step", bound=Callable[..., Any])


def make_samples(n_samples: int, seed: int) -> tuple[Array, Array]:
    """Images of four patterns (two blobs, two gratings), shifted and noisy, and their labels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:_SIDE, 0:_SIDE] / (_SIDE - 1)
    patterns = np.stack(
        [
            np.exp(-((x - 0.3) ** 2 + (y - 0.3) ** 2) / 0.02),
            np.exp(-((x - 0.7) ** 2 + (y - 0.6) ** 2) / 0.02),
            0.5 + 0.5 * np.sin(6 * np.pi * x),
            0.5 + 0.5 * np.sin(3 * np.pi * (x + y)),
        ]
    )
    labels = rng.integers(0, _N_CLASSES, n_samples)
    shifts = rng.integers(-3, 4, (n_samples, 2))
    images = np.empty((n_samples, _SIDE, _SIDE))
    for index in range(n_samples):
        shift = (int(shifts[index, 0]), int(shifts[index, 1]))
        images[index] = np.roll(patterns[labels[index]], shift, axis=(0, 1))
    # Smooth noise: white noise blurred by a Gaussian, in the Fourier domain.
    kernel = np.fft.ifftshift(np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.002))
    noise = rng.standard_normal((n_samples, _SIDE, _SIDE))
    noise = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.fft.fft2(kernel)))
    images += 0.1 * noise / noise.std()
    return images.astype(np.float32), labels.astype(np.int64)


def attribute(images: Array, labels: Array, n_hidden: int, n_noise: int, seed: int) -> Array:
    """Attribution maps: gradient times input of a random-feature classifier, over noisy copies."""
    rng = np.random.default_rng(seed)
    inputs = images.reshape(len(images), -1).astype(np.float64)
    n_inputs = int(inputs.shape[1])
    weights = rng.standard_normal((n_inputs, n_hidden)) / np.sqrt(n_inputs)
    hidden = np.maximum(inputs @ weights, 0.0)
    targets = np.eye(_N_CLASSES)[labels]
    gram: Array = hidden.T @ hidden + 1e-2 * np.eye(n_hidden)
    projected: Array = hidden.T @ targets
    readout: Array = np.linalg.solve(gram, projected)  # a ridge-regression readout
    maps = np.zeros_like(inputs)
    for _ in range(n_noise):
        noisy = inputs + 0.1 * rng.standard_normal(inputs.shape)
        active = (noisy @ weights) > 0
        # The gradient of each sample's class score.
        gradient = (active * readout[:, labels].T) @ weights.T
        maps += gradient * noisy
    return (maps / n_noise).reshape(images.shape).astype(np.float32)


def spectral_embedding(maps: Array, n_neighbors: int, n_components: int) -> Array:
    """The leading nontrivial eigenvectors of the maps' normalised nearest-neighbour affinity."""
    count = len(maps)
    half = _SIDE // 2
    pooled = np.abs(maps).reshape(count, half, 2, half, 2).mean(axis=(2, 4))
    features = pooled.reshape(count, -1).astype(np.float64)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    squared = np.sum(features**2, axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * features @ features.T, 0.0)
    neighbors = np.argpartition(distances, n_neighbors + 1, axis=1)[:, : n_neighbors + 1]
    rows = np.repeat(np.arange(count), n_neighbors + 1)
    columns = neighbors.ravel()
    scale = np.median(distances[rows, columns])
    affinity = np.zeros((count, count))
    affinity[rows, columns] = np.exp(-distances[rows, columns] / scale)
    affinity = np.maximum(affinity, affinity.T)
    np.fill_diagonal(affinity, 0.0)
    inverse_root = 1 / np.sqrt(affinity.sum(axis=1))
    normalized = inverse_root[:, None] * affinity * inverse_root[None, :]
    _, vectors = np.linalg.eigh(normalized)
    embedding = vectors[:, ::-1][:, 1 : n_components + 1] * inverse_root[:, None]
    result: Array = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
    return result


def cluster(embedding: Array, n_clusters: int, n_restarts: int, seed: int) -> Array:
    """K-means clusters of the embedding: the best of several random starts."""
    rng = np.random.default_rng(seed)
    best = np.zeros(len(embedding), dtype=np.int64)
    best_inertia = np.inf
    for _ in range(n_restarts):
        centers = embedding[rng.choice(len(embedding), n_clusters, replace=False)]
        for _ in range(100):
            distances = ((embedding[:, None, :] - centers[None]) ** 2).sum(axis=-1)
            assignment = distances.argmin(axis=1)
            moved = np.stack(
                [
                    embedding[assignment == k].mean(axis=0) if np.any(assignment == k) else c
                    for k, c in enumerate(centers)
                ]
            )
            if np.allclose(moved, centers):
                break
            centers = moved
        distances = ((embedding[:, None, :] - centers[None]) ** 2).sum(axis=-1)
        inertia = float(distances.min(axis=1).sum())
        if inertia < best_inertia:
            best, best_inertia = distances.argmin(axis=1).astype(np.int64), inertia
    return best


class DemoResult:
    """What one run of the pipeline did: per step, whether it computed and how long it took."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, bool, float]] = []
        self.clusters: Array = np.zeros(0, dtype=np.int64)
        self.labels: Array = np.zeros(0, dtype=np.int64)


# The steps that computed in the current run. A module global, not a variable the wrapper below
# closes over: memoize keys a closure by the values it closes over, and this record changes.
_computed: list[str] = []


def _run_pipeline(file: h5py.File, result: DemoResult) -> None:
    computed = _computed
    computed.clear()

    def cached(step: _Step) -> _Step:
        @functools.wraps(step)
        def counted(*args: Any) -> Any:
            _computed.append(step.__name__)
            return step(*args)

        # One HashedHDF5 group per step, named after it.
        return cast(_Step, memoize(HashedHDF5(file.require_group(step.__name__)))(counted))

    def timed(step: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        output = step(*args)
        elapsed = time.perf_counter() - start
        result.steps.append((step.__name__, step.__name__ in computed, elapsed))
        return output

    images, labels = timed(cached(make_samples), _N_SAMPLES, 0)
    maps = timed(cached(attribute), images, labels, 256, 8, 1)
    embedding = timed(cached(spectral_embedding), maps, 10, _N_CLASSES)
    result.clusters = timed(cached(cluster), embedding, _N_CLASSES, 50, 2)
    result.labels = labels


STEPS = ("make_samples", "attribute", "spectral_embedding", "cluster")
"""The names of the pipeline's steps, which name their HashedHDF5 groups."""


def check_cache_file(path: Path) -> bool:
    """Tells whether ``path`` holds a cache file an earlier demo wrote, to be reused.

    Returns:
        ``True`` for a cache file of the demo; ``False`` if ``path`` is absent or empty.

    Raises:
        FileExistsError: ``path`` holds something else, which the demo must not touch.
    """
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return False
    try:
        with open_journaled(path, "r") as file:
            if set(file) <= set(STEPS):
                return True
    except OSError:
        pass
    raise FileExistsError(
        f"{path}: exists and is not a cache file of the demo; not touching it (use another --path)"
    )


def run_demo(path: Path, out: TextIO) -> list[DemoResult]:
    """Runs the pipeline twice on the cache file ``path``, printing what each step did.

    The first run computes every step whose output is not cached yet (an earlier demo on the same
    file cached them all) and caches its output; the second reopens the file and finds every
    output in the cache.

    Args:
        path: The cache file: created if absent or empty, else a cache file of an earlier demo
            (see :func:`check_cache_file`), whose entries are reused.
        out: Where to print.

    Returns:
        The two runs.
    """
    reused = check_cache_file(path)
    runs: list[DemoResult] = []
    modes: list[Literal["w", "a"]] = ["a" if reused else "w", "a"]
    titles = [
        "the cache of an earlier demo, reused" if reused else "empty cache",
        "the same inputs, the file reopened",
    ]
    for number, (mode, title) in enumerate(zip(modes, titles, strict=True), 1):
        result = DemoResult()
        with open_journaled(path, mode) as file:
            _run_pipeline(file, result)
        runs.append(result)
        print(f"run {number} ({title}):", file=out)
        for name, was_computed, seconds in result.steps:
            status = "computed" if was_computed else "cached"
            print(f"  {name:<20} {status:<9} {seconds:6.2f} s", file=out)
        total = sum(seconds for _, _, seconds in result.steps)
        print(f"  {'total':<20} {'':<9} {total:6.2f} s", file=out)
        hits = [name for name, was_computed, _ in result.steps if not was_computed]
        print(f"  read from the cache: {', '.join(hits) if hits else 'no step'}", file=out)
    first, second = runs
    same = np.array_equal(first.clusters, second.clusters)
    agreement = _agreement(first.labels, first.clusters)
    print(
        f"clusters: sizes {np.bincount(first.clusters).tolist()}, "
        f"{agreement:.0%} of the samples in their pattern's cluster;",
        file=out,
    )
    print(f"run 2 returned {'the same' if same else 'DIFFERENT'} clusters", file=out)
    return runs


def _agreement(labels: Array, clusters: Array) -> float:
    # The share of samples in the cluster most of their pattern's samples are in.
    table = np.zeros((_N_CLASSES, int(clusters.max()) + 1), dtype=np.int64)
    np.add.at(table, (labels, clusters), 1)
    return float(table.max(axis=1).sum() / len(labels))
