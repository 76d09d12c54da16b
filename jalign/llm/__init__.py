"""The LLM layer: one client, four backends (transformers, openai, openai_batch, vllm), one cache, one retry
policy."""

from jalign.llm.cache import ResponseCache
from jalign.llm.client import Budget, BudgetExceeded, LLMClient, Usage
from jalign.llm.types import Choice, Generation, LLMConfig, Price, Request, Sampling

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
]
