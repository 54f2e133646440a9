"""The published quality is the shipped engine's.

`recsys evaluate` ranks its "engine" rows as `recsys train` + `recsys serve` would: a bundle made by
`train` (fitted to the training part, recommenders/fitting.py) and the RankingConfig `recsys serve`
builds by default with that fit over it (engine.config.fitted_ranking, what a shard ranks with). It
records every configuration it ran in docs/evaluation/evaluation.json, and records what it chose on
the validation split. These tests fail when the serving defaults, the evaluated configuration, the
validation choice and the README's tables disagree: change a default in engine/config.py and they
fail until `make evaluate` is re-run (and the README's tables copied from its report).
"""
import json
from dataclasses import fields, replace
from pathlib import Path

import pytest

from engine.config import BlendWeights, RankingConfig, ServeConfig, fitted_ranking, load_serve_config
from recommenders.evaluation import (CHOSEN_ROW, ENGINE_ROW, MOVIELENS_CATALOGUE_KEYS, MOVIELENS_ENGINE_ROW,
                                     MOVIELENS_REQUEST_FILTERS,
                                     RETAIL_REQUEST_FILTERS, movielens_methods, movielens_tuned, ranking_record,
                                     retail_methods, shipped_ranking)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = json.loads((ROOT / "docs" / "evaluation" / "evaluation.json").read_text())
RERUN = "the published evaluation is not of the serving defaults: re-run `make evaluate` and update the README"


def serving_default() -> RankingConfig:
    """What `recsys serve` ranks with when given no --config (scripts/cli.py: load_serve_config)."""
    return load_serve_config().ranking


def differing(a: RankingConfig, b: RankingConfig) -> set[str]:
    return {f.name for f in fields(RankingConfig) if getattr(a, f.name) != getattr(b, f.name)}


def test_the_engine_rows_rank_with_the_serving_defaults_by_construction():
    assert shipped_ranking() == serving_default() == ServeConfig().ranking
    engine = retail_methods()[0]
    assert engine.name == ENGINE_ROW and engine.config == serving_default()
    # a validation choice other than the defaults is shown beside them, never instead of them
    other = replace(serving_default(), repurchase_policy="exclude_always")
    assert [(m.name, m.config) for m in retail_methods(other)[:2]] == [(ENGINE_ROW, serving_default()),
                                                                        (CHOSEN_ROW, other)]
    assert CHOSEN_ROW not in {m.name for m in retail_methods(serving_default())}
    movielens = {m.name: m.config for m in movielens_methods(BlendWeights(history=1.0, als=0.5))}
    assert movielens["engine (shipped defaults, not fitted)"] == serving_default()
    # the tuned MovieLens row differs from the shipped configuration only in its per-catalogue keys
    assert differing(movielens["engine (blend tuned for MovieLens)"], serving_default()) <= set(MOVIELENS_CATALOGUE_KEYS)
    # the protocols' request filters: none for Online Retail, training items excluded for MovieLens
    assert RETAIL_REQUEST_FILTERS == {} and MOVIELENS_REQUEST_FILTERS == {"repurchase_policy": "exclude_always"}


def served(fitted: dict) -> dict:
    """What a shard ranks with over a bundle with this fitted record and no --config."""
    return ranking_record(fitted_ranking(serving_default(), fitted))


def test_published_online_retail_figures_are_of_the_serving_defaults():
    result = RESULTS["online_retail"]
    assert result.get("shipped_config") == ranking_record(serving_default()), RERUN
    assert "params" in result["fitted"] or "skipped" in result["fitted"]
    assert result["engine_config"] == served(result["fitted"]), RERUN
    assert result["protocol_request_filters"] == RETAIL_REQUEST_FILTERS
    assert result["engine_row"] == ENGINE_ROW and ENGINE_ROW in result["methods"]


def test_the_serving_defaults_are_what_validation_chose():
    result = RESULTS["online_retail"]
    assert result["shipped_is_chosen"] and CHOSEN_ROW not in result["methods"], (
        "validation chose another configuration than the shipped one: ship it (engine/config.py) and re-run")
    assert result["chosen_config"] == result["shipped_config"]
    chosen = result["chosen_config"]
    assert chosen["repurchase_timing"] == result["chosen_repurchase_timing"]
    # the blends the grid chose, then the options chosen after them (RETAIL_OPTIONS: a plain key sets
    # both blends, "weights.K" / "cart_weights.K" one)
    options = result["chosen_options"]
    for blend, grid_choice in (("weights", result["chosen_weights"]), ("cart_weights", result["chosen_cart_weights"])):
        for key, value in grid_choice.items():
            expected = options.get(f"{blend}.{key}", options.get(key, value))
            assert chosen[blend][key] == expected, (blend, key)


