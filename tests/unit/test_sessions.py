"""Session models (recommenders/sessions.py): known-answer tests on data whose visit order is known."""
import numpy as np
import pandas as pd
import pytest

from engine.config import BlendWeights, RankingConfig
from engine.events import parse_event
from engine.queries import RecommendQuery
from engine.state import CustomerState, apply_event
from recommenders.bundle import load_bundle, save_bundle
from recommenders.loaders import Dataset
from recommenders.recommend import recommend
from recommenders.runtime import ModelRuntime
from recommenders.sessions import ordered_sessions, similar_session_candidates, transitions
from recommenders.training import TrainParams, build_bundle

T0 = 1_700_000_000_000
COLUMNS = ["event_id", "timestamp_ms", "customer_id", "session_id", "item_id", "event_type", "quantity", "price",
           "channel", "store_id", "country"]


def routes() -> Dataset:
    """Baskets whose lines always come in one order: a b c d e (customers r0..r29) and v w x y z
    (customers q0..q29); every line of a basket has the same time, so only the input order says
    which came first. Co-occurrence cannot tell b from e after a; the order can."""
    rows = []
    for route, items in (("r", "abcde"), ("q", "vwxyz")):
        for c in range(30):
            when = T0 + c * 60_000 + (0 if route == "r" else 30_000)
            for n, item in enumerate(items):
                rows.append((f"{route}{c}-{n}", when, f"{route}{c}", f"{route}{c}", item, "purchase",
                             1.0, 1.0, "web", "", ""))
    events = pd.DataFrame(rows, columns=COLUMNS)
    items = pd.DataFrame({"item_id": sorted(events["item_id"].unique())})
    items["name"] = items["item_id"]
    items["recommendable"] = True
    return Dataset(events, items, "routes")


@pytest.fixture(scope="module")
def route_model():
    bundle = build_bundle(routes(), TrainParams(factors=2, iterations=5, threads=1), progress=False)
    return ModelRuntime(bundle.arrays, bundle.manifest)


def only(source: str, **weights) -> RankingConfig:
    blend = BlendWeights(**{**{name: 0.0 for name in BlendWeights().as_dict()}, source: 1.0, **weights})
    return RankingConfig(weights=blend, cart_weights=blend, anonymous_weights=blend)


def anonymous_cart(*items: str) -> CustomerState:
    state = CustomerState("visitor-1")
    for n, item in enumerate(items):
        apply_event(state, parse_event({"event_id": f"v{n}", "customer_id": "visitor-1", "event_type": "add_to_cart",
                                        "item_id": item, "channel": "web", "timestamp_ms": T0 + n}, T0 + n + 1))
    return state


def top(model, state, config, k=3):
    got = recommend(model, state, RecommendQuery(customer_id=state.customer_id, channel="web", k=k), config, T0 + 99)
    return got


def test_sessions_keep_the_input_order_of_lines_with_the_same_time_and_drop_repeats_in_a_row():
    events = pd.DataFrame([("e1", T0, "u", "s", "b", "view"), ("e2", T0, "u", "s", "a", "view"),
                           ("e3", T0, "u", "s", "a", "view"), ("e4", T0 + 5, "u", "s", "b", "view"),
                           ("e0", T0 - 9, "w", "", "c", "view")],
                          columns=["event_id", "timestamp_ms", "customer_id", "session_id", "item_id", "event_type"])
    items = np.array(["a", "b", "c"])
    sessions = ordered_sessions(events, items)
    # the session without an id is its customer's day; it started first
    assert sessions.indptr.tolist() == [0, 1, 4]
    assert [items[i] for i in sessions.items] == ["c", "b", "a", "b"]
    assert sessions.customer.tolist() == ["w", "u"]


def test_transitions_are_the_share_of_what_came_next_nearer_places_weighing_more():
    events = pd.DataFrame([(f"e{n}", T0, f"u{s}", f"s{s}", item, "view")
                           for s, basket in enumerate(["ab", "ab", "ac", "axb"]) for n, item in enumerate(basket)],
                          columns=["event_id", "timestamp_ms", "customer_id", "session_id", "item_id", "event_type"])
    items = np.array(["a", "b", "c", "x"])
    idx, w = transitions(ordered_sessions(events, items), len(items), window=2, m=3)
    row = {items[j]: float(v) for j, v in zip(idx[0], w[0]) if j >= 0}
    # after a: b next twice and two places on once (1/2), c once, x once: 2.5 + 1 + 1 = 4.5
    assert row == pytest.approx({"b": 2.5 / 4.5, "c": 1 / 4.5, "x": 1 / 4.5})
    assert sum(row.values()) == pytest.approx(1.0)
    assert idx[1].tolist() == [-1, -1, -1]  # nothing ever came after b


def test_an_anonymous_cart_gets_what_comes_next_with_its_reason(route_model):
    got = top(route_model, anonymous_cart("a"), only("transitions"))
    assert [i.item_id for i in got.items][:2] == ["b", "c"]
    assert got.items[0].reasons == ("transitions",) and got.personalized
    got = top(route_model, anonymous_cart("a", "b"), only("transitions"))
    assert got.items[0].item_id == "c"
    # co-occurrence alone cannot tell which comes next: b, c, d, e are equally likely after a
    covis = top(route_model, anonymous_cart("a"), only("session"), k=4)
    assert len({round(i.score, 6) for i in covis.items}) == 1


