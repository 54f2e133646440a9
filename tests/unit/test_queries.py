import pytest

from engine.errors import InvalidArgument
from engine.queries import DEFAULT_K, parse_recommend, parse_similar


def test_defaults_and_context():
    q = parse_recommend({"customer_id": "c1", "context": {"cart_item_ids": ["a", "b"], "current_item_id": "c"}}, 100)
    assert q.k == DEFAULT_K and q.channel == "web" and q.cart_item_ids == ("a", "b") and q.current_item_id == "c"


@pytest.mark.parametrize("body,message", [
    ({"customer_id": "c", "k": 0}, "k"),
    ({"customer_id": "c", "k": -3}, "k"),
    ({"customer_id": "c", "k": 10**9}, "k"),
    ({"customer_id": "c", "k": "5"}, "k"),
    ({"customer_id": "c", "k": 2.5}, "k"),
    ({"k": 5}, "customer_id"),
    ({"customer_id": "c", "channel": "carrier-pigeon"}, "channel"),
    ({"customer_id": "c", "context": []}, "context"),
    ({"customer_id": "c", "context": {"cart_item_ids": "abc"}}, "cart_item_ids"),
    ({"customer_id": "c", "filters": {"min_price": 5, "max_price": 1}}, "min_price"),
    ({"customer_id": "c", "filters": {"repurchase_policy": "sometimes"}}, "repurchase_policy"),
    ({"customer_id": "c", "extra": 1}, "unknown field"),
    ([1, 2], "request"),
])
def test_bad_requests(body, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_recommend(body, 100)


def test_similar_requires_item():
    with pytest.raises(InvalidArgument, match="item_id"):
        parse_similar({"k": 3}, 100)
