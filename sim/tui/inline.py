"""Lab prose (Markdown-ish) as Rich text, for places that are not a Markdown widget.

Lab files write hints, choices and explanations in a little Markdown:
```code```, ``**strong**``, ``*emphasis*``, lines wrapped by hand. In a
button, an option or a short result line a full Markdown widget is too much,
so :func:`inline_markdown` renders just those: code and strong in bold,
emphasis in italics, hand-wrapped lines joined (a blank line stays a
paragraph break).
"""

from __future__ import annotations

import re

from rich.markdown import Markdown
from rich.text import Text

__all__ = ["inline_markdown", "prose"]

_SPAN = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*")


def _reflow(text: str) -> str:
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def inline_markdown(text: str, style: str = "") -> Text:
    """``text`` with code, strong and emphasis styled and its lines reflowed."""
    source = _reflow(text)
    out = Text(style=style)
    last = 0
    for match in _SPAN.finditer(source):
        out.append(source[last : match.start()])
        code, strong, emphasis = match.groups()
        if code is not None:
            out.append(code, style="bold")
        elif strong is not None:
            out.append(strong, style="bold")
        else:
            out.append(emphasis, style="italic")
        last = match.end()
    out.append(source[last:])
    return out


def prose(text: str) -> Markdown:
    """A lab's Markdown text for a ``Static``: Rich's Markdown is one
    renderable, where Textual's Markdown widget builds a widget per block
    (too slow to rebuild on every step). Code blocks (the labs' diagrams and
    zone snippets) use the terminal's own colours, so they read in light and
    dark themes alike."""
    return Markdown(text, code_theme="ansi_dark", inline_code_theme="ansi_dark", hyperlinks=False)
