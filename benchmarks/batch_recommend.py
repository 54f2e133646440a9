"""Batch recommendations for a campaign: customers per second, by Ray tasks in flight and by owners.

    .venv/bin/python benchmarks/batch_recommend.py [--owners 2] [--workers 1,2,4,8] [--k 10] [--cpus 2]

The whole service on local Ray (``--cpus``) serving the Online Retail model (from ../shared/data,
trained here without its holdout check), ``--owners`` owners fixed; then `actors.batch_recommend.run`
(what `recsys batch-recommend` runs) over every customer the model knows, once per worker count,
into a CSV in a temporary directory. The owners rank, so the rate follows the owners and the cores;
more tasks than owners only keep every owner busy.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=2)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args()

    import ray

    from actors import batch_recommend as batch
    from benchmarks.bench_auth import bench_auth
    from engine.config import ServeConfig
    from engine.scaling import ScalingConfig
    from gateway.server import free_loopback_port as free_port, start_service
    from recommenders.loaders import load_online_retail
    from recommenders.training import TrainParams, train

    tmp = Path(tempfile.mkdtemp(prefix="batch-recommend-"))
    dataset = load_online_retail(Path(args.data_dir) / "online-retail" / "online_retail.csv.gz")
    bundle = train(dataset, TrainParams(evaluate=False), progress=False)
    _, auth = bench_auth()
    config = ServeConfig(http_port=free_port(), grpc_port=free_port(), partitions=64, auth=auth,
                         owners=ScalingConfig(min_owners=args.owners, max_owners=args.owners), autoscale_owners=False,
                         store_url=f"sqlite:///{tmp}/service.db", model_dir=str(tmp / "models"))
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, namespace="recsys", log_to_driver=False)
    service = start_service(config, bundle)
    try:
        customers = batch.audience(None)
        print(f"{len(customers)} customers, {args.owners} owners, {args.cpus} CPUs, k {args.k}, chunks of {args.chunk}")
        for workers in [int(w) for w in args.workers.split(",")]:
            writer = batch.RowWriter(tmp / f"campaign-{workers}.csv")
            started = time.perf_counter()
            summary = batch.run(customers, batch.BatchSpec(k=args.k), writer, workers=workers, chunk=args.chunk,
                                progress=False)
            writer.close()
            seconds = time.perf_counter() - started
            print(f"workers {workers}: {len(customers) / seconds:,.0f} customers/s ({seconds:.1f} s, "
                  f"{summary['rows']} rows, {summary['errors']} errors)")
    finally:
        service.stop()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
