"""The LLM layer: one client, one cache, one retry policy, and five backends: transformers (local batched
generate), openai (any OpenAI-compatible endpoint), vllm (in-process on a GPU machine), ray (one Ray
Data job per call: vLLM engines on a cluster, or HTTP workers) and openai_batch (the OpenAI Batch API).

Where things are: `jalign.llm.types` (LLMConfig, Sampling, Request, Choice, Generation: plain data, no
heavy imports), `jalign.llm.client` (LLMClient, Budget, Usage), `jalign.llm.cache` (ResponseCache).

This file re-exports nothing on purpose: importing `jalign.llm.types` (as the params schema does) runs
this file, so an eager re-export of the client would make every training stage depend on, and retrain
for, each backend's code.

Imports run one way: types -> choices / retry / cache -> backends -> client. Backends never import the
client; the client imports a backend only when a request actually needs one.
"""
