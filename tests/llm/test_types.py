"""jalign.llm.types: the words that describe the backends name every one of them (issue 20)."""

from __future__ import annotations

import dataclasses
import re
import typing

import jalign.llm
from jalign.llm.types import Backend, LLMConfig


def test_every_backend_is_named_where_the_backends_are_described():
    backends = typing.get_args(Backend)
    assert backends == ("transformers", "openai", "vllm", "ray", "openai_batch")
    help_text = next(f for f in dataclasses.fields(LLMConfig) if f.name == "backend").metadata["help"]
    for text in (jalign.llm.__doc__, help_text):
        assert [name for name in backends if not re.search(rf"\b{name}\b", text)] == [], text
    assert "five backends" in jalign.llm.__doc__
