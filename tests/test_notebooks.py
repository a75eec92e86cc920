"""The notebooks in ``notebooks/`` run clean, top to bottom, in a fresh kernel.

Each notebook asserts in its code cells the outcomes its text describes, so
executing it is the test: a change in maillab's behaviour that makes a
notebook untrue fails here, with the failing cell's error. The kernel runs
this interpreter (not whatever ``python3`` kernel a user has installed), in
the ``notebooks/`` directory, as Jupyter would.

Also checked without a kernel: notebooks are committed without outputs, and
every code cell is introduced by a Markdown cell that says what it is for.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebooks extra is not installed")
nbclient = pytest.importorskip("nbclient", reason="the notebooks extra is not installed")
pytest.importorskip("ipykernel", reason="the notebooks extra is not installed")
pytest.importorskip("matplotlib", reason="the notebooks extra is not installed")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))
#: Real seconds any one cell may take (lab time makes days of retries quick).
CELL_TIMEOUT = 90
#: The four walkthroughs together should stay well under a minute on 2 cores.
KERNEL = "maillab-test-python"


def test_the_four_walkthroughs_are_there() -> None:
    names = [p.stem for p in NOTEBOOK_FILES]
    assert names == [
        "01-direct-vs-submission",
        "02-ip-reputation",
        "03-spf-dkim-dmarc",
        "04-queues-retries-bounces",
    ]


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec that runs *this* interpreter: a ``python3`` spec in the
    user's Jupyter directories may point at another Python without maillab."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL
    spec.mkdir()
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "maillab tests",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    return root


def _kernel_env() -> dict[str, str]:
    env = dict(os.environ)
    # `import sim` must find this checkout even where it is not pip-installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.pop("MPLBACKEND", None)  # the helpers draw on their own Figure; no GUI needed
    return env


def _execute(path: Path, kernel_dir: Path) -> tuple[Any, float]:
    notebook = nbformat.read(path, as_version=4)
    manager = AsyncKernelManager(
        kernel_name=KERNEL,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]),
    )
    client = nbclient.NotebookClient(
        notebook,
        km=manager,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT,
        startup_timeout=60,
        # Plain tracebacks: a failing cell's error reads well in the test report.
        extra_arguments=["--InteractiveShell.colors=nocolor"],
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.monotonic()
    try:
        client.execute(env=_kernel_env())
    except CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed\n{err}", pytrace=False)
    return notebook, time.monotonic() - started


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=[p.stem for p in NOTEBOOK_FILES])
def test_notebook_runs_clean(path: Path, kernel_dir: Path) -> None:
    notebook, seconds = _execute(path, kernel_dir)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    errors = [o for c in code_cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    # A reader sees what the text describes: every drawing cell shows an
    # image, every show_result/trace_table cell a rendered table.
    for cell in code_cells:
        last = cell.source.strip().splitlines()[-1]
        shown = {k for o in cell.outputs for k in o.get("data", {})}
        if last.startswith(("draw_path(", "draw_topology(", "picture", "way")):
            assert "image/png" in shown, f"{path.name}: no picture from\n{cell.source}"
        if last.startswith(("show_result(", "trace_table(", "display(")) or last.endswith("_side"):
            assert "text/html" in shown, f"{path.name}: no table from\n{cell.source}"
    assert seconds < 60, f"{path.name} took {seconds:.0f} s: keep notebooks quick"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=[p.stem for p in NOTEBOOK_FILES])
def test_notebook_is_committed_clean_and_explained(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"
    assert notebook.cells[0].cell_type == "markdown"
    assert notebook.cells[0].source.startswith("# ")
    previous = None
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: commit notebooks without outputs"
            assert cell.execution_count is None
            assert previous == "markdown", (
                f"{path.name}: explain this cell in a Markdown cell before it:\n{cell.source}"
            )
            # Lab time moves with settle()/advance(); a real sleep only slows the suite.
            assert "sleep(" not in cell.source
        previous = cell.cell_type
    assert "lab.stop()" in notebook.cells[-1].source
