"""A task's form: the change a student makes to the running lab.

Most tasks of the curriculum are a DNS fix (publish an MX, a null MX, an SPF
or DMARC record, a DKIM key; remove a record), so the form is first a zone
record editor, in four modes:

* **Add a record**      one zone-file line such as ``@ MX 0 .`` (``dns_add``);
* **Remove records**    a name, optionally a type and the data (``dns_remove``);
* **Edit the zone file** the whole zone, as an administrator edits it
  (``dns_replace_zone``);
* **Other change**      any task action in YAML flow style, such as
  ``dnsbl_delist: {node: dnsbl, net: 203.0.113.10/32}`` (delist an address,
  change an MX policy, let lab time pass);
* **Set a key**         on a topology with real Postfix (mininet): the node,
  a main.cf name and its value (``postfix_set``), as ``postconf -e``; the
  name is checked by Postfix itself when applied.

Input is checked as it is typed, with the same parser the DNS service uses
(:func:`sim.topology.zones.parse_zone`) and the same action checks as lab
files (:func:`sim.lab.actions.action_from_data`); problems show under the
field and *Apply* stays disabled until the input is valid. Applying posts
:class:`TaskForm.Submitted`; the lab screen runs it on the lab.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rich.text import Text
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import (
    Button,
    Collapsible,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Select,
    Static,
    TextArea,
)

from sim.errors import LabFileError
from sim.lab.actions import ACTIONS, action_from_data
from sim.lab.zonenames import relative_name_warnings
from sim.resolve import qtype_code
from sim.topology.model import Topology
from sim.topology.zones import ZoneSyntaxError, parse_zone

__all__ = [
    "KEY_ACTIONS",
    "MODES",
    "TaskForm",
    "other_problem",
    "record_problem",
    "remove_problem",
    "zone_problem",
]

#: (mode, radio label)
MODES: tuple[tuple[str, str], ...] = (
    ("add", "Add a record"),
    ("remove", "Remove records"),
    ("edit", "Edit the zone"),
    ("other", "Other"),
)

#: Actions that set one configuration key of real software on a node
#: (``{node, key, value}``), with the service the node must run and what
#: the key is; the "Set a key" mode offers those the lab knows.
KEY_ACTIONS: dict[str, tuple[str, str]] = {
    "postfix_set": ("postfix", "Postfix main.cf"),
    "dovecot_set": ("dovecot", "Dovecot"),
}
KEY_MODE = ("key", "Set a key")
#: (name, value) examples the boxes show for each software.
KEY_EXAMPLES: dict[str, tuple[str, str]] = {
    "postfix_set": ("myhostname", "mail.example.net"),
    "dovecot_set": ("auth_mechanisms", "plain login"),
}
#: Shorter labels when the "Set a key" mode joins the row (80 columns).
SHORT_LABELS = {"add": "Add record", "remove": "Remove", "edit": "Edit zone"}

#: The mode a task's reference solution would use (the kind of change, not the change).
MODE_OF_ACTION = {
    "dns_add": "add",
    "dns_remove": "remove",
    "dns_replace_zone": "edit",
    **dict.fromkeys(KEY_ACTIONS, "key"),
}

#: A main.cf parameter name (postconf(5)): lower case, digits and underscores.
_KEY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


# -- checking input (pure functions) -------------------------------------------------


def record_problem(zone: str, text: str) -> str | None:
    """Why ``text`` is not a record of ``zone`` (None when it parses)."""
    if not text.strip():
        return "Type a record, such as `@ MX 10 mx` (names are relative to the zone)."
    try:
        parse_zone(zone, text)
    except ZoneSyntaxError as err:
        return err.message
    return None


def remove_problem(name: str, rtype: str) -> str | None:
    if not name.strip():
        return "Name the records to remove: `@` for the zone's apex, or a name such as `mx`."
    if any(ch.isspace() for ch in name.strip()):
        return f"{name.strip()!r} is not one name: remove one name at a time."
    if rtype.strip():
        try:
            qtype_code(rtype.strip())
        except ValueError as err:
            return str(err)
    return None


def zone_problem(zone: str, text: str) -> str | None:
    """Why a whole zone text does not parse: ``line 3: ...``."""
    try:
        parse_zone(zone, text)
    except ZoneSyntaxError as err:
        return str(err)
    return None


def other_problem(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """An action typed in YAML flow style: (the action, None) or (None, the problem)."""
    if not text.strip():
        return (
            None,
            "Type an action, such as `advance: 30m` or `dnsbl_delist: {node: ..., net: ...}`.",
        )
    try:
        raw = YAML(typ="safe", pure=True).load(text)
    except YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        return None, f"not YAML: {problem}"
    if not isinstance(raw, Mapping) or len(raw) != 1:
        return None, "One action: a single key naming it, such as `mx_up: {node: mx-qq}`."
    try:
        action = action_from_data(dict(raw))
    except LabFileError as err:
        return None, "; ".join(p.message.removeprefix("(top level): ") for p in err.problems)
    return action.to_json(), None


def key_targets(topology: Topology) -> dict[str, str]:
    """``action:node`` → its label, for every node running software whose
    keys a task may set (``postfix_set:homesrv`` → ``homesrv: Postfix main.cf``)."""
    out: dict[str, str] = {}
    for name, (service, what) in KEY_ACTIONS.items():
        if name not in ACTIONS:
            continue
        for node in topology.hosts():
            if getattr(node.services, service, None) is not None:
                out[f"{name}:{node.name}"] = f"{node.name}: {what}"
    return out


def key_problem(key: str) -> str | None:
    if not key.strip():
        return "Type the parameter's name, such as `relayhost`."
    if not _KEY_NAME.match(key.strip()):
        return f"{key.strip()!r} is not a parameter name (lower case, digits and _)."
    return None


def dns_nodes(topology: Topology) -> dict[str, tuple[str, ...]]:
    """The nodes that run a DNS server, each with the zones it serves."""
    return {
        n.name: tuple(n.services.dns.zones)
        for n in topology.hosts()
        if n.services.dns is not None and n.services.dns.zones
    }


def _start(
    servers: Mapping[str, tuple[str, ...]], node: str | None, zone: str | None
) -> tuple[str | None, str | None]:
    """The (server, zone) to start on: ``zone`` where a server serves it
    (``node`` first), else the first server's first zone."""
    if zone is not None:
        order = [node, *servers] if node in servers else list(servers)
        for name in order:
            if name is not None and zone in servers.get(name, ()):
                return name, zone
    first = next(iter(servers), None)
    zones = servers.get(first, ()) if first is not None else ()
    return first, zones[0] if zones else None


