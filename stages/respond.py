"""Answer every Japanese prompt with two or more configured responders (Karasu: Qwen2.5-7B-Instruct and
GPT-4o mini, each under its own system message), so the judge has something to compare."""

from __future__ import annotations

from dataclasses import dataclass

import click

from jalign import prompts
from jalign.config import load_section
from jalign.llm import Budget, LLMClient, LLMConfig, Request
from jalign.records import Record, read_jsonl, write_json, write_jsonl
from jalign.stage import Failures, log, log_params, mean, price_for, provenance, setup_logging, usage_metrics


@dataclass(frozen=True)
class ResponderConfig:
    name: str  # stable label used in pairs and win shares
    llm: LLMConfig
    system: str = ""  # system message (Karasu set one to raise answer quality)
    # Prompt template wrapping the user prompt: "respond" is a few-shot frame for base models; null
    # sends the prompt as it is (chat models).
    template: str | None = "respond"


@dataclass(frozen=True)
class RespondConfig:
    """params.yaml `respond`."""

    responders: tuple[ResponderConfig, ...]
    include_instructions: bool = True  # also answer the curated instructions of the instruction half
    max_prompts: int | None = None  # first N prompts (small CPU profiles)
    max_failure_rate: float = 0.1
    budget_usd: float | None = None

    def __post_init__(self) -> None:
        names = [r.name for r in self.responders]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"responders: need two or more with distinct names, got {names}")


def prompt_rows(translated: list[Record], instructions: list[Record], config: RespondConfig) -> list[Record]:
    rows = [
        {"prompt_id": r["id"], "prompt": r["prompt"], "origin": "translated", "license": r["license"]}
        for r in translated
    ]
    if config.include_instructions:
        rows += [
            {
                "prompt_id": r["id"],
                "prompt": f"{r['instruction']}\n{r['input']}" if r.get("input") else r["instruction"],
                "origin": "instruction",
                "license": r.get("license", ""),
            }
            for r in instructions
        ]
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
            elif text:
                responses[responder.name] = {
                    "text": text,
                    "model": responder.llm.model,
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
    setup_logging()
    config = load_section(RespondConfig, "respond", params_path)
    log_params("respond", config)
    translated = read_jsonl(prompts_path, required=("id", "prompt"))
    instructions = read_jsonl(instructions_path, required=("id", "instruction")) if instructions_path else []
    rows = prompt_rows(translated, instructions, config)
    budget = Budget(config.budget_usd)
    clients = {
        r.name: LLMClient(r.llm, price=price_for(r.llm, params_path), budget=budget)
        for r in config.responders
    }
    failures = Failures("respond")
    out = respond(rows, clients, config, failures)
    failures.write(failures_path)
    failures.check(sum(c.usage.requests for c in clients.values()), config.max_failure_rate)
    write_jsonl(out_path, out)
    complete = sum(len(r["responses"]) == len(config.responders) for r in out)
    log.info("%d of %d prompts answered by every responder", complete, len(out))
    write_json(
        metrics_path,
        {
            "prompts": len(out),
            "answered_by_all": complete,
            "mean_chars": {
                r.name: mean([len(o["responses"][r.name]["text"]) for o in out if r.name in o["responses"]])
                for r in config.responders
            },
            "usage": usage_metrics(clients),
            "provenance": provenance(),
        },
    )
