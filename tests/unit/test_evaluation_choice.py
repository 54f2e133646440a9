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


def test_history_and_policy_are_chosen_on_validation_over_the_chosen_blends(monkeypatch):
    from dataclasses import replace

    from recommenders.evaluation import RETAIL_OPTIONS, choose_retail_options, shipped_ranking

    seen = []

    def replay(model, invoices, methods, k, log=print):
        assert invoices is VALIDATION and len(methods) == 1
        config = methods[0].config
        seen.append(config)
        # history helps completion a little and hurts the next basket more; hiding recent purchases hurts both
        next_hr = 0.7 - 0.05 * config.weights.history - (0.02 if config.repurchase_policy != "exclude_never" else 0)
        completion_hr = 0.6 + 0.01 * config.cart_weights.history
        return {"methods": {"candidate": {"next_basket": {f"hr@{k}": next_hr, f"recall@{k}": 0.1},
                                          "basket_completion": {f"hr@{k}": completion_hr, f"recall@{k}": 0.1}}}}

    monkeypatch.setattr(evaluation, "replay_retail", replay)
    blends = replace(shipped_ranking(), weights=replace(shipped_ranking().weights, history=1.0, session=0.75))
    chosen = choose_retail_options(None, VALIDATION, blends, 10, RETAIL_OPTIONS[:1])
    assert chosen["setting"] == {"history": 0.0, "repurchase_policy": "exclude_never"}
    first = RETAIL_OPTIONS[0]
    assert len(seen) == len(chosen["tried"]) == 4 == len(first["history"]) * len(first["repurchase_policy"])
    config = chosen["config"]
    # the option is set in both blends; the chosen blends' other keys are kept
    assert config.weights.history == config.cart_weights.history == 0.0 and config.weights.session == 0.75
    assert config.repurchase_policy == "exclude_never"
    assert abs(chosen["validation"]["next_basket"] - 0.8) < 1e-9


def test_later_stages_build_on_the_best_of_the_earlier_and_a_blend_key_sets_its_blend_alone(monkeypatch):
    from recommenders.evaluation import RETAIL_OPTIONS, choose_retail_options, shipped_ranking

    seen = []

    def replay(model, invoices, methods, k, log=print):
        config = methods[0].config
        seen.append(config)
        # transitions help a cart (most at 8) and hurt the next basket; similar sessions do nothing
        next_hr = 0.7 - 0.1 * config.weights.transitions - 0.05 * config.weights.history
        completion_hr = 0.6 - 0.01 * (config.cart_weights.transitions - 8.0) ** 2
        return {"methods": {"candidate": {"next_basket": {f"hr@{k}": next_hr, f"recall@{k}": 0.1},
                                          "basket_completion": {f"hr@{k}": completion_hr, f"recall@{k}": 0.1}}}}

    monkeypatch.setattr(evaluation, "replay_retail", replay)
    chosen = choose_retail_options(None, VALIDATION, shipped_ranking(), 10)
    stages = []
    for stage in RETAIL_OPTIONS:
        n = 1
        for values in stage.values():
            n *= len(values)
        stages.append(n)
    assert len(seen) == len(chosen["tried"]) == sum(stages)
    config = chosen["config"]
    assert config.cart_weights.transitions == 8.0 and config.weights.transitions == 0.0
    # a tie keeps the first value tried (off); the first stage's choice is carried through
    assert config.weights.similar_sessions == config.cart_weights.similar_sessions == 0.0
    assert config.weights.history == 0.0 and chosen["setting"]["history"] == 0.0
    assert chosen["setting"]["cart_weights.transitions"] == 8.0
    # every later replay ran over the earlier stages' best
    assert all(c.weights.history == 0.0 for c in seen[len(chosen["tried"]) - 4:])
