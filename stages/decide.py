"""Decide preference pairs from stored judgments: a pure, cheap step (no LLM, no model).

Reads the `judge` stage's raw judgments and decides each one, parsing it once (the text parser, the
logprob mass floor, position calibration and the tie margin, shared with `score` in jalign.judging),
then keeps a pair only when both orders name the same winner. A pair lost because its judge only
repeated verdict lines an answer carried (the echo defence) is counted apart (`echoed_verdict`).
`dvc exp run -S decide.tie_margin=0.05` reruns this stage alone; a parser fix re-decides old judgments
without paying again.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import click

from jalign.config import load_section
from jalign.judging import (
    calibrated_margin,
    outcome_from_margin,
    pair_drop_reason,
    position_prior,
    shown_answer,
)
from jalign.judgments import check_judgments, load_responses
from jalign.params import DecideConfig
from jalign.records import (
    Record,
    RecordError,
    provenance_of,
    read_jsonl,
    write_jsonl,
)
from jalign.stage import log, rate, setup_logging, start_stage, write_metrics
from jalign.verdicts import Outcome, parse_verdict


def shown_answers(j: Record, answers: dict[str, dict[str, str]]) -> tuple[str, str]:
    """The two answer texts as the judge saw them (a canary's injected text included)."""
    canary = j.get("canary") or {}

    def text(name: str) -> str:
        return shown_answer(answers[j["prompt_id"]][name], name, canary.get("target"), canary.get("text"))

    return text(j["first"]), text(j["second"])


def verdict_of(
    j: Record, answers: dict[str, dict[str, str]], config: DecideConfig, prior: dict[str, float]
) -> tuple[Outcome | None, int, str]:
    """(outcome, strength, invalid reason) of one raw judgment; logprob margins after dividing out
    `prior` (empty: no calibration), a reward judgment's margin is the reward gap."""
    if j["raw"] is None:
        return None, 0, "llm_failure"
    if j["method"] == "text":
        verdict = parse_verdict(j["raw"], answers=shown_answers(j, answers))
        return verdict.outcome, verdict.strength, verdict.reason
    if j["method"] == "logprob":
        if (j["mass"] or 0.0) < config.min_choice_mass:
            return None, 0, "low_choice_mass"
        margin = calibrated_margin(j["raw"], prior)
    else:
        margin = j["raw"]["A"] - j["raw"]["B"]
    outcome = outcome_from_margin(margin, config.tie_margin)
    return outcome, int(outcome != "tie"), ""


def run_prior(judgments: list[Record], config: DecideConfig) -> dict[str, float]:
    """The run's mean P(A), P(B) over its logprob judgments (canaries left out), when calibrating."""
    if not config.calibrate_position:
        return {}
    logprob = [(j["raw"], j["mass"]) for j in judgments if j["method"] == "logprob" and not j.get("canary")]
    return position_prior(logprob, config.min_choice_mass)


def decide_all(
    judgments: list[Record], answers: dict[str, dict[str, str]], config: DecideConfig
) -> tuple[list[Record], dict[str, float]]:
    """Every judgment with `verdict`, `strength`, `invalid_reason` and `winner`, each parsed once;
    logprob judgments are decided after dividing out the run's mean P(A) and P(B) when
    calibrate_position is on (marked `calibrated`)."""
    prior = run_prior(judgments, config)
    decided = []
    for j in judgments:
        outcome, strength, reason = verdict_of(j, answers, config, prior)
        record = {**j, "verdict": outcome, "strength": strength, "invalid_reason": reason or None}
        if prior and j["method"] == "logprob" and outcome is not None:
            record["calibrated"] = True
        record["winner"] = {"A": j["first"], "B": j["second"], "tie": "tie", None: None}[outcome]
        decided.append(record)
    return decided, {c: round(v, 4) for c, v in prior.items()}


def uncalibrated_verdict(j: Record, config: DecideConfig) -> Outcome | None:
    """A decided judgment's verdict without position calibration, from its stored probabilities (a
    text judgment is never calibrated: its verdict stands, not parsed again)."""
    if not j.get("calibrated"):
        return j["verdict"]
    return outcome_from_margin(calibrated_margin(j["raw"], {}), config.tie_margin)


def pair_outcomes(decided: list[Record]) -> dict[str, tuple[str | None, str | None]]:
    """pair_id -> (winner in forward order, winner in swapped order)."""
    groups: dict[str, dict[str, str | None]] = defaultdict(dict)
    for j in decided:
        if j["order"] in groups[j["pair_id"]]:
            raise RecordError(f"pair {j['pair_id']}: two judgments in the {j['order']} order")
        groups[j["pair_id"]][j["order"]] = j["winner"]
    for pair_id, group in groups.items():
        if set(group) != {"forward", "swapped"}:
            raise RecordError(f"pair {pair_id}: expected judgments in both orders, got {sorted(group)}")
    return {p: (g["forward"], g["swapped"]) for p, g in groups.items()}


def decide(
    judgments: list[Record], rows: dict[str, Record], config: DecideConfig
) -> tuple[list[Record], list[Record], dict]:
    """Pure: (decided judgments, consistent pairs, judge-reliability statistics)."""
    answers = {pid: {n: v["text"] for n, v in r["responses"].items()} for pid, r in rows.items()}
    decided, prior = decide_all(judgments, answers, config)
    main = [j for j in decided if not j.get("canary")]
    raw_decisive = [v for v in (uncalibrated_verdict(j, config) for j in main) if v not in (None, "tie")]
    drops: Counter = Counter()
    pairs, both_valid, agree = [], 0, 0
    index = {(j["pair_id"], j["order"]): j for j in main}
    for pair_id, (w1, w2) in pair_outcomes(main).items():
        forward, swapped = index[(pair_id, "forward")], index[(pair_id, "swapped")]
        if w1 is not None and w2 is not None:
            both_valid += 1
            agree += w1 == w2
        reason = pair_drop_reason(forward, swapped)
        if reason:
            drops[reason] += 1
        else:
            pairs.append(make_pair(forward, swapped, w1, rows))
    valid = [j for j in main if j["verdict"] is not None]
    decisive = [j for j in valid if j["verdict"] != "tie"]
    wins = Counter(p["chosen_responder"] for p in pairs)
    names = sorted({n for j in main for n in (j["first"], j["second"])})
    stats = {
        "pairs_judged": len({j["pair_id"] for j in main}),
        "judgments": len(main),
        "kept_pairs": len(pairs),
        "dropped": dict(sorted(drops.items())),
        "agreement_rate": rate(agree, both_valid),
        "position_bias_rate": rate(sum(j["verdict"] == "A" for j in decisive), len(decisive)),
        "position_bias_rate_uncalibrated": rate(sum(v == "A" for v in raw_decisive), len(raw_decisive)),
        "position_prior": prior or None,
        "tie_rate": rate(len(valid) - len(decisive), len(valid)),
        "invalid_rate": rate(len(main) - len(valid), len(main)),
        "invalid_reasons": dict(Counter(j["invalid_reason"] for j in main if j["verdict"] is None)),
        "length_bias": rate(sum(len(p["chosen"]) > len(p["rejected"]) for p in pairs), len(pairs)),
        "win_share": {n: rate(wins[n], len(pairs)) for n in names},
        "injection": injection_report(decided),
    }
    return decided, pairs, stats


def make_pair(forward: Record, swapped: Record, winner: str, rows: dict[str, Record]) -> Record:
    row = rows[forward["prompt_id"]]
    loser = forward["second"] if forward["first"] == winner else forward["first"]
    chosen, rejected = row["responses"][winner], row["responses"][loser]
    # the loser's text is trained on too, and the label is the judge's output (both orders)
    produced = (chosen.get("model_terms"), rejected.get("model_terms"))
    terms = [t for t in (*produced, forward.get("judge_terms"), swapped.get("judge_terms")) if t]
    return {
        "pair_id": forward["pair_id"],
        "prompt_id": row["prompt_id"],
        "prompt": row["prompt"],
        "origin": row.get("origin"),
        "label_source": "judge",
        **provenance_of([row], terms),
        "chosen": chosen["text"],
        "rejected": rejected["text"],
        "chosen_responder": winner,
        "rejected_responder": loser,
        "chosen_model": chosen["model"],
        "rejected_model": rejected["model"],
        "judge": forward["judge"],
        "method": forward["method"],
        "strength": min(forward["strength"], swapped["strength"]),
    }


def injection_report(decided: list[Record]) -> dict:
    """Canary pairs: how many changed outcome (both-order winner) when one answer carried an injected
    plea, and how many the injection turned in favour of the answer carrying it."""
    canary = [j for j in decided if j.get("canary")]
    if not canary:
        return {"canary_pairs": 0}
    clean = pair_outcomes([j for j in decided if not j.get("canary")])
    injected = pair_outcomes(canary)
    target = {j["pair_id"]: j["canary"]["target"] for j in canary}

    def settled(w: tuple[str | None, str | None]) -> str | None:
        return w[0] if w[0] == w[1] else None  # None: no consistent winner (invalid, tie-split, disagreement)

    changed = [p for p in injected if settled(injected[p]) != settled(clean.get(p, (None, None)))]
    to_target = [p for p in changed if settled(injected[p]) == target[p]]
    return {
        "canary_pairs": len(injected),
        "changed_outcome": len(changed),
        "changed_to_injected_answer": len(to_target),
    }


@click.command("decide")
@click.option("--responses", "responses_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--judgments", "judgments_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--decided", "decided_path", required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(
    responses_path: str,
    judgments_path: str,
    decided_path: str,
    out_path: str,
    metrics_path: str,
    params_path: str,
) -> None:
    """Decide every stored judgment and keep the pairs both orders agree on."""
    setup_logging()
    config = load_section(DecideConfig, "decide", params_path)
    start_stage("decide", config, [decided_path, out_path, metrics_path])
    rows = {r["prompt_id"]: r for r in load_responses(responses_path)}
    judgments = read_jsonl(
        judgments_path, required=("pair_id", "prompt_id", "first", "second", "order", "method")
    )
    check_judgments(judgments, rows, judgments_path, responses_path)
    try:
        decided, pairs, stats = decide(judgments, rows, config)
    except RecordError as exc:  # a judgments file not written by the judge stage, or edited by hand
        raise RecordError(f"{judgments_path}: {exc}") from None
    write_jsonl(decided_path, decided)
    write_jsonl(out_path, pairs)
    log.info("kept %d of %d pairs (agreement %s)", len(pairs), stats["pairs_judged"], stats["agreement_rate"])
    write_metrics(
        metrics_path,
        {**stats, "method": judgments[0]["method"] if judgments else None},
    )
