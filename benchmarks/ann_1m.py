"""Item lookup on a synthetic 1M-item catalogue: ANN recall@10 against exact search, and latency.

    .venv/bin/python benchmarks/ann_1m.py [--items 1000000] [--dim 64] [--queries 1000]

Vectors are drawn like ALS item factors are shaped: a mixture of 2,000 Gaussian clusters of
different popularity (item vectors are not uniform noise). Queries are "customer vectors":
sums of a few item vectors plus noise. Builds the index ``recommenders.index.ItemIndex.build``
picks for that size (HNSW above 200k items) and, for comparison, IVF-Flat; searches run on one
thread. Prints build time, recall@10 vs exact inner product, and latency per query.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def catalogue(n: int, dim: int, rng) -> np.ndarray:
    centres = rng.standard_normal((2000, dim)).astype(np.float32)
    sizes = rng.zipf(1.3, 2000).astype(np.float64)
    which = rng.choice(2000, size=n, p=sizes / sizes.sum())
    scale = rng.uniform(0.2, 1.5, size=(n, 1)).astype(np.float32)
    return (centres[which] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)) * scale


def main() -> int:
    import faiss

    from recommenders.index import ItemIndex

    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    items = catalogue(args.items, args.dim, rng)
    picks = rng.integers(0, args.items, size=(args.queries, 5))
    queries = items[picks].sum(axis=1) + 0.3 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)

    faiss.omp_set_num_threads(1)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(items)
    started = time.perf_counter()
    _, truth = exact.search(queries, 10)
    exact_ms = 1000 * (time.perf_counter() - started) / args.queries
    print(f"{args.items:,} items x {args.dim} dims, {args.queries} queries, one search thread")
    print(f"exact (IndexFlatIP)            recall@10 1.000   {exact_ms:8.3f} ms/query")

    faiss.omp_set_num_threads(0)
    started = time.perf_counter()
    built = ItemIndex.build(items)
    build_s = time.perf_counter() - started
    ivf_quantizer = faiss.IndexFlatIP(args.dim)
    nlist = int(4 * np.sqrt(args.items))
    ivf = faiss.IndexIVFFlat(ivf_quantizer, args.dim, nlist, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    ivf.train(items[rng.choice(args.items, size=min(args.items, 100 * nlist), replace=False)])
    ivf.add(items)
    ivf_build_s = time.perf_counter() - started
    faiss.omp_set_num_threads(1)

    def measure(name: str, search, build: float) -> None:
        started = time.perf_counter()
        found = np.stack([search(q) for q in queries])
        ms = 1000 * (time.perf_counter() - started) / args.queries
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
        print(f"{name:<30} recall@10 {recall:.3f}   {ms:8.3f} ms/query   build {build:6.1f} s")

    raw = built._index
    for ef in (64, 128, 256):
        if hasattr(raw, "hnsw"):
            raw.hnsw.efSearch = ef
        measure(f"ItemIndex.build: {type(raw).__name__} ef={ef}", lambda q: built.search(q, 10)[0], build_s)
        if not hasattr(raw, "hnsw"):
            break
    for nprobe in (8, 32, 64):
        ivf.nprobe = nprobe
        measure(f"IVFFlat nlist={nlist} nprobe={nprobe}", lambda q: ivf.search(q.reshape(1, -1), 10)[1][0], ivf_build_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
