import gzip
from pathlib import Path

import pandas as pd
import pytest

from engine.errors import InvalidArgument
from recommenders.loaders import (is_product_code, load, load_events_csv, load_movielens,
                                  load_online_retail, write_events_csv)

RETAIL = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536365,POST,POSTAGE,1,2010-12-01 08:26:00,18.0,17850.0,United Kingdom
C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-1,2010-12-01 09:41:00,2.55,17850.0,United Kingdom
536380,22423,REGENCY CAKESTAND 3 TIER,2,2010-12-01 09:45:00,12.75,,United Kingdom
536381,22423,REGENCY CAKESTAND 3 TIER,1,2010-12-01 09:50:00,12.75,,France
536382,22423,REGENCY CAKESTAND 3 TIER,-3,2010-12-01 09:55:00,0,,United Kingdom
536383,BANK CHARGES,Bank Charges,1,2010-12-01 09:56:00,15,12583.0,France
"""


@pytest.fixture(params=["csv", "csv.gz"])
def retail_file(tmp_path: Path, request) -> Path:
    path = tmp_path / f"online_retail.{request.param}"
    if request.param == "csv.gz":
        with gzip.open(path, "wt") as handle:
            handle.write(RETAIL)
    else:
        path.write_text(RETAIL)
    return path


def test_online_retail_returns_guests_and_non_products(retail_file):
    data = load_online_retail(retail_file)
    events = data.events
    # the stock adjustment (negative quantity, not a C invoice) is not a customer event
    assert len(events) == 7
    returned = events[events["event_type"] == "return"]
    assert returned["item_id"].tolist() == ["85123A"] and returned["quantity"].tolist() == [1.0]
    assert set(events["customer_id"]) == {"17850", "12583", "guest-536380", "guest-536381"}
    assert events.loc[events["customer_id"] == "17850", "session_id"].iloc[0] == "536365"
    recommendable = data.items.set_index("item_id")["recommendable"]
    assert not recommendable["POST"] and not recommendable["BANK CHARGES"]
    assert recommendable["85123A"] and recommendable["22423"]
    assert data.items.set_index("item_id").loc["71053", "name"] == "WHITE METAL LANTERN"
    assert events["timestamp_ms"].iloc[0] == pd.Timestamp("2010-12-01 08:26:00").value // 1_000_000


@pytest.mark.parametrize("code,product", [("85123A", True), ("22423", True), ("15056BL", True), ("POST", False),
                                          ("M", False), ("DOT", False), ("BANK CHARGES", False),
                                          ("gift_0001_20", False), ("DCGS0003", False), ("AMAZONFEE", False)])
def test_product_codes(code, product):
    assert is_product_code(code) is product


def test_movielens(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t881250950\n")
    (tmp_path / "u.item").write_bytes("242|Kolya (1996)|x\n302|L.A. Confidential (1997)|x\n".encode("latin-1"))
    data = load_movielens(tmp_path)
    assert len(data.events) == 3
    assert set(data.events["event_type"]) == {"rate"}
    assert data.items.set_index("item_id").loc["242", "name"] == "Kolya (1996)"
    assert data.events["timestamp_ms"].iloc[0] == 881250949000


def test_generic_events_round_trip(tmp_path, retail_file):
    data = load_online_retail(retail_file)
    out = tmp_path / "events.csv"
    assert write_events_csv(data, out) == len(data.events)
    again = load(out)
    assert again.events["event_id"].tolist() == data.events["event_id"].tolist()
    assert again.events["timestamp_ms"].tolist() == data.events["timestamp_ms"].tolist()
    assert again.items.set_index("item_id").loc["71053", "name"] == "WHITE METAL LANTERN"


def test_generic_events_iso_timestamps_and_defaults(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("event_id,timestamp,customer_id,item_id,event_type\n"
                    "a,2024-05-01T10:00:00Z,c1,sku1,view\n"
                    "b,2024-05-01T10:01:00+00:00,c1,sku2,purchase\n")
    data = load_events_csv(path)
    assert data.events["channel"].tolist() == ["web", "web"]
    assert data.events["quantity"].tolist() == [1.0, 1.0]
    assert data.events["timestamp_ms"].iloc[1] - data.events["timestamp_ms"].iloc[0] == 60_000


def test_generic_events_take_any_date_from_1970(tmp_path):
    """Old ratings data (the 1990s) loads; epoch seconds are read as seconds."""
    path = tmp_path / "old.csv"
    path.write_text("event_id,timestamp,customer_id,item_id,event_type\n"
                    "a,1997-09-22T22:02:38Z,c1,i1,rate\nb,1970-01-01T00:00:01Z,c1,i2,rate\n")
    assert load_events_csv(path).events["timestamp_ms"].tolist() == [874965758000, 1000]
    seconds = tmp_path / "seconds.csv"
    seconds.write_text("event_id,timestamp,customer_id,item_id,event_type\n"
                       "a,874965758,c1,i1,rate\nb,881250949,c2,i1,rate\n")
    assert load_events_csv(seconds).events["timestamp_ms"].tolist() == [874965758000, 881250949000]
    millis = tmp_path / "ms.csv"
    millis.write_text("event_id,timestamp,customer_id,item_id,event_type\na,874965758000,c1,i1,rate\n")
    assert load_events_csv(millis).events["timestamp_ms"].tolist() == [874965758000]


@pytest.mark.parametrize("row,message", [
    ("a,1969-12-31T23:59:59Z,c1,sku1,view", "line 2: timestamp before 1970"),
    ("a,2150-01-01T00:00:00Z,c1,sku1,view", "line 2: timestamp after 2099"),
    ("a,1e300,c1,sku1,view", "line 2: timestamp after 2099"),
    ("a,inf,c1,sku1,view", "row 2 is not a date"),
    ("a,2024-05-01T10:00:00Z,c1,sku1,teleport", "line 2: event_type"),
    ("a,yesterday,c1,sku1,view", "row 2"),
    ("a,2024-05-01T10:00:00Z,,sku1,view", "line 2: customer_id is empty"),
])
def test_generic_events_bad_rows_are_reported(tmp_path, row, message):
    path = tmp_path / "bad.csv"
    path.write_text("event_id,timestamp,customer_id,item_id,event_type\n" + row + "\n")
    with pytest.raises(InvalidArgument, match=message):
        load_events_csv(path)


def test_generic_events_bad_quantity(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("event_id,timestamp,customer_id,item_id,event_type,quantity\n"
                    "a,1714557600000,c1,sku1,purchase,2\nb,1714557600000,c1,sku1,purchase,-1\n")
    with pytest.raises(InvalidArgument, match="line 3: quantity"):
        load_events_csv(path)


def test_missing_file_and_columns(tmp_path):
    with pytest.raises(InvalidArgument, match="no such file"):
        load(tmp_path / "nope.csv")
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidArgument, match="missing required column"):
        load(path)
