"""The ``assetbook`` command line: every command has --help, errors are one clear line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from assetbook.cli import EXIT_USAGE, build_parser, main


def all_commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    commands = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                commands.append((*prefix, name))
                commands.extend(all_commands(sub, (*prefix, name)))
    return commands


@pytest.mark.parametrize("command", all_commands(build_parser()), ids=" ".join)
def test_every_command_has_help(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out
    assert len(out.splitlines()) >= 3


def _subparser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize("command", all_commands(build_parser()), ids=" ".join)
def test_a_command_built_alone_is_the_command_in_the_whole_parser(
    command: tuple[str, ...],
) -> None:
    # main builds only the command it runs (memory): nothing may differ from the whole tree.
    alone = _subparser(build_parser(command[0]), command)
    assert alone.format_help() == _subparser(build_parser(), command).format_help()
    assert all_commands(alone) == all_commands(_subparser(build_parser(), command))


def test_a_word_that_is_no_command_gets_the_list_of_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["-v", "gatway", "run"])
    assert exited.value.code == EXIT_USAGE
    assert "invalid choice: 'gatway'" in capsys.readouterr().err
    assert build_parser("gatway").format_help() == build_parser().format_help()


def test_a_missing_home_is_one_line_that_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["core", "run", "--home", str(missing)]) == EXIT_USAGE
    assert main(["tenant", "create", "acme", "--home", str(missing)]) == EXIT_USAGE
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2
    assert all(line.startswith("error: ") and "assetbook core init" in line for line in errors)


def test_init_refuses_to_overwrite_a_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "core")
    assert main(["core", "init", "--home", home, "--link-port", "1", "--rest-port", "2"]) == 0
    assert main(["core", "init", "--home", home]) == EXIT_USAGE
    assert "--force" in capsys.readouterr().err


def test_tokens_are_not_taken_as_arguments() -> None:
    events = build_parser().parse_args(["events"])
    assert not any("token" in name and name != "token_file" for name in vars(events))


def test_unknown_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["tenant", "list", "--frobnicate"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err
