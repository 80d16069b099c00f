"""TrainConfig: every setting is checked once, and is one name with one default everywhere."""

import ast
import json
from dataclasses import MISSING, fields

import pytest

from facegan.__main__ import build_parser
from facegan.config import PARAMETER_ALIASES, TrainConfig, config_from_parameters
from facegan.errors import ConfigError
from facegan.report import NOTEBOOK

# The report's own recipe, where it departs from TrainConfig's defaults: a smaller network, in
# its own run folder, measured as it trains. Every other notebook parameter is the field's
# default.
REPORT_CHOICES = {
    "conv_dim": 32,
    "out": "runs/notebook",
    "eval_every": 2,
}


def notebook_parameters() -> dict[str, object]:
    """The notebook's parameters cell, NAME = value, as Python values."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
    }


def train_flags() -> dict[str, object]:
    """The train command's flags (by their dest names) and their defaults."""
    defaults = vars(build_parser().parse_args(["train"]))
    del defaults["command"]
    return defaults


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 48}, "power of two"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": -1}, "epochs"),
        ({"device": "tpu"}, "device 'tpu' is unknown"),
        ({"precision": "fp8"}, "precision 'fp8' is unknown"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"n_images": 0}, "n_images"),
        ({"checkpoint_every": -1}, "checkpoint_every must be 0"),
    ],
)
def test_bad_settings_are_refused_before_any_work(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes).validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels_last": "yes"}, "channels_last 'yes' is unknown"),
        ({"threads": -1}, "threads must be 0 \\(auto\\) or a positive number"),
        ({"threads": True}, "threads must be 0"),
        ({"compile": True, "loss": "wgan-gp", "d_norm": "none"}, "does not differentiate twice"),
    ],
)
def test_bad_speed_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes).validate()


def test_recipe_settings_that_cannot_work_together_are_refused():
    with pytest.raises(ConfigError, match="label smoothing needs"):
        TrainConfig(loss="hinge", smooth=True).validate()
    with pytest.raises(ConfigError, match="BatchNorm in D mixes"):
        TrainConfig(loss="wgan-gp").validate()
    with pytest.raises(ConfigError, match="ema must be a decay"):
        TrainConfig(ema=1.0).validate()
    with pytest.raises(ConfigError, match="d_norm 'layer' is unknown"):
        TrainConfig(d_norm="layer").validate()


def test_the_defaults_are_a_valid_config():
    TrainConfig().validate()


def test_every_setting_has_help_and_its_choices_include_its_default():
    for setting in fields(TrainConfig):
        assert setting.metadata["help"], setting.name
        assert setting.default is not MISSING, setting.name
        if "choices" in setting.metadata:
            assert setting.default in setting.metadata["choices"], setting.name


def test_every_setting_is_a_train_flag_with_the_same_default():
    flags = train_flags()
    for setting in fields(TrainConfig):
        assert setting.name in flags, f"--{setting.name.replace('_', '-')} is missing"
        assert flags[setting.name] == setting.default, setting.name
    assert set(flags) - {s.name for s in fields(TrainConfig)} == {
        "resume",
        "allow_changes",
        "no_progress",
    }


def test_every_setting_is_a_notebook_parameter_with_the_same_default():
    parameters = notebook_parameters()
    names = {setting.name.upper() for setting in fields(TrainConfig)}
    assert set(parameters) == names, set(parameters) ^ names
    for setting in fields(TrainConfig):
        expected = REPORT_CHOICES.get(setting.name, setting.default)
        value = parameters[setting.name.upper()]
        assert value == expected and type(value) is type(expected), setting.name
    assert config_from_parameters(parameters) == TrainConfig(**REPORT_CHOICES)


def test_parameters_map_to_fields_by_upper_case_name_and_others_are_ignored():
    config = config_from_parameters({"EPOCHS": 3, "LOSS": "hinge", "time": 1, "helpers": None})
    assert config == TrainConfig(epochs=3, loss="hinge")
    with pytest.raises(ConfigError, match="loss 'wgan' is unknown"):
        config_from_parameters({"LOSS": "wgan"})


def test_parameter_aliases_name_current_parameters():
    names = {setting.name.upper() for setting in fields(TrainConfig)}
    assert set(PARAMETER_ALIASES.values()) <= names
    assert not set(PARAMETER_ALIASES) & names
