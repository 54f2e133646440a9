"""Anonymous sessions: the next item of a guest basket, revealed one item at a time.

    .venv/bin/python benchmarks/session_next_item.py [--data-dir ../shared/data] [--cut 2011-10-01]
        [--baskets 300] [--max-reveals 30] [--k 20] [--seed 7] [--until DATE]

The protocol and the baselines are recommenders/session_evaluation.py's (the one `recsys evaluate`
records in docs/evaluation/): Online Retail's guest baskets from --cut on, revealed item by item in
line order as add_to_cart events of a new anonymous id, the next item scored (HR@k, MRR@k) for the
engine as shipped and for popularity, last-item co-occurrence, next-item transitions and session-kNN,
all trained on the purchases before --cut in the same run. With --until a month after --cut, it
scores a validation month instead. Prints one line per method and the number of reveals scored.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    parser.add_argument("--cut", default="2011-10-01")
    parser.add_argument("--baskets", type=int, default=300, help="test guest baskets (sampled), 0: all")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--max-reveals", type=int, default=30,
                        help="score at most this many reveals per basket (guest baskets run to hundreds of lines)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--until", default=None,
                        help="score baskets before this date only (with --cut a month earlier: a validation month)")
    args = parser.parse_args()

    from recommenders.evaluation import shipped_ranking
    from recommenders.loaders import Dataset, load_online_retail
    from recommenders.runtime import ModelRuntime
    from recommenders.session_evaluation import ENGINE_ROW, baselines, replay_sessions, session_split
    from recommenders.training import TrainParams, build_bundle

    started = time.perf_counter()
    dataset = load_online_retail(Path(args.data_dir) / "online-retail" / "online_retail.csv.gz")
    split = session_split(dataset, args.cut, args.until, args.baskets, args.seed)
    bundle = build_bundle(Dataset(split.train, dataset.items, dataset.source), TrainParams(evaluate=False),
                          progress=False)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    print(f"trained on {len(split.train):,} lines before {args.cut} in {time.perf_counter() - started:.0f} s; "
          f"{split.every} guest baskets of 2 items or more after it, {len(split.sessions)} scored", flush=True)
    methods = {ENGINE_ROW: shipped_ranking(), **baselines(model, split.train)}
    out = replay_sessions(model, split.sessions, methods, args.k, args.max_reveals)
    k = args.k
    for name, m in out["methods"].items():
        print(f"{name:<34} HR@{k} {m[f'hr@{k}']:.3f}  MRR@{k} {m[f'mrr@{k}']:.3f}  {m['ms_per_request']:.2f} ms per request")
    print(f"{out['reveals']} reveals scored, {len(split.sessions)} baskets; {time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
