import pytest

from engine.errors import InvalidArgument
from recommenders.promotion import check_promotion


def manifest(version, hr):
    return {"version": version, "params": {"factors": 8}, "offline_metrics": {} if hr is None else {"hr@10": hr}}


def test_better_or_slightly_worse_is_accepted():
    check_promotion(manifest("new", 0.80), manifest("old", 0.79), force=False)
    check_promotion(manifest("new", 0.78), manifest("old", 0.79), force=False)


def test_much_worse_is_refused_unless_forced():
    with pytest.raises(InvalidArgument, match="HR@10 0.5000"):
        check_promotion(manifest("new", 0.50), manifest("old", 0.79), force=False)
    check_promotion(manifest("new", 0.50), manifest("old", 0.79), force=True)


def test_no_offline_check_is_refused_unless_forced():
    with pytest.raises(InvalidArgument, match="--no-eval"):
        check_promotion(manifest("new", None), manifest("old", 0.79), force=False)
    check_promotion(manifest("new", None), manifest("old", 0.79), force=True)


def test_an_offline_check_over_too_few_customers_is_refused_unless_forced():
    thin = manifest("new", 0.95)
    thin["offline_metrics"].update(customers=20, sufficient=False, minimum_customers=200)
    with pytest.raises(InvalidArgument, match="covers 20 customers, fewer than the 200"):
        check_promotion(thin, manifest("old", 0.79), force=False)
    check_promotion(thin, manifest("old", 0.79), force=True)


def test_checks_made_on_different_protocols_are_not_compared():
    new, old = manifest("new", 0.50), manifest("old", 0.79)
    new["offline_metrics"]["protocol"] = "per-customer temporal holdout"
    old["offline_metrics"]["protocol"] = "temporal holdout"
    check_promotion(new, old, force=False)
