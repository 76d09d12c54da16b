"""The LLM layer: one client, one cache, one retry policy, and five backends: transformers (local batched
generate), openai (any OpenAI-compatible endpoint), vllm (in-process on a GPU machine), ray (one Ray
Data job per call: vLLM engines on a cluster, or HTTP workers) and openai_batch (the OpenAI Batch API).

Imports run one way: types -> choices / retry / cache -> backends -> client. Backends never import the
client; the client imports a backend only when a request actually needs one.
"""

from jalign.llm.cache import ResponseCache
from jalign.llm.client import Budget, BudgetExceeded, LLMClient, Usage
from jalign.llm.types import Choice, Generation, LLMConfig, Price, Request, Sampling, VLLMSettings

__all__ = [
    "Budget",
    "BudgetExceeded",
    "Choice",
    "Generation",
    "LLMClient",
    "LLMConfig",
    "Price",
    "Request",
    "ResponseCache",
    "Sampling",
    "Usage",
    "VLLMSettings",
]
