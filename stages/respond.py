"""Answer every Japanese prompt with two or more configured responders (Karasu: Qwen2.5-7B-Instruct and
GPT-4o mini, each under its own system message), so the judge has something to compare."""

from __future__ import annotations

import click

from jalign import prompts
from jalign.config import load_section
from jalign.llm.client import LLMClient
from jalign.llm.types import Request
from jalign.llm_stage import StageRun
from jalign.params import RespondConfig, ResponderConfig
from jalign.records import (
    Record,
    RecordError,
    check_unique_ids,
    line_of,
    provenance_of,
    read_jsonl,
    user_prompt,
    write_jsonl,
)
from jalign.stage import Failures, log, mean, write_metrics


def load_prompt_rows(
    translated_path: str, instructions_path: str | None, config: RespondConfig
) -> list[Record]:
    """Prompt rows from both halves, checked before any request is paid for: required fields (the
    licence included) and ids unique within and across both files, each error naming file, line, field."""
    translated = read_jsonl(translated_path, required=("id", "prompt"))
    instructions = read_jsonl(instructions_path, required=("id", "instruction")) if instructions_path else []
    for path, records in ((translated_path, translated), (instructions_path, instructions)):
        for i, record in enumerate(records):
            if "license" not in record:
                raise RecordError(f"{path}:{line_of(records, i)}: missing field 'license'")
        check_unique_ids(records, str(path))
    translated_ids = {r["id"] for r in translated}
    for i, record in enumerate(instructions):
        if record["id"] in translated_ids:
            raise RecordError(
                f"{instructions_path}:{line_of(instructions, i)}: field 'id': {record['id']!r} is also a "
                f"prompt id in {translated_path}"
            )
    return prompt_rows(translated, instructions, config)


def prompt_rows(translated: list[Record], instructions: list[Record], config: RespondConfig) -> list[Record]:
    def row(record: Record, prompt: str, origin: str) -> Record:
        return {"prompt_id": record["id"], "prompt": prompt, "origin": origin, **provenance_of([record])}

    rows = [row(r, r["prompt"], "translated") for r in translated]
    if config.include_instructions:
        rows += [row(r, user_prompt(r), "instruction") for r in instructions]
    return rows if config.max_prompts is None else rows[: config.max_prompts]


def build_request(prompt: str, responder: ResponderConfig) -> Request:
    user = prompts.render(responder.template, instruction=prompt) if responder.template else prompt
    system = ({"role": "system", "content": responder.system},) if responder.system else ()
    return Request(messages=(*system, {"role": "user", "content": user}), sampling=responder.llm.sampling)


def respond(
    rows: list[Record], clients: dict[str, LLMClient], config: RespondConfig, failures: Failures
) -> list[Record]:
    answers = {
        r.name: clients[r.name].generate([build_request(row["prompt"], r) for row in rows])
        for r in config.responders
    }
    out = []
    for i, row in enumerate(rows):
        responses = {}
        for responder in config.responders:
            gen = answers[responder.name][i]
            text = (gen.text or "").strip()
            if not gen.ok:
                failures.add(row["prompt_id"], f"respond:{responder.name}", gen.error or "")
            else:
                responses[responder.name] = {
                    "text": text,
                    "model": responder.llm.model,
                    "model_terms": responder.llm.terms,
                    "finish_reason": gen.finish_reason,
                    "output_tokens": gen.output_tokens,
                }
        out.append({**row, "responses": responses})
    return out


@click.command("respond")
@click.option("--prompts", "prompts_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--instructions", "instructions_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--failures", "failures_path", required=True, type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", required=True, type=click.Path(dir_okay=False))
@click.option("--params", "params_path", default="params.yaml", show_default=True)
def main(
    prompts_path: str,
    instructions_path: str | None,
    out_path: str,
    failures_path: str,
    metrics_path: str,
    params_path: str,
) -> None:
    """Answer each Japanese prompt with every configured responder."""
    config = load_section(RespondConfig, "respond", params_path)
    run = StageRun(
        "respond",
        config,
        params_path,
        outputs=(out_path, failures_path, metrics_path),
        budget_usd=config.budget_usd,
    )
    rows = load_prompt_rows(prompts_path, instructions_path, config)
    clients = {
        r.name: run.client(f"respond.responders[{i}].llm", r.llm) for i, r in enumerate(config.responders)
    }
    out = respond(rows, clients, config, run.failures)
    run.finish(input_rows=len(rows), failures_path=failures_path, max_failure_rate=config.max_failure_rate)
    write_jsonl(out_path, out)
    complete = sum(len(r["responses"]) == len(config.responders) for r in out)
    log.info("%d of %d prompts answered by every responder", complete, len(out))
    write_metrics(
        metrics_path,
        {
            "prompts": len(out),
            "answered_by_all": complete,
            "mean_chars": {
                r.name: mean([len(o["responses"][r.name]["text"]) for o in out if r.name in o["responses"]])
                for r in config.responders
            },
            **run.metrics(),
        },
    )
