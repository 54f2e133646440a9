"""How long a similar-sessions lookup takes (recommenders/sessions.py), on Online Retail.

    .venv/bin/python benchmarks/session_lookup.py [--data-dir ../shared/data] [--lookups 2000]

Builds the session arrays from every usable event (as training does), then looks up random
windows of 10 items (among items with sessions) and prints the time per lookup: plain (p50, p99),
and the best of 5 tries of each window (what the lookup costs with scheduling noise taken out).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()

    from recommenders.loaders import load_online_retail
    from recommenders.sessions import SESSION_WINDOW, session_arrays, similar_session_candidates
    from recommenders.training import TrainParams, aggregate, usable_events

    events = usable_events(load_online_retail(Path(args.data_dir) / "online-retail" / "online_retail.csv.gz"))
    inter = aggregate(events)
    p = TrainParams()
    started = time.perf_counter()
    a = session_arrays(events, inter.item_ids, inter.user_ids, p.transition_window, p.transition_neighbours,
                       p.sessions_per_item, p.session_knn_max_sessions, p.max_basket_items)
    print(f"session arrays built in {time.perf_counter() - started:.1f} s: {len(a['sess_indptr']) - 1:,} sessions, "
          f"{a['sess_items'].size:,} session items, {sum(v.nbytes for v in a.values()) / 1e6:.1f} MB")
    rng = np.random.default_rng(0)
    with_sessions = np.flatnonzero(np.diff(a["item_sess_indptr"]) > 0)

    def lookup(latest):
        t = time.perf_counter()
        similar_session_candidates(a["sess_indptr"], a["sess_items"], a["item_sess_indptr"], a["item_sess"], latest)
        return time.perf_counter() - t

    windows = [rng.choice(with_sessions, SESSION_WINDOW, replace=False).tolist() for _ in range(args.lookups)]
    plain = np.array([lookup(w) for w in windows]) * 1e6
    best = np.array([min(lookup(w) for _ in range(5)) for w in windows[:500]]) * 1e6
    print(f"lookup of {SESSION_WINDOW} items: p50 {np.percentile(plain, 50):.0f} us, p99 {np.percentile(plain, 99):.0f} us "
          f"({args.lookups} lookups)")
    print(f"best of 5 tries per window: p50 {np.percentile(best, 50):.0f} us, p99 {np.percentile(best, 99):.0f} us, "
          f"max {best.max():.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
