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
        parts += ["## MovieLens 100K", "", r["protocol"] + f"; seeds {r['seeds']}.", "", movielens_table(r), "",
                  f"Blend weights chosen per seed: {r['chosen_weights']}", ""]
    if "online_retail" in results:
        r = results["online_retail"]
        parts += ["## UCI Online Retail", "", r["protocol"], "",
                  f"{r['customers']} customers, {r['invoices']} test invoices ({r['completion_invoices']} with 2+ items).",
                  "", retail_table(r), "", f"Chosen on the validation month: repurchase timing "
                  f"{r.get('chosen_repurchase_timing', 'decay')}; blend without a basket in progress "
                  f"{r['chosen_weights']}; blend with a cart {r.get('chosen_cart_weights', r['chosen_weights'])}", ""]
    parts += ["![evaluation chart](evaluation.png)", ""]
    report = report_dir / "evaluation.md"
    report.write_text("\n".join(parts))
    written["markdown"] = report
    return written
