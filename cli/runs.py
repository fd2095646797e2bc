"""Running a pipeline for the command line: the store, dead runs, the stack, the model version
a failed run leaves, and the report printed after training."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import tempfile
from typing import Any

import click
import yaml

from cli import startup
from cli.configs import UserError


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


def selected_stack() -> str | None:
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


def _skip_unused_integration_activation() -> None:
    """Keep ZenML from importing libraries for materializers these pipelines never look up.

    ZenML activates every installed integration when it compiles a pipeline, to register their
    materializers by type: BentoML's imports `bentoml` and ZenML's BentoML model deployer (about
    0.5 s of every run); pandas', NumPy's and SciPy's import those libraries, which a run served
    from the cache never reads (the test fingerprint is stored with the dataset). No step here
    returns a BentoML, NumPy or SciPy object (the deployment step exports the Bento as a file
    archive, `bento_archive`; the dataset and model have their own materializers in
    `materializers/`), and the two steps that return a DataFrame name ZenML's pandas
    materializer. Those integrations stay registered, so their stack component flavors are still
    found (`flavors()`); only their activation does nothing. ZenML's own step entrypoints (a
    Kubeflow pod) still activate them.
    """
    from zenml.integrations.bentoml import BentoMLIntegration
    from zenml.integrations.numpy import NumpyIntegration
    from zenml.integrations.pandas import PandasIntegration
    from zenml.integrations.scipy import ScipyIntegration

    for integration in (BentoMLIntegration, NumpyIntegration, PandasIntegration, ScipyIntegration):
        # An Integration subclass registers itself under its NAME, replacing the original.
        type(integration)(
            f"{integration.__name__}NotActivated",
            (integration,),
            {"activate": classmethod(lambda cls: None)},
        )


def run_pipeline(pipeline_obj: Any, config: dict) -> Any:
    """Run `pipeline_obj` with `config` as its ZenML run configuration (on `--stack` if given)."""
    from stacks import stack_run
    from walsrec.errors import WalsrecError

    _quiet_user_error_tracebacks()
    _skip_unused_integration_activation()

    from registry.runs import new_run_name, run_liveness
    from registry.store import open_store

    config_path = None
    try:
        open_store()  # a fresh store is created by one process at a time
        clean_up_dead_runs()
        # Named before it starts: the run holds its liveness lock for as long as it runs.
        config = {**config, "run_name": config.get("run_name") or new_run_name(pipeline_obj.name)}
        # --stack: the stack's overlay (configs/<stack>/) merged in, its ZenML stack active.
        with stack_run(selected_stack(), pipeline_obj, config) as config:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
                yaml.safe_dump(config, handle, sort_keys=False)
                config_path = handle.name
            startup.resume()  # the steps run with the cyclic collector on (cli/startup.py)
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
    steps = run.steps  # one query: each `run.steps` lists the run's steps again
    evaluation = steps["model_evaluator"].outputs["metrics"][0].load()
    promoted = steps["model_promoter"].outputs["promoted"][0].load()
    recommender = steps["model_trainer"].outputs["recommender"][0]
    model_version = run.model_version
    from walsrec.evaluation.reports import metrics_table_markdown

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
    cached = [name for name, step in steps.items() if step.status == "cached"]
    if cached:
        click.echo(f"From the cache: {', '.join(cached)} (--no-cache runs every step)")
    click.echo(f"Model files:    {recommender.uri}")
    click.echo(f"Metrics (k={evaluation.get('k')}), also on the model version's metadata:")
    click.echo(metrics_table_markdown(evaluation.get("metrics") or {}))
    output_step = steps.get("recommendation_writer")
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


def _no_log_export_thread_at_exit() -> None:
    """ZenML's OpenTelemetry log handler flushes by starting a thread; at interpreter shutdown
    (logging's own atexit flush) Python 3.12 refuses new threads and prints a traceback. Its
    records were exported when each step ended, so the exit flush is skipped. Registered after
    logging's hook, so it runs first."""
    handler_module = sys.modules.get("opentelemetry.instrumentation.logging.handler")
    if handler_module is not None:
        handler_module.LoggingHandler.flush = lambda self: None


atexit.register(_no_log_export_thread_at_exit)
