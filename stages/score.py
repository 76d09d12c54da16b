"""Score an evaluation from its stored judgments: a pure step (no LLM, no model).

Reads the `evaluate` stage's answers and raw judgments and decides every game from the candidate's side
(the Arena-Hard label, or P(A) vs P(B) after position calibration), applies the language penalty and the
declared invalid policy, writes the games as Arena-Hard-Auto v0.1 / Chatbot Arena battles (a strong
verdict repeated `strong_weight` times, Chatbot Arena's style metadata attached), and scores them with
`jalign.scoring` (Bradley-Terry, baseline 50.0, bootstrap 95% CI, style control), the same code as
`jalign score`, so anyone can rescore or merge battles from elsewhere.

Nothing is dropped silently: every invalid judgment is counted and its rate stands beside every score,
whatever the policy does with it. Params: the `score` section, plus `evaluate.baseline.name` (the model
verifiable sets are paired against), the one key it reads from `evaluate`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import click
import numpy as np

from jalign.config import load_section
from jalign.ifeval.stats import accuracy, answer_outcomes, paired_difference, per_instruction
from jalign.judge_prompts import transcript
from jalign.judging import calibrated_margin, outcome_from_margin, position_prior
from jalign.params import EvaluateConfig, ScoreConfig
from jalign.records import Record, read_jsonl, write_json, write_jsonl, write_text
from jalign.scoring import ScoringError, score_battles, style_metadata
from jalign.stage import log, mean, rate, setup_logging, start_stage, write_metrics
from jalign.text import japanese_ratio
from jalign.verdicts import parse_arena, parse_rating, swap_label

# A candidate-side label -> (outcome for the candidate, strong?)
_OUTCOME = {
    "A>>B": ("win", True),
    "A>B": ("win", False),
    "A=B": ("tie", False),
    "B>A": ("loss", False),
    "B>>A": ("loss", True),
}
_POLICY_LABEL = {"loss": "B>A", "tie": "A=B"}
# A choice-probability outcome (jalign.judging's tie rule) as the Arena-Hard label of positions A/B
_MARGIN_LABEL = {"A": "A>B", "B": "B>A", "tie": "A=B"}


def judge_label(
    j: Record, shown: tuple[str, str], prior: dict[str, float], config: ScoreConfig
) -> tuple[str | None, str]:
    """The judge's label for positions A/B of one game (None + reason when invalid)."""
    if j["raw"] is None:
        return None, "llm_failure"
    if j["method"] == "text":
        verdict = parse_arena(j["raw"], answers=shown)
        return verdict.label, verdict.reason
    if (j["mass"] or 0.0) < config.min_choice_mass:
        return None, "low_choice_mass"
    outcome = outcome_from_margin(calibrated_margin(j["raw"], prior), config.tie_margin)
    return _MARGIN_LABEL[outcome], ""


def position_prior_by_set(pairs: list[Record], config: ScoreConfig) -> dict[str, dict[str, float]]:
    """Per set, the mean P(A) and P(B) of valid logprob games ('Calibrate Before Use'); sets without
    any are absent (their games are decided uncalibrated)."""
    if not config.calibrate_position:
        return {}
    by_set: dict[str, list] = defaultdict(list)
    for j in pairs:
        if j["method"] == "logprob":
            by_set[j["set"]].append((j["raw"], j["mass"]))
    priors = {s: position_prior(choices, config.min_choice_mass) for s, choices in by_set.items()}
    return {s: prior for s, prior in priors.items() if prior}


def decide_games(judgments: list[Record], answers: dict[tuple, Record], config: ScoreConfig) -> list[Record]:
    """One record per pairwise judgment with the candidate's outcome after penalty and policy."""
    pairs = [j for j in judgments if j["kind"] == "pair"]
    priors = position_prior_by_set(pairs, config)
    games = []
    for j in pairs:
        key = (j["set"], j["item_id"])
        cand, base = answers[(*key, j["candidate"])], answers[(*key, j["baseline"])]
        cand_text, base_text = transcript_of(cand), transcript_of(base)
        shown = (cand_text, base_text) if j["candidate_first"] else (base_text, cand_text)
        position_label, reason = judge_label(j, shown, priors.get(j["set"], {}), config)
        cand_label = position_label if j["candidate_first"] else swap_label(position_label)
        final, source = cand_label, "judge"
        if config.language_penalty:
            cand_ja = japanese_ratio(cand_text) >= config.min_japanese_ratio
            base_ja = japanese_ratio(base_text) >= config.min_japanese_ratio
            if cand_ja != base_ja:
                final, source = ("A>>B" if cand_ja else "B>>A"), "language_penalty"
        if final is None and config.invalid != "drop":
            final, source = _POLICY_LABEL[config.invalid], f"invalid_policy:{config.invalid}"
        games.append(
            {
                "set": j["set"],
                "item_id": j["item_id"],
                "category": j.get("category"),
                "candidate": j["candidate"],
                "baseline": j["baseline"],
                "candidate_first": j["candidate_first"],
                "position_label": position_label,
                "judge_label": cand_label,
                "invalid_reason": reason or None,
                "label": final,
                "decided_by": source,
                "candidate_chars": len(cand_text),
                "baseline_chars": len(base_text),
            }
        )
    return games


