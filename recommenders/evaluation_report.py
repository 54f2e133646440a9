"""Evaluation results as a table (stdout), a JSON file, a Markdown report and a PNG chart."""
from __future__ import annotations

import json
from pathlib import Path


def movielens_table(result: dict) -> str:
    cols = ["map", "ndcg@10", "precision@10", "recall@10"]
    lines = ["| method | MAP | nDCG@10 | Precision@10 | Recall@10 | ms/request |", "|---|---|---|---|---|---|"]
    for name, metrics in result["methods"].items():
        cells = [f"{metrics[c]['mean']:.3f} ± {metrics[c]['std']:.3f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {metrics['ms_per_request']['mean']:.2f} |")
    for name, metrics in result["published"].items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.3f}" for c in cols) + " | |")
    return "\n".join(lines)


def retail_table(result: dict) -> str:
    lines = ["| method | next basket HR@10 | next basket Recall@10 | completion HR@10 | completion Recall@10 | "
             "catalogue coverage | ms/request |", "|---|---|---|---|---|---|---|"]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | {m['next_basket']['hr@10']:.3f} | {m['next_basket']['recall@10']:.3f} | "
                     f"{m['basket_completion']['hr@10']:.3f} | {m['basket_completion']['recall@10']:.3f} | "
                     f"{m['catalogue_coverage']:.3f} | {m['ms_per_request']:.2f} |")
    return "\n".join(lines)


def sessions_table(result: dict) -> str:
    k = result["k"]
    lines = [f"| method | HR@{k} | MRR@{k} | ms/request |", "|---|---|---|---|"]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | {m[f'hr@{k}']:.3f} | {m[f'mrr@{k}']:.3f} | {m['ms_per_request']:.2f} |")
    return "\n".join(lines)


def _config_line(config: dict) -> str:
    blends = ("weights", "cart_weights", "anonymous_weights")
    rest = {k: v for k, v in config.items() if k not in blends}
    return "; ".join(f"`[ranking.{b}]` {config[b]}" for b in blends if b in config) + f"; `[ranking]` {rest}"


def _filters_line(filters: dict) -> str:
    return ", ".join(f"`{k} = {v}`" for k, v in filters.items()) if filters else "none"


def _run_line(result: dict) -> str:
    run = result.get("run")
    return f"Run {run['date']}, {run['seconds'] / 60:.1f} min." if run else ""


def retail_config_notes(r: dict) -> list[str]:
    """What the Online Retail figures were measured with, and what validation chose."""
    if "engine_config" not in r:
        return []
    fitted = r.get("fitted") or {}
    lines = [f"The row \"{r['engine_row']}\" is what `recsys train` + `recsys serve` ship: a bundle `recsys train` "
             f"made of the training part, fitted to it (ALS and popularity settings {fitted.get('params', {})}, "
             f"ranking {fitted.get('ranking', {})}; {fitted.get('skipped', '')}"
             f"{'chosen on ' + str(fitted.get('customers')) + ' held-out customers' if 'customers' in fitted else ''}), "
             f"ranked with the serve defaults with that fit over them: {_config_line(r['engine_config'])}.",
             f"Request filters the protocol adds: {_filters_line(r['protocol_request_filters'])}.", ""]
    v, s = r["validation_chosen"], r["validation_shipped"]
    lines += [f"Validation month (HR@10 + Recall@10): chosen configuration next basket {v['next_basket']:.4f}, "
              f"completion {v['basket_completion']:.4f}; shipped {s['next_basket']:.4f} / {s['basket_completion']:.4f}. "
              f"The shipped configuration is the one chosen on validation: "
              f"**{'yes' if r['shipped_is_chosen'] else 'NO'}**."]
    if not r["shipped_is_chosen"]:
        lines.append(f"Chosen on validation (not shipped): {_config_line(r['chosen_config'])}.")
    lines += ["", "Tried with the chosen blends on the validation month (HR@10 + Recall@10):", "",
              "| setting | next basket | completion | sum |", "|---|---|---|---|"]
    for t in r["validation_options_tried"]:
        n, c = t["validation"]["next_basket"], t["validation"]["basket_completion"]
        setting = ", ".join(f"{k} {val}" for k, val in t["setting"].items())
        lines.append(f"| {setting} | {n:.4f} | {c:.4f} | {n + c:.4f} |")
    return lines + [""]


