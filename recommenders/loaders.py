"""Turn real data sets into the engine's generic event table.

Every loader returns a ``Dataset``: an events DataFrame with the generic columns (the same
columns as the documented events CSV, see docs/events-format.md) and an items DataFrame
(item_id, name, recommendable).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine import events as _events
from engine.events import EVENT_TYPES
from engine.errors import InvalidArgument

EVENT_COLUMNS = ["event_id", "timestamp", "customer_id", "session_id", "item_id", "event_type",
                 "quantity", "price", "channel", "store_id"]
OPTIONAL_COLUMNS = ["country", "item_name"]

# Online Retail stock codes that are products: five digits, optionally a letter or two
# (85123A, 15056BL). Everything else is postage (POST, DOT), manual lines (M), discounts
# (D), bank charges, fees, gift vouchers and samples: never recommendable.
_PRODUCT_CODE = re.compile(r"^\d{5}[A-Za-z]{0,2}$")

ONLINE_RETAIL_URL = "https://archive.ics.uci.edu/dataset/352/online+retail"
MOVIELENS_URL = "https://grouplens.org/datasets/movielens/100k/"


@dataclass(frozen=True)
class Dataset:
    """Events in the generic schema (timestamp as epoch ms in ``timestamp_ms``) plus items."""

    events: pd.DataFrame
    items: pd.DataFrame
    source: str


def is_product_code(code: str) -> bool:
    return bool(_PRODUCT_CODE.match(code))


def _items_from_events(events: pd.DataFrame, names: pd.Series | None = None,
                       categories: pd.Series | None = None) -> pd.DataFrame:
    ids = pd.Index(events["item_id"].unique())
    items = pd.DataFrame({"item_id": ids.astype(str)})
    lookup = {} if names is None else names.to_dict()
    items["name"] = [str(lookup.get(item, "")) for item in items["item_id"]]
    lookup = {} if categories is None else categories.to_dict()
    items["category"] = [str(lookup.get(item, "")) for item in items["item_id"]]
    items["recommendable"] = True
    return items


def category_from_description(description: str) -> str:
    """Online Retail has no categories; the last word of a description names the kind of thing
    ("JUMBO BAG RED RETROSPOT" -> "BAG", "WHITE HANGING HEART T-LIGHT HOLDER" -> "HOLDER").
    Plurals fold into the singular so "BAGS" and "BAG" are one category."""
    words = [w.strip(".!") for w in str(description).upper().replace(",", " ").split()]
    words = [_singular(w) for w in words if w.isalpha()]
    nouns = [w for w in words if w not in _NOT_A_KIND]
    return (nouns or words or [""])[-1]


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("S") and not word.endswith("SS") else word


# Colours, patterns and sizes that often end an Online Retail description but name no kind of thing.
_NOT_A_KIND = frozenset(
    "RED PINK WHITE BLUE GREEN BLACK IVORY CREAM GOLD SILVER PURPLE ORANGE YELLOW BROWN GREY "
    "RETROSPOT SPOT SPOTTY POLKADOT DOT PAISLEY FLORAL VINTAGE DESIGN ASSORTED COLOUR SMALL LARGE "
    "MEDIUM MINI JUMBO OF AND IN WITH THE".split())


def load_online_retail(path: str | Path) -> Dataset:
    """UCI Online Retail (.csv or .csv.gz; the .xlsx converted to CSV).

    - ``C`` invoices are cancellations: event_type ``return`` with the quantity made positive.
    - Other negative-quantity lines are stock adjustments, not customer events: dropped.
    - Lines without CustomerID are guest checkouts: each invoice is its own guest
      (``guest-<invoice>``), never one giant customer.
    - Non-product stock codes (POST, M, DOT, BANK CHARGES, ...) stay in the data but are
      marked not recommendable.
    """
    raw = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "Description": str,
                                   "CustomerID": str, "Country": str}, keep_default_na=True)
    expected = {"InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                "CustomerID", "Country"}
    missing = expected - set(raw.columns)
    if missing:
        raise InvalidArgument(f"{path}: not an Online Retail file, missing columns {sorted(missing)}")
    raw["line"] = np.arange(len(raw))
    invoice = raw["InvoiceNo"].astype(str).str.strip()
    is_return = invoice.str.startswith("C")
    keep = is_return | (raw["Quantity"] > 0)
    raw, invoice, is_return = raw[keep], invoice[keep], is_return[keep]
    customer = raw["CustomerID"].astype(str).str.replace(r"\.0$", "", regex=True)
    guest = raw["CustomerID"].isna()
    customer = customer.where(~guest, "guest-" + invoice)
    code = raw["StockCode"].astype(str).str.strip()
    ts = pd.to_datetime(raw["InvoiceDate"], format="mixed")
    events = pd.DataFrame({
        "event_id": "or-" + invoice + "-" + raw["line"].astype(str),
        "timestamp_ms": (ts.astype("datetime64[ms]").astype("int64")).to_numpy(),
        "customer_id": customer.to_numpy(),
        "session_id": invoice.to_numpy(),
        "item_id": code.to_numpy(),
        "event_type": np.where(is_return, "return", "purchase"),
        "quantity": raw["Quantity"].abs().astype(float).to_numpy(),
        "price": raw["UnitPrice"].astype(float).to_numpy(),
        "channel": "web",
        "store_id": "",
        "country": raw["Country"].fillna("").astype(str).to_numpy(),
    }).reset_index(drop=True)
    names = (raw.assign(code=code).dropna(subset=["Description"])
             .groupby("code")["Description"].agg(lambda s: s.value_counts().index[0]))
    items = _items_from_events(events, names, names.map(category_from_description))
    items["recommendable"] = items["item_id"].map(is_product_code)
    return Dataset(events, items, f"online-retail:{Path(path).name}")


def load_movielens(path: str | Path) -> Dataset:
    """MovieLens 100K: ``u.data`` (user item rating timestamp, tab-separated).

    Every rating is an interaction (event_type ``rate``), as in the Microsoft Recommenders
    benchmark. Titles come from ``u.item`` beside it when present.
    """
    path = Path(path)
    data = path / "u.data" if path.is_dir() else path
    raw = pd.read_csv(data, sep="\t", names=["user", "item", "rating", "ts"],
                      dtype={"user": str, "item": str, "rating": np.int64, "ts": np.int64})
    events = pd.DataFrame({
        "event_id": "ml-" + raw["user"] + "-" + raw["item"],
        "timestamp_ms": raw["ts"].to_numpy() * 1000,
        "customer_id": raw["user"].to_numpy(),
        # a day of ratings is one session: the co-visitation unit
        "session_id": raw["user"] + "-" + (raw["ts"] // 86400).astype(str),
        "item_id": raw["item"].to_numpy(),
        "event_type": "rate",
        "quantity": raw["rating"].astype(float).to_numpy(),
        "price": np.nan,
        "channel": "web",
        "store_id": "",
        "country": "",
    })
    names = genres = None
    item_file = data.parent / "u.item"
    if item_file.exists():
        meta = pd.read_csv(item_file, sep="|", header=None, encoding="latin-1", dtype=str)
        names = meta.set_index(0)[1]
        genre_file = data.parent / "u.genre"
        if genre_file.exists():
            # the first genre flag set is the film's category
            labels = [line.split("|")[0] for line in genre_file.read_text(encoding="latin-1").splitlines() if line]
            flags = meta.iloc[:, 5:5 + len(labels)].astype(int).to_numpy()
            first = np.where(flags.any(axis=1), flags.argmax(axis=1), 0)
            genres = pd.Series([labels[g] for g in first], index=meta[0])
    return Dataset(events, _items_from_events(events, names, genres), f"movielens:{data.name}")


# A column of numbers all below this is epoch seconds: as milliseconds every value would fall before
# 1973-03-04, which no shop's event log does; as seconds they reach the year 5138.
SECONDS_BELOW = 100_000_000_000
# the latest date a training event may carry (a clock gone wrong, or not a date at all)
MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01


def _to_epoch_ms(column: pd.Series) -> np.ndarray:
    """Epoch milliseconds (epoch seconds when every value is below SECONDS_BELOW), or ISO 8601;
    anything from 1970 to 2100 is a date."""
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        if not np.isfinite(numeric).all():
            row = int(np.flatnonzero(~np.isfinite(numeric.to_numpy()))[0])
            raise InvalidArgument(f"timestamp: row {row + 2} is not a date: {column.iloc[row]!r}")
        if len(numeric) and (numeric.abs() < SECONDS_BELOW).all():
            numeric = numeric * 1000
        # clipped so that a huge number is reported as out of range, not wrapped round int64
        return numeric.clip(-1, MAX_TIMESTAMP_MS).round().astype("int64").to_numpy()
    parsed = pd.to_datetime(column, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InvalidArgument(f"timestamp: row {row + 2} is neither epoch ms nor ISO 8601: {column.iloc[row]!r}")
    return parsed.astype("datetime64[ms, UTC]").astype("int64").to_numpy()


def load_events_csv(path: str | Path) -> Dataset:
    """The generic events CSV (docs/events-format.md): bring your own data.

    Required columns: event_id, timestamp, customer_id, item_id, event_type. Optional:
    session_id, quantity (default 1), price, channel (default web), store_id, country,
    item_name, item_category. Rows are checked; the first bad row is reported with its line number.
    """
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    required = {"event_id", "timestamp", "customer_id", "item_id", "event_type"}
    missing = required - set(raw.columns)
    if missing:
        raise InvalidArgument(f"{path}: missing required column(s) {sorted(missing)}")

    def _first_bad(mask: pd.Series, what: str) -> None:
        if mask.any():
            row = int(np.flatnonzero(mask.to_numpy())[0])
            raise InvalidArgument(f"{path}: line {row + 2}: {what}")

    for column in ("event_id", "customer_id", "item_id"):
        _first_bad(raw[column].str.len() == 0, f"{column} is empty")
    _first_bad(~raw["event_type"].isin(EVENT_TYPES), f"event_type must be one of {sorted(EVENT_TYPES)}")
    channel = raw["channel"].replace("", "web") if "channel" in raw else pd.Series("web", index=raw.index)
    _first_bad(~channel.isin(_events.CHANNELS), f"channel must be one of {sorted(_events.CHANNELS)}")
    quantity = pd.to_numeric(raw.get("quantity", pd.Series("1", index=raw.index)).replace("", "1"), errors="coerce")
    _first_bad(quantity.isna() | ~np.isfinite(quantity) | (quantity <= 0), "quantity must be a number > 0")
    price = pd.to_numeric(raw.get("price", pd.Series("", index=raw.index)).replace("", "nan"), errors="coerce")
    _first_bad(price < 0, "price must be >= 0")
    ts = _to_epoch_ms(raw["timestamp"])
    _first_bad(pd.Series(ts < 0), "timestamp before 1970-01-01")
    _first_bad(pd.Series(ts >= MAX_TIMESTAMP_MS), "timestamp after 2099 (not a date an event can have)")
    events = pd.DataFrame({
        "event_id": raw["event_id"], "timestamp_ms": ts, "customer_id": raw["customer_id"],
        "session_id": raw.get("session_id", ""), "item_id": raw["item_id"],
        "event_type": raw["event_type"], "quantity": quantity.astype(float), "price": price.astype(float),
        "channel": channel, "store_id": raw.get("store_id", ""), "country": raw.get("country", ""),
    })
    names = categories = None
    if "item_name" in raw:
        named = raw[raw["item_name"] != ""]
        names = named.groupby("item_id")["item_name"].first()
    if "item_category" in raw:
        named = raw[raw["item_category"] != ""]
        categories = named.groupby("item_id")["item_category"].first()
    return Dataset(events, _items_from_events(events, names, categories), f"events:{Path(path).name}")


def write_events_csv(dataset: Dataset, path: str | Path) -> int:
    """Write ``dataset`` in the generic events format (timestamp as epoch ms). Returns rows."""
    events = dataset.events
    names = dataset.items.set_index("item_id")["name"]
    categories = dataset.items.set_index("item_id")["category"] if "category" in dataset.items else None
    out = pd.DataFrame({
        "event_id": events["event_id"], "timestamp": events["timestamp_ms"],
        "customer_id": events["customer_id"], "session_id": events["session_id"],
        "item_id": events["item_id"], "event_type": events["event_type"],
        "quantity": events["quantity"], "price": events["price"], "channel": events["channel"],
        "store_id": events["store_id"], "country": events.get("country", ""),
        "item_name": events["item_id"].map(names).fillna(""),
        "item_category": events["item_id"].map(categories).fillna("") if categories is not None else "",
    })
    out.to_csv(path, index=False)
    return len(out)


def dataset_from_events(events, source: str = "store") -> Dataset:
    """A Dataset from engine Events (what the durable store exports)."""
    rows = [(e.event_id, e.timestamp_ms, e.customer_id, e.session_id, e.item_id, e.event_type, e.quantity,
             np.nan if e.price is None else e.price, e.channel, e.store_id, dict(e.attributes).get("country", ""))
            for e in events if e.item_id]
    frame = pd.DataFrame(rows, columns=["event_id", "timestamp_ms", "customer_id", "session_id", "item_id",
                                        "event_type", "quantity", "price", "channel", "store_id", "country"])
    return Dataset(frame, _items_from_events(frame), source)


FORMATS = {"online-retail": load_online_retail, "movielens": load_movielens, "events": load_events_csv}


def without_customers(dataset: Dataset, customer_ids) -> tuple[Dataset, int]:
    """The data set with these customers' events left out (erased customers, before training);
    returns it and how many events were dropped. Items keep their rows (the catalogue is not
    personal data)."""
    ids = set(customer_ids)
    if not ids:
        return dataset, 0
    keep = ~dataset.events["customer_id"].astype(str).isin(ids)
    dropped = int((~keep).sum())
    return Dataset(events=dataset.events[keep].reset_index(drop=True), items=dataset.items,
                   source=dataset.source), dropped


def load(path: str | Path, fmt: str = "auto") -> Dataset:
    """Load ``path`` in format ``fmt`` (online-retail, movielens, events, or auto by name)."""
    if fmt == "auto":
        name = Path(path).name.lower()
        if "online_retail" in name or "online-retail" in name:
            fmt = "online-retail"
        elif name in ("u.data", "movielens-100k", "ml-100k"):
            fmt = "movielens"
        else:
            fmt = "events"
    if fmt not in FORMATS:
        raise InvalidArgument(f"format: one of {sorted(FORMATS)} or auto; got {fmt!r}")
    if not Path(path).exists():
        raise InvalidArgument(f"{path}: no such file")
    return FORMATS[fmt](path)


def synthetic_retail(n_customers: int = 400, n_items: int = 120, n_groups: int = 6, seed: int = 7,
                     baskets_per_customer: int = 6) -> Dataset:
    """A small shop with planted structure, for the demo and for tests with known answers.

    Items fall into ``n_groups`` groups; each customer shops almost only in one group; baskets
    mix 2-5 items from that group. So an engine that works recommends within the group.
    """
    rng = np.random.default_rng(seed)
    per_group = n_items // n_groups
    rows = []
    start_ms = 1_700_000_000_000
    for c in range(n_customers):
        group = c % n_groups
        for b in range(baskets_per_customer):
            size = int(rng.integers(2, 6))
            members = rng.choice(per_group, size=size, replace=False) + group * per_group
            if rng.random() < 0.1:
                members[0] = int(rng.integers(0, n_items))
            ts = start_ms + (b * n_customers + c) * 60_000
            for j, item in enumerate(members):
                rows.append((f"syn-{c}-{b}-{j}", ts, f"c{c}", f"s{c}-{b}", f"i{item:04d}", "purchase",
                             float(rng.integers(1, 4)), float(1 + item % 17), "web", "", "GB"))
    events = pd.DataFrame(rows, columns=["event_id", "timestamp_ms", "customer_id", "session_id", "item_id",
                                         "event_type", "quantity", "price", "channel", "store_id", "country"])
    names = pd.Series({f"i{i:04d}": f"Item {i} (group {i // per_group})" for i in range(n_items)})
    groups = pd.Series({f"i{i:04d}": f"group-{i // per_group}" for i in range(n_items)})
    return Dataset(events, _items_from_events(events, names, groups), "synthetic")


def default_data_path(data_dir: str | Path) -> Path | None:
    """The Online Retail file under ``data_dir``, if it is there."""
    candidate = Path(data_dir) / "online-retail" / "online_retail.csv.gz"
    return candidate if candidate.exists() else None


def finite_or_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