def transcript_of(answer: Record) -> str:
    return transcript(answer["turns"]) if answer["turns"] else ""


def to_battles(games: list[Record], answers: dict[tuple, Record], config: ScoreConfig) -> list[Record]:
    """Arena-Hard v0.1 battles: model_a = baseline, model_b = candidate; a strong verdict repeated."""
    battles = []
    for g in games:
        if g["label"] is None:
            continue  # invalid under the drop policy: counted in the metrics, not a battle
        outcome, strong = _OUTCOME[g["label"]]
        key = (g["set"], g["item_id"])
        meta = style_metadata(
            transcript_of(answers[(*key, g["baseline"])]), transcript_of(answers[(*key, g["candidate"])])
        )
        row = {
            "question_id": f"{g['set']}/{g['item_id']}",
            "model_a": g["baseline"],
            "model_b": g["candidate"],
            "winner": {"win": "model_b", "loss": "model_a", "tie": "tie"}[outcome],
            "game": 1 if g["candidate_first"] else 2,
            "conv_metadata": meta,
        }
        battles += [row] * (config.strong_weight if strong else 1)
    return battles


def game_counts(games: list[Record]) -> dict[str, Any]:
    outcomes = Counter(_OUTCOME[g["label"]][0] if g["label"] else "dropped" for g in games)
    invalid = sum(g["judge_label"] is None and g["decided_by"] != "language_penalty" for g in games)
    return {
        "games": len(games),
        "wins": outcomes["win"],
        "ties": outcomes["tie"],
        "losses": outcomes["loss"],
        "invalid": invalid,
        "invalid_rate": rate(invalid, len(games)),
        "language_penalties": sum(g["decided_by"] == "language_penalty" for g in games),
        "invalid_reasons": dict(Counter(g["invalid_reason"] for g in games if g["invalid_reason"])),
    }


def reliability(games: list[Record]) -> dict[str, Any]:
    """How far to trust this judge on this set: swap agreement, position bias, invalid rate, and the
    share of decided games won by the longer answer (judges prefer longer answers: FastChat#3911)."""
    by_unit: dict[tuple, dict[bool, str | None]] = defaultdict(dict)
    for g in games:
        by_unit[(g["item_id"], g["candidate"])][g["candidate_first"]] = g["judge_label"]
    both = [u for u in by_unit.values() if len(u) == 2 and None not in u.values()]
    agree = sum(_OUTCOME[u[True]][0] == _OUTCOME[u[False]][0] for u in both)  # type: ignore[index]
    decisive = [g for g in games if g["judge_label"] and _OUTCOME[g["judge_label"]][0] != "tie"]
    position_a = sum((_OUTCOME[g["judge_label"]][0] == "win") == g["candidate_first"] for g in decisive)
    longer_won = sum(
        (_OUTCOME[g["judge_label"]][0] == "win") == (g["candidate_chars"] > g["baseline_chars"])
        for g in decisive
        if g["candidate_chars"] != g["baseline_chars"]
    )
    unequal = sum(g["candidate_chars"] != g["baseline_chars"] for g in decisive)
    return {
        "swap_agreement": rate(agree, len(both)),
        "position_bias": rate(position_a, len(decisive)),
        "invalid_rate": rate(sum(g["judge_label"] is None for g in games), len(games)),
        "length_bias": rate(longer_won, unequal),
    }


