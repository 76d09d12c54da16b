"""What the local engines (transformers, vLLM) share: the tokenizer a role uses, the exact prompt text,
the tokens that end an answer and the first tokens of each choice. One definition, so that the two
engines see the same tokens for the same request and differ only in how they compute.
"""

from __future__ import annotations

from pathlib import Path

from jalign.llm.types import Request, render_raw
from jalign.models import resolve

# End-of-turn markers of common chat templates; generation stops on them as on EOS.
TURN_ENDS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")


def load_tokenizer(model: str, adapter: str | None = None):
    """The role's tokenizer: the adapter directory's own (the training stages save it with the adapter)
    when it has one, else the base model's."""
    from transformers import AutoTokenizer

    kwargs = resolve(model).pretrained_kwargs()
    if adapter:
        source = resolve(adapter)
        if source.kind == "local" and (Path(source.location) / "tokenizer_config.json").exists():
            kwargs = source.pretrained_kwargs()
    tokenizer = AutoTokenizer.from_pretrained(**kwargs)
    tokenizer.padding_side = "left"  # decoder-only batches: pad on the left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def render_prompt(tokenizer, request: Request, prompt_format: str, model: str) -> str:
    """The prompt text with its special tokens (BOS included): tokenize it with add_special_tokens=False."""
    if prompt_format == "raw":
        return (tokenizer.bos_token or "") + render_raw(request.messages)
    if not tokenizer.chat_template:
        raise ValueError(f"{model}: no chat template; use prompt_format: raw or add one")
    return tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)


def generation_eos(model: str) -> int | list[int] | None:
    """The EOS id(s) generation stops on: generation_config.json's, else the model config's (what
    transformers' `model.generation_config` holds after from_pretrained)."""
    from transformers import AutoConfig, GenerationConfig

    kwargs = resolve(model).pretrained_kwargs()
    path = kwargs.pop("pretrained_model_name_or_path")
    try:
        return GenerationConfig.from_pretrained(path, **kwargs).eos_token_id
    except OSError:
        return GenerationConfig.from_model_config(AutoConfig.from_pretrained(path, **kwargs)).eos_token_id


def end_token_ids(tokenizer, eos: int | list[int] | None) -> list[int]:
    """The model's EOS ids (generation_config) and every end-of-turn marker its vocabulary has."""
    vocab = tokenizer.get_vocab()
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    return sorted(set(eos) | {vocab[t] for t in TURN_ENDS if t in vocab})


def choice_token_ids(tokenizer, choices: tuple[str, ...]) -> list[list[int]]:
    """For each choice, the first tokens that start it: bare and after a space ("A" and " A" are often
    different tokens). A first token shared by two choices cannot tell them apart and is left out."""
    candidates = []
    for choice in choices:
        ids = {
            t[0] for t in (tokenizer.encode(v, add_special_tokens=False) for v in (choice, " " + choice)) if t
        }
        candidates.append(ids)
    result = []
    for i, (choice, ids) in enumerate(zip(choices, candidates, strict=True)):
        others = set().union(*(c for j, c in enumerate(candidates) if j != i))
        distinct = sorted(ids - others)
        if not distinct:
            raise ValueError(f"choice {choice!r} has no first token that the other choices {choices} lack")
        result.append(distinct)
    return result


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """Cut at the earliest stop sequence (excluded, as the OpenAI API does)."""
    cuts = [text.find(s) for s in stops if s and s in text]
    if not cuts:
        return text, False
    return text[: min(cuts)], True
