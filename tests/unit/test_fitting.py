"""`recsys train` fits the engine to the data it is given, records the choice, and the shards serve it
by default; a key the config file sets wins (issue 18, item 3)."""
import json
from dataclasses import replace

import numpy as np
import pytest

from actors.shard import CustomerShardLogic
from actors.store import SqliteEventStore
from engine.config import RankingConfig, ServeConfig, anonymous_blend, cart_blend, fitted_ranking, load_serve_config
from engine.errors import InvalidArgument
from engine.queries import RecommendQuery
from recommenders.fitting import check_customers
from recommenders.runtime import ModelRuntime
from recommenders.training import MIN_CHECK_CUSTOMERS, TrainParams, train

FITTED = {"ranking": {"repurchase_policy": "exclude_always", "weights": {"als": 1.0, "history": 0.25}},
          "params": {"factors": 32}}


@pytest.fixture(scope="module")
def movielens_bundle(data_dir):
    from recommenders.loaders import load_movielens

    return train(load_movielens(data_dir / "movielens-100k"), TrainParams(iterations=5, threads=1), progress=False)


def test_training_on_a_film_catalogue_chooses_not_to_bring_back_what_was_rated(movielens_bundle):
    """The shipped defaults re-offer what a customer consumed (Online Retail re-buys): on MovieLens they
    fill every answer with rated films. Fitted on its own holdout, the bundle leaves them out."""
    fitted, check = movielens_bundle.manifest["fitted"], movielens_bundle.manifest["offline_metrics"]
    assert fitted["ranking"]["repurchase_policy"] == "exclude_always"
    assert fitted["validation_defaults"]["hr@10"] < 0.05 < fitted["validation_chosen"]["hr@10"]
    assert fitted["customers"] >= MIN_CHECK_CUSTOMERS and len(fitted["tried"]) >= 20
    # the check is on the other half of the held-out customers, ranked as served, with no request filter
    assert check["sufficient"] and check["customers"] >= MIN_CHECK_CUSTOMERS
    assert check["repurchase_policy"] == "exclude_always" and check["hr@10"] > check["popularity_hr@10"] + 0.1
    # a ratings log entered in one sitting: a random share of each user's ratings is held out, where
    # the item-item model (EASE) earns its place beside ALS, chosen by nDCG@10
    assert fitted["protocol"].startswith("per-customer random holdout") and fitted["criterion"] == "ndcg@10"
    assert fitted["ranking"]["weights"]["history"] > 0
    assert fitted["validation_chosen"]["ndcg@10"] > fitted["validation_defaults"]["ndcg@10"]
    # the bundle is trained with the chosen settings; the manifest says so
    for name, value in fitted["params"].items():
        assert movielens_bundle.manifest["params"][name] == value
    json.dumps(movielens_bundle.manifest)  # plain JSON, as saved


def test_the_served_configuration_is_the_fitted_one_unless_the_config_file_says_otherwise(tmp_path, movielens_bundle,
                                                                                          data_dir):
    model = ModelRuntime(movielens_bundle.arrays, movielens_bundle.manifest)
    customer = next(iter(model.user_index))
    rated = model.purchased_item_ids(customer) | {str(model.item_ids[i]) for i in
                                                  model.history(model.user_index[customer])[0]}

    def answer(ranking: RankingConfig, name: str) -> set[str]:
        shard = CustomerShardLogic(0, model, ranking, SqliteEventStore(tmp_path / name))
        items = shard.recommend(RecommendQuery(customer_id=customer, channel="web", k=10), 1_800_000_000_000).items
        return {i.item_id for i in items}

    # no --config: the fitted policy serves, no rated film comes back
    assert not answer(load_serve_config().ranking, "default.db") & rated
    # a config file that sets the policy wins over the fit
    toml = tmp_path / "serve.toml"
    toml.write_text('[ranking]\nrepurchase_policy = "exclude_never"\n')
    configured = load_serve_config(toml).ranking
    assert configured.explicit == frozenset({"repurchase_policy"})
    assert len(answer(configured, "configured.db") & rated) >= 5


def test_fitted_ranking_overlays_what_the_file_left_unset(tmp_path):
    served = fitted_ranking(RankingConfig(), FITTED)
    assert served.repurchase_policy == "exclude_always"
    assert (served.weights.als, served.weights.history) == (1.0, 0.25)
    # the other blends follow the fitted next-basket weights, as they follow [ranking.weights]
    assert served.cart_weights == cart_blend(served.weights)
    assert served.anonymous_weights == anonymous_blend(served.weights)
    toml = tmp_path / "serve.toml"
    toml.write_text("[ranking.weights]\nals = 0.1\n[ranking.cart_weights]\nsession = 3.0\n")
    configured = load_serve_config(toml).ranking
    served = fitted_ranking(configured, FITTED)
    assert served.weights.als == 0.1 and served.weights.history == 0.25  # the file's key wins, the other is fitted
    # the cart blend keeps the file's key and follows the fit in the others, as it follows [ranking.weights]
    assert served.cart_weights == cart_blend(served.weights, session=3.0) and served.cart_weights.history == 0.25
    assert served.anonymous_weights == anonymous_blend(served.weights)
    # a file that sets one key of the cart blend keeps it; the blend's other keys follow the fit
    toml.write_text("[ranking.cart_weights]\nsession = 3.0\n")
    configured = load_serve_config(toml).ranking
    assert configured.explicit == frozenset({"cart_weights.session"})
    served = fitted_ranking(configured, FITTED)
    assert served.cart_weights == cart_blend(served.weights, session=3.0) and served.cart_weights.history == 0.25
    # "explicit" is not a key a file may set
    toml.write_text("[ranking]\nexplicit = []\n")
    with pytest.raises(InvalidArgument, match="explicit"):
        load_serve_config(toml)
    # no fit (an older bundle, or --no-fit): the configuration as it is
    assert fitted_ranking(configured, None) is configured
    assert fitted_ranking(configured, {"skipped": "too few customers"}) is configured
    assert ServeConfig().ranking == RankingConfig() and RankingConfig().explicit == frozenset()


