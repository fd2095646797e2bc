"""One progress display per loop: a bar on a terminal, the log line everywhere else."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from tests.conftest import PROJECT_ROOT
from walsrec.models.wals import WALSConfig, train_wals

BAR = re.compile(r"WALS:\s+\d+%\|")


def test_a_run_into_a_log_file_has_no_bar_and_one_line_per_epoch(
    ml100k_dir: Path, tmp_path: Path
) -> None:
    """`run.py` with output captured, as in a pod's log or CI: `evaluation.progress: true`
    (train.yaml's default) draws no bar, each epoch is logged once, and TensorFlow's start-up
    lines are not there."""
    config = yaml.safe_load((PROJECT_ROOT / "configs/train.yaml").read_text())
    config["model"]["name"] = "walsrec-console"
    config["parameters"]["wals"]["epochs"] = 3
    config["parameters"]["evaluation"]["validation_every_epoch"] = False
    assert config["parameters"]["evaluation"]["progress"] is True
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "run.py", "--config", str(path), "--data", str(ml100k_dir / "ua.base")]
        + ["--test-data", str(ml100k_dir / "ua.test")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert not BAR.search(output), "a progress bar in a log"
    # TensorFlow's start-up lines (absl's warning, oneDNN's notice) are left out.
    assert "absl::InitializeLog" not in output and "oneDNN" not in output
    for epoch in (1, 2, 3):
        assert output.count(f"WALS epoch {epoch}/3: loss") == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_the_bar_replaces_the_epoch_log_line_on_a_terminal(
    terminal: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    matrix = sp.random(30, 20, density=0.3, format="csr", random_state=0, dtype=np.float64)
    config = WALSConfig(n_factors=4, regularization=1.0, epochs=2, kernel="graph")
    with caplog.at_level(logging.INFO, logger="walsrec"):
        train_wals(matrix, config, progress=True)
    epoch_lines = [r for r in caplog.records if r.getMessage().startswith("WALS epoch")]
    assert bool(BAR.search(stderr.getvalue())) is terminal
    assert len(epoch_lines) == (0 if terminal else 2)
