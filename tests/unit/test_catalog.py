"""Live catalogue: stock, price and new items act at once, without a retrain, and survive a restart."""
import pytest

from actors.shard import CustomerShardLogic
from actors.store import SqliteEventStore
from engine.catalog import LiveCatalog, parse_update, parse_updates
from engine.config import RankingConfig
from engine.errors import InvalidArgument
from engine.events import parse_event
from engine.queries import RecommendQuery, parse_recommend
from recommenders.loaders import category_from_description

NOW = 1_800_000_000_000


def event(n, customer, kind, item, ts=NOW - 1000):
    return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": kind,
                        "item_id": item, "channel": "web", "timestamp_ms": ts}, NOW)


def update(**fields):
    return parse_update({"timestamp_ms": NOW - 500, **fields}, NOW)


def ids(shard, customer, k=10, **query):
    result = shard.recommend(parse_recommend({"customer_id": customer, "k": k, **query}, 100), NOW)
    return [i.item_id for i in result.items], result


@pytest.fixture
def shard(tmp_path, synthetic_model):
    return CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / "s.db"))


def test_parse_rejects_bad_updates_naming_the_field():
    with pytest.raises(InvalidArgument, match=r"updates\[1\].price"):
        parse_updates([{"item_id": "a", "price": 1.0}, {"item_id": "b", "price": -1}], NOW, 10)
    with pytest.raises(InvalidArgument, match="unknown field"):
        parse_update({"item_id": "a", "stock": 3}, NOW)
    with pytest.raises(InvalidArgument, match="in_stock: must be true or false"):
        parse_update({"item_id": "a", "in_stock": "no"}, NOW)
    with pytest.raises(InvalidArgument, match="names no change"):
        parse_update({"item_id": "a"}, NOW)


def test_an_older_update_does_not_undo_a_newer_one():
    catalog = LiveCatalog()
    catalog.apply(parse_update({"item_id": "a", "in_stock": False, "timestamp_ms": NOW - 10}, NOW))
    assert catalog.apply(parse_update({"item_id": "a", "in_stock": True, "timestamp_ms": NOW - 20}, NOW)) is None
    assert catalog.items["a"].in_stock is False


def test_out_of_stock_disappears_and_comes_back(shard):
    for n, item in enumerate(["i0001", "i0002", "i0003"]):
        shard.track([event(n, "c-stock", "view", item)])
    before, _ = ids(shard, "c-stock")
    gone = before[0]
    shard.apply_catalog([update(item_id=gone, in_stock=False)])
    during, _ = ids(shard, "c-stock")
    assert gone not in during and len(during) == 10
    assert gone not in ids(shard, "someone-new")[0]
    shard.apply_catalog([parse_update({"item_id": gone, "in_stock": True, "timestamp_ms": NOW - 100}, NOW)])
    assert ids(shard, "c-stock")[0] == before


def test_price_change_applies_to_price_filters(shard):
    shard.track([event(0, "c-price", "view", "i0001")])
    cheap, _ = ids(shard, "c-price", filters={"max_price": 5.0})
    target = cheap[0]
    shard.apply_catalog([update(item_id=target, price=500.0)])
    assert target not in ids(shard, "c-price", filters={"max_price": 5.0})[0]
    assert target in ids(shard, "c-price", k=50, filters={"min_price": 400.0})[0]


def test_new_item_recommended_by_category_before_any_retrain(shard):
    # the synthetic shop (60 items, 3 groups): group 1 is i0020..i0039; the customer shops there
    for n, item in enumerate(["i0021", "i0022", "i0025"]):
        shard.track([event(n, "c-cat", "purchase", item)])
    assert "brand-new" not in ids(shard, "c-cat", k=20)[0]
    shard.apply_catalog([update(item_id="brand-new", name="Brand new", category="group-1", price=3.0)])
    got, result = ids(shard, "c-cat", k=20)
    assert "brand-new" in got
    assert "new_items" in next(i for i in result.items if i.item_id == "brand-new").reasons
    # a customer of another group does not get it from category affinity
    for n, item in enumerate(["i0041", "i0042", "i0045"]):
        shard.track([event(n, "c-other", "purchase", item)])
    other = shard.recommend(RecommendQuery(customer_id="c-other", channel="web", k=20), NOW)
    assert all("new_items" not in i.reasons for i in other.items)


def test_new_item_learns_live_co_visitation(shard):
    shard.apply_catalog([update(item_id="new-gadget", name="Gadget")])  # no category at all
    for c in range(4):
        shard.track([event(0, f"c-co-{c}", "view", "i0050"), event(1, f"c-co-{c}", "view", "new-gadget")])
    shard.track([event(0, "c-fresh", "view", "i0050")])
    got, result = ids(shard, "c-fresh", k=20)
    assert "new-gadget" in got
    assert "new_items" in next(i for i in result.items if i.item_id == "new-gadget").reasons
    # and out of stock beats everything
    shard.apply_catalog([update(item_id="new-gadget", in_stock=False)])
    assert "new-gadget" not in ids(shard, "c-fresh", k=50)[0]


def test_catalogue_survives_a_restart(tmp_path, synthetic_model):
    store = SqliteEventStore(tmp_path / "s.db")
    first = CustomerShardLogic(0, synthetic_model, RankingConfig(), store)
    first.recover()
    updates = [update(item_id="i0001", in_stock=False), update(item_id="fresh-1", category="group-0", price=2.0)]
    store.append_catalog(updates)
    first.apply_catalog(updates)
    again = CustomerShardLogic(0, synthetic_model, RankingConfig(), SqliteEventStore(tmp_path / "s.db"))
    report = again.recover()
    assert report["catalog_updates"] == 2
    assert not again.view.recommendable[again.view.index_of("i0001")]
    assert again.view.index_of("fresh-1") is not None and again.stats()["new_items"] == 1


def test_categories_from_online_retail_descriptions():
    assert category_from_description("JUMBO BAG RED RETROSPOT") == "BAG"
    assert category_from_description("WHITE HANGING HEART T-LIGHT HOLDER") == "HOLDER"
    assert category_from_description("PACK OF 72 RETROSPOT CAKE CASES") == "CASE"
    assert category_from_description("GLASS") == "GLASS"
    assert category_from_description("") == ""
