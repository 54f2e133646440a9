"""The offer catalogue: loading the shipped example, and every kind of mistake a person can make
in the TOML being refused with a message that names the offer and the field."""
import copy
import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.offers import DAY_MS, OfferCatalog, load_catalog, parse_catalog

REPO = Path(__file__).resolve().parents[2]


def ms(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def minimal(**offer) -> dict:
    return {"version": "1", "offers": [{"id": "a", "value": 1.0, **offer}]}


def refused(data: dict, *fragments: str) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_catalog(data)
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message
    return info.value.message


def test_example_catalogue_loads():
    catalog = load_catalog(REPO / "config" / "offers.toml")
    assert isinstance(catalog, OfferCatalog)
    assert 6 <= len(catalog.offers) <= 8
    assert set(catalog.by_id) == {o.id for o in catalog.offers}
    assert catalog.experiment is not None and catalog.experiment.id == "nbo-2011q4"
    assert {a.strategy for a in catalog.experiment.arms} == {"bandit", "static_priority", "control"}
    assert catalog.bandit.prior_beta == 9.0
    assert len(catalog.checksum) == 16
    xmas = catalog.by_id["xmas-party-bunting"]
    assert xmas.valid_from_ms == ms(2011, 11, 1)
    # a bare valid_until date includes that whole day
    assert xmas.valid_until_ms == ms(2011, 12, 25)
    assert catalog.history_horizon_ms == 30 * DAY_MS
    targets = {item for o in catalog.offers for item in o.target_items}
    assert {"85123A", "22423", "47566"} <= targets


def test_minimal_catalogue_defaults():
    catalog = parse_catalog(minimal())
    offer = catalog.offers[0]
    assert offer.name == "a" and offer.weight == 1.0 and offer.channels == frozenset()
    assert offer.eligibility.consent_required is True
    assert offer.caps.per_customer_per_channel is None and offer.caps.global_budget is None
    assert catalog.experiments == () and catalog.experiment is None
    assert (catalog.bandit.prior_alpha, catalog.bandit.prior_beta, catalog.bandit.affinity_weight) == (1, 1, 0.5)
    assert catalog.history_horizon_ms == 0


def test_catalogue_is_frozen():
    catalog = parse_catalog(minimal())
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalog.offers[0].value = 2.0
    with pytest.raises(TypeError):
        catalog.by_id["b"] = catalog.offers[0]


def test_checksum_follows_content_not_layout():
    data = minimal(channels=["web"], eligibility={"segments": ["vip"]})
    reordered = {"offers": [dict(reversed(list(data["offers"][0].items())))], "version": "1"}
    assert parse_catalog(data).checksum == parse_catalog(reordered).checksum
    changed = copy.deepcopy(data)
    changed["offers"][0]["value"] = 2.0
    assert parse_catalog(data).checksum != parse_catalog(changed).checksum


def test_version_is_required():
    refused({"offers": []}, "version")
    refused({"version": "", "offers": []}, "version")
    refused({"version": 3, "offers": []}, "version")


def test_unknown_keys_are_errors_at_every_level():
    refused({"version": "1", "offer": []}, "unknown key(s) offer")
    refused(minimal(vaule=2.0), "offers[0] (id 'a')", "vaule")
    refused(minimal(eligibility={"min_basket_valu": 5}), "offers[0] (id 'a').eligibility", "min_basket_valu")
    refused(minimal(caps={"period": 5}), "offers[0] (id 'a').caps", "period")
    refused({"version": "1", "bandit": {"prior": 1}}, "bandit", "prior")
    refused({"version": "1", "experiments": [{"id": "e", "arms": [], "extra": 1}]}, "experiments[0]", "extra")


def test_duplicate_offer_ids():
    data = {"version": "1", "offers": [{"id": "a", "value": 1}, {"id": "b", "value": 1}, {"id": "a", "value": 2}]}
    refused(data, "offers[2] (id 'a').id", "duplicate of offers[0]")


def test_error_names_offer_index_id_and_field_path():
    data = {"version": "1", "offers": [{"id": "a", "value": 1}, {"id": "b", "value": 1},
                                       {"id": "xmas10", "value": 1, "caps": {"per_customer_per_channel": 1,
                                                                             "period_days": 0}}]}
    message = refused(data, "offers[2] (id 'xmas10').caps.period_days:")
    assert "between 1 and" in message


@pytest.mark.parametrize("offer, fragments", [
    ({"value": -1.0}, ["offers[0] (id 'a').value"]),
    ({"value": "5"}, ["offers[0] (id 'a').value", "number"]),
    ({"weight": 0}, ["offers[0] (id 'a').weight"]),
    ({"channels": ["web", "fax"]}, ["offers[0] (id 'a').channels[1]", "fax"]),
    ({"channels": "web"}, ["offers[0] (id 'a').channels", "list"]),
    ({"name": ""}, ["offers[0] (id 'a').name"]),
    ({"target_items": ["85123A", 22423]}, ["offers[0] (id 'a').target_items[1]"]),
    ({"eligibility": {"segments": ["gold"]}}, ["eligibility.segments[0]", "gold"]),
    ({"eligibility": {"min_basket_value": -5}}, ["eligibility.min_basket_value"]),
    ({"eligibility": {"consent_required": "yes"}}, ["eligibility.consent_required"]),
    ({"caps": {"per_customer_per_channel": 2}}, ["caps", "period_days go together"]),
    ({"caps": {"period_days": 7}}, ["caps", "go together"]),
    ({"caps": {"per_customer_per_channel": 1.5, "period_days": 7}}, ["caps.per_customer_per_channel", "integer"]),
    ({"caps": {"cooldown_after_decline_days": -1}}, ["caps.cooldown_after_decline_days"]),
    ({"caps": {"global_budget": -1}}, ["caps.global_budget"]),
    ({"valid_from": "next tuesday"}, ["offers[0] (id 'a').valid_from", "ISO-8601"]),
    ({"valid_from": "2011-12-01", "valid_until": "2011-11-01"}, ["valid_until", "after valid_from"]),
    ({"valid_until": 20111201}, ["valid_until", "date"]),
    ({"eligibility": "vip"}, ["eligibility", "table"]),
])
def test_bad_offer_fields(offer, fragments):
    refused(minimal(**offer), *fragments)


def test_value_is_required_and_id_too():
    refused({"version": "1", "offers": [{"id": "a"}]}, "offers[0] (id 'a').value", "required")
    refused({"version": "1", "offers": [{"value": 1}]}, "offers[0].id", "required")


def test_dates_and_datetimes():
    from datetime import date

    catalog = parse_catalog({"version": "1", "offers": [
        {"id": "a", "value": 1, "valid_from": "2011-11-01T08:30:00", "valid_until": "2011-11-02T00:00:00+01:00"},
        {"id": "b", "value": 1, "valid_from": date(2011, 11, 1), "valid_until": date(2011, 11, 1)},
        {"id": "c", "value": 1, "valid_from": datetime(2011, 11, 1, 12, tzinfo=timezone.utc)},
        {"id": "d", "value": 1, "valid_until": "2011-11-30T00:00:00Z"},
    ]})
    a, b, c, d = catalog.offers
    assert a.valid_from_ms == ms(2011, 11, 1, 8, 30)  # no offset means UTC
    assert a.valid_until_ms == ms(2011, 11, 1, 23)
    assert (b.valid_from_ms, b.valid_until_ms) == (ms(2011, 11, 1), ms(2011, 11, 2))
    assert c.valid_from_ms == ms(2011, 11, 1, 12) and c.valid_until_ms is None
    assert d.valid_until_ms == ms(2011, 11, 30)


def test_experiment_validation():
    def experiment(*arms, eid="e"):
        return {"version": "1", "experiments": [{"id": eid, "arms": list(arms)}]}

    ok = parse_catalog(experiment({"name": "x", "share": 0.3333333, "strategy": "bandit"},
                                  {"name": "y", "share": 0.6666667, "strategy": "control"}))
    assert [a.name for a in ok.experiments[0].arms] == ["x", "y"]
    refused(experiment({"name": "x", "share": 0.5, "strategy": "bandit"}), "experiments[0] (id 'e').arms",
            "sum to 1")
    refused(experiment({"name": "x", "share": 1.0, "strategy": "greedy"}), "arms[0].strategy", "greedy")
    refused(experiment({"name": "x", "share": 0.5, "strategy": "bandit"},
                       {"name": "x", "share": 0.5, "strategy": "control"}), "unique")
    refused(experiment({"name": "x", "share": 1.5, "strategy": "bandit"}), "arms[0].share")
    refused(experiment({"share": 1.0, "strategy": "bandit"}), "arms[0].name", "required")
    refused(experiment(), "arms", "non-empty")
    two = experiment({"name": "x", "share": 1.0, "strategy": "bandit"})
    two["experiments"].append(copy.deepcopy(two["experiments"][0]))
    refused(two, "duplicate")


def test_bandit_settings_validation():
    catalog = parse_catalog({"version": "1", "bandit": {"prior_alpha": 2, "prior_beta": 18, "affinity_weight": 0}})
    assert (catalog.bandit.prior_alpha, catalog.bandit.prior_beta, catalog.bandit.affinity_weight) == (2, 18, 0)
    refused({"version": "1", "bandit": {"prior_alpha": 0}}, "bandit.prior_alpha")
    refused({"version": "1", "bandit": {"affinity_weight": -1}}, "bandit.affinity_weight")


def test_load_catalog_file_errors(tmp_path):
    with pytest.raises(InvalidArgument, match="cannot read"):
        load_catalog(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = \n")
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        load_catalog(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text('version = "1"\n[[offers]]\nid = "x"\nvalue = 1\n[offers.caps]\ncooldown_days = 3\n')
    with pytest.raises(InvalidArgument, match=r"offers\[0\] \(id 'x'\)\.caps: unknown key\(s\) cooldown_days"):
        load_catalog(typo)


def test_toml_dates_in_a_file(tmp_path):
    path = tmp_path / "offers.toml"
    path.write_text('version = "2"\n[[offers]]\nid = "x"\nvalue = 1\nvalid_from = 2011-11-01T09:00:00Z\n'
                    'valid_until = 2011-11-30\n')
    offer = load_catalog(path).offers[0]
    assert offer.valid_from_ms == ms(2011, 11, 1, 9)
    assert offer.valid_until_ms == ms(2011, 12, 1)
