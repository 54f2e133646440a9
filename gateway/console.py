"""The operators' console: server-rendered pages under ``/console``, served by the ingress itself,
behind an API key with the ``admin`` scope (issue 21, item 1).

The key is given once on the login page and kept in an HttpOnly, SameSite=Strict cookie; every page
and form checks it as the API does (gateway/rpcs.py ``admit``: key, scope, rate). The pages read what
the service runs on: the Prometheus counters of this replica and the owners (requests, errors and
latency per RPC, events ingested), the owners' own stats (partitions, customers held, model
version), the model registry (bundles with their offline checks; promote and roll back with the
registry's refusals), the offer catalogue in force, and one customer (their recent events across
channels, what they would be recommended now with the reasons, export, erase after typing the id).

This module renders; gateway/ingress.py gathers the data and owns the routes. No JavaScript is
needed; the overview reloads itself every 5 seconds.
"""
from __future__ import annotations

import html
import time
from typing import Any, Iterable, Mapping, Sequence

from prometheus_client.parser import text_string_to_metric_families

COOKIE = "recsys_console"
PAGES = (("overview", "/console"), ("models", "/console/models"), ("offers", "/console/offers"),
         ("experiments", "/console/experiments"), ("customer", "/console/customer"))


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, *, refresh: bool = False, active: str = "") -> str:
    nav = " · ".join(f'<a href="{href}"{" class=on" if name == active else ""}>{name}</a>' for name, href in PAGES)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>recsys console: {esc(title)}</title>
{'<meta http-equiv="refresh" content="5">' if refresh else ''}
<style>body{{font:14px system-ui,sans-serif;margin:1.5em;max-width:75em}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}th{{background:#f0f0f0}}nav a{{margin-right:.3em}}
nav a.on{{font-weight:bold}}.bad{{color:#a00}}.ok{{color:#060}}code,pre{{background:#f6f6f6}}
.bar{{background:#4a7;height:.8em;display:inline-block}}</style></head>
<body><nav>recsys console: {nav} · <a href="/console/logout">log out</a></nav><h1>{esc(title)}</h1>{body}</body></html>"""


def login_page(message: str = "") -> str:
    note = f'<p class="bad" id="message">{esc(message)}</p>' if message else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>recsys console: log in</title></head>
<body style="font:14px system-ui,sans-serif;margin:2em"><h1>recsys console</h1>{note}
<form method="post" action="/console/login"><label>API key (admin scope)
<input type="password" name="key" id="key" size="50" autocomplete="off"></label>
<button type="submit" id="login">Log in</button></form></body></html>"""


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], table_id: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table{f" id={esc(table_id)}" if table_id else ""}><tr>{head}</tr>{body}</table>'


# -- overview -----------------------------------------------------------------------------------

def rpc_figures(exposition: str) -> dict[str, dict[str, float]]:
    """Per RPC: requests, errors (status other than 200/OK), and p50 / p99 latency (ms, the upper
    bound of the histogram bucket the quantile falls in), from the Prometheus text."""
    out: dict[str, dict[str, float]] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            rpc = sample.labels.get("rpc")
            if rpc is None:
                continue
            if sample.name == "recsys_requests_total":
                row = out.setdefault(rpc, {"requests": 0.0, "errors": 0.0})
                row["requests"] += sample.value
                if sample.labels.get("code") not in ("200", "OK"):
                    row["errors"] += sample.value
            elif sample.name == "recsys_request_duration_seconds_bucket":
                buckets.setdefault(rpc, []).append((float(sample.labels["le"]), sample.value))
    for rpc, pairs in buckets.items():
        merged: dict[float, float] = {}
        for le, count in pairs:
            merged[le] = merged.get(le, 0.0) + count
        ordered = sorted(merged.items())
        total = ordered[-1][1] if ordered else 0.0
        row = out.setdefault(rpc, {"requests": 0.0, "errors": 0.0})
        for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99)):
            row[name] = next((le * 1000 for le, count in ordered if total and count >= q * total), float("nan"))
    return out


def events_ingested(exposition: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "recsys_events_ingested_total":
                out[sample.labels.get("result", "")] = out.get(sample.labels.get("result", ""), 0.0) + sample.value
    return out


class Rates:
    """Requests per second per RPC between two looks at the counters (this replica's memory)."""

    def __init__(self) -> None:
        self._last: tuple[float, dict[str, float]] | None = None

    def update(self, figures: Mapping[str, Mapping[str, float]], now: float | None = None) -> dict[str, float]:
        now = time.monotonic() if now is None else now
        counts = {rpc: row["requests"] for rpc, row in figures.items()}
        last, self._last = self._last, (now, counts)
        if last is None or now <= last[0]:
            return {}
        return {rpc: max(count - last[1].get(rpc, 0.0), 0.0) / (now - last[0]) for rpc, count in counts.items()}


def overview(health: Mapping[str, Any], owners: list[dict], figures: Mapping[str, Mapping[str, float]],
             rates: Mapping[str, float], events: Mapping[str, float]) -> str:
    status = (f'<span class="ok">serving</span> model <code id="model-version">{esc(health["model_version"])}</code>'
              if health.get("status") == "ok" else f'<span class="bad">unavailable: {esc(health.get("message", ""))}</span>')
    rpc_rows = []
    for rpc in sorted(figures):
        row = figures[rpc]
        rpc_rows.append((esc(rpc), f"{rates.get(rpc, 0.0):.1f}", f"{row['requests']:.0f}",
                         f'<span class="{"bad" if row["errors"] else ""}">{row["errors"]:.0f}</span>',
                         f"{row.get('p50_ms', float('nan')):.1f}", f"{row.get('p99_ms', float('nan')):.1f}"))
    owner_rows = [(esc(o["owner"]), len(o["partitions"]), o["customers"], esc(o["model_version"]), o["requests"],
                   o.get("moves_in", 0), o.get("moves_out", 0)) for o in sorted(owners, key=lambda o: o["owner"])]
    body = (f"<p>{status}; {health.get('partitions', '?')} partitions over {len(owners)} owners; "
            f"{sum(o['customers'] for o in owners)} customers held. Reloads every 5 s.</p>"
            "<h2>Requests</h2>" + table(["RPC", "req/s now", "requests", "errors", "p50 ms (≤)", "p99 ms (≤)"], rpc_rows,
                                        "rpcs")
            + "<h2>Events ingested</h2>" + table(["result", "events"], [(esc(k), f"{v:.0f}") for k, v in
                                                                         sorted(events.items())], "events")
            + "<h2>Owners</h2>" + table(["owner", "partitions", "customers", "model", "requests", "moves in",
                                         "moves out"], owner_rows, "owners"))
    return page("overview", body, refresh=True, active="overview")


# -- models -------------------------------------------------------------------------------------

def models(versions: list[dict], manifests: Mapping[str, Mapping[str, Any]], message: str = "", ok: bool = True) -> str:
    rows = []
    for entry in reversed(versions):
        version = entry["version"]
        check = (manifests.get(version) or {}).get("offline_metrics") or {}
        fitted = (manifests.get(version) or {}).get("fitted") or {}
        action = ("<b>serving</b>" if entry["serving"] else
                  f'<form method="post" action="/console/models/promote"><input type="hidden" name="version" '
                  f'value="{esc(version)}"><label><input type="checkbox" name="force" value="1"> force</label> '
                  f'<button type="submit" name="promote" value="{esc(version)}">promote</button></form>')
        rows.append((f"<code>{esc(version)}</code>", esc(check.get("hr@10", "-")), esc(check.get("popularity_hr@10", "-")),
                     esc(check.get("customers", "-")), esc(check.get("sufficient", "-")),
                     esc({k: fitted.get(k) for k in ("params", "ranking") if k in fitted} or fitted.get("skipped", "-")),
                     action))
    note = f'<p id="message" class="{"ok" if ok else "bad"}">{esc(message)}</p>' if message else ""
    body = (note + table(["version", "offline HR@10", "popularity HR@10", "customers checked", "sufficient",
                          "fitted", ""], rows, "models")
            + '<form method="post" action="/console/models/rollback"><button type="submit" id="rollback">'
              "roll back to the previous model</button></form>"
            + "<p>The same refusals as <code>recsys models promote</code>: a bundle that fails its checksum, "
              "whose check covers too few customers or scores more than 0.02 below the serving one (force accepts it).</p>")
    return page("models", body, active="models")


# -- offers -------------------------------------------------------------------------------------

def offers(catalog: Mapping[str, Any]) -> str:
    budget = catalog.get("budget_left", {})
    rows = [(esc(o["id"]), esc(o["name"]), esc(o["value"]), esc(", ".join(o["channels"]) or "all"),
             esc(o["caps"]), esc(budget.get(o["id"], "no budget")), esc(o["eligibility"]))
            for o in catalog.get("offers", [])]
    experiments = [(esc(e["id"]), esc(", ".join(f"{a['name']} {a['share']:.0%} ({a['strategy']})" for a in e["arms"])))
                   for e in catalog.get("experiments", [])]
    body = (f"<p>Catalogue in force: version <code id=\"catalog-version\">{esc(catalog.get('version'))}</code> "
            f"(checksum {esc(catalog.get('checksum', ''))[:12]}), {len(rows)} offers.</p>"
            + table(["offer", "name", "value", "channels", "caps", "global budget left", "eligibility"], rows, "offers")
            + f"<p>Budget left summed over {esc(catalog.get('partitions_counted', '?'))} partitions.</p>"
            + "<h2>Experiments</h2>" + table(["experiment", "arms"], experiments, "experiments")
            + "<p>Outcomes with intervals: <code>recsys experiments report</code>.</p>")
    return page("offers", body, active="offers")


# -- experiments --------------------------------------------------------------------------------

def _interval_bar(low: float, high: float, value: float, scale: float) -> str:
    """An inline SVG of a rate with its 95% interval, on 0..scale."""
    width = 240

    def x(v: float) -> float:
        return 0.0 if v != v else max(0.0, min(width, width * v / scale))
    return (f'<svg width="{width}" height="14" role="img" aria-label="{value:.3f} [{low:.3f}, {high:.3f}]">'
            f'<rect x="0" y="5" width="{x(value):.1f}" height="4" fill="#4a7"/>'
            f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="7" y2="7" stroke="#000"/>'
            f'<line x1="{x(low):.1f}" x2="{x(low):.1f}" y1="2" y2="12" stroke="#000"/>'
            f'<line x1="{x(high):.1f}" x2="{x(high):.1f}" y1="2" y2="12" stroke="#000"/></svg>')


def experiments(rows: list[Mapping[str, Any]], window_days: float,
                lists: Sequence[Mapping[str, Any]] = ()) -> str:
    """The offer experiments' arms (``rows``: engine.decisioning.experiment_report) and what the
    recommendation lists earned per experiment arm (``lists``: engine.rec_report.report by arm)."""
    return page("experiments", _offer_experiments(rows, window_days) + _list_experiments(lists),
                active="experiments")


def _list_experiments(lists: Sequence[Mapping[str, Any]]) -> str:
    head = "<h2>Recommendations</h2>"
    if not lists:
        return head + "<p id=\"rec-message\">No impressions credited to a recommendation stored yet.</p>"
    rates = [r["ctr"] for r in lists]
    scale = max([r["high"] for r in rates if r["high"] == r["high"]] + [0.01])
    table_rows = []
    for r in lists:
        ctr = r["ctr"]
        experiment, arm = (r["key"][0] or "(none)"), (r["key"][1] or "(none)")
        if r["baseline"]:
            d = r["ctr_diff"]
            diff = f"{_with_interval(d, '+.4f')} vs {esc(r['baseline'][1])}"
        else:
            diff = "baseline" if r["key"][0] else ""
        rpi = r["revenue_per_impression"]
        table_rows.append((esc(experiment), esc(arm), r["customers"], r["impressions"], r["clicks"],
                           _with_interval(ctr, ".4f"),
                           _interval_bar(ctr["low"], ctr["high"], ctr["value"], scale), diff,
                           f"{rpi['value']:.3f}"))
    return (head + "<p>Impressions, clicks and purchases credited to the lists each arm made; the customer is the "
            "unit, 95% delta-method intervals (engine.rec_report, as <code>recsys experiments report</code>).</p>"
            + table(["experiment", "arm", "customers", "impressions", "clicks", "CTR [95%]", "", "difference [95%]",
                     "revenue/impression"], table_rows, "recommendations"))


def _with_interval(rate: Mapping[str, float], spec: str) -> str:
    """A rate and its 95% interval ("n/a" for what one customer cannot give)."""
    if rate["value"] != rate["value"]:
        return "n/a"
    if rate["low"] != rate["low"]:
        return f"{rate['value']:{spec}} [n/a]"
    return f"{rate['value']:{spec}} [{rate['low']:{spec}}, {rate['high']:{spec}}]"


def _offer_experiments(rows: list[Mapping[str, Any]], window_days: float) -> str:
    head = "<h2>Offers</h2>"
    if not rows:
        return head + "<p id=\"message\">No experiment exposures stored yet.</p>"
    scale = max([r["conversion_ci"][1] for r in rows if r["conversion_ci"][1] == r["conversion_ci"][1]] + [0.01])
    table_rows = []
    for r in rows:
        low, high = r["conversion_ci"]
        if r["baseline"]:
            d_low, d_high = r["conversion_diff_ci"]
            diff = f"{r['conversion_diff']:+.3f} [{d_low:+.3f}, {d_high:+.3f}] vs {esc(r['baseline'])}"
        else:
            diff = "baseline"
        table_rows.append((esc(r["experiment_id"]), esc(r["arm"]) + (" (control)" if r["control"] else ""),
                           r["exposures"], r["customers"], r["conversions"],
                           f"{r['conversion_rate']:.3f} [{low:.3f}, {high:.3f}]",
                           _interval_bar(low, high, r["conversion_rate"], scale), diff, f"{r['revenue']:.2f}"))
    return (head + f"<p>Each exposed customer converts by buying an offer's target within {window_days:g} days of their "
            "first exposure; 95% Wilson intervals (engine.decisioning.experiment_report, as "
            "<code>recsys experiments report</code>).</p>"
            + table(["experiment", "arm", "exposures", "customers", "conversions", "conversion rate [95%]", "",
                     "difference [95%]", "revenue"], table_rows, "experiments"))


# -- one customer -------------------------------------------------------------------------------

def customer_form(message: str = "", ok: bool = True) -> str:
    note = f'<p id="message" class="{"ok" if ok else "bad"}">{esc(message)}</p>' if message else ""
    return page("customer", note + '<form method="get" action="/console/customer"><label>customer id '
                '<input name="id" id="customer-id"></label> <button type="submit" id="lookup">look up</button></form>',
                active="customer")


def customer(customer_id: str, export: Mapping[str, Any] | None, recommended: Mapping[str, Any] | None,
             error: str = "", offer: Mapping[str, Any] | None = None) -> str:
    parts = [f"<p>Customer <code id=\"customer\">{esc(customer_id)}</code></p>"]
    if error:
        parts.append(f'<p class="bad" id="message">{esc(error)}</p>')
    if recommended is not None:
        items = [(i + 1, f"<code>{esc(item['item_id'])}</code>", esc(item.get("name", "")), f"{item['score']:.3f}",
                  esc(", ".join(item["reasons"]))) for i, item in enumerate(recommended["items"])]
        parts.append(f"<h2>Recommended now (web, model {esc(recommended['model_version'])}, "
                     f"personalized: {esc(recommended['personalized'])}; {esc(', '.join(recommended['reasons']))})</h2>"
                     + table(["#", "item", "name", "score", "reasons"], items, "recommended"))
    if offer is not None:
        offered = [(f"<code>{esc(o['offer_id'])}</code>", esc(o["name"]), f"{o['score']:.3f}", f"{o['propensity']:.3f}",
                    esc(", ".join(o.get("passed_rules", [])))) for o in offer.get("offers", [])]
        rejected = ", ".join(f"{k}: {v}" for k, v in sorted((offer.get("rejected") or {}).items()))
        parts.append(f"<h2>Would be offered now (web; a preview: nothing recorded)</h2><p id=\"offer-reason\">"
                     f"{esc(offer.get('reason') or str(len(offered)) + ' offer(s)')}; segment {esc(offer.get('segment', ''))}, strategy "
                     f"{esc(offer.get('strategy', ''))}{'; not eligible: ' + esc(rejected) if rejected else ''}</p>"
                     + table(["offer", "name", "score", "propensity", "rules passed"], offered, "offer"))
    if export is not None:
        events = list(export.get("events", []))[-50:]
        rows = [(esc(e.get("timestamp_ms")), esc(e.get("channel")), esc(e.get("event_type")), esc(e.get("item_id", "")),
                 esc(e.get("store_id", ""))) for e in reversed(events)]
        channels = sorted({e.get("channel") for e in export.get("events", [])})
        parts.append(f"<h2>Recent events ({len(export.get('events', []))} stored; channels: "
                     f"{esc(', '.join(channels))})</h2>" + table(["timestamp ms", "channel", "type", "item", "store"],
                                                                  rows, "events"))
        profile = {k: v for k, v in export.items() if k not in ("events",)}
        parts.append(f"<h2>Everything else held</h2><pre id=\"export\">{esc(_short(profile))}</pre>"
                     f'<p><a href="/console/customer/export?id={esc(customer_id)}" id="export-link">export (JSON)</a></p>'
                     '<h2>Erase</h2><form method="post" action="/console/customer/erase">'
                     f'<input type="hidden" name="id" value="{esc(customer_id)}"><label>type the customer id to confirm '
                     '<input name="confirm" id="confirm"></label> <button type="submit" id="erase">erase everywhere'
                     "</button></form>")
    return page("customer", "".join(parts), active="customer")


def _short(value: Any, limit: int = 6000) -> str:
    import json

    text = json.dumps(value, indent=1, default=str)
    return text if len(text) <= limit else text[:limit] + "\n..."
