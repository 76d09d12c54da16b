"""Pairwise LLM-as-a-judge with position swapping (Karasu; MT-Bench; Arena-Hard): the judging half.

Every pair of answers is judged twice, A/B and B/A, and every judgment is stored raw (the judge's text,
its choice probabilities, or the two rewards) in `judgments.jsonl`. Deciding what the judgments mean
(ties, position calibration, which pairs both orders agree on) is the `decide` stage's pure function of
that file, so `-S decide.tie_margin=...` re-decides without re-judging (arena-hard-auto: judging and
scoring are separate).

Methods: `text` (free-text explanation + verdict token; an answer that does not parse is re-asked once
with a new seed), `logprob` (choice-constrained P(A) vs P(B) for local models), `reward` (a trained
preference classifier's scores; order-independent by construction).

Answers are shown inside delimiters carrying a per-request nonce, so an answer cannot close its own
fence, and an optional canary set re-judges a few pairs with an injected plea appended to one answer
(`canary_pairs`), so `metrics/judge.json` reports how many outcomes an injection changed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import click

from jalign import prompts
from jalign.config import load_section
from jalign.judge_prompts import fence_answers
from jalign.judging import ask, shown_answer
from jalign.judgments import load_responses
from jalign.llm.client import LLMClient
from jalign.llm.types import Request
from jalign.llm_stage import StageRun
from jalign.params import JudgeConfig
from jalign.records import (
    Record,
    write_jsonl,
)
from jalign.stage import Failures, log, write_metrics
from jalign.verdicts import parse_verdict


@dataclass(frozen=True)
class Task:
    """One judgment to make: `first` is shown as A, `second` as B. A canary task appends the injected
    text `canary` to the answer of responder `target` (see canary_tasks)."""

    prompt_id: str
    prompt: str
    first: str
    second: str
    canary: str | None = None
    target: str | None = None

    @property
    def pair_id(self) -> str:
        a, b = sorted((self.first, self.second))
        return f"{self.prompt_id}|{a}|{b}"

    @property
    def row_id(self) -> str:
        """The row a failure is charged to: the pair, or its canary copy."""
        return f"{self.pair_id}#canary" if self.canary else self.pair_id

    @property
    def order(self) -> str:
        """forward: the alphabetically first responder is shown as A; swapped: as B."""
        return "forward" if self.first < self.second else "swapped"


def tasks_for(rows: list[Record]) -> tuple[list[Task], int]:
    """Both orders of every responder pair of every prompt; also how many pairs lacked an answer."""
    tasks, missing = [], 0
    names = sorted({n for r in rows for n in r["responses"]})
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


def canary_tasks(tasks: list[Task], n_pairs: int) -> list[Task]:
    """Both orders of the first `n_pairs` pairs again, with a plea for the second responder (by name)
    appended to its answer; payloads cycle through prompts/injection_canaries.yaml."""
    payloads = prompts.load_yaml("injection_canaries")
    pairs = list(dict.fromkeys(t.pair_id for t in tasks))[:n_pairs]
    by_pair = {t.pair_id: t for t in tasks}
    out = []
    for k, pair_id in enumerate(pairs):
        task = by_pair[pair_id]
        target = max(task.first, task.second)
        plea = payloads[k % len(payloads)]
        for first, second in ((task.first, task.second), (task.second, task.first)):
            label = "A" if first == target else "B"
            out.append(
                Task(task.prompt_id, task.prompt, first, second, plea.replace("{{label}}", label), target)
            )
    return out


def answer_text(task: Task, answers: dict[str, dict[str, str]], name: str) -> str:
    return shown_answer(answers[task.prompt_id][name], name, task.target, task.canary)


def judge_request(
    task: Task, answers: dict[str, dict[str, str]], config: JudgeConfig, template: str
) -> Request:
    content = prompts.render(
        template,
        **fence_answers(
            task.prompt, answer_text(task, answers, task.first), answer_text(task, answers, task.second)
        ),
    )
    return Request(messages=({"role": "user", "content": content},), sampling=config.judge.sampling)


def judge_pairs(
    tasks: list[Task],
    answers: dict[str, dict[str, str]],
    client: LLMClient | None,
    config: JudgeConfig,
    failures: Failures,
) -> list[Record]:
    """One judgment record per task with the raw judge output; nothing decided here."""
    records = []
    if config.method == "text":
        assert client is not None
        requests = [judge_request(t, answers, config, "judge_pairwise") for t in tasks]

        def parse(text: str, i: int):
            task = tasks[i]
            shown = (answer_text(task, answers, task.first), answer_text(task, answers, task.second))
            verdict = parse_verdict(text, answers=shown)
            return verdict.outcome, verdict.reason or None

        for task, call in zip(tasks, ask(client, requests, parse, config.reask_invalid), strict=True):
            if call.failed:
                failures.add(task.row_id, "judge", call.attempts[-1]["error"], order=task.order)
            records.append(judgment(task, config, raw=call.raw, attempts=call.attempts))
    elif config.method == "logprob":
        assert client is not None
        requests = [judge_request(t, answers, config, "judge_pairwise_logprob") for t in tasks]
        for task, choice in zip(tasks, client.choose(requests, choices=("A", "B")), strict=True):
            if not choice.ok:
                failures.add(task.row_id, "judge", choice.error or "", order=task.order)
                records.append(judgment(task, config, raw=None, attempts=[{"error": choice.error}]))
            else:
                records.append(judgment(task, config, raw=choice.probs, mass=choice.mass))
    else:
        from jalign.reward import RewardModel, classifier_text

        assert config.reward_model is not None
        scorer = RewardModel(config.reward_model)
        # the classifier scores what a text judge would be shown (a canary's plea included); each
        # distinct text once, in a fixed order
        shown = {
            t: tuple(classifier_text(t.prompt, answer_text(t, answers, n)) for n in (t.first, t.second))
            for t in tasks
        }
        texts = sorted({text for pair in shown.values() for text in pair})
        reward = dict(zip(texts, scorer.score(texts), strict=True))
        for task in tasks:
            first, second = shown[task]
            records.append(judgment(task, config, raw={"A": reward[first], "B": reward[second]}))
    return records


def judgment(task: Task, config: JudgeConfig, raw, mass: float | None = None, attempts=None) -> Record:
    return {
        "pair_id": task.pair_id,
        "prompt_id": task.prompt_id,
        "first": task.first,
        "second": task.second,
        "order": task.order,
        "canary": {"target": task.target, "text": task.canary} if task.canary else None,
        "method": config.method,
        "judge": config.reward_model if config.method == "reward" else config.judge.model,
        # The label is the judge's output: an API judge's terms (e.g. no training of competing models on
        # its outputs) bind the pairs it decides. A reward classifier is ours: its data carries its terms.
        "judge_terms": None if config.method == "reward" else config.judge.terms,
        "raw": raw,
        "mass": mass,
        "attempts": attempts,
    }


@click.command("judge")
@click.option("--responses", "responses_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--judgments", "judgments_path", required=True, type=click.Path(dir_okay=False))
@click.option("--failures", "failures_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(
    responses_path: str, judgments_path: str, failures_path: str, metrics_path: str, params_path: str
) -> None:
    """Judge every answer pair in both orders; store every raw judgment (the decide stage decides)."""
    config = load_section(JudgeConfig, "judge", params_path)
    run = StageRun(
        "judge",
        config,
        params_path,
        outputs=(judgments_path, failures_path, metrics_path),
        budget_usd=config.budget_usd,
    )
    rows = load_responses(responses_path)
    tasks, missing = tasks_for(rows)
    tasks += canary_tasks(tasks, config.canary_pairs)
    answers = {r["prompt_id"]: {n: v["text"] for n, v in r["responses"].items()} for r in rows}
    client = run.client("judge.judge", config.judge) if config.method != "reward" else None
    judgments = judge_pairs(tasks, answers, client, config, run.failures)
    pairs = len({t.pair_id for t in tasks if not t.canary})
    rows_in = len({t.row_id for t in tasks})
    run.finish(input_rows=rows_in, failures_path=failures_path, max_failure_rate=config.max_failure_rate)
    write_jsonl(judgments_path, judgments)
    log.info("%d judgments of %d pairs (%d canary judgments)", len(judgments), pairs, len(tasks) - 2 * pairs)
    write_metrics(
        metrics_path,
        {
            "pairs": pairs,
            "judgments": len(judgments),
            "pairs_missing_answer": missing,
            "method": config.method,
            **run.metrics(),
        },
    )
