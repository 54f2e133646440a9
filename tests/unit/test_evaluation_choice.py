"""How `recsys evaluate` chooses the Online Retail blends on the validation month: the timing, and
each context's blend on its own task (the replay itself is stood in for by known scores)."""
import recommenders.evaluation as evaluation
from recommenders.evaluation import choose_retail_blends, retail_grid

VALIDATION = object()  # the validation invoices; nothing else may be replayed


def fake_replay(calls):
    def replay(model, invoices, methods, k, log=print):
        assert invoices is VALIDATION and len(methods) == 1
        config = methods[0].config
        weights = config.weights
        assert config.cart_weights == weights  # one blend per replay, scored in both contexts
        calls.append((config.repurchase_timing, weights))
        # cycle is best, but only where the next basket runs (session 0.5): chosen over the whole grid
        timing_bonus = 0.05 if config.repurchase_timing == "cycle" and weights.session == 0.5 else 0.0
        # next basket likes a light session and heavy repurchase, completion the full session and ALS
        next_hr = 0.5 + timing_bonus + (0.1 if weights.session == 0.5 else 0.0) + 0.01 * weights.repurchase
        completion_hr = 0.4 + timing_bonus + (0.1 if weights.session == 1.0 else 0.0) + 0.01 * weights.als
        metrics = {"next_basket": {f"hr@{k}": next_hr, f"recall@{k}": 0.1},
                   "basket_completion": {f"hr@{k}": completion_hr, f"recall@{k}": 0.1}}
        return {"methods": {"candidate": metrics}}
    return replay


def test_each_context_takes_its_own_best_blend(monkeypatch):
    calls = []
    monkeypatch.setattr(evaluation, "replay_retail", fake_replay(calls))
    chosen = choose_retail_blends(None, VALIDATION, retail_grid(), 10)
    assert chosen["timing"] == "cycle"
    assert chosen["weights"].session == 0.5 and chosen["weights"].repurchase == 6.0
    assert chosen["cart_weights"].session == 1.0 and chosen["cart_weights"].als == 1.0
    # every blend replayed once with every timing
    assert len(calls) == len(set(calls)) == chosen["blends_tried"] == 3 * len(retail_grid()) == 108
    assert abs(chosen["validation"]["next_basket"] - (0.5 + 0.05 + 0.1 + 0.06 + 0.1)) < 1e-9