def test_similar_sessions_propose_the_items_of_sessions_like_the_live_one(route_model):
    got = top(route_model, anonymous_cart("w", "x"), only("similar_sessions"), k=5)
    # the cart (w, x) is excluded; after them only popular items with no weight (no reason)
    assert [i.reasons for i in got.items] == [("similar_sessions",)] * 3 + [()] * 2
    assert {i.item_id for i in got.items[:3]} == {"v", "y", "z"}
    # the lookup itself, newest first: w's sessions are exactly x's; the live items are not proposed
    x, w = route_model.item_index["x"], route_model.item_index["w"]
    idx, scores = similar_session_candidates(route_model.sess_indptr, route_model.sess_items,
                                             route_model.item_sess_indptr, route_model.item_sess, [x, w])
    assert sorted(route_model.item_ids[idx].tolist()) == ["v", "y", "z"]
    assert np.allclose(scores, scores[0])
    # viewed, not carted: still not proposed back (re-views are seen_again's)
    state = CustomerState("visitor-3")
    for n, item in enumerate(["w", "x"]):
        apply_event(state, parse_event({"event_id": f"x{n}", "customer_id": "visitor-3", "event_type": "view",
                                        "item_id": item, "channel": "web", "timestamp_ms": T0 + n}, T0 + n + 1))
    got = top(route_model, state, only("similar_sessions"), k=5)
    assert {i.item_id for i in got.items if i.reasons} == {"v", "y", "z"}


def test_an_erased_customers_sessions_are_never_neighbours_again(route_model, tmp_path):
    bundle = build_bundle(routes(), TrainParams(factors=2, iterations=5, threads=1), progress=False)
    model = ModelRuntime(bundle.arrays, bundle.manifest)
    assert "q3" in model.user_index  # a customer the model was trained on
    before = top(model, anonymous_cart("w"), only("similar_sessions"), k=5)
    assert {i.item_id for i in before.items if i.reasons} == {"v", "x", "y", "z"}
    model.forget([f"q{c}" for c in range(30) if c != 3])
    x = model.item_index["x"]
    lookup = similar_session_candidates(model.sess_indptr, model.sess_items, model.item_sess_indptr,
                                        model.item_sess, [x], model.session_alive)
    assert sorted(model.item_ids[lookup[0]].tolist()) == ["v", "w", "y", "z"]  # q3's session alone is left
    model.forget(["q3"])
    after = top(model, anonymous_cart("w"), only("similar_sessions"), k=5)
    assert "similar_sessions" not in {r for i in after.items for r in i.reasons}
    # a bundle on disk carries the session arrays
    loaded = load_bundle(save_bundle(bundle, tmp_path, make_current=False))
    assert np.array_equal(loaded.arrays["sess_items"], bundle.arrays["sess_items"])


def test_a_bundle_without_session_arrays_still_loads_and_ranks(route_model):
    bundle = build_bundle(routes(), TrainParams(factors=2, iterations=5, threads=1), progress=False)
    arrays = {k: v for k, v in bundle.arrays.items() if not k.startswith(("trans_", "sess_", "item_sess"))}
    old = ModelRuntime(arrays, bundle.manifest)
    got = top(old, anonymous_cart("a"), only("transitions", popular=0.1))
    assert got.items and all("transitions" not in i.reasons for i in got.items)


def test_a_re_view_comes_back_only_where_seen_again_is_weighed(route_model):
    state = CustomerState("visitor-2")
    for n, item in enumerate(["a", "v", "b"]):
        apply_event(state, parse_event({"event_id": f"w{n}", "customer_id": "visitor-2", "event_type": "view",
                                        "item_id": item, "channel": "web", "timestamp_ms": T0 + n}, T0 + n + 1))
    query = RecommendQuery(customer_id="visitor-2", channel="web", k=3, current_item_id="b")
    got = recommend(route_model, state, query, only("seen_again"), T0 + 99)
    # the session's items newest first, not the one on screen
    assert [(i.item_id, i.reasons) for i in got.items[:2]] == [("v", ("seen_again",)), ("a", ("seen_again",))]
    off = recommend(route_model, state, query, only("session"), T0 + 99)
    assert "seen_again" not in {r for i in off.items for r in i.reasons}


def test_the_last_thing_the_visitor_did_is_what_transitions_follow():
    """A view after an add to cart is newer than the cart: what follows the view comes first."""
    model = ModelRuntime(*_bundle_parts())
    state = anonymous_cart("a")
    for n, item in enumerate(["v", "w"]):
        apply_event(state, parse_event({"event_id": f"y{n}", "customer_id": "visitor-1", "event_type": "view",
                                        "item_id": item, "channel": "web", "timestamp_ms": T0 + 10 + n}, T0 + 11 + n))
    assert top(model, state, only("transitions")).items[0].item_id == "x"


def _bundle_parts():
    bundle = build_bundle(routes(), TrainParams(factors=2, iterations=5, threads=1), progress=False)
    return bundle.arrays, bundle.manifest


def test_two_customers_with_one_session_id_are_two_sessions():
    """Clients that number sessions per customer send "1" for everyone's first visit: no transition
    runs from one customer's items to another's, and each session has its own customer."""
    events = pd.DataFrame([("e1", T0, "bob", "1", "a", "view"), ("e2", T0 + 1, "carol", "1", "x", "view"),
                           ("e3", T0 + 2, "bob", "1", "b", "view")],
                          columns=["event_id", "timestamp_ms", "customer_id", "session_id", "item_id", "event_type"])
    items = np.array(["a", "b", "x"])
    sessions = ordered_sessions(events, items)
    assert sorted(sessions.customer.tolist()) == ["bob", "carol"]
    idx, _w = transitions(sessions, len(items), window=2, m=2)
    assert [items[j] for j in idx[0] if j >= 0] == ["b"]  # a -> b (bob), never a -> x
