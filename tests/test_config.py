"""jalign.config: params.yaml sections -> frozen dataclasses, with errors that name the dotted key."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from helpers import llm_config, sampling

from commands.params import SECTIONS, TOP_LEVEL, validate
from jalign.config import ConfigError, as_dict, from_dict, from_value, load_section, param, read_params
from jalign.llm.types import ENGINES, EngineSettings, LLMConfig, LLMRole, Sampling, llm_entry

REPO_ROOT = Path(__file__).resolve().parents[1]


# One `llms` entry, the transformers model of helpers.llm_config(), named "m".
ENGINE: dict[str, Any] = {
    "backend": "transformers",
    "model": "test-model",
    "prompt_format": "chat",
    "terms": "apache-2.0",
    "dtype": "bfloat16",
    "device": "auto",
    "batch_size": 8,
}


def llm_data(**overrides: Any) -> dict[str, Any]:
    """A complete LLM role as params.yaml writes it (lists, not tuples), with `overrides` replaced."""
    return {"llm": "m", "sampling": sampling_data()} | overrides


def engine_data(**overrides: Any) -> dict[str, Any]:
    return ENGINE | overrides


# A remote entry (the OpenAI API).
REMOTE: dict[str, Any] = {
    "backend": "openai",
    "model": "gpt-4o",
    "prompt_format": "chat",
    "terms": "openai-terms",
    "api_key_env": "OPENAI_API_KEY",
    "max_concurrency": 8,
    "timeout_s": 60.0,
    "max_retries": 3,
    "retry_base_delay_s": 1.0,
}


def llms(**entries: Any) -> dict[str, Any]:
    """params with an `llms` section: "m" (ENGINE) plus `entries`."""
    return {"llms": {"m": ENGINE, **entries}}


def resolved(**overrides: Any) -> LLMConfig:
    """What llm_data() resolves to against llms(): ENGINE's fields, neutral values for the rest."""
    neutral = {"api_key_env": "", "max_concurrency": 1, "timeout_s": 120.0, "max_retries": 0}
    return llm_config(**(neutral | {"retry_base_delay_s": 0.0, "name": "m"} | overrides))


def sampling_data(**overrides: Any) -> dict[str, Any]:
    return as_dict(sampling()) | overrides


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
class Either:
    value: int | str


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
        "generator": llm_data(
            batch_size=2,
            sampling=sampling_data(temperature=0.8, max_tokens=160, seed=1, stop=["\nタスク", "\n\n\n"]),
        ),
        "rounds": 3,
    }
    params = llms(m=ENGINE | {"model": "models/base/gemma-3-270m", "prompt_format": "raw"})
    config = from_dict(Stage, data, "self_instruct", params)
    assert config == Stage(
        generator=resolved(
            model="models/base/gemma-3-270m",
            prompt_format="raw",
            batch_size=2,
            sampling=sampling(temperature=0.8, max_tokens=160, seed=1, stop=("\nタスク", "\n\n\n")),
        ),
        rounds=3,
    )
    assert isinstance(config.generator.sampling, Sampling)
    assert config.generator.adapter is None  # a field whose default is None may be left out
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rounds = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.generator.sampling.seed = 2  # type: ignore[misc]


