"""The command's start-up runs without the cyclic garbage collector, its pipeline with it
(cli/startup.py): probed in a fresh interpreter through `run.main()`, as `python run.py` runs."""

from __future__ import annotations

from tests.cli.conftest import run_python

_PROBE = """
import gc, json, sys
import registry.store as store
from zenml.pipelines.pipeline_definition import Pipeline

seen = {"collector_on_at_import": gc.isenabled()}
open_store = store.open_store

def watched_open_store():
    seen["collector_on_opening_store"] = gc.isenabled()
    open_store()

def instead_of_running(self, *args, **kwargs):
    seen["collector_on_running"] = gc.isenabled()
    seen["frozen_objects"] = gc.get_freeze_count()
    print(json.dumps(seen), flush=True)
    raise SystemExit(0)

store.open_store = watched_open_store
Pipeline.__call__ = instead_of_running
sys.argv = ["run.py", *sys.argv[1:]]
import run
run.main()
"""


def test_the_store_opens_without_the_collector_and_the_pipeline_runs_with_it(ml100k_dir):
    seen = run_python(_PROBE, "--data", str(ml100k_dir), timeout=300)
    assert seen["collector_on_at_import"]
    assert not seen["collector_on_opening_store"]
    assert seen["collector_on_running"]
    # What start-up made is in the permanent generation: later passes never walk it.
    assert seen["frozen_objects"] > 100_000


def test_importing_the_commands_leaves_the_collector_alone():
    # Compared with the count at the start: Python 3.12 starts with some objects frozen.
    code = (
        "import gc, json\n"
        "frozen = gc.get_freeze_count()\n"
        "from click.testing import CliRunner\n"
        "import run\n"
        "from cli import startup\n"
        "result = CliRunner().invoke(run.cli, ['--help'])\n"
        "startup.resume()\n"
        "print(json.dumps([result.exit_code, gc.isenabled(), gc.get_freeze_count() - frozen]))\n"
    )
    assert run_python(code) == [0, True, 0]