def test_published_movielens_figures_are_of_the_serving_defaults_and_its_catalogue_keys():
    result = RESULTS["movielens"]
    assert result.get("shipped_config") == ranking_record(serving_default()), RERUN
    assert result["protocol_request_filters"] == MOVIELENS_REQUEST_FILTERS
    assert result["catalogue_keys"] == list(MOVIELENS_CATALOGUE_KEYS)
    assert len(result["tuned_configs"]) == len(result["chosen_weights"]) == len(result["seeds"])
    for config, weights in zip(result["tuned_configs"], result["chosen_weights"]):
        assert config == ranking_record(movielens_tuned(BlendWeights(**weights))), RERUN
    # the engine row: what `recsys train` fitted on each seed's training part, served over the defaults
    assert result["engine_row"] == MOVIELENS_ENGINE_ROW and MOVIELENS_ENGINE_ROW in result["methods"]
    assert len(result["fitted"]) == len(result["fitted_configs"]) == len(result["seeds"])
    for config, fitted in zip(result["fitted_configs"], result["fitted"]):
        assert config == served(fitted), RERUN


def _section(text: str, title: str, end: str) -> str:
    start = text.index(title)
    return text[start:text.index(end, start)]


def _rows(section: str) -> dict[str, list[str]]:
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0].replace("*", "")] = [c.replace("*", "") for c in cells[1:]]
    return rows


def _row(rows: dict[str, list[str]], method: str) -> list[str]:
    found = [cells for label, cells in rows.items() if label.startswith(method)]
    assert len(found) == 1, f"README: one row for {method!r} expected, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("method", list(RESULTS["online_retail"]["methods"]))
def test_readme_online_retail_table_is_the_recorded_run(method):
    section = _section((ROOT / "README.md").read_text(), "## Offline evaluation", "## Layout")
    rows = _rows(_section(section, "UCI Online Retail, temporal split", "![offline evaluation]"))
    cells = _row(rows, method)
    m = RESULTS["online_retail"]["methods"][method]
    expected = [m["next_basket"]["hr@10"], m["next_basket"]["recall@10"], m["basket_completion"]["hr@10"],
                m["basket_completion"]["recall@10"], m["catalogue_coverage"]]
    assert cells[:5] == [f"{v:.3f}" for v in expected], method


@pytest.mark.parametrize("method", list(RESULTS["movielens"]["methods"]))
def test_readme_movielens_table_is_the_recorded_run(method):
    section = _section((ROOT / "README.md").read_text(), "## Offline evaluation", "## Layout")
    rows = _rows(_section(section, "MovieLens 100K, Microsoft Recommenders protocol", "UCI Online Retail, temporal"))
    cells = _row(rows, method)
    m = RESULTS["movielens"]["methods"][method]
    expected = [f"{m[c]['mean']:.3f} ± {m[c]['std']:.3f}" for c in ("map", "ndcg@10", "precision@10", "recall@10")]
    assert cells[:4] == expected, method


def test_published_session_figures_are_of_the_serving_defaults_and_its_blend_was_chosen_on_validation():
    assert "online_retail_sessions" in RESULTS, RERUN
    result = RESULTS["online_retail_sessions"]
    assert result["shipped_anonymous_weights"] == serving_default().anonymous_weights.as_dict(), RERUN
    assert result["engine_anonymous_weights"] == fitted_ranking(serving_default(), result["fitted"]).anonymous_weights.as_dict(), RERUN
    assert result["shipped_is_chosen"], "validation chose another anonymous blend: ship it (engine/config.py ANONYMOUS_TUNED)"
    assert result["chosen_anonymous_weights"] == result["shipped_anonymous_weights"]
    assert result["engine_row"] in result["methods"]


@pytest.mark.parametrize("method", list(RESULTS.get("online_retail_sessions", {}).get("methods", {})) or ["(none)"])
def test_readme_session_table_is_the_recorded_run(method):
    assert "online_retail_sessions" in RESULTS, RERUN
    section = _section((ROOT / "README.md").read_text(), "### Anonymous sessions", "## Layout")
    cells = _row(_rows(section), method)
    m = RESULTS["online_retail_sessions"]["methods"][method]
    k = RESULTS["online_retail_sessions"]["k"]
    assert cells[:2] == [f"{m[f'hr@{k}']:.3f}", f"{m[f'mrr@{k}']:.3f}"], method
