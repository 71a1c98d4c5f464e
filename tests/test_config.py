from dataclasses import dataclass, field
from typing import Literal

import pytest

from lmforge.config import dump_yaml, load_config
from lmforge.errors import ConfigError


@dataclass
class Model:
    n_layer: int = 2
    dropout: float = 0.0
    flavour: Literal["gpt2", "llama"] = "gpt2"


@dataclass
class Stage:
    model: Model = field(default_factory=Model)
    lr: float = 3e-4
    name: str = "run"
    tags: list[str] = field(default_factory=list)
    warmup: int | None = None
    compile: bool = False


def test_defaults_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 1e-3\nmodel:\n  n_layer: 6\n")
    cfg = load_config(Stage, recipe, ["model.n_layer=4", "compile=true", "tags=[a, b]", "warmup=null"])
    assert cfg.model.n_layer == 4  # the command line wins over the recipe
    assert cfg.lr == pytest.approx(1e-3)  # YAML 1.1 reads 1e-3 as a string; still a float here
    assert cfg.compile is True and cfg.tags == ["a", "b"] and cfg.warmup is None
    assert cfg.model.dropout == 0.0  # untouched defaults stay


def test_unknown_override_names_the_closest_key():
    with pytest.raises(ConfigError) as e:
        load_config(Stage, None, ["model.n_layr=4"])
    assert "unknown config key 'model.n_layr'" in str(e.value)
    assert "did you mean 'model.n_layer'" in str(e.value)


def test_unknown_recipe_key_names_file_line_and_closest(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.1\nmodel:\n  dropuot: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(Stage, recipe)
    msg = str(e.value)
    assert msg.startswith(f"{recipe}:3: ")
    assert "model.dropuot" in msg and "did you mean 'model.dropout'" in msg


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(Stage, None, ["model.n_layer=four"])
    assert e.value.field == "model.n_layer" and "integer" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(Stage, None, ["model.flavour=bert"])
    assert "'gpt2', 'llama'" in str(e.value)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Stage, None, ["model.n_layer"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(Stage, None, ["lr.x=1"])


def test_invalid_yaml_names_the_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("lr: 0.1\nmodel: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_config(Stage, recipe)
    assert e.value.path == str(recipe) and e.value.line is not None


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(Stage, None, ["model.n_layer=3", "tags=[x]"])
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_yaml(cfg))
    assert load_config(Stage, saved) == cfg


@dataclass
class TwoModels:
    small: Model = field(default_factory=Model)
    large: Model = field(default_factory=lambda: Model(n_layer=12, flavour="llama"))


def test_a_key_inside_a_section_keeps_the_sections_other_defaults(tmp_path):
    cfg = load_config(TwoModels, None, ["large.dropout=0.1"])
    assert cfg.large == Model(n_layer=12, dropout=0.1, flavour="llama")  # not Model()'s n_layer=2, gpt2
    assert cfg.small == Model()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("large:\n  n_layer: 24\n")
    assert load_config(TwoModels, recipe).large == Model(n_layer=24, flavour="llama")
