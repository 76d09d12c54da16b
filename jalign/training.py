"""Shared pieces of the training stages: QLoRA loading, LoRA config, DVCLive, throughput and memory.

The model is loaded in 4-bit NF4 with double quantisation through bitsandbytes (QLoRA, Dettmers et
al. 2023; the Karasu article trained Qwen2.5-7B-Instruct this way on one A100), LoRA adapters go on
every linear layer, and the adapter-disabled base serves as the DPO reference model, so there is no
second copy of the weights in memory.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jalign.config import ConfigError, param
from jalign.models import resolve, resolve_dtype, torch_dtype, warn_if_bf16_is_emulated


@dataclass(frozen=True)
class LoraSettings:
    r: int = param("LoRA rank.", ge=1)
    alpha: int = param("LoRA alpha (scaling = alpha / r).", ge=1)
    dropout: float = param("Dropout on the LoRA path.", ge=0, lt=1)
    target_modules: str = param(
        "Layers that get adapters: all-linear (QLoRA: every linear layer but the head)."
    )


@functools.cache
def transformers_choices(module: str, enum: str) -> tuple[str, ...]:
    """The string values of an enum of the installed transformers (`training_args`, `OptimizerNames`),
    read from its source: importing transformers takes seconds, and every stage validates the whole
    params file (these names included) before it starts. Falls back to the import if the source moved."""
    spec = importlib.util.find_spec("transformers")
    source = Path(spec.origin).parent / f"{module}.py" if spec and spec.origin else None
    if source is not None and source.is_file():
        for node in ast.parse(source.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name == enum:
                values = [
                    item.value.value
                    for item in node.body
                    if isinstance(item, ast.Assign)
                    and isinstance(item.value, ast.Constant)
                    and isinstance(item.value.value, str)
                ]
                if values:
                    return tuple(sorted(values))
    imported = getattr(importlib.import_module(f"transformers.{module}"), enum)
    return tuple(sorted(member.value for member in imported))


def check_trainer_choices(optim: str, lr_scheduler_type: str) -> None:
    """Reject an optimizer or scheduler name transformers does not know, before any model loads (the
    config loader prefixes the section: `dpo: optim: ...`)."""
    optimizers = transformers_choices("training_args", "OptimizerNames")
    schedulers = transformers_choices("trainer_utils", "SchedulerType")
    if optim not in optimizers:
        raise ValueError(
            f"optim: {optim!r} is not a transformers optimizer (allowed: {', '.join(optimizers)})"
        )
    if lr_scheduler_type not in schedulers:
        raise ValueError(
            f"lr_scheduler_type: {lr_scheduler_type!r} is not a transformers scheduler "
            f"(allowed: {', '.join(schedulers)})"
        )


def check_optimizer_device(optim: str, where: str) -> None:
    """At stage start, before the model loads: paged / 8-bit bitsandbytes optimizers need CUDA."""
    import torch

    if (
        optim.startswith("paged_") or "bnb" in optim or optim.endswith("8bit")
    ) and not torch.cuda.is_available():
        raise ConfigError(
            f"{where}.optim: {optim!r} needs a CUDA GPU (bitsandbytes paged / 8-bit optimizers); "
            "use adamw_torch on CPU"
        )


def training_dtype(name: str) -> str:
    """A training stage's dtype param with `native` resolved for this machine's device."""
    import torch

    return resolve_dtype(name, "cuda" if torch.cuda.is_available() else "cpu")


def load_policy(ref: str, quantization: Literal["nf4", "none"], dtype: str):
    """Model and tokenizer; NF4 4-bit with double quantisation when asked (compute dtype = `dtype`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    source = resolve(ref)
    kwargs = source.pretrained_kwargs()
    with source.downloading():
        tokenizer = AutoTokenizer.from_pretrained(**kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    quant = None
    if quantization == "nf4":
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype(dtype),
            bnb_4bit_quant_storage=torch_dtype(dtype),
        )
    device_map = None
    if torch.cuda.is_available():
        from accelerate import PartialState

        # One copy per process under `accelerate launch` (DDP); ZeRO-3 / FSDP shard it afterwards.
        device_map = {"": PartialState().local_process_index}
    warn_if_bf16_is_emulated(dtype, "cuda" if torch.cuda.is_available() else "cpu")
    with source.downloading():
        model = AutoModelForCausalLM.from_pretrained(
            **kwargs, dtype=torch_dtype(dtype), quantization_config=quant, device_map=device_map
        )
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model, tokenizer


def lora_config(lora: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def dvclive_callback(directory: str):
    """Log to DVCLive without creating experiments of its own: `dvc exp run` already does that, and
    dvc.yaml declares the plots."""
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    return DVCLiveCallback(live=Live(directory, save_dvc_exp=False, dvcyaml=False))


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