def test_config_fields_have_no_defaults_but_none():
    """What changes behaviour comes from params.yaml: a role without sampling is an error, not a
    silent default, and `param` refuses any default other than None."""
    data = llm_data()
    del data["sampling"]
    with pytest.raises(ConfigError, match=r"^self_instruct\.generator\.sampling: required key is missing$"):
        from_dict(Stage, {"generator": data}, "self_instruct", llms())
    sampled = {k: v for k, v in sampling_data().items() if k != "seed"}
    assert sampled["temperature"] > 0
    with pytest.raises(ConfigError, match=r"^s: seed: required when temperature > 0"):
        from_dict(Sampling, sampled, "s")
    # the neutral sampling values may be left out (a greedy role's seed too): the same Sampling, and so
    # the same cache key, as writing them
    greedy = {"temperature": 0.0, "max_tokens": 1}
    assert from_dict(Sampling, greedy, "s") == Sampling(
        **greedy, seed=0, top_p=1.0, stop=(), repetition_penalty=1.0
    )
    with pytest.raises(TypeError, match="param default must be None"):
        param("a help text", default=0.5)
    with pytest.raises(TypeError, match="missing"):
        Sampling()  # type: ignore[call-arg]
    for cls in (Sampling, LLMConfig, LLMRole, *ENGINES):
        for f in dataclasses.fields(cls):
            assert f.default in (dataclasses.MISSING, None), f.name
            assert f.default_factory is dataclasses.MISSING, f.name
            assert f.metadata["help"], f.name
    # a plain dataclass's own defaults still fill what a mapping leaves out
    assert from_dict(Stage, {"generator": llm_data()}, "s", llms()).rounds == 1
    assert from_dict(Small, {"count": 1}, "small").inner == Inner("default")


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
    converted = from_dict(Sampling, sampling_data(stop=["###"]), "s")
    assert converted.stop == ("###",)
    hash(converted)  # frozen and hashable all the way down: a list would make this fail
    hash(from_dict(Stage, {"generator": llm_data(sampling=sampling_data(stop=["a", "b"]))}, "s", llms()))


def test_none_only_for_optional():
    assert from_dict(Small, {"count": 1, "limit": None}, "small").limit is None
    assert from_value(EngineSettings, engine_data(adapter=None), "g").adapter is None
    with pytest.raises(ConfigError, match=r"^g\.model: expected str, got None"):
        from_value(EngineSettings, engine_data(model=None), "g")
    with pytest.raises(ConfigError, match=r"^s\.generator\.sampling\.top_p: expected a number, got None"):
        from_dict(Stage, {"generator": llm_data(sampling=sampling_data(top_p=None))}, "s", llms())
    with pytest.raises(ConfigError, match=r"^u\.value: null is not allowed here$"):
        from_dict(Either, {"value": None}, "u")
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
    data = {"generator": llm_data(sampling=sampling_data(temprature=0.5))}
    with pytest.raises(ConfigError) as info:
        from_dict(Stage, data, "self_instruct", llms())
    message = str(info.value)
    assert message.startswith("self_instruct.generator.sampling.temprature: unknown key")
    assert "temperature" in message  # the allowed keys are listed


def test_unknown_top_level_key():
    with pytest.raises(
        ConfigError, match=r"^self_instruct\.roundz: unknown key \(allowed: generator, rounds\)"
    ):
        from_dict(Stage, {"generator": llm_data(), "roundz": 2}, "self_instruct", llms())


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
        from_dict(Stage, {"generator": llm_data(batch_size="8")}, "evolve", llms())
    with pytest.raises(ConfigError, match=r"^g\.sampling\.max_tokens: expected an integer, got True"):
        from_dict(LLMRole, llm_data(sampling=sampling_data(max_tokens=True)), "g")
    with pytest.raises(ConfigError, match=r"^g\.model: expected str, got 1"):
        from_value(EngineSettings, engine_data(model=1), "g")


def test_literal_values_are_checked():
    assert from_dict(Small, {"count": 1, "mode": "slow"}, "small").mode == "slow"
    with pytest.raises(ConfigError) as info:
        from_dict(Small, {"count": 1, "mode": "medium"}, "small")
    assert str(info.value) == "small.mode: 'medium' is not one of 'fast', 'slow'"
    with pytest.raises(ConfigError) as info:
        from_value(EngineSettings, engine_data(backend="vllm-server"), "g")
    assert (
        str(info.value)
        == "g.backend: 'vllm-server' is not one of: transformers, vllm, openai, openai_batch, ray"
    )
    with pytest.raises(ConfigError, match=r"^g\.dtype: 'bf16' is not one of"):
        from_value(EngineSettings, engine_data(dtype="bf16"), "g")


