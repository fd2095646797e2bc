"""implicit's shared recommender test suite against implicit's ALS and against walsrec.

    python bench/peer_suite/run.py                       # fetches implicit 0.7.3's sdist
    python bench/peer_suite/run.py --suite path/to/recommender_base_test.py

implicit's `tests/recommender_base_test.py` holds `RecommenderBaseTestMixin`, the tests every
implicit model must pass (recommend one user or many, filters, candidate lists, fold-in,
similar items and users, partial fits, serialization, ...). This script runs it with pytest
twice at implicit's own ALS test settings (32 factors, regularization 0, random_state 23):
(a) on `implicit.als.AlternatingLeastSquares`, (b) on walsrec through the thin adapter in
`bench/peer_suite/adapter.py`. It prints the pass counts side by side and the tests that pass
for implicit but fail for walsrec (the goal: none), and exits 1 when there is any.

Without --suite the file comes from implicit's source distribution, downloaded by pip
(`pip download implicit==0.7.3 --no-deps --no-binary implicit`) into a temporary folder;
implicit's code is never copied into this repository. implicit itself must be installed
(requirements-bench.txt): the suite imports it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
IMPLICIT_VERSION = "0.7.3"
SUITE_MEMBER = "tests/recommender_base_test.py"
SETTINGS = "factors=32, regularization=0, random_state=23"

IMPLICIT_TESTS = f"""
import unittest
from implicit.als import AlternatingLeastSquares
from recommender_base_test import RecommenderBaseTestMixin

class ImplicitALSTest(unittest.TestCase, RecommenderBaseTestMixin):
    def _get_model(self):
        return AlternatingLeastSquares({SETTINGS}, use_gpu=False)
"""

WALSREC_TESTS = f"""
import sys, unittest
sys.path.insert(0, {str(PROJECT_ROOT)!r})
sys.path.insert(0, {str(PROJECT_ROOT / "bench" / "peer_suite")!r})
from adapter import WalsrecALS
from recommender_base_test import RecommenderBaseTestMixin

class WalsrecALSTest(unittest.TestCase, RecommenderBaseTestMixin):
    def _get_model(self):
        return WalsrecALS({SETTINGS})
"""


def fetch_suite(folder: Path) -> Path:
    """implicit's recommender_base_test.py from its sdist, downloaded by pip into `folder`."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"implicit=={IMPLICIT_VERSION}",
        "--no-deps",
        "--no-binary",
        "implicit",
        "--quiet",
        "-d",
        str(folder),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    (archive,) = folder.glob(f"implicit-{IMPLICIT_VERSION}.tar.gz")
    member = f"implicit-{IMPLICIT_VERSION}/{SUITE_MEMBER}"
    with tarfile.open(archive) as tar:
        source = tar.extractfile(member)
        if source is None:
            raise SystemExit(f"{archive} has no {member}")
        target = folder / "recommender_base_test.py"
        target.write_bytes(source.read())
    return target


def run_suite(folder: Path, module: str, source: str) -> dict[str, str]:
    """Run one test module with pytest in `folder`: test name -> passed / failed / skipped."""
    (folder / f"{module}.py").write_text(source, encoding="utf-8")
    report = folder / f"{module}.xml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"{module}.py",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            "-W",
            "ignore::DeprecationWarning",
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        outcome = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        outcomes[case.get("name")] = outcome
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, help="a local recommender_base_test.py")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="walsrec-peer-suite-") as name:
        folder = Path(name)
        if args.suite is not None:
            if not args.suite.is_file():
                parser.error(f"--suite {args.suite}: no such file")
            (folder / "recommender_base_test.py").write_bytes(args.suite.read_bytes())
        else:
            fetch_suite(folder)
        implicit = run_suite(folder, "test_implicit_als", IMPLICIT_TESTS)
        ours = run_suite(folder, "test_walsrec_als", WALSREC_TESTS)
    names = sorted(set(implicit) | set(ours))
    print(f"implicit {IMPLICIT_VERSION} recommender_base_test.py at {SETTINGS}")
    print(f"{'test':40s} {'implicit ALS':>13s} {'walsrec':>9s}")
    for test in names:
        print(f"{test:40s} {implicit.get(test, '-'):>13s} {ours.get(test, '-'):>9s}")
    passed_implicit = sum(outcome == "passed" for outcome in implicit.values())
    passed_ours = sum(outcome == "passed" for outcome in ours.values())
    print(
        f"passed: implicit ALS {passed_implicit}/{len(implicit)}, walsrec {passed_ours}/{len(ours)}"
    )
    missing = [t for t in names if implicit.get(t) == "passed" and ours.get(t) != "passed"]
    print("pass for implicit, fail for walsrec:", ", ".join(missing) if missing else "none")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
