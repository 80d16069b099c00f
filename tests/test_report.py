"""The report command: parameters from the command line reach the notebook as Python values."""

import papermill
import pytest

from facegan.report import make_report, parse_value


class Captured(Exception):
    """Stops make_report once papermill has been given the parameters."""


def test_parameters_from_the_command_line_become_python_values():
    assert parse_value("5") == 5 and parse_value("None") is None and parse_value("cpu") == "cpu"


def test_a_parameters_earlier_name_reaches_the_parameter(tmp_path, monkeypatch):
    given = {}

    def execute_notebook(source, target, parameters, **_kwargs):
        given.update(parameters)
        raise Captured

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    with pytest.raises(Captured):
        make_report({"RUN_DIR": "runs/x", "DATASET": "celeba", "EPOCHS": "2"}, tmp_path)
    assert given == {"OUT": "runs/x", "DATA": "celeba", "EPOCHS": 2}