@pytest.mark.parametrize(
    ("sampling_field", "value", "expected"),
    [
        ("temperature", -1, "-1.0 is out of range (allowed: >= 0)"),
        ("top_p", 0, "0.0 is out of range (allowed: > 0, <= 1)"),
        ("top_p", 1.5, "1.5 is out of range (allowed: > 0, <= 1)"),
        ("max_tokens", 0, "0 is out of range (allowed: >= 1)"),
        ("seed", -3, "-3 is out of range (allowed: >= 0)"),
        ("repetition_penalty", 0.0, "0.0 is out of range (allowed: > 0)"),
        ("temperature", math.nan, "nan is not a finite number"),
        ("temperature", math.inf, "inf is not a finite number"),
        ("top_p", -math.inf, "-inf is not a finite number"),
    ],
)
def test_ranges_and_non_finite_numbers_name_the_key(sampling_field, value, expected):
    data = {"generator": llm_data(sampling=sampling_data(**{sampling_field: value}))}
    with pytest.raises(ConfigError) as info:
        from_dict(Stage, data, "evolve", llms())
    assert str(info.value) == f"evolve.generator.sampling.{sampling_field}: {expected}"


def test_ranges_apply_to_every_number_of_a_tuple_and_the_bounds_themselves_pass():
    @dataclass(frozen=True)
    class Ranged:
        weights: tuple[float, ...] = param("weights", ge=0, lt=1)

    assert from_dict(Ranged, {"weights": [0, 0.5, 0.999]}, "r").weights == (0.0, 0.5, 0.999)
    with pytest.raises(ConfigError, match=r"^r\.weights: 1\.0 is out of range \(allowed: >= 0, < 1\)$"):
        from_dict(Ranged, {"weights": [0.5, 1]}, "r")
    with pytest.raises(ConfigError, match=r"^r\.weights\[1\]: nan is not a finite number$"):
        from_dict(Ranged, {"weights": [0.5, math.nan]}, "r")
    edge = from_dict(Sampling, sampling_data(temperature=0, top_p=1, max_tokens=1), "s")
    assert (edge.temperature, edge.top_p, edge.max_tokens) == (0.0, 1.0, 1)


def test_post_init_errors_surface_as_config_error_naming_the_section():
    with pytest.raises(ConfigError, match=r"^small: count must be >= 0, got -1$") as info:
        from_dict(Small, {"count": -1}, "small")
    assert isinstance(info.value.__cause__, ValueError)
    openai = {**REMOTE, "api_key_env": "sk-abc"}
    with pytest.raises(ConfigError, match=r"^g: api_key_env names an environment variable"):
        from_value(EngineSettings, openai, "g")


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"^small\.count: required key is missing$"):
        from_dict(Small, {"label": "x"}, "small")
    with pytest.raises(ConfigError, match=r"^self_instruct\.generator: required key is missing$"):
        from_dict(Stage, {"rounds": 2}, "self_instruct", llms())
    with pytest.raises(ConfigError, match=r"^self_instruct\.generator\.llm: required key is missing$"):
        from_dict(Stage, {"generator": {"sampling": sampling_data()}}, "self_instruct", llms())
    with pytest.raises(ConfigError, match=r"^llms\.m\.model: required key is missing$"):
        from_dict(
            Stage,
            {"generator": llm_data()},
            "s",
            {"llms": {"m": {k: v for k, v in ENGINE.items() if k != "model"}}},
        )


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
    generator = llm_data(sampling=sampling_data(seed=9))
    path = write(
        tmp_path,
        "small:\n  count: 2\n  tags: [a, b]\n  inner: {name: n}\n"
        + yaml.safe_dump({**llms(), "outer": {"stage": {"generator": generator}}}, allow_unicode=True),
    )
    assert load_section(Small, "small", path) == Small(count=2, tags=("a", "b"), inner=Inner("n"))
    nested = load_section(Stage, "outer.stage", path)
    assert nested.generator.sampling.seed == 9
    assert nested.generator == resolved(sampling=sampling(seed=9))  # resolved against the file's llms
    typo = {**llms(), "outer": {"stage": {"generator": generator | {"modle": "m"}}}}
    with pytest.raises(ConfigError, match=r"^outer\.stage\.generator\.modle: unknown key"):
        load_section(Stage, "outer.stage", write(tmp_path, yaml.safe_dump(typo)))


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
    assert str(info.value) == f"{missing}: file not found"
    with pytest.raises(ConfigError, match="file not found"):
        read_params(missing)


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, "small:\n  count: [1, 2\n  label: x\n")
    with pytest.raises(ConfigError) as info:
        load_section(Small, "small", path)
    assert str(info.value) == f"{path}:3: expected ',' or ']', but got ':'"  # file and line


