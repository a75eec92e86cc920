"""The hosting layer: the backend registry, which backends may host which
service kind, and one NodeHost behind both backends' control commands."""

from __future__ import annotations

from pathlib import Path

import pytest

import sim
from sim.errors import BackendError, ServiceError
from sim.hosting.backend import BACKENDS, backend_class
from sim.services import registry

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


def test_every_backend_name_resolves_to_its_class() -> None:
    assert set(BACKENDS) == {"local", "mininet"}
    assert backend_class("local").name == "local"


def test_an_unknown_backend_names_the_choices(home_isp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"unknown backend 'vm': choose one of local, mininet"):
        sim.start(sim.load_topology(home_isp_path), backend="vm")


def test_a_service_only_mininet_hosts_is_refused_by_local_in_one_line(
    home_isp_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As a real Postfix node will be: declared mininet-only in the registry.
    monkeypatch.setitem(registry._HOSTED_ONLY_BY, "mx", frozenset({"mininet"}))
    state = tmp_path / "state"
    with pytest.raises(BackendError) as caught:
        sim.start(sim.load_topology(home_isp_path), state_dir=state)
    message = str(caught.value)
    assert message == "mx-qq: the mx service runs only on the mininet backend, not on local"
    assert not state.exists(), "refused before anything started"


def test_control_of_a_service_the_node_does_not_run_names_both(home_isp_path: Path) -> None:
    with sim.start(sim.load_topology(home_isp_path)) as lab:
        with pytest.raises(ServiceError, match="laptop runs no 'relay' service"):
            lab.control("laptop", "relay", "queue")
        assert lab.control("smtp-isp", "relay", "queue")["entries"] == []


def test_the_lab_and_its_backend_share_one_topology_laid_out_once() -> None:
    from sim.topology.graph import layout

    loaded = sim.load_topology(TOPOLOGIES / "home-isp.yaml")
    with sim.start(loaded) as lab:
        assert lab.topology is lab.backend.topology
        # The relay's key is published in the running topology's zones...
        assert "_domainkey" in "".join(text for _, text in lab.topology.zones)
        # ...and the loader's layout is the one the backend routes with.
        assert lab.backend.network is layout(loaded)  # type: ignore[attr-defined]


def test_a_relay_shows_the_dkim_key_it_signs_with(tmp_path: Path) -> None:
    topology = sim.load_topology(TOPOLOGIES / "dkim.yaml")
    with sim.start(topology, state_dir=tmp_path) as lab:
        key = lab.control(
            "smtp-isp", "relay", "dkim_key", domain="home.example", selector="mail2026"
        )
        assert key["record_name"] == "mail2026._domainkey.home.example."
        assert key["txt"].startswith("v=DKIM1; k=rsa; p=")
        with pytest.raises(sim.ServiceError, match=r"no DKIM key for home\.example selector x"):
            lab.control("smtp-isp", "relay", "dkim_key", domain="home.example", selector="x")
