"""sim.inputfile: regular files only, bounded, one problem on refusal."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sim.inputfile import (
    MAX_INPUT_BYTES,
    MAX_YAML_BYTES,
    InputFileError,
    read_input_bytes,
    read_input_text,
)
from sim.spec.yamlpos import load_yaml
from sim.topology import validate_topology_file


def _refusal(path: Path, **kwargs: int) -> str:
    with pytest.raises(InputFileError) as info:
        read_input_text(path, what="topology file", **kwargs)
    (problem,) = info.value.problems
    assert problem is info.value.problem and problem.path == str(path)
    return problem.message


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_bytes(b"\xef\xbb\xbfname: caf\xc3\xa9\n")  # a BOM, then UTF-8
    assert read_input_text(f) == "name: café\n"


def test_the_limit_is_checked_before_reading(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    with f.open("wb") as out:
        out.truncate(10 * 1024**3)  # 10 GiB, sparse: reading it would take minutes
    started = time.monotonic()
    message = _refusal(f)
    assert time.monotonic() - started < 1
    assert "too large" in message and "10240.0 MiB" in message and "limit is 1.0 MiB" in message
    exact = tmp_path / "exact"
    exact.write_bytes(b"#" * 100)
    assert len(read_input_bytes(exact, limit=100)) == 100
    assert "limit is 99 bytes" in _refusal(exact, limit=99)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert "FIFO" in _refusal(fifo)


@pytest.mark.parametrize(("path", "word"), [("/dev/zero", "device"), ("/dev/null", "device")])
def test_devices_are_refused(path: str, word: str) -> None:
    assert word in _refusal(Path(path))


def test_a_directory_missing_and_binary_files(tmp_path: Path) -> None:
    assert _refusal(tmp_path) == "is a directory, not a topology file"
    assert _refusal(tmp_path / "nope.yaml") == "no such file"
    assert "no directory" in _refusal(tmp_path / "nodir" / "nope.yaml")
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"name: x\n\x00\x01")
    assert "binary" in _refusal(binary)


def test_bad_utf8_is_placed(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"name: x\ntitle: caf\xe9\n")
    with pytest.raises(InputFileError) as info:
        read_input_text(f)
    assert (info.value.problem.line, info.value.problem.col) == (2, 11)
    assert "0xe9" in info.value.problem.message


def test_the_loaders_read_through_it(tmp_path: Path) -> None:
    assert MAX_YAML_BYTES < MAX_INPUT_BYTES
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as out:
        out.truncate(MAX_YAML_BYTES + 1)
    (problem,) = validate_topology_file(huge)
    assert "too large for a YAML file" in problem.message
    doc, problems = load_yaml(huge)
    assert doc is None and "too large for a YAML file" in problems[0].message