def test_choices_and_check_are_made_on_different_customers():
    customers = np.array([f"c{i}" for i in range(1000)])
    fit, check = check_customers(customers, seed=42, limit=2000, minimum=200)
    assert len(fit) == len(check) == 500 and not set(fit) & set(check)
    assert set(fit) | set(check) == set(customers)
    # too few for two halves of the minimum: no fitting, the check gets them all
    fit, check = check_customers(customers[:399], seed=42, limit=2000, minimum=200)
    assert len(fit) == 0 and len(check) == 399


def test_what_the_caller_sets_is_not_searched(data_dir):
    from recommenders.loaders import load_movielens
    from scripts.cli import _train_params, build_parser

    args = build_parser().parse_args(["train", "--factors", "16", "--iterations", "5", "--threads", "1"])
    params = _train_params(args)
    assert params.fixed == ("factors", "iterations") and params.factors == 16
    fitted = train(load_movielens(data_dir / "movielens-100k"), params, progress=False).manifest["fitted"]
    assert all("factors" not in t["change"] for t in fitted["tried"]) and "factors" not in fitted["params"]
    args = build_parser().parse_args(["train", "--no-fit"])
    assert _train_params(args).fit is False
    no_fit = replace(params, fit=False)
    bundle = train(load_movielens(data_dir / "movielens-100k"), no_fit, progress=False)
    assert "skipped" in bundle.manifest["fitted"] and fitted_ranking(RankingConfig(), bundle.manifest["fitted"]) == RankingConfig()


def test_a_bundle_whose_fit_cannot_be_served_is_refused_at_load(tmp_path, synthetic_bundle):
    from recommenders.bundle import ModelBundle, load_bundle, save_bundle

    manifest = {**synthetic_bundle.manifest, "version": "bad-fit", "fitted": {"ranking": {"weights": {"nonsense": 1.0}}}}
    path = save_bundle(ModelBundle(manifest, synthetic_bundle.arrays), tmp_path, make_current=False)
    with pytest.raises(InvalidArgument, match="fitted ranking"):
        load_bundle(path)


def _log(spread_ms: int):
    """300 customers of 10 ratings each, customer c from day c on, their ratings ``spread_ms`` apart:
    the last 10 % in time belongs to few customers, so each customer's own events are held out."""
    import pandas as pd
    from recommenders.loaders import Dataset, _items_from_events

    rows = [{"event_id": f"e{c}-{j}", "customer_id": f"c{c}", "item_id": f"i{(c * 7 + j * 3) % 50}",
             "timestamp_ms": 1_600_000_000_000 + c * 86_400_000 * 40 + j * spread_ms, "event_type": "rate",
             "session_id": f"s{c}", "quantity": 1.0, "price": float("nan"), "channel": "web", "store_id": "",
             "country": ""} for c in range(300) for j in range(10)]
    events = pd.DataFrame(rows)
    return Dataset(events, _items_from_events(events), "test")


def test_a_log_entered_in_one_sitting_holds_out_at_random_and_one_spread_in_time_its_last_events():
    from recommenders.training import _holdout_split

    for spread, expected in ((60_000, "per-customer random holdout"), (3 * 86_400_000, "per-customer temporal holdout")):
        dataset = _log(spread)
        past, future, cuts, protocol = _holdout_split(dataset, TrainParams())
        assert protocol.startswith(expected), protocol
        # one of each customer's 10 events held out, the rest their past, asked after their past
        assert future.groupby("customer_id").size().eq(1).all() and len(cuts) == 300
        assert len(past) + len(future) == len(dataset.events)
        latest = dataset.events.groupby("customer_id")["timestamp_ms"].max()
        held_last = (future.set_index("customer_id")["timestamp_ms"] == latest[future["customer_id"]].to_numpy()).mean()
        if expected.startswith("per-customer random"):
            assert 0.0 < held_last < 0.5  # about 1 in 10 is the last by chance
            assert (cuts >= past.groupby("customer_id")["timestamp_ms"].max()[cuts.index]).all()
        else:
            assert held_last == 1.0


def test_a_small_catalogue_keeps_its_whole_item_item_model():
    from recommenders.training import ease_neighbours

    assert ease_neighbours(TrainParams(), 1682) == 1681  # MovieLens: every film's neighbours
    assert ease_neighbours(TrainParams(), 3919) == 200  # Online Retail: the strongest 200
    assert ease_neighbours(TrainParams(ease_neighbours=50), 1682) == 50  # what the caller set
