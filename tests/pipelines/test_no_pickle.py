"""No artifact is pickled: an output type without a plain-file materializer stops its step."""

from __future__ import annotations

from typing import Annotated

import pytest
from zenml import pipeline, step
from zenml.client import Client
from zenml.enums import ExecutionStatus

import materializers  # noqa: F401  (installs the refusing default materializer)


class Opaque:
    """A type no materializer knows (ZenML would pickle it)."""


@step(enable_cache=False)
def opaque_producer() -> Annotated[Opaque, "opaque"]:
    return Opaque()


@pipeline(enable_cache=False)
def opaque_pipeline() -> None:
    opaque_producer()


def test_an_output_without_a_materializer_is_refused_not_pickled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(RuntimeError, match="failure in step"):
        opaque_pipeline()
    logged = caplog.text
    assert "no materializer stores a tests.pipelines.test_no_pickle.Opaque" in logged
    assert "walsrec pickles no artifact" in logged
    run = Client().get_pipeline("opaque_pipeline").runs[0]
    assert run.status == ExecutionStatus.FAILED
    assert not run.steps["opaque_producer"].outputs  # nothing stored
