"""Small checks shared by every edge: ids, counts, numbers. Each raises InvalidArgument."""
from __future__ import annotations

import math
from typing import Any, Callable, TypeVar

from engine.errors import InvalidArgument, PayloadTooLarge

MAX_ID_LENGTH = 128
T = TypeVar("T")


def require_id(value: Any, field: str, *, required: bool = True) -> str:
    """A customer/item/session/event id: a non-empty printable string of bounded length."""
    if value is None or value == "":
        if required:
            raise InvalidArgument(f"{field}: is required")
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{field}: must be a string, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{field}: longer than {MAX_ID_LENGTH} characters")
    if not value.isprintable():
        raise InvalidArgument(f"{field}: must not contain control characters")
    return value


def require_int(value: Any, field: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field}: must be an integer, got {type(value).__name__}")
    if value < low or value > high:
        raise InvalidArgument(f"{field}: must be between {low} and {high}, got {value}")
    return value


def require_number(value: Any, field: str, *, low: float, high: float, low_inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{field}: must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidArgument(f"{field}: must be a finite number")
    too_low = number < low if low_inclusive else number <= low
    if too_low or number > high:
        bound = "[" if low_inclusive else "("
        raise InvalidArgument(f"{field}: must be in {bound}{low}, {high}], got {number}")
    return number


def require_choice(value: Any, field: str, choices: frozenset[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(sorted(choices))
        raise InvalidArgument(f"{field}: must be one of {allowed}; got {value!r}")
    return value


def require_id_list(value: Any, field: str, *, max_len: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise InvalidArgument(f"{field}: must be a list of strings")
    if len(value) > max_len:
        raise InvalidArgument(f"{field}: at most {max_len} entries, got {len(value)}")
    return tuple(require_id(v, f"{field}[{i}]") for i, v in enumerate(value))


def reject_unknown(raw: Any, allowed: set[str] | frozenset[str], where: str) -> None:
    """A field nobody reads is a typo or a misunderstanding: say so instead of ignoring it."""
    unknown = set(raw) - allowed
    if unknown:
        raise InvalidArgument(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")


def parse_whole_batch(raw: Any, field: str, max_items: int, parse_one: Callable[[Any, str], T]) -> list[T]:
    """Validate a request's list item by item; any bad item rejects the whole list (nothing of it is
    applied). ``parse_one(item, where)`` names the item's position in its messages."""
    if not isinstance(raw, (list, tuple)):
        raise InvalidArgument(f"{field}: must be a list")
    if not raw:
        raise InvalidArgument(f"{field}: must not be empty")
    if len(raw) > max_items:
        raise PayloadTooLarge(f"{field}: at most {max_items} per request, got {len(raw)}")
    return [parse_one(item, f"{field}[{i}]") for i, item in enumerate(raw)]
