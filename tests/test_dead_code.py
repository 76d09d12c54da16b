"""No public code in jalign/ that only tests use: it drifts from what it claims, unnoticed (issue 20).

Every public module-level function and class, and every public class attribute, must be named somewhere
in the code that runs (jalign/, stages/, commands/, benchmarks/, pyproject.toml, dvc.yaml) besides its
own definition. Tests exercise the real entry points instead of helpers kept alive for them.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNING = ("jalign", "stages", "commands", "benchmarks")


def public_names(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        ) and not node.name.startswith("_"):
            names.append(node.name)
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.Assign):
                    names += [
                        t.id for t in item.targets if isinstance(t, ast.Name) and not t.id.startswith("_")
                    ]
    return names


def test_no_public_code_is_used_by_tests_alone():
    sources = [path for folder in RUNNING for path in sorted((REPO / folder).rglob("*.py"))]
    texts = [path.read_text(encoding="utf-8") for path in sources]
    texts += [(REPO / name).read_text(encoding="utf-8") for name in ("pyproject.toml", "dvc.yaml")]
    mentions = Counter(re.findall(r"\w+", "\n".join(texts)))
    unused = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "jalign").rglob("*.py"))
        for name in public_names(ast.parse(path.read_text(encoding="utf-8")))
        if mentions[name] < 2  # its definition, and at least one use
    ]
    assert unused == []