def grade_values(judgments: list[Record], answers: dict[tuple, Record], config: ScoreConfig) -> list[Record]:
    """Each grade judgment's value (parsed [[n]] or the expected score of P('1'..'5')), or its reason."""
    out = []
    for j in (j for j in judgments if j["kind"] == "grade"):
        low, high = j["scale"]
        value, reason = None, "llm_failure"
        if j["raw"] is not None and j["method"] == "text":
            graded = (answers[(j["set"], j["item_id"], j["model"])]["turns"] or [""])[j["turn"] - 1]
            rating = parse_rating(j["raw"], low, high, answers=(graded,))
            value, reason = rating.value, rating.reason
        elif j["raw"] is not None:
            if (j["mass"] or 0) < config.min_choice_mass:
                reason = "low_choice_mass"
            else:
                value, reason = sum(int(k) * p for k, p in j["raw"].items()), ""
        out.append(
            {
                **{k: j[k] for k in ("set", "item_id", "category", "model", "turn")},
                "value": value,
                "invalid_reason": reason or None,
            }
        )
    return out


def mean_ci(values: list[float], rounds: int, seed: int) -> dict[str, float | None]:
    """Mean with a bootstrap 95% percentile interval over items."""
    if not values:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    data = np.asarray(values, dtype=float)
    samples = np.random.default_rng(seed).choice(data, size=(rounds, len(data)), replace=True).mean(axis=1)
    return {
        "mean": round(float(data.mean()), 4),
        "ci_low": round(float(np.percentile(samples, 2.5)), 4),
        "ci_high": round(float(np.percentile(samples, 97.5)), 4),
        "n": len(values),
    }


