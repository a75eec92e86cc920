"""Finding things by name, and saying what was meant when a name is wrong.

* :func:`find_topology` — a topology by name (``"home-isp"``) or by path; a
  relative path that does not exist where the program runs is also looked
  for in the places topologies live (a notebook runs in ``notebooks/``), and
  a miss says every place it looked.
* :func:`did_you_mean` — the closest known names to a mistyped one
  (difflib's ratio, as Python's own ``NameError`` suggestions do).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from sim.errors import Problem, TopologyError

__all__ = ["did_you_mean", "find_topology", "topology_places", "unknown"]

_PACKAGE = Path(__file__).resolve().parent


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'smtp-isp'?"`` (or ``""`` when nothing is close)."""
    options = list(dict.fromkeys(known))
    close = difflib.get_close_matches(name, options, n=2, cutoff=0.6)
    if not close:
        lowered = {o.lower().replace("_", "-"): o for o in options}
        hit = lowered.get(name.lower().replace("_", "-"))
        close = [hit] if hit else []
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def unknown(what: str, name: str, known: Iterable[str]) -> str:
    """``"no node 'smtp_isp'; did you mean 'smtp-isp'?"``, or with the list
    of known names when none is close."""
    options = sorted(dict.fromkeys(known))
    hint = did_you_mean(name, options)
    if hint:
        return f"no {what} {name!r}{hint}"
    return f"no {what} {name!r} (there are: {', '.join(options) or 'none'})"


def topology_places() -> list[Path]:
    """Where topologies are looked for, in order: the working directory's
    (and its parent's, for a notebook in ``notebooks/``), the course's of
    ``$MAILLAB_COURSE``, the checkout's, the package's."""
    import os

    course = os.environ.get("MAILLAB_COURSE")
    places = [
        Path.cwd() / "topologies",
        Path.cwd().parent / "topologies",
        *([Path(course) / "topologies"] if course else []),
        _PACKAGE.parent / "topologies",
        _PACKAGE / "data" / "topologies",
    ]
    return list(dict.fromkeys(p.resolve() for p in places))


def find_topology(name: str | Path) -> Path:
    """The file of topology ``name``: ``"internet"``, ``"internet.yaml"`` or a path.

    A path that exists is used as it is. A bare name is looked for in
    :func:`topology_places`; a relative path with directories (a notebook's
    ``topologies/home-isp.yaml``) from the working directory's parent and
    the repository root as well. A miss raises :class:`TopologyError` naming
    every place it looked (and the closest topology names found there).
    """
    given = Path(name)
    if given.exists():
        # Something is there: the loader says what is wrong with it if it is
        # no topology file (a directory, a device, a FIFO), not "no such topology".
        return given
    bare = len(given.parts) == 1
    filename = given.name if given.suffix in (".yaml", ".yml") else f"{given.name}.yaml"
    places = topology_places()
    if bare:
        candidates = [place / filename for place in places]
    elif given.is_absolute():
        candidates = [given]
    else:
        bases = [Path.cwd(), Path.cwd().parent, _PACKAGE.parent]
        candidates = [(base / given).resolve() for base in bases]
    tried = list(dict.fromkeys(candidates))
    for candidate in tried:
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for place in places if place.is_dir() for p in place.glob("*.yaml")})
    stem = Path(filename).stem
    found = next((place for place in places if (place / filename).is_file()), None)
    if found is not None:
        hint = f"; the name alone, {stem!r}, finds {found / filename}"
    else:
        hint = did_you_mean(stem, known)
    looked = ", ".join(str(p) for p in tried)
    raise TopologyError(
        [Problem(str(name), 1, 1, f"no topology {filename}{hint} (looked for {looked})")]
    )
