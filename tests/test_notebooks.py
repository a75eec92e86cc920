"""The notebooks in ``notebooks/`` run clean, top to bottom, in a fresh kernel.

Each notebook asserts in its code cells the outcomes its text describes, so
executing it is the test: a change in maillab's behaviour that makes a
notebook untrue fails here, with the failing cell's error. The kernel runs
this interpreter (not whatever ``python3`` kernel a user has installed), in
the ``notebooks/`` directory, as Jupyter would.

Also checked without a kernel: notebooks are committed without outputs, and
every code cell is introduced by a Markdown cell that says what it is for;
and the display helpers of :mod:`sim.notebook` on hand-made traces.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import sim
from sim.events import Net
from sim.experiments.send import SendResult
from sim.notebook import draw_path, journey, lab_time, show_result, trace_table
from sim.trace import Trace, TraceEvent, event

ROOT = Path(__file__).resolve().parent.parent
JUPYTER_MISSING = [
    m
    for m in ("nbformat", "nbclient", "ipykernel", "matplotlib", "nbconvert")
    if not importlib.util.find_spec(m)
]
needs_jupyter = pytest.mark.skipif(
    bool(JUPYTER_MISSING),
    reason=f"the notebooks extra is not installed ({', '.join(JUPYTER_MISSING)} missing)",
)
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))
#: Real seconds any one cell may take (lab time makes days of retries quick).
CELL_TIMEOUT = 90
#: Real seconds a whole notebook may take: the four together stay near half a minute.
NOTEBOOK_BUDGET = 60
#: The kernel spec written for the tests (see ``kernel_dir``).
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
    import nbclient
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient.exceptions import CellExecutionError

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


@needs_jupyter
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
            html = "".join(str(o.get("data", {}).get("text/html", "")) for o in cell.outputs)
            assert "<svg" in html, f"{path.name}: no picture from\n{cell.source}"
        if last.startswith(("show_result(", "trace_table(", "display(")) or last.endswith("_side"):
            assert "text/html" in shown, f"{path.name}: no table from\n{cell.source}"
    assert seconds < NOTEBOOK_BUDGET, f"{path.name} took {seconds:.0f} s: keep notebooks quick"
    EXECUTED[path] = notebook


#: Notebooks executed by the test above, for the browser test below.
EXECUTED: dict[Path, Any] = {}
#: Where the HTML and the screenshots stay for people to look at (CI keeps them).
ARTIFACTS = Path(os.environ.get("MAILLAB_ARTIFACTS", ROOT / "build" / "notebooks"))
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)


def _screenshot(html: Path, png: Path) -> None:
    """A headless Chromium screenshot of ``html``, 1200 px wide. Every host
    name resolves to nothing: the page may not fetch anything from outside."""
    run = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1200,6000",
         f"--screenshot={png}", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and png.is_file(), run.stderr[-2000:]


@needs_jupyter
@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=[p.stem for p in NOTEBOOK_FILES])
def test_notebook_converts_to_html_and_renders_in_a_browser(path: Path, kernel_dir: Path) -> None:
    """What a student sees: the executed notebook as HTML (nbconvert), with
    the pictures inline as SVG, looked at by a real browser."""
    from matplotlib.image import imread
    from nbconvert import HTMLExporter

    notebook = EXECUTED.get(path) or _execute(path, kernel_dir)[0]
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    assert "Traceback" not in body
    assert "maillab-result" in body  # the result cards
    # The pictures: sequence diagrams, maps and timelines (SVG), alignment panels.
    assert "<svg" in body or "maillab-alignment" in body
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    html = ARTIFACTS / f"{path.stem}.html"
    html.write_text(body, encoding="utf-8")
    if CHROMIUM is None:
        pytest.skip("no headless browser: apt-get install chromium (the HTML is in build/)")
    png = ARTIFACTS / f"{path.stem}.png"
    _screenshot(html, png)
    pixels = imread(str(png))
    assert pixels.shape[1] == 1200
    ink = (pixels[..., :3] < 0.9).any(axis=-1)  # what is not (near) white
    assert ink.mean() > 0.01, f"{png} looks blank"
    assert ink[:600].mean() > 0.005, f"{png}: nothing at the top of the page"


@needs_jupyter
@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=[p.stem for p in NOTEBOOK_FILES])
def test_notebook_is_committed_clean_and_explained(path: Path) -> None:
    import nbformat

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


# -- the helpers, on hand-made traces ------------------------------------------------


@pytest.fixture(scope="module")
def home_isp() -> Any:
    return sim.load_topology(ROOT / "topologies" / "home-isp.yaml")


@pytest.fixture(scope="module")
def internet() -> Any:
    return sim.load_topology(ROOT / "topologies" / "internet.yaml")


def net(
    t: float,
    path: list[str],
    dst: str,
    port: int,
    verdict: str = "accept",
    router: str | None = None,
    proto: str = "tcp",
) -> TraceEvent:
    return event(
        t,
        path[0],
        f"{proto} to {dst}:{port} {verdict}",
        Net(
            src="x",
            dst=dst,
            proto=proto,
            port=port,
            verdict=verdict,  # type: ignore[arg-type]
            path=path,
            router=router,
        ),
    )


def test_a_dropped_connection_is_drawn_to_its_destination_and_stopped_at_the_router(
    home_isp: Any,
) -> None:
    trace = Trace(
        events=[
            net(1.0, ["laptop", "isp", "internet", "ns"], "198.51.100.53", 53, proto="udp"),
            net(2.0, ["laptop", "isp"], "203.0.113.25", 25, "drop", router="isp"),
        ]
    )
    way = journey(home_isp, trace)
    # The UDP DNS packet is not the message's way; the dropped SYN is, and
    # the rest of its route (which the router never let it take) is known.
    assert way.path == ("laptop", "isp", "internet", "mx-qq")
    assert way.stopped_at == "isp"


def test_submission_and_relay_legs_join_and_a_retry_elsewhere_replaces_the_leg(
    internet: Any,
) -> None:
    trace = Trace(
        events=[
            net(1.0, ["laptop", "isp", "smtp-isp"], "192.0.2.25", 587),
            net(2.0, ["smtp-isp", "isp", "internet", "mx1-backup"], "203.0.113.50", 25),
            net(2.1, ["smtp-isp", "isp", "internet", "mx1-backup"], "203.0.113.50", 25),
            net(3.0, ["smtp-isp", "isp", "internet", "mx2-backup"], "203.0.113.51", 25),
        ]
    )
    way = journey(internet, trace)
    assert way.path == ("laptop", "isp", "smtp-isp", "isp", "internet", "mx2-backup")
    assert way.stopped_at is None
    assert len(way.legs) == 3  # the repeated attempt to mx1 counts once


def test_a_refusal_by_the_receiver_stops_the_way_at_the_receiver(internet: Any) -> None:
    result = SendResult(
        outcome="rejected",
        stage="rcpt",
        reply={"code": 550, "enhanced": "5.7.25", "text": "no <PTR>"},
        checks={"ptr": "fail"},
    )
    result.trace = Trace(
        events=[net(1.0, ["vps-noptr", "hosting", "internet", "mx-qq"], "203.0.113.25", 25)]
    )
    assert journey(internet, result).stopped_at == "mx-qq"
    card = show_result(result)
    assert card.outcome == "rejected"
    assert card.row("reply") == "550 5.7.25 no <PTR>"
    assert ("ptr", "fail") in card.checks
    rendered = card._repr_html_()
    assert "no &lt;PTR&gt;" in rendered and "no <PTR>" not in rendered


def test_trace_table_filters_hides_dns_packets_and_escapes() -> None:
    trace = Trace(
        events=[
            net(1.0, ["laptop", "isp", "internet", "ns"], "198.51.100.53", 53, proto="udp"),
            TraceEvent(1.1, "dns", "ns", "asked MX qq.example", {"rcode": "NOERROR"}),
            TraceEvent(
                2.0, "smtp", "laptop", "→ MAIL FROM:<a@home.example> ← 550 no", {"code": 550}
            ),
            TraceEvent(3.0, "check", "mx-qq", "spf pass", {"check": "spf", "result": "pass"}),
        ]
    )
    table = trace_table(trace)
    assert table.kinds() == ["dns", "smtp", "check"] and table.hidden == 1
    assert trace_table(trace, dns_packets=True).kinds() == ["net", "dns", "smtp", "check"]
    assert trace_table(trace, kinds="check", nodes=["mx-qq"]).kinds() == ["check"]
    assert trace_table(trace.events[2:]).kinds() == ["smtp", "check"]
    html = table._repr_html_()
    assert "MAIL FROM:&lt;a@home.example&gt;" in html
    assert html.count("<tr") == 4  # the header and three events
    assert "1 DNS packet not shown" in html
    assert "MAIL FROM:<a@home.example>" in str(table)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0:00:00.0"),
        (163.75, "0:02:43.7"),
        (8 * 3600 + 35 * 60 + 4, "8:35:04.0"),
        (86400 + 3661.5, "1d 01:01:01.5"),
    ],
)
def test_lab_time_reads_like_a_clock(seconds: float, text: str) -> None:
    assert lab_time(seconds) == text


@needs_jupyter
def test_draw_path_numbers_a_node_passed_twice_once(internet: Any) -> None:
    trace = Trace(
        events=[
            net(1.0, ["laptop", "isp", "smtp-isp"], "192.0.2.25", 587),
            net(2.0, ["smtp-isp", "isp", "internet", "mx-qq"], "203.0.113.25", 25),
        ]
    )
    picture = draw_path(internet, trace)
    labels = {t.get_gid(): t for ax in picture.figure.axes for t in ax.texts}
    # isp is hop 2 (out to the relay) and hop 4 (the relay's way out).
    assert labels["hop-2"].get_text() == "2,4" and labels["hop-2"].get_visible()
    assert not labels["hop-4"].get_visible()
    assert picture.png()[:8] == b"\x89PNG\r\n\x1a\n"
