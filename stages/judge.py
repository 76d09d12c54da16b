"""Pairwise LLM-as-a-judge with position swapping (Karasu; MT-Bench; Arena-Hard).

Every pair of answers is judged twice, A/B and B/A. A pair is kept only when both orders name the same
winner; ties, disagreements and invalid answers are dropped and counted. Judging and scoring are
separate (arena-hard-auto): `judge_pairs` produces judgments, keeping the judge's raw text next to
the parsed verdict; `score_judgments` is a pure function of judgments.

Methods: `text` (free-text explanation + verdict token, parsed strictly: an unparseable answer is
invalid, never a win), `logprob` (choice-constrained P(A) vs P(B) for local models), `reward` (a
trained preference classifier's reward margin; order-independent by construction).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal

import click

from jalign import prompts
from jalign.config import load_section
from jalign.llm import Budget, LLMClient, LLMConfig, Request
from jalign.records import Record, read_jsonl, write_json, write_jsonl
from jalign.stage import Failures, log, log_params, price_for, provenance, setup_logging, usage_metrics
from jalign.verdicts import Outcome, parse_verdict


@dataclass(frozen=True)
class JudgeConfig:
    """params.yaml `judge`."""

    judge: LLMConfig
    method: Literal["text", "logprob", "reward"] = "text"
    tie_margin: float = 0.1  # logprob / reward: |P(A) - P(B)| (or |reward gap|) below this is a tie
    # logprob: divide P(A), P(B) by their mean over the run before deciding ("Calibrate Before Use",
    # Zhao et al. 2021): removes a constant position prior; both orders must still agree.
    calibrate_position: bool = True
    min_choice_mass: float = 0.05  # logprob: less probability than this on A+B is an invalid answer
    reward_model: str | None = None  # method reward: a classifier from the classifier stage
    max_failure_rate: float = 0.1
    budget_usd: float | None = None

    def __post_init__(self) -> None:
        if self.method == "reward" and not self.reward_model:
            raise ValueError("method reward needs reward_model (e.g. models/classifier/<name>)")


@dataclass(frozen=True)
class Task:
    """One judgment to make: `first` is shown as A, `second` as B."""

    prompt_id: str
    prompt: str
    first: str
    second: str

    @property
    def pair_id(self) -> str:
        a, b = sorted((self.first, self.second))
        return f"{self.prompt_id}|{a}|{b}"


def tasks_for(rows: list[Record]) -> tuple[list[Task], int]:
    """Both orders of every responder pair of every prompt; also how many pairs lacked an answer."""
    tasks, missing = [], 0
    names = list(dict.fromkeys(n for r in rows for n in r["responses"]))
    for row in rows:
        for x, y in itertools.combinations(names, 2):
            if x not in row["responses"] or y not in row["responses"]:
                missing += 1
                continue
            tasks += [
                Task(row["prompt_id"], row["prompt"], x, y),
                Task(row["prompt_id"], row["prompt"], y, x),
            ]
    return tasks, missing


def outcome_from_margin(margin: float, tie_margin: float) -> Outcome:
    return "A" if margin > tie_margin else "B" if margin < -tie_margin else "tie"


def judge_pairs(
    tasks: list[Task],
    answers: dict[str, dict[str, str]],
    client: LLMClient | None,
    config: JudgeConfig,
    failures: Failures,
) -> list[Record]:
    """One judgment record per task, raw judge output kept next to the verdict."""

    def prompt_for(task: Task, template: str) -> Request:
        content = prompts.render(
            template,
            question=task.prompt,
            answer_a=answers[task.prompt_id][task.first],
            answer_b=answers[task.prompt_id][task.second],
        )
        return Request(messages=({"role": "user", "content": content},), sampling=config.judge.sampling)

    records = []
    if config.method == "text":
        assert client is not None
        for task, gen in zip(
            tasks, client.generate([prompt_for(t, "judge_pairwise") for t in tasks]), strict=True
        ):
            if not gen.ok:
                failures.add(task.pair_id, "judge", gen.error or "")
                records.append(judgment(task, config, None, 0, "llm_failure", raw=None))
                continue
            verdict = parse_verdict(gen.text or "")
            records.append(
                judgment(task, config, verdict.outcome, verdict.strength, verdict.reason, raw=gen.text)
            )
    elif config.method == "logprob":
        assert client is not None
        choices = client.choose([prompt_for(t, "judge_pairwise_logprob") for t in tasks], choices=("A", "B"))
        for task, choice in zip(tasks, choices, strict=True):
            if not choice.ok or choice.probs is None:
                failures.add(task.pair_id, "judge", choice.error or "")
                records.append(judgment(task, config, None, 0, "llm_failure", raw=None))
            elif choice.mass < config.min_choice_mass:
                records.append(
                    judgment(task, config, None, 0, "low_choice_mass", raw=choice.probs, mass=choice.mass)
                )
            else:
                outcome = outcome_from_margin(choice.probs["A"] - choice.probs["B"], config.tie_margin)
                records.append(
                    judgment(
                        task, config, outcome, int(outcome != "tie"), "", raw=choice.probs, mass=choice.mass
                    )
                )
    else:
        from jalign.reward import RewardModel, classifier_text

        assert config.reward_model is not None
        scorer = RewardModel(config.reward_model)
        keys = sorted({(t.prompt_id, n) for t in tasks for n in (t.first, t.second)})
        prompt_of = {t.prompt_id: t.prompt for t in tasks}
        texts = [classifier_text(prompt_of[p], answers[p][n]) for p, n in keys]
        reward = dict(zip(keys, scorer.score(texts), strict=True))
        for task in tasks:
            ra, rb = reward[(task.prompt_id, task.first)], reward[(task.prompt_id, task.second)]
            outcome = outcome_from_margin(ra - rb, config.tie_margin)
            records.append(judgment(task, config, outcome, int(outcome != "tie"), "", raw={"A": ra, "B": rb}))
    return records


def judgment(
    task: Task,
    config: JudgeConfig,
    outcome: Outcome | None,
    strength: int,
    reason: str,
    raw,
    mass: float | None = None,
) -> Record:
    winner = {"A": task.first, "B": task.second, "tie": "tie", None: None}[outcome]
    return {
        "pair_id": task.pair_id,
        "prompt_id": task.prompt_id,
        "first": task.first,
        "second": task.second,
        "method": config.method,
        "judge": config.reward_model if config.method == "reward" else config.judge.model,
        "raw": raw,
        "mass": mass,
        "verdict": outcome,
        "strength": strength,
        "invalid_reason": reason or None,
        "winner": winner,
    }


def calibrate(judgments: list[Record], tie_margin: float) -> tuple[list[Record], dict[str, float]]:
    """Re-decide logprob judgments after dividing out the run's mean P(A) and P(B) (the position prior)."""

    def is_scored(j: Record) -> bool:
        return j["method"] == "logprob" and j["verdict"] is not None

    scored = [j for j in judgments if is_scored(j)]
    if not scored:
        return judgments, {}
    prior = {c: sum(j["raw"][c] for j in scored) / len(scored) for c in ("A", "B")}
    out = []
    for j in judgments:
        if is_scored(j):
            a, b = j["raw"]["A"] / prior["A"], j["raw"]["B"] / prior["B"]
            verdict = outcome_from_margin((a - b) / (a + b), tie_margin)
            winner = {"A": j["first"], "B": j["second"], "tie": "tie"}[verdict]
            j = {
                **j,
                "verdict": verdict,
                "strength": int(verdict != "tie"),
                "winner": winner,
                "calibrated": True,
            }
        out.append(j)
    return out, {c: round(v, 4) for c, v in prior.items()}


