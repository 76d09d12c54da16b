"""Prompt templates are Japanese text files in this folder; `{{name}}` marks a slot.

Double braces keep single braces free for code and JSON inside prompts. Rendering fails on a missing
or unused slot, so a renamed variable cannot silently produce a prompt with a hole in it.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_SLOT = re.compile(r"\{\{(\w+)\}\}")


@cache
def load_yaml(name: str):
    """A YAML data file of this folder (e.g. evolve_operations, injection_canaries)."""
    import yaml

    path = resources.files(__package__) / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"prompt data {name}.yaml not found in jalign/prompts/")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def load(name: str) -> str:
    path = resources.files(__package__) / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {name}.txt not found in jalign/prompts/")
    return path.read_text(encoding="utf-8")


def render(name: str, **values: object) -> str:
    template = load(name)
    slots = set(_SLOT.findall(template))
    missing, unused = slots - set(values), set(values) - slots
    if missing or unused:
        raise KeyError(f"prompt {name}: missing slots {sorted(missing)}, unused values {sorted(unused)}")
    return _SLOT.sub(lambda m: str(values[m.group(1)]), template)
