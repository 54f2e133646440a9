"""The fast offline evaluation on the real data sets (the full one is `make evaluate`).

Relative assertions on the same split: the engine's pipeline beats popularity and plain ALS.
"""
import json

import pytest

from scripts.cli import main
from tests.conftest import DATA_DIR


@pytest.mark.slow
def test_engine_beats_popularity_and_plain_als(tmp_path):
    assert (DATA_DIR / "movielens-100k" / "u.data").exists(), f"real data expected under {DATA_DIR}"
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--fast", "--seeds", "1", "--max-customers", "200", "--data-dir", str(DATA_DIR),
                 "--output-json", str(out), "--report-dir", str(tmp_path / "report")]) == 0
    results = json.loads(out.read_text())
    ml = results["movielens"]["methods"]
    engine = ml["engine (blend tuned for MovieLens)"]["ndcg@10"]["mean"]
    assert engine > ml["plain ALS"]["ndcg@10"]["mean"]
    assert engine > ml["popularity"]["ndcg@10"]["mean"]
    retail = results["online_retail"]["methods"]
    # the engine as `recsys train` + `recsys serve` ship it (the defaults, fitted to the data), by construction
    mine = retail["engine (as shipped, live state)"]
    from engine.config import fitted_ranking, load_serve_config
    from recommenders.evaluation import MOVIELENS_ENGINE_ROW, ranking_record

    defaults = load_serve_config().ranking
    assert results["online_retail"]["shipped_config"] == ranking_record(defaults)
    assert results["online_retail"]["engine_config"] == ranking_record(
        fitted_ranking(defaults, results["online_retail"]["fitted"]))
    assert results["movielens"]["shipped_config"] == ranking_record(defaults)
    # MovieLens as shipped, with no request filter: better than popularity (the defaults' repurchases
    # would fill every answer with rated films were the fitting not to choose the policy)
    fitted = ml[MOVIELENS_ENGINE_ROW]["ndcg@10"]["mean"]
    assert fitted > ml["popularity"]["ndcg@10"]["mean"]
    assert results["movielens"]["fitted"][0]["ranking"]["repurchase_policy"] == "exclude_always"
    for baseline in ("popularity", "plain ALS (no live state)"):
        for task in ("next_basket", "basket_completion"):
            assert mine[task]["hr@10"] > retail[baseline][task]["hr@10"], (baseline, task)
    # both blends chosen on validation and recorded with their validation scores
    assert set(results["online_retail"]["chosen_cart_weights"]) == set(results["online_retail"]["chosen_weights"])
    assert set(results["online_retail"]["validation_best"]) == {"next_basket", "basket_completion"}
    assert (tmp_path / "report" / "evaluation.png").stat().st_size > 10_000
    report = (tmp_path / "report" / "evaluation.md").read_text()
    assert "MovieLens" in report and "Request filters the protocol adds" in report
