"""jalign.config: params.yaml sections -> frozen dataclasses, with errors that name the dotted key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from jalign.config import ConfigError, as_dict, from_dict, load_section, read_params
from jalign.llm import LLMConfig, Sampling

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Inner:
    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class Small:
    """Every kind of field from_dict supports."""

    count: int
    label: str = "x"
    ratio: float = 0.5
    enabled: bool = True
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None
    tags: tuple[str, ...] = ()
    inner: Inner = field(default_factory=lambda: Inner("default"))
    inners: tuple[Inner, ...] = ()
    prices: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")


@dataclass(frozen=True)
class Stage:
    """A stage section with an LLM role, like self_instruct."""

    generator: LLMConfig
    rounds: int = 1


# ---------------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------------
def test_from_dict_builds_nested_frozen_dataclasses():
    data = {
        "generator": {
            "model": "models/base/gemma-3-270m",
            "prompt_format": "raw",
            "batch_size": 2,
            "sampling": {"temperature": 0.8, "max_tokens": 160, "seed": 1, "stop": ["\nタスク", "\n\n\n"]},
        },
        "rounds": 3,
    }
    config = from_dict(Stage, data, "self_instruct")
    assert config == Stage(
        generator=LLMConfig(
            model="models/base/gemma-3-270m",
            prompt_format="raw",
            batch_size=2,
            sampling=Sampling(temperature=0.8, max_tokens=160, seed=1, stop=("\nタスク", "\n\n\n")),
        ),
        rounds=3,
    )
    assert isinstance(config.generator.sampling, Sampling)
    assert config.generator.sampling.top_p == 0.95  # defaults fill what the section leaves out
    assert config.generator.backend == "transformers"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rounds = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.generator.sampling.seed = 2  # type: ignore[misc]


def test_defaults_for_nested_dataclass_when_absent():
    config = from_dict(Stage, {"generator": {"model": "org/name"}}, "s")
    assert config.generator.sampling == Sampling()
    assert config.rounds == 1


def test_every_field_kind_converts():
    data = {
        "count": 3,
        "label": "ラベル",
        "ratio": 2,  # an int where a float is expected is fine, and becomes a float
        "enabled": False,
        "mode": "slow",
        "limit": 10,
        "tags": ["a", "b"],
        "inner": {"name": "n", "weight": 0.25},
        "inners": [{"name": "p"}, {"name": "q", "weight": 3}],
        "prices": {"gpt-4o": 2.5, 7: 1},
    }
    config = from_dict(Small, data, "small")
    assert config == Small(
        count=3,
        label="ラベル",
        ratio=2.0,
        enabled=False,
        mode="slow",
        limit=10,
        tags=("a", "b"),
        inner=Inner("n", 0.25),
        inners=(Inner("p"), Inner("q", 3.0)),
        prices={"gpt-4o": 2.5, "7": 1.0},
    )
    assert type(config.ratio) is float
    assert type(config.inners[1].weight) is float
    assert type(config.prices["7"]) is float


def test_lists_become_tuples():
    config = from_dict(Small, {"count": 1, "tags": ["x", "y"], "inners": [{"name": "a"}]}, "small")
    assert config.tags == ("x", "y") and isinstance(config.tags, tuple)
    assert isinstance(config.inners, tuple)
    sampling = from_dict(Sampling, {"stop": ["###"]}, "s")
    assert sampling.stop == ("###",)
    hash(sampling)  # frozen and hashable all the way down: a list would make this fail


def test_none_only_for_optional():
    assert from_dict(Small, {"count": 1, "limit": None}, "small").limit is None
    assert from_dict(LLMConfig, {"model": "m", "base_url": None}, "g").base_url is None
    with pytest.raises(ConfigError, match=r"^small\.label: expected str, got None"):
        from_dict(Small, {"count": 1, "label": None}, "small")
    with pytest.raises(ConfigError, match=r"^small\.count: expected an integer, got None"):
        from_dict(Small, {"count": None}, "small")
    with pytest.raises(ConfigError, match=r"^small\.tags: expected a list, got NoneType"):
        from_dict(Small, {"count": 1, "tags": None}, "small")
    with pytest.raises(ConfigError, match=r"^small\.limit: expected an integer, got 'x'"):
        from_dict(Small, {"count": 1, "limit": "x"}, "small")


def test_as_dict_round_trip():
    config = from_dict(Small, {"count": 2, "tags": ["a"], "inners": [{"name": "p"}]}, "small")
    plain = as_dict(config)
    assert plain["tags"] == ["a"]
    assert plain["inner"] == {"name": "default", "weight": 1.0}
    assert from_dict(Small, plain, "small") == config


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
def test_unknown_nested_key_names_the_full_dotted_key():
    data = {"generator": {"model": "m", "sampling": {"temprature": 0.5}}}
    with pytest.raises(ConfigError) as info:
        from_dict(Stage, data, "self_instruct")
    message = str(info.value)
    assert message.startswith("self_instruct.generator.sampling.temprature: unknown key")
    assert "temperature" in message  # the allowed keys are listed


def test_unknown_top_level_key():
    with pytest.raises(
        ConfigError, match=r"^self_instruct\.roundz: unknown key \(allowed: generator, rounds\)"
    ):
        from_dict(Stage, {"generator": {"model": "m"}, "roundz": 2}, "self_instruct")


def test_unknown_keys_of_mixed_types_are_still_a_config_error():
    # YAML 1.1 reads `on:` / `no:` as booleans; mixed with a string key, sorting them must not crash.
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(Small, {"count": 1, True: 1, "colour": 2}, "small")


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"count": "x"}, "small.count", "expected an integer, got 'x'"),
        ({"count": True}, "small.count", "expected an integer, got True"),
        ({"count": 1.5}, "small.count", "expected an integer, got 1.5"),
        ({"count": 1, "label": 1}, "small.label", "expected str, got 1"),
        ({"count": 1, "ratio": "0.5"}, "small.ratio", "expected a number, got '0.5'"),
        ({"count": 1, "ratio": False}, "small.ratio", "expected a number, got False"),
        ({"count": 1, "enabled": 1}, "small.enabled", "expected bool, got 1"),
        ({"count": 1, "enabled": "yes"}, "small.enabled", "expected bool, got 'yes'"),
        ({"count": 1, "tags": "abc"}, "small.tags", "expected a list, got str"),
        ({"count": 1, "tags": ["a", 2]}, "small.tags[1]", "expected str, got 2"),
        ({"count": 1, "inner": "n"}, "small.inner", "expected a mapping, got str"),
        ({"count": 1, "inner": {"name": "n", "weight": "w"}}, "small.inner.weight", "expected a number"),
        ({"count": 1, "inners": [{"name": "a"}, {"nme": "b"}]}, "small.inners[1].nme", "unknown key"),
        ({"count": 1, "prices": {"gpt": "1"}}, "small.prices.gpt", "expected a number, got '1'"),
        ({"count": 1, "prices": [1]}, "small.prices", "expected a mapping, got list"),
    ],
)
def test_wrong_types_name_the_key(data, key, expected):
    with pytest.raises(ConfigError) as info:
        from_dict(Small, data, "small")
    message = str(info.value)
    assert message.startswith(f"{key}: ")
    assert expected in message


def test_llm_config_wrong_types_name_the_key():
    with pytest.raises(ConfigError, match=r"^evolve\.generator\.batch_size: expected an integer, got '8'"):
        from_dict(Stage, {"generator": {"model": "m", "batch_size": "8"}}, "evolve")
    with pytest.raises(ConfigError, match=r"^g\.sampling\.max_tokens: expected an integer, got True"):
        from_dict(LLMConfig, {"model": "m", "sampling": {"max_tokens": True}}, "g")
    with pytest.raises(ConfigError, match=r"^g\.model: expected str, got 1"):
        from_dict(LLMConfig, {"model": 1}, "g")


def test_literal_values_are_checked():
    assert from_dict(Small, {"count": 1, "mode": "slow"}, "small").mode == "slow"
    with pytest.raises(ConfigError) as info:
        from_dict(Small, {"count": 1, "mode": "medium"}, "small")
    assert str(info.value) == "small.mode: 'medium' is not one of 'fast', 'slow'"
    with pytest.raises(
        ConfigError, match=r"^g\.backend: 'vllm-server' is not one of 'transformers', 'openai'"
    ):
        from_dict(LLMConfig, {"model": "m", "backend": "vllm-server"}, "g")
    with pytest.raises(ConfigError, match=r"^g\.dtype: 'bf16' is not one of"):
        from_dict(LLMConfig, {"model": "m", "dtype": "bf16"}, "g")


def test_post_init_errors_surface_as_config_error_naming_the_section():
    with pytest.raises(ConfigError) as info:
        from_dict(Stage, {"generator": {"model": "m", "sampling": {"temperature": -1}}}, "evolve")
    assert str(info.value) == "evolve.generator.sampling: sampling.temperature must be >= 0, got -1.0"
    assert isinstance(info.value.__cause__, ValueError)

    with pytest.raises(ConfigError, match=r"^small: count must be >= 0, got -1$"):
        from_dict(Small, {"count": -1}, "small")
    with pytest.raises(ConfigError, match=r"^g: api_key_env names an environment variable"):
        from_dict(LLMConfig, {"model": "gpt-4o", "backend": "openai", "api_key_env": "sk-abc"}, "g")


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"^small\.count: required key is missing$"):
        from_dict(Small, {"label": "x"}, "small")
    with pytest.raises(ConfigError, match=r"^self_instruct\.generator: required key is missing$"):
        from_dict(Stage, {"rounds": 2}, "self_instruct")
    with pytest.raises(ConfigError, match=r"^self_instruct\.generator\.model: required key is missing$"):
        from_dict(Stage, {"generator": {"backend": "openai"}}, "self_instruct")


def test_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"^small: expected a mapping, got NoneType"):
        from_dict(Small, None, "small")
    with pytest.raises(ConfigError, match=r"^small: expected a mapping, got list"):
        from_dict(Small, [1, 2], "small")


# ---------------------------------------------------------------------------------------------
# params files
# ---------------------------------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_section_reads_yaml(tmp_path):
    path = write(
        tmp_path,
        "small:\n  count: 2\n  tags: [a, b]\n  inner: {name: n}\n"
        "outer:\n  stage:\n    generator: {model: m, sampling: {seed: 9}}\n",
    )
    assert load_section(Small, "small", path) == Small(count=2, tags=("a", "b"), inner=Inner("n"))
    nested = load_section(Stage, "outer.stage", path)
    assert nested.generator.sampling.seed == 9
    with pytest.raises(ConfigError, match=r"^outer\.stage\.generator\.modle: unknown key"):
        load_section(Stage, "outer.stage", write(tmp_path, "outer:\n  stage:\n    generator: {modle: m}\n"))


def test_load_section_missing_section(tmp_path):
    path = write(tmp_path, "small:\n  count: 2\n")
    with pytest.raises(ConfigError, match=r"missing section 'large'"):
        load_section(Small, "large", path)
    with pytest.raises(ConfigError, match=r"missing section 'small\.count\.deeper'"):
        load_section(Small, "small.count.deeper", path)


def test_missing_params_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_section(Small, "small", missing)
    assert str(info.value) == f"{missing}: params file not found"
    with pytest.raises(ConfigError, match="params file not found"):
        read_params(missing)


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, "small:\n  count: [1, 2\n  label: x\n")
    with pytest.raises(ConfigError) as info:
        load_section(Small, "small", path)
    assert str(info.value).startswith(f"{path}: not valid YAML")


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping of sections"):
        read_params(write(tmp_path, "- a\n- b\n"))
    assert read_params(write(tmp_path, "")) == {}


# ---------------------------------------------------------------------------------------------
# the repository's params.yaml
# ---------------------------------------------------------------------------------------------
def stage_classes():
    from stages.curate import CurateConfig
    from stages.evolve import EvolveConfig
    from stages.models import ModelsConfig
    from stages.self_instruct import SelfInstructConfig

    return {
        "self_instruct": SelfInstructConfig,
        "evolve": EvolveConfig,
        "curate": CurateConfig,
        "models": ModelsConfig,
    }


@pytest.mark.parametrize("section", ["self_instruct", "evolve", "curate", "models"])
def test_repo_params_yaml_loads_for_every_stage(section):
    params = REPO_ROOT / "params.yaml"
    cls = stage_classes()[section]
    config = load_section(cls, section, params)
    assert isinstance(config, cls)
    assert_written_values_arrive(read_params(params)[section], as_dict(config), section)


def assert_written_values_arrive(raw, resolved, key: str) -> None:
    """Every value written in params.yaml reaches the config unchanged (tuples compare as lists)."""
    if isinstance(raw, dict):
        for sub, value in raw.items():
            assert_written_values_arrive(value, resolved[sub], f"{key}.{sub}")
    else:
        assert resolved == raw, key
