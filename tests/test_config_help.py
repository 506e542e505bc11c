"""The config's keys explain themselves: each has its help on its field, each choice is a
`Literal` that validate() enforces, and `ncalab run --explain` prints both."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from ncalab.cli.main import main
from ncalab.config import ExperimentConfig, apply_overrides, flatten
from ncalab.config.keys import help_of, nest
from ncalab.errors import NcalabError


def _keys() -> list[str]:
    """Every key of the default config, the engine's NCA settings included."""
    return list(flatten(ExperimentConfig().to_dict()))


def _choices(cfg, prefix: str = ""):
    """(dotted key, Literal values, whether the key is a list of them) of every choice setting."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from _choices(value, f"{prefix}{f.name}.")
            continue
        hint = typing.get_type_hints(type(cfg)).get(f.name)
        is_list = typing.get_origin(hint) is list
        inner = typing.get_args(hint)[0] if is_list else hint
        if typing.get_origin(inner) is typing.Literal:
            yield f"{prefix}{f.name}", typing.get_args(inner), is_list


def test_every_key_has_its_help_on_its_field():
    missing = [k for k in _keys() if not help_of(ExperimentConfig(), k)]
    assert not missing, f"keys without help (sections.option): {missing}"


def test_every_choice_is_a_literal_that_validate_enforces():
    choices = list(_choices(ExperimentConfig()))
    assert {k for k, _, _ in choices} >= {"stage1.schedule", "stage2.schedule", "transfer.control", "runtime.dtype",
                                         "eval.bbl.mode", "transfer.reinit", "runtime.track"}
    for key, values, is_list in choices:
        default = ExperimentConfig()
        shown = flatten(default.to_dict())[key]
        assert all(v in values for v in shown) if is_list else shown in values, key
        cfg = apply_overrides(ExperimentConfig(), nest(key, ["bogus"] if is_list else "bogus"))
        with pytest.raises(NcalabError, match="bogus"):
            cfg.validate()


def test_explain_prints_the_keys_of_print_config_with_their_help(tmp_path, capsys):
    home = ["--home", str(tmp_path)]
    assert main(["run", "--print-config", *home]) == 0
    printed = flatten(json.loads(capsys.readouterr().out))
    assert main(["run", "--explain", *home]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" = ", 1)[0].rstrip() for line in lines] == list(printed)
    cfg = ExperimentConfig()
    for line, (key, value) in zip(lines, printed.items()):
        text, _, note = line.split(" = ", 1)[1].partition("  # ")
        assert json.loads(text) == value, key
        assert note == help_of(cfg, key), key