def score_judgments(
    judgments: list[Record],
    rows: dict[str, Record],
    calibrate_position: bool = False,
    tie_margin: float = 0.1,
) -> tuple[list[Record], dict]:
    """Pure: consistent pairs and judge-reliability statistics from judgments."""
    raw_decisive = [j for j in judgments if j["verdict"] not in (None, "tie")]
    raw_bias = _rate(sum(j["verdict"] == "A" for j in raw_decisive), len(raw_decisive))
    prior: dict[str, float] = {}
    if calibrate_position:
        judgments, prior = calibrate(judgments, tie_margin)
    groups: dict[str, list[Record]] = defaultdict(list)
    for j in judgments:
        groups[j["pair_id"]].append(j)
    valid = [j for j in judgments if j["verdict"] is not None]
    decisive = [j for j in valid if j["verdict"] != "tie"]
    drops: Counter = Counter()
    pairs, both_valid, agree = [], 0, 0
    for pair_id, group in groups.items():
        if len(group) != 2:
            raise ValueError(f"{pair_id}: expected 2 judgments (both orders), got {len(group)}")
        w1, w2 = group[0]["winner"], group[1]["winner"]
        if w1 is None or w2 is None:
            drops["invalid"] += 1
            continue
        both_valid += 1
        agree += w1 == w2
        if w1 != w2:
            drops["disagreement"] += 1
        elif w1 == "tie":
            drops["tie"] += 1
        else:
            row = rows[group[0]["prompt_id"]]
            loser = group[0]["second"] if group[0]["first"] == w1 else group[0]["first"]
            chosen, rejected = row["responses"][w1], row["responses"][loser]
            pairs.append(
                {
                    "pair_id": pair_id,
                    "prompt_id": row["prompt_id"],
                    "prompt": row["prompt"],
                    "origin": row.get("origin"),
                    "license": row.get("license"),
                    "chosen": chosen["text"],
                    "rejected": rejected["text"],
                    "chosen_responder": w1,
                    "rejected_responder": loser,
                    "chosen_model": chosen["model"],
                    "rejected_model": rejected["model"],
                    "judge": group[0]["judge"],
                    "method": group[0]["method"],
                    "strength": min(group[0]["strength"], group[1]["strength"]),
                }
            )
    wins = Counter(p["chosen_responder"] for p in pairs)
    names = sorted({n for j in judgments for n in (j["first"], j["second"])})
    stats = {
        "pairs_judged": len(groups),
        "judgments": len(judgments),
        "kept_pairs": len(pairs),
        "dropped": dict(sorted(drops.items())),
        "agreement_rate": _rate(agree, both_valid),
        "position_bias_rate": _rate(sum(j["verdict"] == "A" for j in decisive), len(decisive)),
        "position_bias_rate_uncalibrated": raw_bias,
        "position_prior": prior or None,
        "tie_rate": _rate(len(valid) - len(decisive), len(valid)),
        "invalid_rate": _rate(len(judgments) - len(valid), len(judgments)),
        "invalid_reasons": dict(Counter(j["invalid_reason"] for j in judgments if j["verdict"] is None)),
        "length_bias": _rate(sum(len(p["chosen"]) > len(p["rejected"]) for p in pairs), len(pairs)),
        "win_share": {n: _rate(wins[n], len(pairs)) for n in names},
    }
    return pairs, stats