# -- the widget ------------------------------------------------------------------------


class TaskForm(Vertical):
    """The change a student makes, checked as it is typed."""

    class Submitted(Message):
        """Apply this action (a one-key mapping, as in a lab file's solution)."""

        def __init__(self, form: TaskForm, action: dict[str, Any]) -> None:
            super().__init__()
            self.form = form
            self.action = action

        @property
        def control(self) -> TaskForm:
            return self.form

    class ZoneWanted(Message):
        """The form would like to show the zone as it is now on the running lab."""

        def __init__(self, form: TaskForm, node: str, zone: str) -> None:
            super().__init__()
            self.form = form
            self.node = node
            self.zone = zone

        @property
        def control(self) -> TaskForm:
            return self.form

    def __init__(
        self,
        topology: Topology,
        *,
        mode: str = "add",
        node: str | None = None,
        zone: str | None = None,
        action: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.topology = topology
        self.servers = dns_nodes(topology)
        #: The server and zone the selectors start on: the ones the task
        #: names (its reference solution's), else the first.
        self.start_node, self.start_zone = _start(self.servers, node, zone)
        self.targets = key_targets(topology)
        #: The software and node the "Set a key" mode starts on: the task's
        #: (its solution's action on its node: Dovecot on mx-qq, not Postfix).
        self.start_target = next(
            (t for t in self.targets if t == f"{action}:{node}"),
            next(
                (t for t in self.targets if node is not None and t.endswith(f":{node}")),
                next(iter(self.targets), None),
            ),
        )
        if mode == "key" and not self.targets:
            mode = "other"
        self.mode = mode if self.servers or mode in ("other", "key") else "other"
        self._zone_text: dict[tuple[str, str], str] = {}
        self._loaded_editor: tuple[str, str] | None = None

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with RadioSet(id="mode"):
            for mode, label in MODES:
                yield RadioButton(
                    SHORT_LABELS.get(mode, label) if self.targets else label,
                    value=mode == self.mode,
                    name=mode,
                    disabled=mode != "other" and not self.servers,
                )
            if self.targets:
                yield RadioButton(KEY_MODE[1], value=self.mode == "key", name=KEY_MODE[0])
        node = self.start_node
        with Horizontal(id="where", classes="dns-only"):
            yield Label("Server", classes="field-label")
            yield Select(
                [(n, n) for n in self.servers],
                compact=True,
                value=node if node is not None else Select.NULL,
                allow_blank=node is None,
                id="node",
            )
            yield Label("Zone", classes="field-label")
            zones = self.servers.get(node, ()) if node is not None else ()
            yield Select(
                [(z, z) for z in zones],
                compact=True,
                value=self.start_zone if self.start_zone is not None else Select.NULL,
                allow_blank=not zones,
                id="zone",
            )
        with Vertical(id="fields-add", classes="fields"):
            yield Input(compact=True, placeholder="a record, e.g.  @ MX 10 mx", id="record")
            yield Static("", id="error-add", classes="error")
        with Vertical(id="fields-remove", classes="fields"):
            with Horizontal(classes="row"):
                yield Input(compact=True, placeholder="name: @, mx…", id="rm-name")
                yield Input(compact=True, placeholder="type (any)", id="rm-type")
                yield Input(compact=True, placeholder="data (any)", id="rm-data")
            yield Static("", id="error-remove", classes="error")
        with Vertical(id="fields-edit", classes="fields"):
            # The editor is mounted when the mode is first chosen (it is the
            # heaviest widget of the form, and most tasks add or remove one record).
            yield Static("", id="error-edit", classes="error")
        with Vertical(id="fields-other", classes="fields"):
            yield Input(compact=True, placeholder="an action, e.g.  settle: 1h", id="other")
            yield Static("", id="error-other", classes="error")
            yield Static(
                Text("Actions: " + ", ".join(ACTIONS), style="dim"), classes="actions-help"
            )
        with Vertical(id="fields-key", classes="fields"):
            start = self.start_target
            yield Select(
                [(label, target) for target, label in self.targets.items()],
                compact=True,
                value=start if start is not None else Select.NULL,
                allow_blank=start is None,
                id="key-node",
            )
            with Horizontal(classes="row"):
                yield Input(compact=True, placeholder="name, e.g. relayhost", id="key-name")
                yield Input(compact=True, placeholder="value, e.g. yes", id="key-value")
            yield Static("", id="error-key", classes="error")
            yield Static(
                Text(
                    "Applied inside the node as an administrator would (Postfix: "
                    "postconf -e 'name = value', then postfix reload; Dovecot: "
                    "checked by doveconf, then doveadm reload); a name the "
                    "software does not know is refused. An empty value sets it to nothing.",
                    style="dim",
                ),
                classes="actions-help",
            )
        with Horizontal(classes="buttons"):
            yield Button(
                "Apply the change", id="apply", variant="primary", disabled=True, compact=True
            )
        with Collapsible(
            title="The zone as the server has it now",
            id="zone-box",
            collapsed=True,
            classes="dns-only",
        ):
            yield Static("", id="zone-now")

    def on_mount(self) -> None:
        self._set_mode(self.mode)
        self._want_zone()
        if self.targets:
            self._key_placeholders()
        self.call_after_refresh(self._highlight_mode)

    def _highlight_mode(self) -> None:
        # A RadioSet highlights its first button when mounted; the arrows
        # should start from the mode in use.
        radios = self.query_one("#mode", RadioSet)
        for _ in range(max(0, radios.pressed_index)):
            radios.action_next_button()

    # -- what is chosen ---------------------------------------------------------------

    @property
    def node(self) -> str | None:
        value = self.query_one("#node", Select).value
        return value if isinstance(value, str) else None

    @property
    def zone(self) -> str | None:
        value = self.query_one("#zone", Select).value
        return value if isinstance(value, str) else None

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        for m, _ in (*MODES, KEY_MODE):
            self.set_class(m == mode, f"-mode-{m}")
        if mode == "edit":
            self._load_editor()
        self.validate()

    @on(RadioSet.Changed, "#mode")
    def _mode_chosen(self, event: RadioSet.Changed) -> None:
        event.stop()
        if event.pressed.name:
            self._set_mode(event.pressed.name)

    @on(Select.Changed, "#node")
    def _node_chosen(self, event: Select.Changed) -> None:
        event.stop()
        zones = self.servers.get(self.node or "", ())
        select = self.query_one("#zone", Select)
        keep = select.value
        select.set_options([(z, z) for z in zones])
        if zones:
            # The zone chosen (the task's, at first) stays if this server has it.
            select.value = keep if keep in zones else zones[0]
        self._want_zone()
        self.validate()

    @on(Select.Changed, "#key-node")
    def _key_target_chosen(self, event: Select.Changed) -> None:
        event.stop()
        self._key_placeholders()
        self.validate()

    def _key_placeholders(self) -> None:
        """Examples in the name and value boxes for the software chosen."""
        target = self.query_one("#key-node", Select).value
        action = str(target).split(":", 1)[0] if isinstance(target, str) else ""
        name, value = KEY_EXAMPLES.get(action, KEY_EXAMPLES["postfix_set"])
        self.query_one("#key-name", Input).placeholder = f"name, e.g. {name}"
        self.query_one("#key-value", Input).placeholder = f"value, e.g. {value}"

    @on(Select.Changed, "#zone")
    def _zone_chosen(self, event: Select.Changed) -> None:
        event.stop()
        self._want_zone()
        if self.mode == "edit":
            self._load_editor()
        self.validate()

    @on(Input.Changed)
    @on(TextArea.Changed)
    def _typed(self, event: Message) -> None:
        event.stop()
        self.validate()

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        self.apply()

    @on(Button.Pressed, "#apply")
    def _apply_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.apply()

    # -- validation -----------------------------------------------------------------------

    def validate(self) -> dict[str, Any] | None:
        """Check the current input; show the problem inline; the action when valid."""
        action, problem = self._action()
        error = self.query_one(f"#error-{self.mode}", Static)
        typed = self._typed_something()
        warning = self._warning() if action is not None else None
        if problem and typed:
            error.update(Text("✗ " + problem, style="bold red"))
        elif warning:
            # It parses, but a dotted name without its final dot (lab 4's PTR).
            error.update(Text("⚠ " + warning, style="bold yellow"))
        else:
            error.update("")
        error.set_class(bool((problem and typed) or warning), "shown")
        self.query_one("#apply", Button).disabled = action is None
        return action

    def _warning(self) -> str | None:
        """What a record that parses will really say (sim.lab.zonenames)."""
        if self.mode != "add" or self.zone is None:
            return None
        warnings = relative_name_warnings(self.zone, self.query_one("#record", Input).value)
        return "; ".join(warnings) or None

    def _typed_something(self) -> bool:
        if self.mode == "add":
            return bool(self.query_one("#record", Input).value.strip())
        if self.mode == "remove":
            return any(
                self.query_one(f"#{i}", Input).value.strip()
                for i in ("rm-name", "rm-type", "rm-data")
            )
        if self.mode == "edit":
            return True
        if self.mode == "key":
            return bool(self.query_one("#key-name", Input).value.strip())
        return bool(self.query_one("#other", Input).value.strip())

    def _action(self) -> tuple[dict[str, Any] | None, str | None]:
        if self.mode == "other":
            return other_problem(self.query_one("#other", Input).value)
        if self.mode == "key":
            return self._key_action()
        node, zone = self.node, self.zone
        if node is None or zone is None:
            return None, "Choose the DNS server and the zone."
        if self.mode == "add":
            record = self.query_one("#record", Input).value
            problem = record_problem(zone, record)
            args = {"node": node, "zone": zone, "record": record.strip()}
            return (None, problem) if problem else ({"dns_add": args}, None)
        if self.mode == "remove":
            name = self.query_one("#rm-name", Input).value.strip()
            rtype = self.query_one("#rm-type", Input).value.strip()
            data = self.query_one("#rm-data", Input).value.strip()
            problem = remove_problem(name, rtype)
            if problem:
                return None, problem
            args = {"node": node, "zone": zone, "name": name}
            if rtype:
                args["type"] = rtype.upper()
            if data:
                args["data"] = data
            return {"dns_remove": args}, None
        text = self._editor().text
        problem = zone_problem(zone, text)
        if problem:
            return None, problem
        return {"dns_replace_zone": {"node": node, "zone": zone, "text": text}}, None

    def _key_action(self) -> tuple[dict[str, Any] | None, str | None]:
        target = self.query_one("#key-node", Select).value
        if not isinstance(target, str):
            return None, "Choose the node."
        name, _, node = target.partition(":")
        key = self.query_one("#key-name", Input).value
        problem = key_problem(key)
        if problem:
            return None, problem
        value = self.query_one("#key-value", Input).value.strip()
        return {name: {"node": node, "key": key.strip(), "value": value}}, None

    def apply(self) -> None:
        action = self.validate()
        if action is not None:
            self.post_message(self.Submitted(self, action))

    def clear(self) -> None:
        """Empty the fields after a change was applied."""
        for i in ("record", "rm-name", "rm-type", "rm-data", "other", "key-name", "key-value"):
            self.query_one(f"#{i}", Input).value = ""
        self._loaded_editor = None
        if self.mode == "edit":
            self._load_editor()
        self.validate()

    # -- the zone as it is now ------------------------------------------------------------

    def _want_zone(self) -> None:
        if self.node is not None and self.zone is not None:
            self.post_message(self.ZoneWanted(self, self.node, self.zone))

    def show_zone(self, node: str, zone: str, text: str | None) -> None:
        """Show the zone as the running lab serves it (None: not known)."""
        if text is not None:
            self._zone_text[(node, zone)] = text
        if (node, zone) != (self.node, self.zone):
            return
        known = self._zone_text.get((node, zone))
        shown = self.query_one("#zone-now", Static)
        if known is None:
            shown.update("")
            return
        shown.update(Text(known.rstrip("\n") or "(empty)"))
        self.query_one("#zone-box", Collapsible).title = f"The zone {zone} on {node}, as served now"
        if self.mode == "edit" and self._loaded_editor != (node, zone):
            self._load_editor()

    def _editor(self) -> TextArea:
        found = self.query("#zone-text")
        if found:
            return found.first(TextArea)
        editor = TextArea("", id="zone-text", show_line_numbers=True, soft_wrap=False)
        self.query_one("#fields-edit", Vertical).mount(editor, before=0)
        return editor

    def _load_editor(self) -> None:
        key = (self.node or "", self.zone or "")
        text = self._zone_text.get(key)
        if text is None:
            try:
                text = self.topology.zone_text(key[1])
            except KeyError:
                text = ""
        self._editor().load_text(text)
        self._loaded_editor = key if key in self._zone_text else None