def movielens_config_notes(r: dict) -> list[str]:
    if "shipped_config" not in r:
        return []
    return [f"Request filters the protocol adds: {_filters_line(r['protocol_request_filters'])} (training items "
            "excluded; a rule of this benchmark, not the serving default) to every row but the first. "
            f"\"{r.get('engine_row', '')}\" is what `recsys train` + `recsys serve` ship, with no request filter: "
            "per seed, a bundle `recsys train` made of the training part, fitted to it on its own holdout "
            f"({'; '.join(str({'params': f.get('params'), 'ranking': f.get('ranking')}) for f in r.get('fitted', []))}), "
            "ranked with the serve defaults with that fit over them. \"engine (shipped defaults, not fitted)\" "
            f"ranks with the defaults alone: {_config_line(r['shipped_config'])}. \"engine (blend tuned for "
            f"MovieLens)\" is that configuration with only {', '.join(r['catalogue_keys'])} set for this catalogue "
            "(`[ranking.weights]` chosen per seed on validation, below; `candidates_per_source` "
            f"{r['tuned_configs'][0]['candidates_per_source']}), as an operator would set them in a `--config` TOML.", ""]


def write_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [key for key in ("movielens", "online_retail") if key in results]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, key in zip(axes[0], panels):
        result = results[key]
        if key == "movielens":
            names = list(result["methods"]) + list(result["published"])
            values = [result["methods"][n]["ndcg@10"]["mean"] for n in result["methods"]] + \
                     [result["published"][n]["ndcg@10"] for n in result["published"]]
            errors = [result["methods"][n]["ndcg@10"]["std"] for n in result["methods"]] + [0] * len(result["published"])
            colours = ["tab:blue"] * len(result["methods"]) + ["tab:gray"] * len(result["published"])
            ax.barh(names, values, xerr=errors, color=colours)
            ax.set_xlabel("nDCG@10 (mean ± std over seeds; grey: published)")
            ax.set_title("MovieLens 100K")
        else:
            names = list(result["methods"])
            nxt = [result["methods"][n]["next_basket"]["hr@10"] for n in names]
            comp = [result["methods"][n]["basket_completion"]["hr@10"] for n in names]
            y = range(len(names))
            ax.barh([i + 0.2 for i in y], nxt, height=0.4, label="next basket HR@10")
            ax.barh([i - 0.2 for i in y], comp, height=0.4, label="basket completion HR@10")
            ax.set_yticks(list(y), names)
            ax.legend(loc="lower right")
            ax.set_title("UCI Online Retail (temporal split)")
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(results: dict, json_path: Path | None, report_dir: Path, command: str) -> dict[str, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    json_path = json_path or report_dir / "evaluation.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True))
    written["json"] = json_path
    chart = report_dir / "evaluation.png"
    write_chart(results, chart)
    written["chart"] = chart
    parts = ["# Offline evaluation", "", f"Made by `{command}`.", ""]
    if "movielens" in results:
        r = results["movielens"]
        parts += ["## MovieLens 100K", "", r["protocol"] + f"; seeds {r['seeds']}. " + _run_line(r), "",
                  movielens_table(r), "", *movielens_config_notes(r),
                  f"Blend weights chosen per seed: {r['chosen_weights']}", ""]
    if "online_retail" in results:
        r = results["online_retail"]
        parts += ["## UCI Online Retail", "", r["protocol"], "",
                  f"{r['customers']} customers, {r['invoices']} test invoices ({r['completion_invoices']} with 2+ items). "
                  + _run_line(r), "", retail_table(r), "", *retail_config_notes(r),
                  f"Chosen on the validation month: repurchase timing "
                  f"{r.get('chosen_repurchase_timing', 'decay')}; blend without a basket in progress "
                  f"{r['chosen_weights']}; blend with a cart {r.get('chosen_cart_weights', r['chosen_weights'])}"
                  + (f"; then {r['chosen_options']}" if "chosen_options" in r else ""), ""]
    if "online_retail_sessions" in results:
        r = results["online_retail_sessions"]
        parts += ["## Anonymous sessions (Online Retail guest baskets)", "", r["protocol"], "",
                  f"{r['reveals']} reveals over {r['baskets']} baskets. " + _run_line(r), "", sessions_table(r), "",
                  f"The row \"{r['engine_row']}\" ranks visitors unknown to the model with `[ranking.anonymous_weights]` "
                  f"{r['engine_anonymous_weights']}. Chosen on the validation month ({r['validation_baskets']} guest "
                  f"baskets, {r['blends_tried']} blends, HR + MRR): {r.get('chosen_anonymous_choice')} "
                  f"({r['validation_chosen']:.4f}; shipped {r['validation_shipped']:.4f}). The shipped blend is the "
                  f"one chosen on validation: **{'yes' if r['shipped_is_chosen'] else 'NO'}**.", ""]
    parts += ["![evaluation chart](evaluation.png)", ""]
    report = report_dir / "evaluation.md"
    report.write_text("\n".join(parts))
    written["markdown"] = report
    return written
