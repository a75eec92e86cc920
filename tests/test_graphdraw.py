"""Drawing topologies: the text tree, SVG and PNG pictures, ``maillab graph``."""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import sim
from sim.errors import NetworkError
from sim.graphcmd import register
from sim.graphdraw import DrawError, render_image, render_svg, render_text
from sim.topology.firewall import describe_rule
from sim.topology.graph import LabNetwork, build_network

ROOT = Path(__file__).resolve().parent.parent
HOME_ISP = ROOT / "topologies" / "home-isp.yaml"
RICH = ROOT / "tests" / "fixtures" / "topologies" / "good" / "rich.yaml"
SVG = "{http://www.w3.org/2000/svg}"
#: The way a blocked connection from the laptop to qq.example's MX goes.
BLOCKED_PATH = ["laptop", "isp", "internet", "mx-qq"]


@pytest.fixture(scope="module", params=[HOME_ISP, RICH], ids=["home-isp", "rich"])
def network(request: pytest.FixtureRequest) -> LabNetwork:
    return build_network(sim.load_topology(request.param))


@pytest.fixture(scope="module")
def home() -> LabNetwork:
    return build_network(sim.load_topology(HOME_ISP))


# -- text ------------------------------------------------------------------------------


def _line_of(text: str, name: str) -> str:
    """The tree line that starts with node ``name``."""
    for line in text.splitlines():
        if line.lstrip("\u2502\u251c\u2514\u2500 |`-").startswith(f"{name} "):
            return line
    raise AssertionError(f"no line for {name}")


def test_text_names_every_node_and_every_address(network: LabNetwork) -> None:
    text = render_text(network)
    for name in network.nodes():
        assert name in text
        for iface in network.interfaces(name):
            # Hosts and routers alike, the routers' generated addresses included.
            assert str(iface.address) in text, (name, iface)


def test_text_shows_every_link_from_both_ends(network: LabNetwork) -> None:
    text = render_text(network)
    for seg in (s for s in network.segments if s.kind == "link"):
        a, b = seg.members
        assert f"link to {b}" in text
        assert f"link to {a}" in text


def test_text_shows_every_rule_in_order_with_its_note(network: LabNetwork) -> None:
    text = render_text(network)
    for router in network.topology.routers():
        positions = []
        for i, rule in enumerate(router.firewall, 1):
            line = f"{i}. {describe_rule(rule)}"
            assert line in text
            positions.append(text.index(line))
            if rule.note:
                assert rule.note in text
        assert positions == sorted(positions)


def test_text_shows_services_with_ports(home: LabNetwork) -> None:
    lines = render_text(home).splitlines()
    mx_line = next(line for line in lines if "mx :25 for qq.example" in line)
    assert "checks ptr reject" in mx_line
    assert any("submission :587 :465" in line for line in lines)
    assert any("dns :53" in line and "resolver" in line for line in lines)
    # Each host line sits above its own service lines.
    host = next(i for i, line in enumerate(lines) if "mx-qq 203.0.113.25/24" in line)
    assert "mx :25 for qq.example" in lines[host + 1]


def test_text_lists_lans_without_a_router() -> None:
    text = render_text(sim.load_topology(RICH))
    section = text[text.index("LANs without a router") :]
    assert "LAN 10.9.0.0/24" in section
    assert "printer 10.9.0.2/24" in section
    assert "nas 10.9.0.3/24" in section


def test_text_can_be_plain_ascii(network: LabNetwork) -> None:
    text = render_text(network, ascii_only=True)
    assert text.isascii()
    assert "`-- " in text
    # The same drawing otherwise: only the glyphs differ.
    assert len(text.splitlines()) == len(render_text(network).splitlines())


def test_text_marks_a_highlighted_path(home: LabNetwork) -> None:
    text = render_text(home, highlight=BLOCKED_PATH, stopped_at="isp")
    line_of = {name: _line_of(text, name) for name in ("laptop", "isp", "mx-qq", "ns")}
    assert "hop 1" in line_of["laptop"]
    assert "hop 2" in line_of["isp"]
    assert "stopped here" in line_of["isp"]
    assert "hop 4 (not reached)" in line_of["mx-qq"]
    assert "hop" not in line_of["ns"]