def grade_report(grades: list[Record], config: ScoreConfig) -> dict[str, dict[str, Any]]:
    """Per model and set: mean with CI, invalid count, per category, per turn (MT-Bench)."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for g in grades:
        groups[(g["model"], g["set"])].append(g)
    for (model, set_name), rows in sorted(groups.items()):
        valid = [r for r in rows if r["value"] is not None]
        categories: dict[str, list[float]] = defaultdict(list)
        turns: dict[int, list[float]] = defaultdict(list)
        for r in valid:
            categories[r["category"] or "-"].append(r["value"])
            turns[r["turn"]].append(r["value"])
        out[model][set_name] = {
            **mean_ci([r["value"] for r in valid], config.bootstrap, config.seed),
            "invalid": len(rows) - len(valid),
            "invalid_rate": rate(len(rows) - len(valid), len(rows)),
            "categories": {c: mean(v) for c, v in sorted(categories.items())},
            "turns": {str(t): mean(v) for t, v in sorted(turns.items())} if len(turns) > 1 else None,
        }
    return dict(out)


def answer_report(answers: list[Record], config: ScoreConfig) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for a in answers:
        groups[(a["model"], a["set"])].append(a)
    for (model, set_name), rows in sorted(groups.items()):
        texts = [transcript_of(r) for r in rows if r["turns"]]
        out[model][set_name] = {
            "answers": len(rows),
            "failed": sum(r["turns"] is None for r in rows),
            "mean_chars": mean([len(t) for t in texts]),
            "japanese_ratio": mean([japanese_ratio(t) for t in texts]),
            "not_japanese": sum(japanese_ratio(t) < config.min_japanese_ratio for t in texts),
        }
    return dict(out)


IFEVAL_MODES = ("strict", "loose")


def ifeval_report(answers: list[Record], config: ScoreConfig, base: str) -> dict[str, dict[str, Any]]:
    """Per verifiable set: each model's strict / loose accuracies with CIs and per instruction id, and
    each candidate's paired difference to the baseline `base` (bootstrap CI, McNemar's exact p) on the
    prompts the baseline answered (a failed candidate answer follows nothing: never in its favour)."""
    out: dict[str, dict[str, Any]] = {}
    rows = [a for a in answers if a.get("instruction_id_list")]
    for set_name in sorted({a["set"] for a in rows}):
        by_model: dict[str, dict[str, Record]] = defaultdict(dict)
        for a in rows:
            if a["set"] == set_name:
                by_model[a["model"]][a["item_id"]] = a
        items = [i for i, a in by_model[base].items() if a["turns"]]
        outcomes = {
            (model, mode): {i: answer_outcomes(a, mode) for i, a in answered.items()}
            for model, answered in by_model.items()
            for mode in IFEVAL_MODES
        }
        models = {}
        for model, answered in sorted(by_model.items()):
            ids = [answered[i]["instruction_id_list"] for i in answered]
            models[model] = {
                **{
                    mode: accuracy(list(outcomes[(model, mode)].values()), config.bootstrap, config.seed)
                    for mode in IFEVAL_MODES
                },
                "failed_answers": sum(not a["turns"] for a in answered.values()),
                "per_instruction": {
                    mode: per_instruction(ids, list(outcomes[(model, mode)].values()))
                    for mode in IFEVAL_MODES
                },
            }
        paired = {
            cand: {
                mode: paired_difference(
                    [outcomes[(base, mode)][i] for i in items],
                    [outcomes[(cand, mode)][i] for i in items],
                    config.bootstrap,
                    config.seed,
                )
                for mode in IFEVAL_MODES
            }
            for cand in sorted(by_model)
            if cand != base
        }
        out[set_name] = {"baseline": base, "models": models, "paired": paired}
    return out


def score(
    answers: list[Record], judgments: list[Record], config: ScoreConfig, base: str
) -> tuple[list[Record], list[Record], dict]:
    """Pure: (games, battles, metrics) from the stored answers and judgments; `base` is the baseline's
    name (`evaluate.baseline.name`), which verifiable sets are paired against."""
    by_key = {(a["set"], a["item_id"], a["model"]): a for a in answers}
    games = decide_games(judgments, by_key, config)
    battles = to_battles(games, by_key, config)
    candidates: dict[str, dict[str, Any]] = defaultdict(dict)
    sets = sorted({g["set"] for g in games})
    grades = grade_report(grade_values(judgments, by_key, config), config)
    for set_name in sets:
        set_battles = [b for b in battles if b["question_id"].startswith(f"{set_name}/")]
        scores = _scores(set_battles, config)
        for cand in sorted({g["candidate"] for g in games if g["set"] == set_name}):
            entry = {**scores.get(cand, {"score": None, "ci_low": None, "ci_high": None, "battles": 0})}
            entry |= game_counts([g for g in games if g["set"] == set_name and g["candidate"] == cand])
            candidates[cand][set_name] = entry
    baseline = judgments[0]["baseline"] if judgments and judgments[0]["kind"] == "pair" else None
    metrics = {
        "baseline": baseline,
        "judge": {"model": judgments[0]["judge"], "method": judgments[0]["method"]} if judgments else None,
        "candidates": dict(candidates),
        "grades": grades,
        "judge_reliability": {s: reliability([g for g in games if g["set"] == s]) for s in sets},
        "answers": answer_report(answers, config),
        "ifeval": ifeval_report(answers, config, base),
        "policy": {
            "invalid": config.invalid,
            "language_penalty": config.language_penalty,
            "min_japanese_ratio": config.min_japanese_ratio,
            "strong_weight": config.strong_weight,
            "bootstrap": config.bootstrap,
            "seed": config.seed,
            "calibrate_position": config.calibrate_position,
        },
    }
    return games, battles, metrics


def _scores(battles: list[Record], config: ScoreConfig) -> dict[str, dict]:
    if not battles:
        return {}
    baseline = battles[0]["model_a"]
    try:
        result = score_battles(
            battles,
            baseline,
            bootstrap=config.bootstrap,
            seed=config.seed,
            style_control=config.style_control,
        )
    except ScoringError as exc:  # e.g. every battle one-sided: say so instead of inventing a number
        log.warning("scoring failed: %s", exc)
        return {
            m: {"score": None, "ci_low": None, "ci_high": None, "error": str(exc)}
            for m in {b["model_b"] for b in battles}
        }
    return {m: v for m, v in result.items() if m != baseline}


def plot_rows(metrics: dict, games: list[Record]) -> tuple[list[Record], list[Record]]:
    """Rows of the two dvc plots: score with CI per candidate and set; win rate per category."""
    scores = [
        {"candidate": c, "set": s, "score": v["score"], "ci_low": v["ci_low"], "ci_high": v["ci_high"]}
        for c, per_set in metrics["candidates"].items()
        for s, v in per_set.items()
        if v["score"] is not None
    ]
    cats: dict[tuple[str, str], list[float]] = defaultdict(list)
    for g in games:
        if g["label"] is not None:
            cats[(g["candidate"], g["category"] or "-")].append(
                {"win": 1.0, "tie": 0.5, "loss": 0.0}[_OUTCOME[g["label"]][0]]
            )
    categories = [
        {"candidate": c, "category": cat, "win_rate": round(100 * sum(v) / len(v), 2), "games": len(v)}
        for (c, cat), v in sorted(cats.items())
    ]
    return scores, categories


def report(
    metrics: dict, games: list[Record], answers: list[Record], judgments: list[Record], n_examples: int
) -> str:
    """metrics/eval_report.md: the table, grades, per category, reliability, best / worst examples."""
    lines = [f"# Evaluation against `{metrics['baseline']}` (score 50.0)", ""]
    judge = metrics["judge"] or {}
    lines += [
        f"Judge: `{judge.get('model')}` ({judge.get('method')}); invalid judgments count as "
        f"**{metrics['policy']['invalid']}**; language penalty: {metrics['policy']['language_penalty']}.",
        "",
    ]
    lines += [
        "| candidate | set | score | 95% CI | style-controlled | W / T / L | invalid | battles |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cand, per_set in metrics["candidates"].items():
        for set_name, v in per_set.items():
            sc = v.get("style_controlled") or {}
            lines.append(
                f"| {cand} | {set_name} | {_fmt(v['score'])} | {_fmt(v['ci_low'])} – {_fmt(v['ci_high'])} | "
                f"{_fmt(sc.get('score'))} | {v['wins']} / {v['ties']} / {v['losses']} | "
                f"{v['invalid']} ({_fmt(v['invalid_rate'])}) | {v.get('battles', 0)} |"
            )
    if metrics["grades"]:
        lines += [
            "",
            "## Single-answer grades",
            "",
            "| model | set | mean | 95% CI | invalid |",
            "|---|---|---|---|---|",
        ]
        for model, per_set in metrics["grades"].items():
            for set_name, v in per_set.items():
                lines.append(
                    f"| {model} | {set_name} | {_fmt(v['mean'])} | "
                    f"{_fmt(v['ci_low'])} – {_fmt(v['ci_high'])} | {v['invalid']} |"
                )
    lines += ifeval_lines(metrics.get("ifeval") or {})
    lines += [
        "",
        "## Judge reliability",
        "",
        "| set | swap agreement | position bias (A) | invalid rate | longer answer wins |",
        "|---|---|---|---|---|",
    ]
    for set_name, r in metrics["judge_reliability"].items():
        lines.append(
            f"| {set_name} | {_fmt(r['swap_agreement'])} | {_fmt(r['position_bias'])} | "
            f"{_fmt(r['invalid_rate'])} | {_fmt(r['length_bias'])} |"
        )
    _, categories = plot_rows(metrics, games)
    if categories:
        lines += [
            "",
            "## Per category (candidate win rate, ties half)",
            "",
            "| candidate | category | win rate | games |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['candidate']} | {r['category']} | {r['win_rate']} | {r['games']} |" for r in categories
        ]
    lines += examples(games, answers, judgments, n_examples)
    return "\n".join(lines) + "\n"


def _ci_text(entry: dict | None, key: str) -> str:
    if not entry:
        return "n/a"
    return f"{_fmt(entry[key])} [{_fmt(entry['ci_low'])}, {_fmt(entry['ci_high'])}]"


def ifeval_lines(report: dict[str, dict[str, Any]]) -> list[str]:
    """The verifiable-instruction tables: accuracies per model, paired differences, per instruction id."""
    lines: list[str] = []
    for set_name, r in report.items():
        lines += [
            "",
            f"## Verifiable instructions: {set_name} (checked by program; 95% CIs over prompts)",
            "",
            "| model | prompts | strict prompt | strict instruction | loose prompt | loose instruction |",
            "|---|---|---|---|---|---|",
        ]
        for model, m in r["models"].items():
            cells = [
                _ci_text(m[mode][level], "accuracy")
                for mode in IFEVAL_MODES
                for level in ("prompt", "instruction")
            ]
            lines.append(f"| {model} | {m['strict']['prompts']} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Paired against `{r['baseline']}` on the same prompts (points; improved / worsened prompts; "
            "McNemar's exact p):",
            "",
            "| candidate | mode | prompt-level diff | instruction-level diff | improved / worsened "
            "| McNemar p |",
            "|---|---|---|---|---|---|",
        ]
        for cand, modes in r["paired"].items():
            for mode, d in modes.items():
                if not d["prompt"]:
                    continue
                p = d["prompt"]
                lines.append(
                    f"| {cand} | {mode} | {_ci_text(p, 'diff')} | {_ci_text(d['instruction'], 'diff')} "
                    f"| {p['improved']} / {p['worsened']} | {_fmt(p['mcnemar_p'])} |"
                )
        models = list(r["models"])
        ids = sorted({i for m in r["models"].values() for i in m["per_instruction"]["strict"]})
        lines += [
            "",
            "| instruction id (strict) | n | " + " | ".join(models) + " |",
            "|---|---|" + "---|" * len(models),
        ]
        for iid in ids:
            cells = [r["models"][m]["per_instruction"]["strict"].get(iid, {}).get("accuracy") for m in models]
            n = r["models"][models[0]]["per_instruction"]["strict"].get(iid, {}).get("n", 0)
            lines.append(f"| `{iid}` | {n} | " + " | ".join(_fmt(c) for c in cells) + " |")
    return lines


def examples(games: list[Record], answers: list[Record], judgments: list[Record], n: int) -> list[str]:
    """Items a candidate won (or lost) in both orders, with both answers' openings."""
    if n == 0:
        return []
    by_key = {(a["set"], a["item_id"], a["model"]): a for a in answers}
    units: dict[tuple, list[Record]] = defaultdict(list)
    for g in games:
        units[(g["set"], g["item_id"], g["candidate"])].append(g)
    lines = ["", "## Examples"]
    for title, want in (("Best (won in both orders)", "win"), ("Worst (lost in both orders)", "loss")):
        picked = [
            u
            for u, gs in units.items()
            if len(gs) == 2 and all(g["label"] and _OUTCOME[g["label"]][0] == want for g in gs)
        ]
        lines += ["", f"### {title}", ""]
        if not picked:
            lines.append("(none)")
        for set_name, item_id, cand in picked[:n]:
            base = units[(set_name, item_id, cand)][0]["baseline"]
            lines += [
                f"- **{set_name}/{item_id}**, {cand} vs {base}",
                f"  - {cand}: {_excerpt(transcript_of(by_key[(set_name, item_id, cand)]))}",
                f"  - {base}: {_excerpt(transcript_of(by_key[(set_name, item_id, base)]))}",
            ]
    return lines


