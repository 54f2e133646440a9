"""Whether a bundle may replace the serving one: the policy, pure (no Ray, no I/O)."""
from __future__ import annotations

from typing import Any, Mapping

from engine.errors import InvalidArgument

# How much worse (absolute HR@10 on the bundle's own holdout check) a new model may be.
DEFAULT_MAX_REGRESSION = 0.02


def check_promotion(new: Mapping[str, Any], serving: Mapping[str, Any] | None, *, force: bool,
                    max_regression: float = DEFAULT_MAX_REGRESSION) -> None:
    """Raise InvalidArgument when ``new`` must not replace ``serving`` (unless ``force``)."""
    if force or serving is None:
        return
    new_hr = (new.get("offline_metrics") or {}).get("hr@10")
    old_hr = (serving.get("offline_metrics") or {}).get("hr@10")
    if new_hr is None:
        raise InvalidArgument(f"model {new['version']} has no offline check to compare (trained with --no-eval); "
                              "promote with --force to accept it anyway")
    check = new.get("offline_metrics") or {}
    if check.get("sufficient") is False:
        raise InvalidArgument(f"model {new['version']}'s offline check covers {check.get('customers')} customers, "
                              f"fewer than the {check.get('minimum_customers')} it needs to mean something; "
                              "promote with --force to accept it anyway")
    # two checks made on different protocols are not comparable: the new one's own soundness decides
    same_protocol = check.get("protocol") == (serving.get("offline_metrics") or {}).get("protocol")
    if old_hr is not None and same_protocol and new_hr < old_hr - max_regression:
        raise InvalidArgument(f"model {new['version']} scores HR@10 {new_hr:.4f} offline against "
                              f"{old_hr:.4f} for the serving {serving['version']} (more than {max_regression} "
                              "worse); promote with --force to accept it anyway")
