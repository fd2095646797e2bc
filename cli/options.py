"""The options several commands share, and options typed before a subcommand."""

from __future__ import annotations

import logging
from typing import Any

import click
from click.core import ParameterSource

from cli.configs import UserError
from stacks.register import available_recipes


def common_options(func: Any) -> Any:
    options = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            help="Pipeline config YAML (default: configs/<pipeline>.yaml).",
        ),
        click.option("--no-cache", is_flag=True, help="Run every step even if cached."),
        click.option("-v", "--verbose", is_flag=True, help="Show debug logging."),
        click.option(
            "--stack",
            type=click.Choice(available_recipes()),
            help="Run on this stack (stacks/<name>.yaml) with its config overlay "
            "(configs/<name>/); default: the active ZenML stack. See docs/kubeflow.md.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def train_options(func: Any) -> Any:
    options = [
        click.option(
            "--data",
            help="Interactions: ml-100k, ml-1m, ml-20m, ml-latest-small "
            "(downloaded and cached), a local MovieLens folder, or a CSV/TSV/Parquet "
            "file. Overrides data.source in the config.",
        ),
        click.option(
            "--test-data",
            help="A test file in the same layout as --data: train on "
            "--data, evaluate on this (sets split.method to file).",
        ),
        click.option(
            "--topk-output",
            help="After training, write every user's top-k to this "
            "CSV or Parquet file (user_id,item_id,score,rank).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


ROOT_OPTIONS = "walsrec.root_options"


def typed_options(ctx: click.Context) -> dict[str, Any]:
    """The options of `ctx`'s command that were typed (not left at their defaults)."""
    return {
        name: value
        for name, value in ctx.params.items()
        if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
    }


def option_name(command: click.Command, name: str) -> str:
    """How a user types the option whose parameter is `name`, e.g. "--data" or "-v/--verbose"."""
    param = next(param for param in command.params if param.name == name)
    return "/".join(param.opts)


def with_root_options(options: dict) -> dict:
    """A subcommand's options merged with those typed before it (`run.py --data X tune`).

    Typed in both places, they must agree. The group has already refused the ones that the
    subcommand does not take (see `cli`).
    """
    ctx = click.get_current_context()
    merged = dict(options)
    for name, value in ctx.find_root().meta.get(ROOT_OPTIONS, {}).items():
        if name in typed_options(ctx) and options[name] != value:
            raise UserError(
                f"{option_name(ctx.command, name)} is given twice: {value!r} before "
                f"`{ctx.info_name}` and {options[name]!r} after it"
            )
        merged[name] = value
    return merged


def apply_common_options(options: dict) -> None:
    """Apply the options every pipeline command shares: log level and stack."""
    click.get_current_context().find_root().meta["walsrec.stack"] = options.get("stack")
    # ZenML's handler on the root logger prints our loggers' records; only set their level.
    level = logging.DEBUG if options.get("verbose") else logging.INFO
    for name in ("walsrec", "steps", "pipelines"):
        logging.getLogger(name).setLevel(level)
