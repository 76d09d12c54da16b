"""What a stage asks an LLM, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
class LLMConfig:
    """One LLM role (generator, judge, responder ...) as written in params.yaml."""

    model: str  # model reference: local dir, Hub id[@revision], pkg:<name>, or the served model name
    backend: Literal["transformers", "openai", "openai_batch", "vllm"] = "transformers"
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
    batch_poll_interval_s: float = field(
        default=60.0, metadata={"help": "openai_batch: seconds between two status polls of a running batch"}
    )
    batch_max_requests: int = field(
        default=50000, metadata={"help": "openai_batch: most requests per batch (the API allows 50000)"}
    )
    batch_completion_window: str = field(
        default="24h", metadata={"help": "openai_batch: the batch's completion window (the API allows 24h)"}
    )
    batch_price_factor: float = field(
        default=0.5,
        metadata={"help": "openai_batch: the Batch API bills this fraction of the `prices` (list) rates"},
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_concurrency < 1:
            raise ValueError("batch_size and max_concurrency must be >= 1")
        if self.batch_max_requests < 1 or self.batch_poll_interval_s <= 0 or self.batch_price_factor < 0:
            raise ValueError(
                "batch_max_requests must be >= 1, batch_poll_interval_s > 0, batch_price_factor >= 0"
            )
        if self.backend in ("openai", "openai_batch") and self.api_key_env.startswith("sk-"):
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
