"""Command line: choose a pipeline, a config and data; everything else lives in configs/*.yaml.

python run.py                      # train on MovieLens 100K with configs/train.yaml
python run.py --data PATH          # train on a local copy or your own interactions file
python run.py batch --topk-output recs.csv
python run.py --help
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from cli import fast_exit, runs, startup
from cli.configs import UserError, default_model_name, prepare_config
from cli.options import (
    ROOT_OPTIONS,
    apply_common_options,
    common_options,
    option_name,
    train_options,
    typed_options,
    with_root_options,
)
from stacks.register import available_recipes
from walsrec import __version__


def _train(options: dict) -> None:
    config = prepare_config("train", options)
    from pipelines import training_pipeline

    run = runs.run_pipeline(training_pipeline, config)
    runs.report_training(run)


@click.group(invoke_without_command=True, help=__doc__)
@click.version_option(__version__, "--version", prog_name="walsrec", message="%(prog)s %(version)s")
@common_options
@train_options
@click.pass_context
def cli(ctx: click.Context, **options: Any) -> None:
    """Train by default; subcommands choose another pipeline."""
    typed = typed_options(ctx)
    ctx.meta[ROOT_OPTIONS] = typed
    if ctx.invoked_subcommand is None:
        apply_common_options(options)
        _train(options)
        return
    # Options typed before a subcommand are the subcommand's, or an error: never ignored.
    subcommand = ctx.command.get_command(ctx, ctx.invoked_subcommand)
    accepted = {param.name for param in subcommand.params}
    misplaced = [option_name(ctx.command, name) for name in typed if name not in accepted]
    if misplaced:
        raise UserError(
            f"{', '.join(misplaced)} (typed before `{ctx.invoked_subcommand}`) "
            f"{'is not an option' if len(misplaced) == 1 else 'are not options'} of "
            f"`{ctx.invoked_subcommand}`; see `{ctx.info_name} {ctx.invoked_subcommand} --help`"
        )


@cli.command(help="Train, evaluate and register a model (the default).")
@common_options
@train_options
def train(**options: Any) -> None:
    options = with_root_options(options)
    apply_common_options(options)
    _train(options)


@cli.command(
    help="Top-k for every user (or --users) and scores for --pairs, from a model "
    "version (production by default)."
)
@common_options
@click.option("--model-version", help="production (default), staging, latest or a number.")
@click.option("--users", help="File of user ids (one per line, or a CSV with user_id).")
@click.option("--pairs", help="File of (user, item) pairs to score, read like --data.")
@click.option("--topk-output", help="Where to write top-k (CSV or Parquet).")
@click.option("--predictions-output", help="Where to write pair scores (CSV or Parquet).")
@click.option("-k", type=click.IntRange(min=1), help="Items per user (default from config).")
def batch(**options: Any) -> None:
    options = with_root_options(options)
    apply_common_options(options)
    config = prepare_config("batch", options)
    from pipelines import batch_inference_pipeline

    run = runs.run_pipeline(batch_inference_pipeline, config)
    click.echo(f"Pipeline run {run.name}: {run.status}")
    from zenml.client import Client

    writer = Client().get_pipeline_run(run.id).steps["recommendation_writer"]
    if writer.model_version is not None:
        used = writer.model_version
        click.echo(f"Model version: {used.model.name} version {used.number} (its recommender)")
    written = writer.outputs["recommendations"][0].load()
    click.echo(f"wrote {written['rows']} top-k rows ({written['users']} users): {written['path']}")
    predictions = config["parameters"]["output"].get("predictions_path")
    if predictions:
        click.echo(f"wrote {predictions}")


@cli.command(
    help="Tune on the validation split with Optuna, retrain the best on train + validation, "
    "evaluate on test and register the model (see docs/tuning.md)."
)
@common_options
@train_options
@click.option("--predictions-output", help="Write a prediction for every test pair here.")
@click.option("--n-trials", type=click.IntRange(min=1), help="Trials in the study.")
@click.option("--storage", help="Optuna storage URL (default: $WALSREC_TUNING_STORAGE or SQLite).")
def tune(**options: Any) -> None:
    options = with_root_options(options)
    apply_common_options(options)
    config = prepare_config("tune", options)
    if options["n_trials"]:
        config["parameters"].setdefault("tuning", {})["n_trials"] = options["n_trials"]
    if options["storage"]:
        # Through the environment, not the run config: a password must not be stored by ZenML.
        os.environ["WALSREC_TUNING_STORAGE"] = options["storage"]
    from walsrec.errors import ConfigError
    from walsrec.tuning import one_run_per_sqlite_storage, resolve_storage_url

    storage = (config["parameters"].get("tuning") or {}).get("storage")
    try:
        # Taken before TensorFlow is imported: a second run stops within a second.
        with one_run_per_sqlite_storage(resolve_storage_url(storage)):
            from pipelines import tuning_pipeline
            from pipelines.tuning import tuning_report

            click.echo(tuning_report(runs.run_pipeline(tuning_pipeline, config).id))
    except ConfigError as exc:
        raise UserError(str(exc)) from exc


@cli.command(help="Put a model version (production by default) into BentoML and build a Bento.")
@common_options
@click.option("--model-version", help="production (default), staging, latest or a number.")
@click.option("--no-build", is_flag=True, help="Only the BentoML model store, no Bento.")
@click.option(
    "--item-metadata",
    type=click.Path(exists=True, dir_okay=False),
    help="Catalogue table (CSV/TSV/Parquet with item_id) the service filters on (`where`).",
)
def deploy(**options: Any) -> None:
    options = with_root_options(options)
    apply_common_options(options)
    config = prepare_config("deploy", options)
    if options["no_build"]:
        config["parameters"].setdefault("bento", {})["build"] = False
    if options["item_metadata"]:
        table = str(Path(options["item_metadata"]).resolve())
        config["parameters"].setdefault("bento", {})["item_metadata"] = table
    from pipelines import deployment_pipeline

    run = runs.run_pipeline(deployment_pipeline, config)
    from zenml.client import Client

    outputs = Client().get_pipeline_run(run.id).steps["bento_builder"].outputs
    click.echo(f"BentoML model: {outputs['bento_model_tag'][0].load()}")
    bento_tag = outputs["bento_tag"][0].load()
    if bento_tag is not None:
        click.echo(f"Bento:         {bento_tag}")
        archive = outputs["bento_archive"][0]
        click.echo(f"Archive:       {archive.uri} (in the artifact store)")
        if archive.run_metadata.get("zenml_version"):
            version = _link_to_model_version(archive)
            click.echo(
                f"Linked to:     model {version.model.name} version {version.number} "
                f"(`python run.py serve --model-version {version.number}` serves this Bento)"
            )
    click.echo("Serve it:      python run.py serve")


@cli.command(
    help="Put the previous production model version back into production (the one the "
    "current production version replaced)."
)
@click.option(
    "--model", "model_name", help="Model name (default: the model of configs/train.yaml)."
)
def rollback(model_name: str | None) -> None:
    from registry.store import open_store
    from registry.versions import rollback as roll_back
    from walsrec.errors import WalsrecError

    model_name = model_name or default_model_name()
    open_store()
    # One line of our own: ZenML's info lines ("Model version 3 has been set to archived.")
    # would repeat it.
    logging.getLogger("zenml").setLevel(logging.WARNING)
    try:
        current, restored = roll_back(model_name)
    except WalsrecError as exc:
        raise UserError(str(exc)) from exc
    click.echo(
        f"Rolled back {model_name}: production was version {current.number}, is now version "
        f"{restored.number}"
    )


@cli.command(
    help="Mark runs whose process died (killed) failed and delete the model versions that "
    "killed or failed runs left without a model; one line per run."
)
def cleanup() -> None:
    from registry.runs import clean_up_runs
    from registry.store import open_store

    open_store()
    lines = clean_up_runs()
    for line in lines:
        click.echo(line)
    if not lines:
        click.echo("Nothing to clean up: no dead runs, no model versions without a model.")


def parse_interval(text: str) -> float:
    """Seconds in an interval like 90s, 30m, 6h, 1d (a bare number is seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise UserError(f"--every {text}: not an interval; use e.g. 90s, 30m, 6h or 1d")
    return seconds


def _continuous_round(config: dict, tune: bool) -> None:
    from zenml.client import Client

    from pipelines import continuous_training_pipeline

    config = copy.deepcopy(config)
    config["parameters"].setdefault("continuous", {})["tune"] = tune
    run = runs.run_pipeline(continuous_training_pipeline, config)
    if run is None:  # scheduled (Kubeflow): the orchestrator runs the rounds
        return
    run = Client().get_pipeline_run(run.id)
    promoted = run.steps["model_promoter"].outputs["promoted"][0].load()
    version = run.model_version
    evaluation = run.steps["model_evaluator"].outputs["metrics"][0].load()
    reason = (version.run_metadata.get("promotion") or {}).get("reason") if version else None
    click.echo(f"Pipeline run:   {run.name} ({run.status}){' tuned' if tune else ''}")
    click.echo(
        f"Model version:  {version.model.name} version {version.number} "
        f"({'promoted to production' if promoted else 'not promoted'}: {reason})"
    )
    ndcg = ((evaluation.get("metrics") or {}).get("wals") or {}).get("ndcg@10")
    if ndcg is not None:
        click.echo(f"Test ndcg@10:   {ndcg:.4f}")
    built = run.steps["bento_builder"].outputs
    bento_tag = built["bento_tag"][0].load() if promoted else None
    if bento_tag is not None:
        archive = built["bento_archive"][0]
        if archive.run_metadata.get("bento_tag"):  # the None output carries no metadata
            click.echo(f"Bento:          {bento_tag}, archive in the artifact store: {archive.uri}")
            click.echo("Serve it:       python run.py serve --model-version production")
        else:
            click.echo(f"Bento:          {bento_tag} (not exported: continuous.export is false)")
    elif not promoted:
        click.echo("Deployment:     skipped (production unchanged)")


@cli.command(
    help="Continuous training: train (or tune) on the current data, evaluate, promote, and "
    "only when promoted package, build and keep the Bento. --every repeats it in the "
    "foreground; on Kubeflow (--stack kubeflow) it is scheduled by cron (docs/registry.md)."
)
@common_options
@click.option("--data", help="Interactions (overrides data.source), read anew each round.")
@click.option("--test-data", help="A test file in the same layout as --data.")
@click.option("--tune", is_flag=True, help="Tune instead of training (every round).")
@click.option("--every", help="Repeat every INTERVAL (90s, 30m, 6h, 1d) until Ctrl-C.")
@click.option("--rounds", type=click.IntRange(min=1), help="With --every: stop after N rounds.")
def continuous(**options: Any) -> None:
    import time

    options = with_root_options(options)
    if options["rounds"] and not options["every"]:
        raise UserError("--rounds counts the rounds of --every; without --every one round runs")
    apply_common_options(options)
    config = prepare_config("continuous", options)
    section = config["parameters"].get("continuous") or {}
    tune_every = int(section.get("tune_every") or 0)
    always_tune = bool(options["tune"] or section.get("tune"))
    if options.get("stack") == "kubeflow":
        if options["every"]:
            raise UserError("--every runs rounds here; on Kubeflow the cron schedule does")
        cron = section.get("tune_cron" if always_tune else "cron")
        if not cron:
            raise UserError("continuous.cron (or tune_cron with --tune) is needed on Kubeflow")
        config["schedule"] = {"cron_expression": cron, "name": f"walsrec-continuous-{cron}"}
        click.echo(f"Schedule:       cron {cron!r}")
        _continuous_round(config, always_tune)
        return
    if not options["every"]:
        _continuous_round(config, always_tune)
        return
    interval = parse_interval(options["every"])
    done = 0
    try:
        while True:
            started = time.monotonic()
            tune = always_tune or (tune_every > 0 and done % tune_every == tune_every - 1)
            try:
                _continuous_round(config, tune)
            except (UserError, RuntimeError) as exc:  # a failed round: the next one may work
                click.echo(f"round {done + 1} failed: {exc}", err=True)
            done += 1
            if options["rounds"] and done >= options["rounds"]:
                return
            wait = max(0.0, interval - (time.monotonic() - started))
            click.echo(f"Next round in {wait:.0f} s (Ctrl-C stops)")
            time.sleep(wait)
    except KeyboardInterrupt:
        click.echo(f"Stopped after {done} rounds")


@cli.command(help="Serve the newest packaged model over HTTP (see docs/serving.md).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--model-tag", help="BentoML model tag (default: the newest walsrec model).")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes (default 2).")
@click.option(
    "--model-version",
    help="Serve the Bento that continuous training exported for this ZenML model version "
    "(production, latest or a number), imported from the artifact store.",
)
@click.option("--model", "model_name", help="With --model-version: the ZenML model.")
def serve(
    host: str,
    port: int,
    model_tag: str | None,
    workers: int | None,
    model_version: str | None,
    model_name: str | None,
) -> None:
    from serving.cli import serve as serve_model
    from walsrec.errors import WalsrecError

    if model_name and not model_version:
        raise UserError("--model picks the ZenML model of --model-version; give --model-version")
    startup.resume()
    try:
        bento_tag = None
        if model_version:
            if model_tag:
                raise UserError("--model-tag and --model-version name two different models")
            bento_tag = _exported_bento(model_name or default_model_name(), model_version)
        sys.exit(serve_model(host, port, model_tag, workers, echo=click.echo, bento_tag=bento_tag))
    except WalsrecError as exc:
        raise UserError(str(exc)) from exc


def _link_to_model_version(archive: Any) -> Any:
    """Link a deployment run's `bento_archive` to the model version it packages, as continuous
    training's are, so `run.py serve --model-version N` finds it on any machine that reaches
    the artifact store. Returns that model version."""
    from zenml.client import Client
    from zenml.model.utils import link_artifact_version_to_model_version

    metadata = archive.run_metadata
    version = Client().get_model_version(metadata["zenml_model"], int(metadata["zenml_version"]))
    link_artifact_version_to_model_version(archive, version)
    return version


def _exported_bento(model_name: str, version: str) -> str:
    """The Bento continuous training exported for a model version, in the local BentoML store
    (imported from the artifact store when it is not there yet)."""
    from registry.store import open_store
    from registry.versions import resolve_model_version
    from serving.packaging import import_bento
    from walsrec.errors import WalsrecError

    open_store()
    found = resolve_model_version(model_name, version)
    archive = found.get_artifact("bento_archive")
    bento_tag = None if archive is None else archive.run_metadata.get("bento_tag")
    if not bento_tag:
        raise WalsrecError(
            f"model {model_name!r} version {found.number} has no exported Bento (`run.py "
            "deploy` and a promoting `run.py continuous` link one to the version): make one "
            f"with `python run.py deploy --model-version {found.number}`"
        )
    tag = import_bento(Path(archive.load()), bento_tag)
    click.echo(f"model {model_name} version {found.number}: Bento {tag}")
    return tag


@cli.group(help="Stack recipes in stacks/: register one with ZenML (see docs/kubeflow.md).")
def stack() -> None:
    pass


@stack.command(
    "register",
    help="Validate stacks/RECIPE.yaml with these values, then register its ZenML stack.",
)
@click.argument("recipe", type=click.Choice(available_recipes()))
@click.option("--kube-context", help="Kubernetes context of the Kubeflow cluster.")
@click.option("--bucket", help="Artifact store: s3://BUCKET/PATH (S3, MinIO) or gs://BUCKET/PATH.")
@click.option("--registry", help="Container registry the cluster pulls from, e.g. ghcr.io/ORG.")
@click.option("--s3-endpoint", help="S3 endpoint URL for MinIO (empty for AWS S3).")
@click.option("--kubeflow-namespace", help="Namespace of Kubeflow Pipelines (default kubeflow).")
@click.option("--replace", is_flag=True, help="Replace a stack registered from this recipe.")
def stack_register(recipe: str, replace: bool, **values: Any) -> None:
    from stacks import register_stack
    from walsrec.errors import WalsrecError

    try:
        registration = register_stack(recipe, values, replace=replace)
    except WalsrecError as exc:
        raise UserError(str(exc)) from exc
    for component in registration.components:
        click.echo(f"{component.key}: {component.name} ({component.flavor})")
    for warning in registration.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"Registered stack {registration.stack_name}: python run.py --stack {recipe} ...")


def main() -> int:
    """The `walsrec` console script and `python -m walsrec`: the same commands as run.py."""
    startup.pause()  # until a pipeline or the server starts (cli/startup.py)
    try:
        return cli()  # click's standalone mode ends with SystemExit
    except SystemExit as exc:
        fast_exit.record(exc.code)
        raise
