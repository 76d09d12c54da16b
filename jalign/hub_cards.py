"""Hub cards: the README.md of each published repo (YAML metadata + Markdown body), from plain data.

Every function here takes what the publish stage already read (stage reports, i.e. the whole
`metrics/<stage>.meta.json`; a dvc.lock entry; a licence tally) and returns text or card metadata;
reading the project and deciding what may be published stay in `stages/publish.py`. A card is parsed
back by `huggingface_hub`'s card class before it is written, so a card the Hub would reject fails at
plan time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jalign.hub import LicenseTally

# Licence ids the Hub's `license` field accepts (a subset of its list); anything else is "other".
HUB_LICENSES = frozenset(
    """apache-2.0 mit bsd-2-clause bsd-3-clause cc0-1.0 cc-by-2.0 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0
    cc-by-sa-4.0 cc-by-nc-4.0 cc-by-nc-sa-4.0 cc-by-nd-4.0 cc-by-nc-nd-4.0 odc-by odbl pddl
    cdla-permissive-2.0 cdla-sharing-1.0 gpl-3.0 lgpl-3.0 agpl-3.0 mpl-2.0 unlicense openrail llama2
    llama3 llama3.1 llama3.2 llama3.3 llama4 gemma""".split()  # noqa: SIM905 (a word list reads best)
)


@dataclass(frozen=True)
class CardFacts:
    """What every card states: licences, the models behind the data, and where the artifact came from."""

    tally: LicenseTally
    license: dict[str, str]  # card metadata, from card_license()
    overridden: list[str]  # ids accepted by hub.override_licenses
    models: list[dict[str, str]]  # usage_models()
    commit: str  # git_commit() of the artifact's stage report
    lock_entry: dict[str, Any] | None  # jalign.hub.lock_inputs() of the artifact


# -- metadata -----------------------------------------------------------------------------------------


def card_license(licenses: list[str]) -> dict[str, str]:
    """One Hub licence id when there is exactly one known id; otherwise `other` + a license_name."""
    if len(licenses) == 1 and licenses[0] in HUB_LICENSES:
        return {"license": licenses[0]}
    return {"license": "other", "license_name": re.sub(r"[^a-z0-9-]+", "-", "-and-".join(licenses))}


def size_category(n: int) -> str:
    return "n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "100K<n<1M"


def usage_models(reports: Mapping[str, dict[str, Any] | None]) -> list[dict[str, str]]:
    """Every `usage.<role>.model` in the given stage reports (file -> its JSON or None): which model
    generated, judged or tagged what."""
    rows = []
    for rel, data in reports.items():
        usage = (data or {}).get("usage") or {}
        for role, entry in sorted(usage.items()):
            model = entry.get("model") if isinstance(entry, dict) else None
            if isinstance(model, dict) and model.get("model"):
                rows.append({"report": rel, "role": role, **{k: str(v) for k, v in sorted(model.items())}})
    return rows


def git_commit(report: dict[str, Any] | None) -> str:
    """The commit the artifact was made at (its stage report's provenance): stable across re-publishes."""
    return str(((report or {}).get("provenance") or {}).get("git_commit") or "unknown")


# -- Markdown ----------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def flatten(params: dict[str, Any], prefix: str = "") -> list[list[Any]]:
    rows = []
    for key, value in params.items():
        if isinstance(value, dict):
            rows += flatten(value, f"{prefix}{key}.")
        else:
            rows.append([f"`{prefix}{key}`", fmt(value)])
    return rows


# -- sections ----------------------------------------------------------------------------------------


def licence_section(plan_tally: LicenseTally, lic: dict[str, str], overridden: list[str]) -> str:
    rows = [
        [f"`{name}`", plan_tally.rows[name], plan_tally.describe(name).split(": ", 1)[-1]]
        for name in plan_tally.licenses
    ]
    parts = ["## Licence", ""]
    if lic["license"] == "other":
        parts.append(
            "The metadata says `license: other` because this repo holds more than one licence or terms "
            "that are not a Hub licence id. Every row listed below is bound by the terms named next to it; "
            "rows carry their own `license` and `model_terms` columns. Using this repo means complying "
            "with all of them."
        )
    else:
        parts.append(f"Every row is under `{lic['license']}`.")
    parts += ["", table(["licence / terms", "rows", "carried by"], rows)]
    if overridden:
        parts += [
            "",
            f"**Licence override**: {', '.join(f'`{o}`' for o in overridden)} "
            f"{'is' if len(overridden) == 1 else 'are'} outside the publisher's allowed licences and "
            "were accepted explicitly (`hub.override_licenses`) after review of their terms.",
        ]
    return "\n".join(parts)


def models_section(models: list[dict[str, str]]) -> str:
    if not models:
        return "## Models that generated and judged the data\n\nNo stage report with model usage was found."
    rows = [
        [m["report"], m["role"], f"`{m['model']}`", m.get("backend", ""), m.get("revision", "")]
        for m in models
    ]
    return "## Models that generated and judged the data\n\n" + table(
        ["stage report", "role", "model", "backend", "revision"], rows
    )


def judge_section(judge: dict[str, Any] | None, source: str) -> str:
    """The judge stage's reliability figures and method (`source`: the report they were read from)."""
    if judge is None:
        return f"## Judge reliability\n\n`{source}` was not found."
    keys = (
        "pairs_judged",
        "kept_pairs",
        "agreement_rate",
        "position_bias_rate",
        "invalid_rate",
        "length_bias",
    )
    return (
        "## Judge reliability\n\nEvery pair was judged twice with the answers swapped; a pair is kept only "
        f"when both orders agree (judge method: `{judge.get('method', 'n/a')}`).\n\n"
        + table(["metric", "value"], [[k, fmt(judge.get(k))] for k in keys])
    )


def funnel_section(metrics: dict[str, Any] | None, source: str) -> str:
    """The curate stage's counts (`source`: the report they were read from)."""
    if metrics is None:
        return f"## Curation funnel\n\n`{source}` was not found."
    rows = [
        [k, fmt(metrics.get(k))]
        for k in ("inputs", "curated", "dedup_rate", "mean_quality", "mean_difficulty")
    ]
    rows += [[f"dropped: {k}", v] for k, v in sorted((metrics.get("dropped") or {}).items())]
    return "## Curation funnel\n\n" + table(["metric", "value"], rows)


def provenance_section(commit: str, entry: dict[str, Any] | None) -> str:
    """The git commit and the dvc.lock stage (jalign.hub.lock_inputs) that made the artifact."""
    lines = ["## Provenance", "", f"- git commit: `{commit}`"]
    if entry is None:
        lines.append("- dvc.lock: no entry for this artifact")
        return "\n".join(lines)
    lines.append(
        f"- dvc.lock stage `{entry['stage']}`, output `{entry['out']['path']}` md5 `{entry['out']['md5']}`"
    )
    lines += ["", table(["input", "md5"], [[f"`{d['path']}`", f"`{d['md5']}`"] for d in entry["deps"]])]
    return "\n".join(lines)


# -- evaluation results (model-index) ----------------------------------------------------------------


def eval_results(
    metrics: dict[str, Any] | None, source: str, candidate: str, model_name: str
) -> tuple[list[Any], str]:
    """model-index entries and a Markdown section from the score stage's report (None: absent)."""
    from huggingface_hub import EvalResult

    results = (metrics or {}).get("candidates", {}).get(candidate)
    if not results:
        why = "was not found" if metrics is None else f"has no candidate `{candidate}`"
        return [], f"## Evaluation\n\n`{source}` {why}; no evaluation results are reported."
    baseline = metrics.get("baseline", "the baseline")
    judge = metrics.get("judge") or {}
    judge_name = judge.get("model") if isinstance(judge, dict) else judge
    entries, rows = [], []
    for set_name, r in sorted(results.items()):
        common = {
            "task_type": "text-generation",
            "dataset_type": set_name,
            "dataset_name": set_name,
            "dataset_split": "test",
        }
        style = (r.get("style_controlled") or {}).get("score")
        metric_types = [
            ("win_rate", "win rate", r.get("score")),
            ("style_controlled_win_rate", "style-controlled win rate", style),
        ]
        for metric_type, label, value in metric_types:
            if value is not None:
                entries.append(
                    EvalResult(
                        **common,
                        metric_type=metric_type,
                        metric_name=f"{label} vs {baseline}",
                        metric_value=value,
                    )
                )
        ci = f"[{fmt(r.get('ci_low'))}, {fmt(r.get('ci_high'))}]"
        record = f"{r.get('wins', 'n/a')}/{r.get('ties', 'n/a')}/{r.get('losses', 'n/a')}"
        rows.append([set_name, fmt(r.get("score")), ci, fmt(style), record, fmt(r.get("invalid_rate"))])
    reliability = metrics.get("judge_reliability") or {}
    rel_rows = [
        [
            s,
            fmt(v.get("swap_agreement")),
            fmt(v.get("position_bias")),
            fmt(v.get("invalid_rate")),
            fmt(v.get("length_bias")),
        ]
        for s, v in sorted(reliability.items())
    ]
    text = (
        f"## Evaluation\n\n`{model_name}` against `{baseline}`, judged pairwise by "
        f"`{judge_name or json.dumps(judge, sort_keys=True)}` (95% CI in brackets).\n\n"
        + table(["set", "score", "95% CI", "style-controlled", "wins/ties/losses", "invalid rate"], rows)
    )
    if rel_rows:
        text += "\n\nJudge reliability on the evaluation sets:\n\n" + table(
            ["set", "swap agreement", "position bias", "invalid rate", "length bias"], rel_rows
        )
    return entries, text


def classifier_results(metrics: dict[str, Any], dataset_id: str) -> tuple[list[Any], str]:
    """model-index entries and a Markdown section from a classifier's held-out metrics."""
    from huggingface_hub import EvalResult

    entries = [
        EvalResult(
            task_type="text-classification",
            dataset_type=dataset_id,
            dataset_name="jalign preference pairs (binary)",
            dataset_config="binary",
            dataset_split="test",
            metric_type=key,
            metric_value=metrics[key],
        )
        for key in ("accuracy", "f1", "roc_auc", "pairwise_accuracy")
        if isinstance(metrics.get(key), int | float)
    ]
    text = "## Evaluation\n\nHeld-out `binary` test split of the preference dataset:\n\n" + table(
        ["metric", "value"], [[e.metric_type, fmt(e.metric_value)] for e in entries]
    )
    return entries, text


# -- whole cards -------------------------------------------------------------------------------------


def render_card(card_cls: Any, data: Any, body: str) -> str:
    """Card text from card data + body; parsed back by the card class so a broken card fails here."""
    content = f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n"
    return str(card_cls(content).content)


def dataset_card(
    card: dict[str, Any],
    facts: CardFacts,
    rows: dict[str, int],
    configs: dict[str, list[dict[str, str]]],
) -> str:
    """A dataset repo's README.md.

    card: pretty_name, summary, source_datasets, task_categories, tags, extra (sections, optional);
    rows: "<config>/<split>" -> rows; configs: config name -> [{split, path}] of its Parquet files.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        language="ja",
        **facts.license,
        pretty_name=card["pretty_name"],
        size_categories=size_category(max(rows.values(), default=0)),
        source_datasets=card["source_datasets"],
        task_categories=card["task_categories"],
        annotations_creators="machine-generated",
        language_creators="machine-generated",
        tags=card["tags"],
        configs=[{"config_name": name, "data_files": parts} for name, parts in configs.items()],
    )
    split_rows = [[c.split("/")[0], c.split("/")[1], n] for c, n in rows.items()]
    body = "\n\n".join(
        [
            f"# {card['pretty_name']}",
            card["summary"],
            "## Configs and splits\n\n" + table(["config", "split", "rows"], split_rows),
            licence_section(facts.tally, facts.license, facts.overridden),
            models_section(facts.models),
            *card.get("extra", []),
            provenance_section(facts.commit, facts.lock_entry),
        ]
    )
    return render_card(DatasetCard, data, body)


def model_card(
    card: dict[str, Any],
    facts: CardFacts,
    *,
    repo_id: str,
    rows: dict[str, int],
    datasets: list[str],
    base_hub_id: str | None,
    base_ref: str,
    judge: str,
) -> str:
    """A model repo's README.md.

    card: summary ({base} slot), usage (code, {repo_id} slot), library_name, pipeline_tag, tags, params,
    train_metrics, eval_results (model-index entries), eval_text; rows: training file -> rows;
    datasets: the Hub datasets it was trained on, the published preference set first; judge: its section.
    """
    from huggingface_hub import ModelCard, ModelCardData

    repo_name = repo_id.split("/", 1)[1]
    data = ModelCardData(
        language="ja",
        **facts.license,
        base_model=base_hub_id,
        datasets=datasets,
        library_name=card["library_name"],
        pipeline_tag=card["pipeline_tag"],
        tags=card["tags"],
        model_name=repo_name,
        eval_results=card["eval_results"] or None,
    )
    base_text = f"`{base_hub_id}`" if base_hub_id else f"`{base_ref or 'unknown'}`"
    body = "\n\n".join(
        [
            f"# {repo_name}",
            card["summary"].format(base=base_text),
            "## Usage\n\n```python\n" + card["usage"].format(repo_id=repo_id) + "\n```",
            licence_section(facts.tally, facts.license, facts.overridden),
            "## Training data\n\n"
            + table(["file", "rows"], [[f"`{k}`", v] for k, v in rows.items()])
            + f"\n\nPublished as the dataset `{datasets[0]}`.",
            models_section(facts.models),
            judge,
            "## Training hyper-parameters\n\n"
            + table(["param", "value"], flatten(card["params"]))
            + "\n\nTraining metrics:\n\n"
            + table(["metric", "value"], flatten(card["train_metrics"])),
            card["eval_text"],
            provenance_section(facts.commit, facts.lock_entry),
        ]
    )
    return render_card(ModelCard, data, body)