def test_duplicate_yaml_keys_are_rejected_naming_the_key_and_both_lines(tmp_path):
    # YAML itself keeps the last of two equal keys: `beta` would silently be 0.5
    path = write(tmp_path, "small:\n  count: 1\n  label: a\n  count: 2\n")
    with pytest.raises(ConfigError) as info:
        load_section(Small, "small", path)
    assert str(info.value) == f"{path}:4: small.count: duplicate key (first at line 2)"
    nested = write(tmp_path, "top:\n  inner:\n    name: a\n    name: b\n")
    with pytest.raises(ConfigError, match=r":4: top\.inner\.name: duplicate key \(first at line 3\)$"):
        read_params(nested)
    other = write(tmp_path, "small:\n  count: 1\nsmall:\n  count: 2\n")
    with pytest.raises(ConfigError, match=r":3: small: duplicate key \(first at line 1\)$"):
        read_params(other)
    # the same key in different mappings is fine
    assert read_params(write(tmp_path, "a:\n  count: 1\nb:\n  count: 2\n")) == {
        "a": {"count": 1},
        "b": {"count": 2},
    }


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping of sections"):
        read_params(write(tmp_path, "- a\n- b\n"))
    assert read_params(write(tmp_path, "")) == {}


# ---------------------------------------------------------------------------------------------
# the repository's params.yaml
# ---------------------------------------------------------------------------------------------
PARAMS = REPO_ROOT / "params.yaml"


def section_entries(params: dict[str, Any], name: str) -> list[tuple[str, Any]]:
    """(dotted key, raw mapping) of a SECTIONS name: one for a section, one per entry for `x.y.*`."""
    head, *rest = name.split(".")
    if not rest:
        return [(head, params[head])]
    return [(f"{head}.{rest[0]}.{k}", v) for k, v in params[head][rest[0]].items()]


def test_repo_params_yaml_is_valid_as_a_whole():
    params = read_params(PARAMS)
    validate(params)  # every section of SECTIONS and every llms entry; no unknown section
    assert set(params) == TOP_LEVEL  # every section of params.yaml has a schema, and no schema lacks one


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_repo_params_yaml_loads_for_every_section(name):
    params = read_params(PARAMS)
    cls = SECTIONS[name]
    entries = section_entries(params, name)
    assert entries
    for key, raw in entries:
        config = from_dict(cls, raw, key, params)
        assert isinstance(config, cls)
        assert_written_values_arrive(raw, as_dict(config), key, params)
    if "." not in name:  # the stages read it with load_section
        assert load_section(cls, name, PARAMS) == from_dict(cls, params[name], name, params)


def test_repo_llms_load():
    params = read_params(PARAMS)
    assert {"gemma-raw", "gemma-chat", "gpt-4o-mini"} <= set(params["llms"])
    for name, raw in params["llms"].items():
        merged = params["llms"][raw["base"]] | raw if "base" in raw else raw  # one level in the repo's file
        merged = params["llms"][merged["base"]] | merged if "base" in merged else merged
        merged = {k: v for k, v in merged.items() if k != "base"}
        assert_written_values_arrive(merged, as_dict(llm_entry(params["llms"], name)), name)