def _excerpt(text: str, n: int = 120) -> str:
    flat = " ".join(text.split())
    return (flat[:n] + "…" if len(flat) > n else flat).replace("|", "｜")


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


@click.command("score-eval")
@click.option("--answers", "answers_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--judgments", "judgments_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--usage",
    "usage_path",
    type=click.Path(exists=True, dir_okay=False),
    help="the evaluate stage's report (metrics/evaluate.meta.json)",
)
@click.option("--games", "games_path", required=True, type=click.Path(dir_okay=False))
@click.option("--battles", "battles_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--report", "report_path", required=True, type=click.Path(dir_okay=False))
@click.option("--plots", "plots_dir", required=True, type=click.Path(file_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(
    answers_path: str,
    judgments_path: str,
    usage_path: str | None,
    games_path: str,
    battles_path: str,
    metrics_path: str,
    report_path: str,
    plots_dir: str,
    params_path: str,
) -> None:
    """Score the stored evaluation judgments: battles, scores with CIs, grades, report, plots."""
    setup_logging()
    config = load_section(ScoreConfig, "score", params_path)
    baseline = load_section(EvaluateConfig, "evaluate", params_path).baseline.name
    outputs = [games_path, battles_path, metrics_path, report_path, plots_dir]
    start_stage("score", config, outputs)
    answers = read_jsonl(answers_path, required=("set", "item_id", "model"))
    judgments = read_jsonl(judgments_path, required=("kind", "set", "item_id", "method"))
    games, battles, metrics = score(answers, judgments, config, baseline)
    if usage_path:
        metrics["usage"] = json.loads(Path(usage_path).read_text(encoding="utf-8")).get("usage")
    write_jsonl(games_path, games)
    write_jsonl(battles_path, battles)
    scores, categories = plot_rows(metrics, games)
    write_json(Path(plots_dir) / "scores.json", scores)
    write_json(Path(plots_dir) / "categories.json", categories)
    write_text(report_path, report(metrics, games, answers, judgments, config.report_examples))
    for cand, per_set in metrics["candidates"].items():
        for set_name, v in per_set.items():
            log.info(
                "%s on %s: %s (95%% CI %s-%s), invalid %s",
                cand,
                set_name,
                v["score"],
                v["ci_low"],
                v["ci_high"],
                v["invalid"],
            )
    write_metrics(metrics_path, metrics)