@pytest.mark.parametrize(
    ("highlight", "stopped_at"),
    [(["laptop", "internet"], None), (["laptop", "nowhere"], None), (["laptop"], "nowhere")],
    ids=["not-neighbours", "unknown-node", "unknown-stop"],
)
def test_a_path_that_is_not_one_is_refused(
    home: LabNetwork, highlight: list[str], stopped_at: str | None
) -> None:
    with pytest.raises(NetworkError):
        render_text(home, highlight=highlight, stopped_at=stopped_at)


# -- pictures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rich_svg() -> ET.Element:
    return ET.fromstring(render_svg(sim.load_topology(RICH)))


@pytest.fixture(scope="module")
def path_svg(home: LabNetwork) -> ET.Element:
    return ET.fromstring(render_svg(home, highlight=BLOCKED_PATH, stopped_at="isp"))


def _text(element: ET.Element) -> str:
    """The text an SVG element shows, one space between its <text> pieces."""
    return " ".join(piece.strip() for piece in element.itertext() if piece.strip())


def _by_id(root: ET.Element) -> dict[str, ET.Element]:
    return {el.attrib["id"]: el for el in root.iter() if "id" in el.attrib}


def test_svg_has_a_marker_and_a_text_label_per_node(rich_svg: ET.Element) -> None:
    assert rich_svg.tag == f"{SVG}svg"
    ids = _by_id(rich_svg)
    network = build_network(sim.load_topology(RICH))
    for name in network.nodes():
        assert f"node-{name}" in ids, name
        label = ids[f"label-{name}"]
        assert _text(label) == name
        assert label.find(f".//{SVG}text") is not None  # text, not glyph outlines
        address = _text(ids[f"address-{name}"]) if f"address-{name}" in ids else ""
        if network.node(name).kind == "host":
            assert address == str(network.interfaces(name)[0].address)


def test_svg_shows_rules_lans_and_links(rich_svg: ET.Element) -> None:
    ids = _by_id(rich_svg)
    network = build_network(sim.load_topology(RICH))
    rules = _text(ids["rules-home"])
    for i, rule in enumerate(network.node("home").firewall, 1):
        assert f"{i}. {describe_rule(rule)}" in rules
    for seg in network.segments:
        if seg.kind == "link":
            assert f"edge-{'--'.join(sorted(seg.members))}" in ids
        else:
            assert str(seg.network) in _text(ids[f"lan-label-{seg.id}"])
    all_text = "\n".join(rich_svg.itertext())
    assert "198.18.0.0/30" in all_text  # a link's network


def test_svg_without_a_path_has_no_path_marks(rich_svg: ET.Element) -> None:
    ids = _by_id(rich_svg)
    assert not [i for i in ids if i.startswith(("path-", "hop-", "stopped-at"))]


def test_svg_draws_the_highlighted_path(path_svg: ET.Element) -> None:
    ids = _by_id(path_svg)
    hops = sorted(i for i in ids if i.startswith("path-"))
    assert hops == [f"path-{i}" for i in range(len(BLOCKED_PATH) - 1)]
    for hop in hops:
        assert ids[hop].find(f".//{SVG}path") is not None
    assert "stopped-at" in ids
    numbers = [_text(ids[f"hop-{i}"]) for i in range(1, len(BLOCKED_PATH) + 1)]
    assert numbers == ["1", "2", "3", "4"]
    # Reached hops are solid, the rest (after the stop) dashed.
    styles = [ids[h].find(f".//{SVG}path").attrib.get("style", "") for h in hops]  # type: ignore[union-attr]
    assert "dasharray" not in styles[0]
    assert all("dasharray" in s for s in styles[1:])