def assert_written_values_arrive(raw, resolved, key: str, params: dict[str, Any] | None = None) -> None:
    """Every value written in params.yaml reaches the config unchanged (tuples compare as lists); a
    role's values and its `llms` entry's both reach its resolved LLMConfig."""
    if isinstance(raw, dict) and isinstance(raw.get("llm"), str) and params is not None:
        assert resolved["name"] == raw["llm"], key
        engine = as_dict(llm_entry(params["llms"], raw["llm"]))
        knobs = {k: v for k, v in raw.items() if k != "llm" and (k == "sampling" or k in engine)}
        raw = {**engine, **knobs}
    if isinstance(raw, dict):
        for sub, value in raw.items():
            assert_written_values_arrive(value, resolved[sub], f"{key}.{sub}", params)
    elif isinstance(raw, list) and any(isinstance(v, dict) for v in raw):
        assert len(resolved) == len(raw), key
        for i, value in enumerate(raw):
            assert_written_values_arrive(value, resolved[i], f"{key}[{i}]", params)
    else:
        assert resolved == raw, key


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b[0].c` in nested params (creating the last key)."""
    node: Any = params
    parts = dotted.replace("[", ".[").split(".")
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    node[int(last[1:-1]) if last.startswith("[") else last] = value


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        pytest.param("dpo.betta", 0.1, "dpo.betta: unknown key (allowed: ", id="unknown-key"),
        pytest.param(
            "judge.judge.sampling.temprature",
            0.0,
            "judge.judge.sampling.temprature: unknown key",
            id="unknown-nested",
        ),
        pytest.param(
            "classifier.encoders.e5-small.lr",
            1e-5,
            "classifier.encoders.e5-small.lr: unknown key",
            id="unknown-entry",
        ),
        pytest.param(
            "judge.judge.batch_size",
            "8",
            "judge.judge.batch_size: expected an integer, got '8'",
            id="wrong-type",
        ),
        pytest.param("sft.enabled", "yes", "sft.enabled: expected bool, got 'yes'", id="wrong-type-bool"),
        pytest.param(
            "hub.allowed_licenses", "mit", "hub.allowed_licenses: expected a list, got str", id="not-a-list"
        ),
        pytest.param("dpo.beta", math.nan, "dpo.beta: nan is not a finite number", id="nan"),
        pytest.param(
            "respond.responders[1].llm.sampling.temperature",
            math.inf,
            "respond.responders[1].llm.sampling.temperature: inf is not a finite number",
            id="inf-in-a-list-entry",
        ),
        pytest.param(
            "llms.gpt-4o-mini.price.output",
            math.nan,
            "llms.gpt-4o-mini.price.output: nan is not a finite number",
            id="nan-price",
        ),
        pytest.param(
            "self_instruct.generator.sampling.top_p",
            1.5,
            "self_instruct.generator.sampling.top_p: 1.5 is out of range (allowed: > 0, <= 1)",
            id="out-of-range",
        ),
        pytest.param(
            "score.tie_margin",
            1.0,
            "score.tie_margin: 1.0 is out of range (allowed: >= 0, < 1)",
            id="range-end",
        ),
        pytest.param(
            "llms.gpt-4o-mini.price.input",
            -0.15,
            "llms.gpt-4o-mini.price.input: -0.15 is out of range (allowed: >= 0)",
            id="negative-price",
        ),
        pytest.param(
            "llms.gemma-raw.model", None, "llms.gemma-raw.model: expected str, got None", id="null-str"
        ),
        pytest.param(
            "evaluate.judge.llm",
            "gpt-4o",
            "evaluate.judge.llm: 'gpt-4o' is not defined in llms (defined: gemma-chat, gemma-dpo, gemma-raw, "
            "gpt-4o-mini)",
            id="undefined-llm",
        ),
        pytest.param(
            "llms.gemma-raw.vllm",
            {},
            "llms.gemma-raw.vllm: unknown key for backend 'transformers' (allowed: adapter, backend,",
            id="field-of-another-backend",
        ),
        pytest.param(
            "llms.gpt-4o-mini.backend",
            "azure",
            "llms.gpt-4o-mini.backend: 'azure' is not one of: transformers, vllm, openai, openai_batch, ray",
            id="unknown-backend",
        ),
        pytest.param("dpo.beta", None, "dpo.beta: expected a number, got None", id="null-number"),
        pytest.param(
            "llms.gemma-chat.base",
            "gemma",
            "llms.gemma-chat.base: 'gemma' is not defined in llms (defined: gemma-chat, gemma-dpo, gemma-raw, "
            "gpt-4o-mini)",
            id="undefined-base",
        ),
        pytest.param(
            "llms.gemma-raw",
            {"base": "gemma-dpo"},
            "llms.gemma-raw.base: gemma-raw -> gemma-dpo -> gemma-chat -> gemma-raw is a cycle",
            id="base-cycle",
        ),
        pytest.param(
            "llms.gemma-dpo.vllm",
            {},
            "llms.gemma-dpo.vllm: unknown key for backend 'transformers'",
            id="base-then-field-of-another-backend",
        ),
        pytest.param(
            "limits.max_failure_rate",
            1.5,
            "limits.max_failure_rate: 1.5 is out of range (allowed: >= 0, <= 1)",
            id="shared-limit-range",
        ),
        pytest.param(
            "judge.max_failure_rate",
            -0.1,
            "judge.max_failure_rate: -0.1 is out of range (allowed: >= 0, <= 1)",
            id="stage-limit-range",
        ),
        pytest.param(
            "verify.policy.sampling",
            {"temperature": 1.0, "max_tokens": 8},
            "verify.policy.sampling: seed: required when temperature > 0",
            id="sampled-role-without-seed",
        ),
        pytest.param(
            "curate.tagger.sampling",
            None,
            "curate.tagger.sampling: expected a mapping, got NoneType",
            id="null-section",
        ),
    ],
)
def test_params_checks_name_the_dotted_key(dotted, value, expected):
    params = copy.deepcopy(read_params(PARAMS))
    set_key(params, dotted, value)
    with pytest.raises(ConfigError) as info:
        validate(params)
    assert str(info.value).startswith(expected)


def test_params_sections_unknown_or_missing(tmp_path):
    params = copy.deepcopy(read_params(PARAMS))
    with pytest.raises(ConfigError, match=r"unknown section 'dop'"):
        validate(params | {"dop": {}})
    del params["judge"]
    with pytest.raises(ConfigError, match=r"missing section 'judge'"):
        validate(params)


def test_duplicate_key_in_the_repo_params_yaml_names_line_and_dotted_key(tmp_path):
    text = PARAMS.read_text(encoding="utf-8")
    assert text.count("\ndpo:\n  model:") == 1
    duplicated = text.replace("\ndpo:\n  model:", "\ndpo:\n  beta: 0.5\n  model:")
    path = write(tmp_path, duplicated)
    line = duplicated[: duplicated.index("\ndpo:\n")].count("\n") + 3  # `beta: 0.5` is the 2nd line
    first = next(i for i, t in enumerate(duplicated.splitlines(), 1) if i > line and t.startswith("  beta: "))
    with pytest.raises(ConfigError) as info:
        read_params(path)
    assert str(info.value) == f"{path}:{first}: dpo.beta: duplicate key (first at line {line})"


def test_a_stage_takes_limits_unless_its_section_sets_its_own():
    """`limits` holds what every LLM stage may lose and spend; a stage section's own key wins (karasu
    sets tighter failure rates and per-stage budgets)."""
    from jalign.params import JudgeConfig, LimitsConfig

    params = copy.deepcopy(read_params(PARAMS))
    assert "max_failure_rate" not in params["judge"] and "budget_usd" not in params["judge"]
    shared = from_dict(LimitsConfig, params["limits"], "limits")
    judge = from_dict(JudgeConfig, params["judge"], "judge", params)
    assert (judge.max_failure_rate, judge.budget_usd) == (shared.max_failure_rate, shared.budget_usd)
    params["judge"] |= {"max_failure_rate": 0.02, "budget_usd": None}  # null: no cap for this stage
    judge = from_dict(JudgeConfig, params["judge"], "judge", params)
    assert (judge.max_failure_rate, judge.budget_usd) == (0.02, None)
    del params["limits"]["budget_usd"], params["judge"]["budget_usd"]
    with pytest.raises(
        ConfigError, match=r"^judge\.budget_usd: required key is missing \(or set limits\.budget_usd\)$"
    ):
        from_dict(JudgeConfig, params["judge"], "judge", params)


def test_an_llms_entry_with_a_base_is_its_base_plus_what_it_writes():
    params = read_params(PARAMS)
    raw, chat, dpo = (llm_entry(params["llms"], n) for n in ("gemma-raw", "gemma-chat", "gemma-dpo"))
    assert chat == dataclasses.replace(raw, prompt_format="chat")
    assert dpo == dataclasses.replace(chat, adapter="models/dpo/adapter")  # baseline + adapter, nothing else
