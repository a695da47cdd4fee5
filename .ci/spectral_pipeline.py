"""A corelay 1.0.0 spectral clustering pipeline, cached with this package's HashedHDF5.

Run it in an environment where corelay 1.0.0 was installed first and this package over it::

    python .ci/spectral_pipeline.py CACHE.h5 --expect computed   # first run: computes, writes
    python .ci/spectral_pipeline.py CACHE.h5 --expect cached     # second run: reads everything

The pipeline is corelay's own ``SpectralClustering``: an eigendecomposition of the graph
Laplacian, then k-means for several cluster counts and a t-SNE embedding side by side. Every
step whose output is an array (the pairwise distances, the eigendecomposition, each k-means and
the t-SNE) is given ``io=HashedHDF5(h5py.File(CACHE, 'a').require_group('proc_data'))``, as
corelay's documentation does. The affinity and Laplacian steps produce scipy.sparse matrices,
which HashedHDF5 does not store (neither did corelay 1.0.0's), so they are recomputed each run.

The first run must call every cached step's ``function`` once, miss the cache and write one
entry for each; the second must hit the cache for every step, call no ``function``, write
nothing, and return exactly the first run's outputs (saved beside the cache). Anything else
exits with status 1.
"""

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.sparse
from corelay.pipeline.spectral import SpectralClustering
from corelay.processor.base import FunctionProcessor, Processor
from corelay.processor.clustering import KMeans
from corelay.processor.distance import SciPyPDist
from corelay.processor.embedding import EigenDecomposition, TSNEEmbedding
from corelay.processor.flow import Parallel, Sequential

from corelay.io.hashing import ext_hash
from corelay.io.storage import HashedHDF5, NoDataSource

CLUSTER_COUNTS = (2, 3, 4, 5)
SAMPLES = 60
CACHE_GROUP = "proc_data"


def hashes_sparse() -> bool:
    """Tells whether ``ext_hash`` keys scipy.sparse input (the eigendecomposition's input)."""
    try:
        ext_hash(scipy.sparse.csr_matrix(np.eye(2)))
    except TypeError:
        return False
    return True


def to_dense(matrix: Any) -> Any:
    """Returns a dense array of a sparse matrix (the Laplacian), for a hash without sparse."""
    return matrix.toarray()


def build(io: HashedHDF5, sparse_input: bool) -> tuple[SpectralClustering, list[Processor]]:
    """Returns the pipeline and its steps that cache their outputs in ``io``."""
    eigen = EigenDecomposition(n_eigval=6, io=io)
    clusterings: list[Processor] = [KMeans(n_clusters=k, io=io) for k in CLUSTER_COUNTS]
    tsne = TSNEEmbedding(perplexity=10.0, io=io)
    distance = SciPyPDist(metric="euclidean", io=io)
    embedding: Processor = (
        eigen
        if sparse_input
        else Sequential([FunctionProcessor(processing_function=to_dense), eigen])
    )
    pipeline = SpectralClustering(
        pairwise_distance=distance,
        embedding=embedding,
        clustering=Parallel([*clusterings, tsne], broadcast=True),
    )
    return pipeline, [distance, eigen, *clusterings, tsne]


def count_calls(steps: list[Processor]) -> Counter[str]:
    """Wraps each step's ``function`` so that its calls are counted, by step name."""
    calls: Counter[str] = Counter()
    for step in steps:
        name = f"{type(step).__name__}{dict(step.identifiers())}"
        original: Callable[[Any], Any] = step.function

        def counted(data: Any, name: str = name, original: Callable[[Any], Any] = original) -> Any:
            calls[name] += 1
            return original(data)

        step.function = counted
        calls[name] = 0
    return calls


def count_io(io: HashedHDF5) -> Counter[str]:
    """Wraps the cache's ``read`` and ``write`` so that hits, misses and writes are counted."""
    counts: Counter[str] = Counter(hits=0, misses=0, writes=0)
    read, write = io.read, io.write

    def counted_read(data_in: Any, meta: Any) -> Any:
        try:
            value = read(data_in, meta)
        except NoDataSource:
            counts["misses"] += 1
            raise
        counts["hits"] += 1
        return value

    def counted_write(data_out: Any, data_in: Any, meta: Any) -> None:
        write(data_out, data_in, meta)
        counts["writes"] += 1

    io.read = counted_read
    io.write = counted_write
    return counts


def flatten(output: Any) -> list[np.ndarray[Any, Any]]:
    """Returns the arrays of a nested output, in order."""
    if isinstance(output, (tuple, list)):
        return [array for item in output for array in flatten(item)]
    return [np.asarray(output)]


def main() -> int:
    """Runs the pipeline once and checks what it computed against ``--expect``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--expect", choices=("computed", "cached"), required=True)
    args = parser.parse_args()
    expected_path = args.cache.with_suffix(".expected.npz")

    data = np.random.default_rng(0).normal(size=(SAMPLES, 5))
    data[: SAMPLES // 2] += 4.0  # two clear groups
    sparse_input = hashes_sparse()
    with h5py.File(args.cache, "a") as file:
        io = HashedHDF5(file.require_group(CACHE_GROUP))
        pipeline, steps = build(io, sparse_input)
        calls = count_calls(steps)
        cache = count_io(io)
        output = pipeline(data)

    arrays = flatten(output)
    print(f"eigendecomposition input: {'scipy.sparse' if sparse_input else 'dense copy'}")
    for name, count in calls.items():
        print(f"  {count} call(s)  {name}")
    print(f"cache: {cache['hits']} hits, {cache['misses']} misses, {cache['writes']} writes")
    problems: list[str] = []
    steps_count = len(steps)
    if args.expect == "computed":
        problems += [f"{name} ran {n} times, not once" for name, n in calls.items() if n != 1]
        if (cache["hits"], cache["misses"], cache["writes"]) != (0, steps_count, steps_count):
            problems.append(f"expected {steps_count} misses and writes and no hit")
        if not problems:
            np.savez(expected_path, *arrays)
    else:
        problems += [f"{name} ran {n} times on a full cache" for name, n in calls.items() if n]
        if (cache["hits"], cache["misses"], cache["writes"]) != (steps_count, 0, 0):
            problems.append(f"expected {steps_count} hits, no miss and no write")
        with np.load(expected_path) as expected:
            first = [expected[f"arr_{index}"] for index in range(len(expected.files))]
        if len(first) != len(arrays) or not all(
            a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(first, arrays, strict=False)
        ):
            problems.append("the outputs differ from the first run's")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not problems:
        print(f"OK: {args.expect}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