def _rate(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


@click.command("judge")
@click.option("--responses", "responses_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--judgments", "judgments_path", required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--failures", "failures_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(
    responses_path: str,
    judgments_path: str,
    out_path: str,
    failures_path: str,
    metrics_path: str,
    params_path: str,
) -> None:
    """Judge every answer pair in both orders; keep pairs whose two verdicts agree."""
    setup_logging()
    config = load_section(JudgeConfig, "judge", params_path)
    log_params("judge", config)
    rows = read_jsonl(responses_path, required=("prompt_id", "prompt"))
    tasks, missing = tasks_for(rows)
    answers = {r["prompt_id"]: {n: v["text"] for n, v in r["responses"].items()} for r in rows}
    client = None
    if config.method != "reward":
        client = LLMClient(
            config.judge, price=price_for(config.judge, params_path), budget=Budget(config.budget_usd)
        )
    failures = Failures("judge")
    judgments = judge_pairs(tasks, answers, client, config, failures)
    failures.write(failures_path)
    failures.check(len(tasks), config.max_failure_rate)
    pairs, stats = score_judgments(
        judgments, {r["prompt_id"]: r for r in rows}, config.calibrate_position, config.tie_margin
    )
    write_jsonl(judgments_path, judgments)
    write_jsonl(out_path, pairs)
    log.info("kept %d of %d pairs (agreement %s)", len(pairs), stats["pairs_judged"], stats["agreement_rate"])
    usage = usage_metrics({"judge": client}) if client else {}
    write_json(
        metrics_path,
        {
            **stats,
            "pairs_missing_answer": missing,
            "method": config.method,
            "usage": usage,
            "provenance": provenance(),
        },
    )
