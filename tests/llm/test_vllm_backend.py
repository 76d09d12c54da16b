"""vLLM engine options from params (no GPU needed for the mapping; the check against vLLM's own
EngineArgs runs only where vLLM is installed, and vLLM is never imported otherwise)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import llm_config

from jalign.config import ConfigError, from_value
from jalign.llm.types import EngineSettings, VLLMSettings
from jalign.llm.vllm_backend import check_engine_args, engine_kwargs

SETTINGS = VLLMSettings(
    tensor_parallel_size=4,
    pipeline_parallel_size=2,
    max_model_len=8192,
    gpu_memory_utilization=0.85,
    enable_prefix_caching=True,
    quantization="fp8",
    max_num_seqs=256,
    max_lora_rank=64,
    extra={"enforce_eager": True},
)


def test_every_engine_option_reaches_vllm_llm():
    config = llm_config(
        model="Qwen/Qwen2.5-7B-Instruct@abc123", backend="vllm", dtype="bfloat16", vllm=SETTINGS
    )
    assert engine_kwargs(config) == {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "revision": "abc123",
        "dtype": "bfloat16",
        "tensor_parallel_size": 4,
        "pipeline_parallel_size": 2,
        "gpu_memory_utilization": 0.85,
        "enable_prefix_caching": True,
        "max_model_len": 8192,
        "quantization": "fp8",
        "max_num_seqs": 256,
        "enforce_eager": True,
    }
    # building the arguments never imports vLLM (checked in a fresh interpreter: other tests import it)
    probe = (
        "import sys; from jalign.llm.vllm_backend import engine_kwargs, plan; "
        "assert 'vllm' not in sys.modules, 'vllm imported'"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_an_adapter_turns_on_lora_serving():
    config = llm_config(model="org/base@r1", adapter="models/dpo/adapter", backend="vllm", vllm=SETTINGS)
    kwargs = engine_kwargs(config)
    assert kwargs["enable_lora"] is True and kwargs["max_lora_rank"] == 64 and kwargs["max_loras"] == 1


def test_extra_may_not_repeat_a_named_option():
    clash = VLLMSettings(1, 1, None, 0.9, True, None, None, 16, {"tensor_parallel_size": 2})
    with pytest.raises(ValueError, match=r"vllm.extra repeats \['tensor_parallel_size'\]"):
        engine_kwargs(llm_config(model="org/m@r", backend="vllm", vllm=clash))


def test_backend_vllm_needs_its_settings_and_ranges_are_checked():
    fields = {"backend": "vllm", "model": "org/m@r", "prompt_format": "chat", "terms": "x", "dtype": "auto"}
    with pytest.raises(ConfigError, match=r"^llms\.m\.vllm: required key is missing"):
        from_value(EngineSettings, fields, "llms.m")
    with pytest.raises(ValueError, match="backend vllm needs its engine settings"):
        llm_config(backend="vllm", vllm=None)  # the flat internal config checks it too
    bad = dict(SETTINGS.__dict__, gpu_memory_utilization=1.5)
    with pytest.raises(ConfigError, match=r"llms.m.vllm.gpu_memory_utilization: 1.5 is out of range"):
        from_value(EngineSettings, fields | {"vllm": bad}, "llms.m")


def test_unknown_extra_keys_are_rejected_by_vllms_own_engine_args():
    pytest.importorskip("vllm", reason="vLLM is a GPU-only extra")
    with pytest.raises(ValueError, match="not vLLM engine arguments"):
        check_engine_args(
            VLLMSettings(1, 1, None, 0.9, True, None, None, 16, {"no_such_arg": 1}), "judge.judge"
        )
    check_engine_args(SETTINGS, "judge.judge")  # real names pass
