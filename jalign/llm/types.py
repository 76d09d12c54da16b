"""What a stage asks an LLM, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": ...}


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters. Defaults suit few-shot generation with small base models: greedy decoding
    loops on repeated lines, so sample with a mild repetition penalty and stop sequences."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0  # transformers / vLLM; sent to OpenAI-compatible servers as extra_body

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"sampling.max_tokens must be >= 1, got {self.max_tokens}")


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens."""

    input: float = 0.0
    output: float = 0.0


@dataclass(frozen=True)
class RaySettings:
    """`backend: ray`: each call is one Ray Data job (ray.data.llm) on a local Ray or a cluster of nodes."""

    address: str | None = field(
        default=None,
        metadata={
            "help": "Ray cluster to join (ray://head:10001, or auto on a cluster node); "
            "unset: RAY_ADDRESS, else a local Ray started in-process"
        },
    )
    engine: Literal["vllm", "http"] = field(
        default="vllm",
        metadata={
            "help": "vllm: a vLLM engine per replica on the cluster's GPUs (vllm on every GPU node); "
            "http: Ray's HTTP request processor against an OpenAI-compatible endpoint"
        },
    )
    concurrency: int = field(
        default=1,
        metadata={
            "help": "data-parallel replicas: vLLM engines (each tensor_parallel_size x "
            "pipeline_parallel_size GPUs), or HTTP workers"
        },
    )
    batch_size: int = field(
        default=64,
        metadata={
            "help": "rows per Ray Data batch: larger keeps engines busy, smaller loses less when a "
            "worker dies; http: a worker's requests in flight together"
        },
    )
    accelerator_type: str | None = field(
        default=None,
        metadata={"help": "vllm: GPU type the engines must run on (H100, A100, L4 ...); unset: any GPU"},
    )
    # hash=False: a dict is not hashable, and LLMConfig stays usable as a dict key
    engine_kwargs: dict[str, Any] = field(
        default_factory=dict,
        hash=False,
        metadata={
            "help": "vllm: vLLM engine arguments (tensor_parallel_size, pipeline_parallel_size, "
            "max_model_len, gpu_memory_utilization ...); dtype defaults to the role's dtype"
        },
    )
    max_tasks_in_flight_per_actor: int | None = field(
        default=None,
        metadata={"help": "vllm: batches Ray Data queues on each engine replica; unset: Ray's default"},
    )
    lora: str | None = field(
        default=None,
        metadata={
            "help": "vllm: LoRA adapter applied to every request (a directory present on every GPU node, "
            "or a Hub id); sets enable_lora; raise engine_kwargs.max_lora_rank for r > 16"
        },
    )
    http_base_url: str | None = field(
        default=None,
        metadata={"help": "http: endpoint base URL ending in /v1; unset: the role's base_url, else OpenAI"},
    )
    qps: int | None = field(
        default=None,
        metadata={"help": "http: most requests per second each worker starts (rate limits); unset: no limit"},
    )

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.batch_size < 1:
            raise ValueError("ray.concurrency and ray.batch_size must be >= 1")
        if self.qps is not None and self.qps < 1:
            raise ValueError(f"ray.qps must be >= 1 or unset, got {self.qps}")


@dataclass(frozen=True)
class LLMConfig:
    """One LLM role (generator, judge, responder ...) as written in params.yaml."""

    model: str  # model reference: local dir, Hub id[@revision], pkg:<name>, or the served model name
    backend: Literal["transformers", "openai", "vllm", "ray"] = "transformers"
    # "chat" applies the model's chat template (or the chat endpoint); "raw" joins the message texts
    # and lets a base model continue them (few-shot completion; the completions endpoint for openai).
    prompt_format: Literal["chat", "raw"] = "chat"
    sampling: Sampling = field(default_factory=Sampling)
    base_url: str | None = None  # openai backend: e.g. http://localhost:8000/v1 for `vllm serve`
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable; the key never enters params
    batch_size: int = 8  # transformers: sequences per generate() call
    max_concurrency: int = 8  # openai: requests in flight
    timeout_s: float = 120.0
    max_retries: int = 5  # openai: retries on 429 / 5xx / timeouts / garbage, exponential backoff
    retry_base_delay_s: float = 1.0  # openai: first backoff step (full jitter, doubling per retry)
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = "bfloat16"
    device: str = "auto"  # transformers: auto | cpu | cuda[:N]
    ray: RaySettings | None = field(
        default=None, metadata={"help": "backend: ray: cluster, engine and parallelism (unset: defaults)"}
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_concurrency < 1:
            raise ValueError("batch_size and max_concurrency must be >= 1")
        if self.backend in ("openai", "ray") and self.api_key_env.startswith("sk-"):
            raise ValueError("api_key_env names an environment variable; never put the key itself in params")


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

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def best(self) -> str | None:
        return max(self.probs, key=self.probs.__getitem__) if self.probs else None


Mode = Literal["generate", "choose"]
