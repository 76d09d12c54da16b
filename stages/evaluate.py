"""Evaluation, Arena-Hard style: every model answers the evaluation sets, a judge compares each candidate
with the baseline in both orders, and single answers are graded (ELYZA-tasks-100 1-5, Japanese
MT-Bench 1-10 per turn). This stage makes all the LLM calls and stores every judge output raw; what the
judgments mean (labels, the invalid policy, language penalty, Bradley-Terry scores with CIs) is the
`score` stage's pure function of the stored files, so changing a scoring param re-judges nothing.

The baseline is fixed at 50.0 (Karasu: Qwen2.5-7B-Instruct 50.0 -> DPO 66.2 on Arena-Hard-Auto). A
model is a base plus an optional PEFT adapter; its cache identity is a hash of the weights, so a
retrained adapter answers afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import click

from jalign.config import load_section
from jalign.evalsets import EvalItem, answer_temperature, load_eval_items
from jalign.judge_prompts import elyza_prompt, mt_bench_prompt, pairwise_prompt, transcript
from jalign.judging import ask
from jalign.llm.client import LLMClient
from jalign.llm.types import Request
from jalign.llm_stage import StageRun
from jalign.params import EvaluateConfig, ModelEntry
from jalign.records import Record, write_jsonl
from jalign.stage import Failures, log, write_metrics
from jalign.verdicts import parse_arena, parse_rating

GRADE_SCALES = {"jalign": (1, 5), "elyza": (1, 5), "mt_bench": (1, 10)}  # arena_hard: pairwise only
LOGPROB_GRADES = ("1", "2", "3", "4", "5")  # one token each; a 1-10 scale cannot be read this way


# -- answering ---------------------------------------------------------------------------------------


def answer_request(entry: ModelEntry, item: EvalItem, history: list[str], mt_temperatures: bool) -> Request:
    """The request for the next turn of `item`, after the model's own earlier answers."""
    messages: list[dict[str, str]] = [{"role": "system", "content": entry.system}] if entry.system else []
    for k, answer in enumerate(history):
        messages += [{"role": "user", "content": item.turns[k]}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": item.turns[len(history)]})
    sampling = entry.llm.sampling
    temperature = answer_temperature(item) if mt_temperatures else None
    if temperature is not None:
        sampling = replace(sampling, temperature=temperature)
    return Request(messages=tuple(messages), sampling=sampling)


def answer_all(
    items: list[EvalItem], entry: ModelEntry, client: LLMClient, config: EvaluateConfig
) -> list[Record]:
    """Every turn of every item, turn by turn (turn k needs the model's own answers to turns < k)."""
    answers: dict[tuple[str, str], list[str]] = {(i.set_name, i.id): [] for i in items}
    errors: dict[tuple[str, str], str] = {}
    for turn in range(max(len(i.turns) for i in items)):
        todo = [i for i in items if len(i.turns) > turn and (i.set_name, i.id) not in errors]
        requests = [
            answer_request(entry, i, answers[(i.set_name, i.id)], config.mt_bench_temperatures) for i in todo
        ]
        for item, gen in zip(todo, client.generate(requests), strict=True):
            key = (item.set_name, item.id)
            if gen.ok:
                answers[key].append(gen.text.strip())  # type: ignore[union-attr]
            else:
                errors[key] = f"turn {turn + 1}: {gen.error or 'unknown error'}"
    return [
        {
            "set": i.set_name,
            "item_id": i.id,
            "category": i.category,
            "model": entry.name,
            "turns": answers[(i.set_name, i.id)] if (i.set_name, i.id) not in errors else None,
            "error": errors.get((i.set_name, i.id)),
            **verifiable_fields(i),
        }
        for i in items
    ]


def verifiable_fields(item: EvalItem) -> Record:
    """What the score stage needs to check an answer to a verifiable prompt by program."""
    if item.instruction_ids is None:
        return {}
    return {
        "prompt": item.turns[0],
        "instruction_id_list": list(item.instruction_ids),
        "kwargs": [dict(k) for k in item.instruction_kwargs or ()],
    }


# -- judging -------------------------------------------------------------------------------------


def question_text(item: EvalItem) -> str:
    if len(item.turns) == 1:
        return item.turns[0]
    return "\n\n".join(f"（{k}問目）\n{turn}" for k, turn in enumerate(item.turns, start=1))


def reference_text(item: EvalItem) -> str | None:
    if not item.references:
        return None
    return item.references[-1] if len(item.references) == 1 else transcript(item.references)


@dataclass(frozen=True)
class Game:
    """One pairwise judgment: the candidate shown as A (candidate_first) or as B."""

    item: EvalItem
    candidate: str
    candidate_first: bool
    answer_a: str
    answer_b: str

    @property
    def unit(self) -> str:
        return f"{self.item.set_name}/{self.item.id}/{self.candidate}"


def pair_games(
    items: list[EvalItem], answers: dict[tuple[str, str, str], list[str] | None], config: EvaluateConfig
) -> list[Game]:
    games = []
    base = config.baseline.name
    for item in items:
        if item.format == "ifeval":
            continue  # checked by program in the score stage, not judged
        ref = answers[(item.set_name, item.id, base)]
        for cand in config.candidates:
            mine = answers[(item.set_name, item.id, cand.name)]
            if ref is None or mine is None:
                continue  # an answer failed: charged to the unit in failures, invalid at scoring
            a, b = transcript(mine), transcript(ref)
            games += [Game(item, cand.name, True, a, b), Game(item, cand.name, False, b, a)]
    return games


def judge_games(
    games: list[Game], client: LLMClient, config: EvaluateConfig, failures: Failures
) -> list[Record]:
    prompts = [
        pairwise_prompt(
            question_text(g.item), g.answer_a, g.answer_b, reference_text(g.item), config.method == "logprob"
        )
        for g in games
    ]
    requests = [
        Request(messages=({"role": "user", "content": p},), sampling=config.judge.sampling) for p in prompts
    ]
    records = []
    if config.method == "logprob":
        for game, choice in zip(games, client.choose(requests, ("A", "B")), strict=True):
            if not choice.ok:
                failures.add(game.unit, "judge", choice.error or "", candidate_first=game.candidate_first)
            records.append(
                game_record(
                    game,
                    config,
                    choice.probs,
                    choice.mass,
                    [{"error": choice.error}] if not choice.ok else None,
                )
            )
        return records

    def parse(text: str, i: int):
        verdict = parse_arena(text, answers=(games[i].answer_a, games[i].answer_b))
        return verdict.label, verdict.reason or None

    for game, call in zip(games, ask(client, requests, parse, config.reask_invalid), strict=True):
        if call.failed:
            failures.add(game.unit, "judge", call.attempts[-1]["error"], candidate_first=game.candidate_first)
        records.append(game_record(game, config, call.raw, None, call.attempts))
    return records


def game_record(game: Game, config: EvaluateConfig, raw, mass: float | None, attempts) -> Record:
    return {
        "kind": "pair",
        "set": game.item.set_name,
        "item_id": game.item.id,
        "category": game.item.category,
        "candidate": game.candidate,
        "baseline": config.baseline.name,
        "candidate_first": game.candidate_first,
        "method": config.method,
        "judge": config.judge.model,
        "raw": raw,
        "mass": mass,
        "attempts": attempts,
    }


@dataclass(frozen=True)
class Grade:
    item: EvalItem
    model: str
    turn: int  # graded turn (1-based); jalign / ELYZA: 1
    prompt: str
    answer: str  # the graded answer (echo defence)

    @property
    def unit(self) -> str:
        return f"{self.item.set_name}/{self.item.id}/{self.model}/grade{self.turn}"


def grade_tasks(
    items: list[EvalItem], answers: dict[tuple[str, str, str], list[str] | None], config: EvaluateConfig
) -> list[Grade]:
    tasks = []
    for item in items:
        if item.format not in GRADE_SCALES:
            continue
        for entry in (config.baseline, *config.candidates):
            turns = answers[(item.set_name, item.id, entry.name)]
            if turns is None:
                continue
            if item.format == "mt_bench":
                for k in range(1, len(turns) + 1):
                    refs = item.references[:k] if item.references else None
                    prompt = mt_bench_prompt(item.turns[:k], turns[:k], refs)
                    tasks.append(Grade(item, entry.name, k, prompt, turns[k - 1]))
            else:
                ref = item.references[0] if item.references else None
                prompt = elyza_prompt(
                    item.turns[0], turns[0], ref, item.grading_notes, config.method == "logprob"
                )
                tasks.append(Grade(item, entry.name, 1, prompt, turns[0]))
    return tasks


def grade_all(
    tasks: list[Grade], client: LLMClient, config: EvaluateConfig, failures: Failures
) -> list[Record]:
    requests = [
        Request(messages=({"role": "user", "content": t.prompt},), sampling=config.judge.sampling)
        for t in tasks
    ]
    records = []
    if config.method == "logprob":
        for task, choice in zip(tasks, client.choose(requests, LOGPROB_GRADES), strict=True):
            if not choice.ok:
                failures.add(task.unit, "grade", choice.error or "")
            records.append(
                grade_record(
                    task, config, choice.probs, choice.mass, None if choice.ok else [{"error": choice.error}]
                )
            )
        return records

    def parse(text: str, i: int):
        low, high = GRADE_SCALES[tasks[i].item.format]
        rating = parse_rating(text, low, high, answers=(tasks[i].answer,))
        return rating.value, rating.reason or None

    for task, call in zip(tasks, ask(client, requests, parse, config.reask_invalid), strict=True):
        if call.failed:
            failures.add(task.unit, "grade", call.attempts[-1]["error"])
        records.append(grade_record(task, config, call.raw, None, call.attempts))
    return records


def grade_record(task: Grade, config: EvaluateConfig, raw, mass: float | None, attempts) -> Record:
    low, high = GRADE_SCALES[task.item.format]
    return {
        "kind": "grade",
        "set": task.item.set_name,
        "item_id": task.item.id,
        "category": task.item.category,
        "model": task.model,
        "turn": task.turn,
        "scale": [low, high],
        "method": config.method,
        "judge": config.judge.model,
        "raw": raw,
        "mass": mass,
        "attempts": attempts,
    }


def grade_units(items: list[EvalItem], config: EvaluateConfig) -> int:
    """Grades the run owes: one per model and item (per turn for MT-Bench)."""
    models = 1 + len(config.candidates)
    return sum(
        models * (len(i.turns) if i.format == "mt_bench" else 1) for i in items if i.format in GRADE_SCALES
    )


def charge_failed_answers(answer_rows: list[Record], config: EvaluateConfig, failures: Failures) -> None:
    """A failed answer loses every game and grade that needed it: the baseline's, every candidate's game."""
    for row in answer_rows:
        if row["turns"] is not None:
            continue
        where = f"{row['set']}/{row['item_id']}"
        owners = (
            [c.name for c in config.candidates] if row["model"] == config.baseline.name else [row["model"]]
        )
        for owner in owners:
            failures.add(f"{where}/{owner}", f"answer:{row['model']}", row["error"])
        if config.grade:
            failures.add(f"{where}/{row['model']}/grade1", f"answer:{row['model']}", row["error"])


@click.command("evaluate")
@click.option("--answers", "answers_path", required=True, type=click.Path(dir_okay=False))
@click.option("--judgments", "judgments_path", required=True, type=click.Path(dir_okay=False))
@click.option("--failures", "failures_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(
    answers_path: str, judgments_path: str, failures_path: str, metrics_path: str, params_path: str
) -> None:
    """Answer the evaluation sets with the baseline and every candidate; judge pairwise and grade."""
    config = load_section(EvaluateConfig, "evaluate", params_path)
    run = StageRun(
        "evaluate",
        config,
        params_path,
        outputs=(answers_path, judgments_path, failures_path, metrics_path),
        budget_usd=config.budget_usd,
    )
    items = [item for eval_set in config.sets for item in load_eval_items(eval_set)]
    answer_rows: list[Record] = []
    models = (config.baseline, *config.candidates)
    # Every client exists before the first answers: vLLM then starts one engine, serving LoRA, for a
    # baseline and the adapters trained on it.
    clients = [
        run.client("evaluate.baseline.llm" if k == 0 else f"evaluate.candidates[{k - 1}].llm", entry.llm)
        for k, entry in enumerate(models)
    ]
    for entry, client in zip(models, clients, strict=True):
        answer_rows += answer_all(items, entry, client, config)
    answers = {(r["set"], r["item_id"], r["model"]): r["turns"] for r in answer_rows}
    charge_failed_answers(answer_rows, config, run.failures)
    judge = run.client("evaluate.judge", config.judge)
    games = pair_games(items, answers, config)
    judgments = judge_games(games, judge, config, run.failures)
    grades = grade_tasks(items, answers, config) if config.grade else []
    judgments += grade_all(grades, judge, config, run.failures)
    units = len(items) * len(config.candidates) + (grade_units(items, config) if config.grade else 0)
    run.finish(input_rows=units, failures_path=failures_path, max_failure_rate=config.max_failure_rate)
    write_jsonl(answers_path, answer_rows)
    write_jsonl(judgments_path, judgments)
    log.info("%d answers, %d pairwise judgments, %d grades", len(answer_rows), len(games), len(grades))
    write_metrics(
        metrics_path,
        {
            "items": len(items),
            "answers": len(answer_rows),
            "games": len(games),
            "grades": len(grades),
            **run.metrics(),
        },
    )