def test_png_is_written_and_is_a_png(home: LabNetwork, tmp_path: Path) -> None:
    out = render_image(home, tmp_path / "home.png")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_render_image_takes_the_format_from_the_suffix_or_refuses(
    home: LabNetwork, tmp_path: Path
) -> None:
    svg = render_image(home, tmp_path / "picture.svg")
    assert ET.parse(svg).getroot().tag == f"{SVG}svg"
    forced = render_image(home, tmp_path / "picture.img", "png")
    assert forced.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(DrawError, match="svg, png"):
        render_image(home, tmp_path / "picture.pdf")
    with pytest.raises(DrawError, match="cannot write"):
        render_image(home, tmp_path / "no" / "such" / "dir.svg")


def test_missing_matplotlib_is_one_clear_error(
    home: LabNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now fails
    with pytest.raises(DrawError, match=r"matplotlib.*pip install") as err:
        render_image(home, tmp_path / "x.svg")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x.svg").exists()
    assert "laptop" in render_text(home)  # text needs no matplotlib


# -- maillab graph ------------------------------------------------------------------------


@pytest.fixture
def maillab(monkeypatch: pytest.MonkeyPatch) -> Callable[[Sequence[str]], int]:
    """``sim.cli.main`` with ``graph`` registered (whether or not the CLI
    module has wired it in yet)."""
    import sim.cli as cli

    original = cli.build_parser

    def build() -> argparse.ArgumentParser:
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "graph" not in sub.choices:
            register(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)
    return lambda argv: cli.main(list(argv))


def test_graph_prints_the_text_tree(
    maillab: Callable[[Sequence[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert maillab(["graph", str(HOME_ISP)]) == 0
    out = capsys.readouterr().out
    assert out == render_text(sim.load_topology(HOME_ISP))


def test_graph_writes_a_picture_named_after_the_topology(
    maillab: Callable[[Sequence[str]], int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert maillab(["graph", str(HOME_ISP), "--format", "svg"]) == 0
    assert ET.parse(tmp_path / "home-isp.svg").getroot().tag == f"{SVG}svg"
    assert maillab(["graph", str(HOME_ISP), "-o", "out.png"]) == 0
    assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG")
    assert "wrote out.png" in capsys.readouterr().err


def test_graph_draws_a_highlighted_path(
    maillab: Callable[[Sequence[str]], int], tmp_path: Path
) -> None:
    out = tmp_path / "path.svg"
    argv = [
        "graph",
        str(HOME_ISP),
        "-o",
        str(out),
        "--highlight",
        ",".join(BLOCKED_PATH),
        "--stopped-at",
        "isp",
    ]
    assert maillab(argv) == 0
    assert "stopped-at" in _by_id(ET.parse(out).getroot())


@pytest.mark.parametrize(
    "argv",
    [
        ["graph", "no-such-topology.yaml"],
        ["graph", str(HOME_ISP), "--format", "gif"],
        ["graph", str(HOME_ISP), "-o", "picture.pdf"],
        ["graph", str(HOME_ISP), "--format", "svg", "-o", "picture.png"],
        ["graph", str(HOME_ISP), "--highlight", "laptop,mx-qq"],
        ["graph", str(ROOT / "tests/fixtures/topologies/bad/gateway-unknown.yaml")],
    ],
    ids=["missing-file", "bad-format", "unknown-suffix", "mismatch", "bad-path", "bad-topology"],
)
def test_graph_bad_input_is_one_line_and_exit_2(
    maillab: Callable[[Sequence[str]], int],
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert maillab(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert "Traceback" not in captured.err
    assert list(tmp_path.iterdir()) == []


def test_every_drawing_places_the_routers_in_one_order() -> None:
    """maillab graph and the TUI's map share sim.topology.graph.router_order:
    on a star of routers, the hub in the middle."""
    from sim.topology.graph import layout, router_order
    from sim.tui.mapdraw import draw_map

    network = layout(sim.load_topology(ROOT / "topologies" / "internet.yaml"))
    order = router_order(network)
    assert order[len(order) // 2] == "internet"
    first = draw_map(network, 400).plain.splitlines()[0]
    assert sorted(order, key=first.index) == order
