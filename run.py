"""Command line: choose a pipeline, a config and data; everything else lives in configs/*.yaml.

python run.py                      # train on MovieLens 100K with configs/train.yaml
python run.py --data PATH          # train on a local copy or your own interactions file
python run.py batch --topk-output recs.csv
python run.py --help
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

# The code main() leaves with, once it has finished (None: it has not, or was not called).
_exit_code: int | None = None


def _exit_without_teardown() -> None:
    """Leave with main()'s exit code as soon as every other atexit handler has run, skipping the
    interpreter's teardown of some 3,000 modules and 500,000 objects (ZenML, SQLAlchemy,
    pydantic models): about 1 s of the 5-6 s a cached rerun of `python run.py` takes. Registered
    before anything else, so it runs last: logging's flush, ZenML's and multiprocessing's
    handlers have run by then. Nothing of the command is left to write: the store's
    transactions are committed, artifacts and logs closed; stdout and stderr are flushed here.
    Not when main() did not finish (an uncaught exception keeps the normal exit)."""
    if _exit_code is None:
        return
    for stream in (sys.stdout, sys.stderr):
        # Closed, or a broken pipe: nothing more can be written.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(_exit_code)


atexit.register(_exit_without_teardown)

import copy  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402
import yaml  # noqa: E402
from click.core import ParameterSource  # noqa: E402

from stacks.register import available_recipes  # noqa: E402
from walsrec import __version__  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent
CONFIGS = PROJECT_ROOT / "configs"
# The pipeline of each command, as (module, function): its arguments are the config's sections.
PIPELINES = {
    "train": ("pipelines.training", "training_pipeline"),
    "batch": ("pipelines.batch_inference", "batch_inference_pipeline"),
    "tune": ("pipelines.tuning", "tuning_pipeline"),
    "deploy": ("pipelines.deployment", "deployment_pipeline"),
    "continuous": ("pipelines.continuous_training", "continuous_training_pipeline"),
}
DEFAULT_CONFIGS = {
    "train": CONFIGS / "train.yaml",
    "batch": CONFIGS / "batch_inference.yaml",
    "tune": CONFIGS / "tune.yaml",
    "deploy": CONFIGS / "deployment.yaml",
    "continuous": CONFIGS / "continuous_training.yaml",
}


class UserError(click.ClickException):
    """An error shown as one clear line, without a stack trace."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def load_config(path: Path) -> dict:
    """Read a pipeline config (ZenML run-config YAML)."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except FileNotFoundError as exc:
        raise UserError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(config.get("parameters"), dict):
        raise UserError(f"config file {path}: needs a `parameters:` mapping")
    return config


def _path(value: str | None) -> str | None:
    """Absolute path for a local file or folder; other sources (ml-100k, s3://...) as given."""
    if value is None:
        return None
    if "://" in value or not Path(value).expanduser().exists():
        return value
    return str(Path(value).expanduser().resolve())


def _output_path(value: str | None) -> str | None:
    if value is None or "://" in value:
        return value
    path = Path(value).expanduser().resolve()
    if not path.parent.is_dir():
        raise UserError(f"cannot write {value}: folder {path.parent} does not exist")
    return str(path)


def apply_overrides(config: dict, options: dict) -> dict:
    """The config with the command-line options written into its `parameters:`."""
    config = copy.deepcopy(config)
    params = config["parameters"]

    def section(name: str) -> dict:
        # Created only when an option writes into it: a pipeline's parameters are validated
        # strictly, and the deployment pipeline takes no `data` or `output`.
        return params.setdefault(name, {})

    if options.get("data"):
        section("data")["source"] = _path(options["data"])
    if options.get("test_data"):
        section("data")["test_path"] = _path(options["test_data"])
        section("split")["method"] = "file"
    if options.get("topk_output"):
        section("output")["topk_path"] = _output_path(options["topk_output"])
    if options.get("predictions_output"):
        section("output")["predictions_path"] = _output_path(options["predictions_output"])
    if options.get("users"):
        section("output")["users_path"] = _path(options["users"])
    if options.get("pairs"):
        section("output")["pairs_path"] = _path(options["pairs"])
    if options.get("k"):
        section("output")["k"] = options["k"]
    if options.get("model_version"):
        params["version"] = options["model_version"]
    if options.get("no_cache"):
        config["enable_cache"] = False
    return config


class _UserErrorsWithoutTraceback(logging.Filter):
    """Our errors already say what is wrong and where: log them without a stack trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        from walsrec.errors import WalsrecError

        if record.exc_info and isinstance(record.exc_info[1], WalsrecError):
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_user_error_tracebacks() -> None:
    log_filter = _UserErrorsWithoutTraceback()
    for name in (None, "zenml"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _UserErrorsWithoutTraceback) for f in handler.filters):
                handler.addFilter(log_filter)


def _selected_stack() -> str | None:
    """The `--stack` given to the command group, if any."""
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().meta.get("walsrec.stack") if ctx else None


def _delete_model_version_of_failed_run(run_name: str) -> None:
    """A failed run leaves no model version behind: delete the version it created (each run of
    a config with `model:` creates one), unless another run is linked to it too. The run and
    its artifacts stay."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    client = Client()
    try:
        try:
            run = client.get_pipeline_run(run_name, allow_name_prefix_match=False)
        except KeyError:  # failed before ZenML created the run
            return
        version = run.model_version
        if run.status != ExecutionStatus.FAILED or version is None:
            return
        links = client.list_model_version_pipeline_run_links(model_version_id=version.id)
        if any(link.pipeline_run.id != run.id for link in links.items):
            return
        client.delete_model_version(version.id)
        click.echo(
            f"Run {run.name} failed: deleted model version {version.model.name} "
            f"{version.number}, which it had created",
            err=True,
        )
    except Exception as exc:  # the cleanup must never hide the run's own error
        click.echo(f"warning: could not delete the failed run's model version: {exc}", err=True)


def clean_up_dead_runs() -> None:
    """Mark runs whose process died failed, one line each (see registry/runs.py)."""
    from registry.runs import clean_up_runs

    for line in clean_up_runs(include_failed=False):
        click.echo(line, err=True)


def run_pipeline(pipeline_obj: Any, config: dict) -> Any:
    """Run `pipeline_obj` with `config` as its ZenML run configuration (on `--stack` if given)."""
    from stacks import stack_run
    from walsrec.errors import WalsrecError

    _quiet_user_error_tracebacks()

    from registry.runs import new_run_name, run_liveness
    from registry.store import open_store

    config_path = None
    try:
        open_store()  # a fresh store is created by one process at a time
        clean_up_dead_runs()
        # Named before it starts: the run holds its liveness lock for as long as it runs.
        config = {**config, "run_name": config.get("run_name") or new_run_name(pipeline_obj.name)}
        # --stack: the stack's overlay (configs/<stack>/) merged in, its ZenML stack active.
        with stack_run(_selected_stack(), pipeline_obj, config) as config:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
                yaml.safe_dump(config, handle, sort_keys=False)
                config_path = handle.name
            try:
                with run_liveness(config["run_name"]):
                    return pipeline_obj.with_options(config_path=config_path)()
            except Exception:
                _delete_model_version_of_failed_run(config["run_name"])
                raise
    except WalsrecError as exc:
        raise UserError(str(exc)) from exc
    except RuntimeError as exc:
        # ZenML wraps a failed step; show the step's own message when it is one of ours.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, WalsrecError):
            raise UserError(str(cause)) from exc
        raise
    finally:
        if config_path:
            os.unlink(config_path)


def report_training(run: Any) -> None:
    """Print the model version, its metrics, the promotion decision and where artifacts are."""
    from zenml.client import Client

    run = Client().get_pipeline_run(run.id)
    evaluation = run.steps["model_evaluator"].outputs["metrics"][0].load()
    promoted = run.steps["model_promoter"].outputs["promoted"][0].load()
    recommender = run.steps["model_trainer"].outputs["recommender"][0]
    model_version = run.model_version
    from walsrec.reports import metrics_table_markdown

    click.echo("")
    click.echo(f"Pipeline run:   {run.name} ({run.status})")
    if model_version is not None:
        stage = "production" if promoted else (model_version.stage or "none")
        click.echo(
            f"Model version:  {model_version.model.name} version {model_version.number} "
            f"(stage: {stage})"
        )
        metadata = model_version.run_metadata
        if metadata.get("same_recommender_as") is not None:
            click.echo(
                f"Same model as:  version {metadata['same_recommender_as']} (training was "
                "served from the cache: this version links that version's recommender, no copy)"
            )
        promotion = metadata.get("promotion", {})
        if promotion:
            click.echo(f"Promotion:      {promotion.get('reason')}")
    cached = [name for name, step in run.steps.items() if step.status == "cached"]
    if cached:
        click.echo(f"From the cache: {', '.join(cached)} (--no-cache runs every step)")
    click.echo(f"Model files:    {recommender.uri}")
    click.echo(f"Metrics (k={evaluation.get('k')}), also on the model version's metadata:")
    click.echo(metrics_table_markdown(evaluation.get("metrics") or {}))
    output_step = run.steps.get("recommendation_writer")
    if output_step is not None:
        path = output_step.config.parameters.get("output", {}).get("topk_path")
        click.echo(f"Top-k written:  {path}")
    if Client().active_stack.orchestrator.flavor == "local":
        # The local orchestrator runs every step in this process; elsewhere each step is a pod.
        click.echo(f"Peak memory:    {peak_rss_gib():.2f} GiB RSS (the whole run)")


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss: KiB on Linux


def _common_options(func: Any) -> Any:
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


def _train_options(func: Any) -> Any:
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


_ROOT_OPTIONS = "walsrec.root_options"


def _typed(ctx: click.Context) -> dict[str, Any]:
    """The options of `ctx`'s command that were typed (not left at their defaults)."""
    return {
        name: value
        for name, value in ctx.params.items()
        if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
    }


def _option_name(command: click.Command, name: str) -> str:
    """How a user types the option whose parameter is `name`, e.g. "--data" or "-v/--verbose"."""
    param = next(param for param in command.params if param.name == name)
    return "/".join(param.opts)


def _with_root_options(options: dict) -> dict:
    """A subcommand's options merged with those typed before it (`run.py --data X tune`).

    Typed in both places, they must agree. The group has already refused the ones that the
    subcommand does not take (see `cli`).
    """
    ctx = click.get_current_context()
    merged = dict(options)
    for name, value in ctx.find_root().meta.get(_ROOT_OPTIONS, {}).items():
        if name in _typed(ctx) and options[name] != value:
            raise UserError(
                f"{_option_name(ctx.command, name)} is given twice: {value!r} before "
                f"`{ctx.info_name}` and {options[name]!r} after it"
            )
        merged[name] = value
    return merged


def _start(options: dict) -> None:
    """Apply the options every pipeline command shares: log level and stack."""
    click.get_current_context().find_root().meta["walsrec.stack"] = options.get("stack")
    # ZenML's handler on the root logger prints our loggers' records; only set their level.
    level = logging.DEBUG if options.get("verbose") else logging.INFO
    for name in ("walsrec", "steps", "pipelines"):
        logging.getLogger(name).setLevel(level)


def check_local_paths(config: dict, options: dict) -> None:
    """Fail before anything runs when a local input the run would read does not exist.

    Raises:
        UserError: naming the option (or config key) and the path.
    """
    from walsrec.data import check_source
    from walsrec.errors import DataError

    params = config["parameters"]
    data, output = params.get("data") or {}, params.get("output") or {}
    sources = [("data", "data.source", data.get("source"))] if "source" in data else []
    sources.append(("test_data", "data.test_path", data.get("test_path")))
    sources.append(("pairs", "output.pairs_path", output.get("pairs_path")))
    for option, key, value in sources:
        if value is None or "://" in str(value):
            continue
        try:
            check_source(str(value))
        except DataError as exc:
            where = f"--{option.replace('_', '-')}" if options.get(option) else key
            raise UserError(f"{where}: {exc}") from exc
    users = output.get("users_path")
    if users is not None and not Path(users).expanduser().is_file():
        where = "--users" if options.get("users") else "output.users_path"
        raise UserError(f"{where}: {users} is not a file")


def run_config_section() -> Any:
    """The keys of a run config outside `parameters:`, as ZenML reads them: it ignores unknown
    ones without a word (`enable_cahce: false` would cache)."""
    from walsrec.config import MappingOf, Section

    step = Section("zenml.config.step_configurations", "StepConfigurationUpdate")
    return Section(
        "zenml.config.pipeline_run_configuration",
        "PipelineRunConfiguration",
        {"model": Section("zenml.model.model", "Model"), "steps": MappingOf(step)},
    )


def prepare_config(command: str, options: dict) -> dict:
    """The run configuration of `command`: its config file with the options written into it,
    every key and local path checked, all before ZenML or TensorFlow is imported."""
    from walsrec.config import check_parameters
    from walsrec.errors import ConfigError

    path = Path(options.get("config_path") or DEFAULT_CONFIGS[command])
    config = apply_overrides(load_config(path), options)
    try:
        run_config_section().check("", config)
        check_parameters(config["parameters"], PIPELINES[command])
    except ConfigError as exc:
        raise UserError(f"config file {path}: {exc}") from exc
    check_local_paths(config, options)
    return config


def _train(options: dict) -> None:
    config = prepare_config("train", options)
    from pipelines import training_pipeline

    run = run_pipeline(training_pipeline, config)
    report_training(run)


@click.group(invoke_without_command=True, help=__doc__)
@click.version_option(__version__, "--version", prog_name="walsrec", message="%(prog)s %(version)s")
@_common_options
@_train_options
@click.pass_context
def cli(ctx: click.Context, **options: Any) -> None:
    """Train by default; subcommands choose another pipeline."""
    typed = _typed(ctx)
    ctx.meta[_ROOT_OPTIONS] = typed
    if ctx.invoked_subcommand is None:
        _start(options)
        _train(options)
        return
    # Options typed before a subcommand are the subcommand's, or an error: never ignored.
    subcommand = ctx.command.get_command(ctx, ctx.invoked_subcommand)
    accepted = {param.name for param in subcommand.params}
    misplaced = [_option_name(ctx.command, name) for name in typed if name not in accepted]
    if misplaced:
        raise UserError(
            f"{', '.join(misplaced)} (typed before `{ctx.invoked_subcommand}`) "
            f"{'is not an option' if len(misplaced) == 1 else 'are not options'} of "
            f"`{ctx.invoked_subcommand}`; see `{ctx.info_name} {ctx.invoked_subcommand} --help`"
        )


@cli.command(help="Train, evaluate and register a model (the default).")
@_common_options
@_train_options
def train(**options: Any) -> None:
    options = _with_root_options(options)
    _start(options)
    _train(options)


@cli.command(
    help="Top-k for every user (or --users) and scores for --pairs, from a model "
    "version (production by default)."
)
@_common_options
@click.option("--model-version", help="production (default), staging, latest or a number.")
@click.option("--users", help="File of user ids (one per line, or a CSV with user_id).")
@click.option("--pairs", help="File of (user, item) pairs to score, read like --data.")
@click.option("--topk-output", help="Where to write top-k (CSV or Parquet).")
@click.option("--predictions-output", help="Where to write pair scores (CSV or Parquet).")
@click.option("-k", type=click.IntRange(min=1), help="Items per user (default from config).")
def batch(**options: Any) -> None:
    options = _with_root_options(options)
    _start(options)
    config = prepare_config("batch", options)
    from pipelines import batch_inference_pipeline

    run = run_pipeline(batch_inference_pipeline, config)
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
@_common_options
@_train_options
@click.option("--predictions-output", help="Write a prediction for every test pair here.")
@click.option("--n-trials", type=click.IntRange(min=1), help="Trials in the study.")
@click.option("--storage", help="Optuna storage URL (default: $WALSREC_TUNING_STORAGE or SQLite).")
def tune(**options: Any) -> None:
    options = _with_root_options(options)
    _start(options)
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

            click.echo(tuning_report(run_pipeline(tuning_pipeline, config).id))
    except ConfigError as exc:
        raise UserError(str(exc)) from exc


@cli.command(help="Put a model version (production by default) into BentoML and build a Bento.")
@_common_options
@click.option("--model-version", help="production (default), staging, latest or a number.")
@click.option("--no-build", is_flag=True, help="Only the BentoML model store, no Bento.")
@click.option(
    "--item-metadata",
    type=click.Path(exists=True, dir_okay=False),
    help="Catalogue table (CSV/TSV/Parquet with item_id) the service filters on (`where`).",
)
def deploy(**options: Any) -> None:
    options = _with_root_options(options)
    _start(options)
    config = prepare_config("deploy", options)
    if options["no_build"]:
        config["parameters"].setdefault("bento", {})["build"] = False
    if options["item_metadata"]:
        table = str(Path(options["item_metadata"]).resolve())
        config["parameters"].setdefault("bento", {})["item_metadata"] = table
    from pipelines import deployment_pipeline

    run = run_pipeline(deployment_pipeline, config)
    from zenml.client import Client

    outputs = Client().get_pipeline_run(run.id).steps["bento_builder"].outputs
    click.echo(f"BentoML model: {outputs['bento_model_tag'][0].load()}")
    bento_tag = outputs["bento_tag"][0].load()
    if bento_tag is not None:
        click.echo(f"Bento:         {bento_tag}")
        click.echo(f"Archive:       {outputs['bento_archive'][0].uri} (in the artifact store)")
    click.echo("Serve it:      python run.py serve")


def _default_model_name() -> str:
    return load_config(DEFAULT_CONFIGS["train"]).get("model", {}).get("name", "walsrec")


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

    model_name = model_name or _default_model_name()
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
    run = run_pipeline(continuous_training_pipeline, config)
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
@_common_options
@click.option("--data", help="Interactions (overrides data.source), read anew each round.")
@click.option("--test-data", help="A test file in the same layout as --data.")
@click.option("--tune", is_flag=True, help="Tune instead of training (every round).")
@click.option("--every", help="Repeat every INTERVAL (90s, 30m, 6h, 1d) until Ctrl-C.")
@click.option("--rounds", type=click.IntRange(min=1), help="With --every: stop after N rounds.")
def continuous(**options: Any) -> None:
    import time

    options = _with_root_options(options)
    _start(options)
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

    try:
        bento_tag = None
        if model_version:
            if model_tag:
                raise UserError("--model-tag and --model-version name two different models")
            bento_tag = _exported_bento(model_name or _default_model_name(), model_version)
        sys.exit(serve_model(host, port, model_tag, workers, echo=click.echo, bento_tag=bento_tag))
    except WalsrecError as exc:
        raise UserError(str(exc)) from exc


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
            f"model {model_name!r} version {found.number} has no exported Bento (only "
            "`run.py continuous` links one to the version, when it promotes): serve it with "
            f"`python run.py deploy --model-version {found.number}` then `python run.py serve`"
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


def _no_log_export_thread_at_exit() -> None:
    """ZenML's OpenTelemetry log handler flushes by starting a thread; at interpreter shutdown
    (logging's own atexit flush) Python 3.12 refuses new threads and prints a traceback. Its
    records were exported when each step ended, so the exit flush is skipped. Registered after
    logging's hook, so it runs first."""
    handler_module = sys.modules.get("opentelemetry.instrumentation.logging.handler")
    if handler_module is not None:
        handler_module.LoggingHandler.flush = lambda self: None


atexit.register(_no_log_export_thread_at_exit)


def main() -> int:
    """The `walsrec` console script and `python -m walsrec`: the same commands as run.py."""
    global _exit_code
    try:
        return cli()  # click's standalone mode ends with SystemExit
    except SystemExit as exc:
        # As the interpreter would: None is 0, a message (printed by it) is 1.
        _exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise


if __name__ == "__main__":
    sys.exit(main())
