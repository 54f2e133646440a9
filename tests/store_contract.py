"""One contract every store backend passes (as implicit's model tests share one mixin)."""
import pytest

from engine.errors import InvalidArgument
from engine.events import parse_event

NOW = 1_800_000_000_000


def ev(n, customer="c1", kind="view", item="i1"):
    return parse_event({"event_id": f"e{n}", "customer_id": customer, "event_type": kind, "item_id": item,
                        "channel": "web", "attributes": {"k": "v"}, "price": 2.5}, NOW)


class StoreContract:
    append_only_error: type = Exception

    def test_append_is_idempotent_per_customer_and_event_id(self, store):
        seqs = store.append(0, [ev(1), ev(2), ev(1)])
        assert seqs[0] is not None and seqs[1] is not None and seqs[2] is None
        assert store.append(0, [ev(2)]) == [None]
        # the same event id from another customer is another event
        assert store.append(0, [ev(2, customer="c2")])[0] is not None

    def test_events_since_in_order_and_by_shard(self, store):
        store.append(0, [ev(1), ev(2)])
        store.append(1, [ev(3, customer="other")])
        events = list(store.events_since(0, 0))
        assert [e.event_id for _, e in events] == ["e1", "e2"]
        assert events[0][1] == ev(1)  # every field survives the round trip
        assert list(store.events_since(0, events[0][0]))[0][1].event_id == "e2"
        assert [e.event_id for _, e in store.events_since(1, 0)] == ["e3"]

    def test_durable_across_connections(self, store, reopen):
        store.append(0, [ev(1)])
        store.write_snapshot(0, 7, b"snapshot-bytes")
        other = reopen()
        try:
            assert [e.event_id for _, e in other.events_since(0, 0)] == ["e1"]
            assert other.latest_snapshot(0) == (7, b"snapshot-bytes")
        finally:
            other.close()

    def test_snapshot_replaced(self, store):
        assert store.latest_snapshot(3) is None
        store.write_snapshot(3, 1, b"a")
        store.write_snapshot(3, 5, b"b")
        assert store.latest_snapshot(3) == (5, b"b")

    def test_forget_and_export(self, store):
        store.append(0, [ev(1, customer="gone"), ev(2, customer="kept"), ev(3, customer="gone")])
        assert store.forget_customer("gone") == 2
        assert store.customer_events("gone") == []
        assert [e.customer_id for e in store.export_events()] == ["kept"]
        assert store.forgotten_customers() == {"gone"}
        # forgetting twice is harmless
        assert store.forget_customer("gone") == 0

    def test_webhook_dead_letters_are_kept_replaced_and_erased(self, store):
        def action(n, customer):
            return {"action_id": f"a{n}", "customer_id": customer, "kind": "cross_sell", "created_ms": n}

        store.add_dead_letter("crm", 7, action(1, "gone"), 3, "HTTP 500")
        store.add_dead_letter("crm", 7, action(1, "gone"), 6, "HTTP 502")  # the same action again: replaced
        store.add_dead_letter("crm", 8, action(2, "kept"), 6, "timeout")
        store.add_dead_letter("erp", 8, action(2, "kept"), 6, "timeout")
        letters = store.dead_letters("crm")
        assert [(d["action"]["action_id"], d["attempts"], d["error"]) for d in letters] == [
            ("a1", 6, "HTTP 502"), ("a2", 6, "timeout")]
        assert len(store.dead_letters()) == 3
        store.forget_customer("gone")
        assert [d["action"]["customer_id"] for d in store.dead_letters()] == ["kept", "kept"]

    def test_audit_is_append_only(self, store):
        store.audit("key-1", "forget_customer", "c9", {"n": 1})
        log = store.audit_log()
        assert log[-1]["principal"] == "key-1" and log[-1]["detail"] == {"n": 1}
        with pytest.raises(self.append_only_error):
            store._execute("DELETE FROM audit")
        store._rollback()
        with pytest.raises(self.append_only_error):
            store._execute("UPDATE audit SET action = 'nothing'")
        store._rollback()
        assert len(store.audit_log()) == len(log)

    @staticmethod
    def _url(store) -> str:
        """The URL ``store`` was opened at (either backend), to open it again with another P."""
        return store.url if hasattr(store, "url") else f"sqlite:///{store.path}"

    def test_layout_is_checked(self, store, reopen):
        from actors.store import open_store
        from engine.sharding import DEFAULT_PARTITIONS

        # a store made without saying has DEFAULT_PARTITIONS, one lease row each
        assert store.partitions() == DEFAULT_PARTITIONS
        assert sorted(store.leases()) == list(range(DEFAULT_PARTITIONS))
        # opened again without P, or with its own P: fine
        for again in (reopen(), open_store(self._url(store), DEFAULT_PARTITIONS)):
            assert again.partitions() == DEFAULT_PARTITIONS
            again.close()
        # another P would move customers to other partitions: refused, with what to do instead
        with pytest.raises(InvalidArgument, match=f"has {DEFAULT_PARTITIONS} partitions.*cannot be served with 8"):
            open_store(self._url(store), 8)
        assert store.partitions() == DEFAULT_PARTITIONS  # and nothing was changed by the attempt

    @pytest.fixture
    def fresh_url(self):
        """A URL where no store exists yet (a backend that cannot make one skips the test)."""
        pytest.skip("this backend's tests give no URL for a fresh store")

    def test_stores_starting_together_agree_on_the_layout(self, fresh_url):
        """Owners starting at once on a new store: the schema is created once, with their P."""
        from concurrent.futures import ThreadPoolExecutor

        from actors.store import open_store

        with ThreadPoolExecutor(max_workers=6) as pool:
            stores = list(pool.map(lambda _: open_store(fresh_url, 3), range(6)))
        try:
            assert [s.partitions() for s in stores] == [3] * 6
            assert stores[0].leases() == {p: (None, 0) for p in range(3)}
            seqs = stores[0].append(0, [ev(1)])
            assert [e.event_id for _, e in stores[5].events_since(0, 0)] == ["e1"] and seqs[0] is not None
        finally:
            for s in stores:
                s.close()
        with pytest.raises(InvalidArgument, match="has 3 partitions"):
            open_store(fresh_url, 2)

    def test_reopening_together_keeps_the_layout(self, store, reopen):
        from concurrent.futures import ThreadPoolExecutor

        store.append(0, [ev(1)])
        with ThreadPoolExecutor(max_workers=6) as pool:
            stores = list(pool.map(lambda _: reopen(), range(6)))
        try:
            assert {s.partitions() for s in stores} == {store.partitions()}
            assert len(store.leases()) == store.partitions()
            assert [e.event_id for _, e in stores[0].events_since(0, 0)] == ["e1"]
        finally:
            for s in stores:
                s.close()

    def test_meta_values_are_replaced(self, store):
        assert store.get_meta("k") is None
        store.set_meta("k", "one")
        store.set_meta("k", "two")
        assert store.get_meta("k") == "two"

    def test_catalogue_log_and_outbox(self, store):
        from engine.catalog import CatalogUpdate

        store.append_catalog([CatalogUpdate("i1", 1, price=2.0), CatalogUpdate("i1", 2, in_stock=False)])
        assert [u.timestamp_ms for u in store.catalog_updates()] == [1, 2]
        action = {"action_id": "a-1", "customer_id": "c1", "kind": "cross_sell", "created_ms": 5, "item_ids": ["x"]}
        assert store.append_actions([action, {**action, "action_id": "a-2"}]) == 2
        assert store.append_actions([action]) == 0  # the same action again is not stored twice
        rows = store.actions_after(0)
        assert [a["action_id"] for _, a in rows] == ["a-1", "a-2"] and rows[0][0] < rows[1][0]
        assert [a["action_id"] for _, a in store.actions_after(rows[0][0])] == ["a-2"]
        store.forget_customer("c1")
        assert store.actions_after(0) == []
