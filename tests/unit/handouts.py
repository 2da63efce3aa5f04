"""The command blocks of a lab handout, as a student would copy them: the unit tests check
them (known commands, timeouts, no placeholders) and the integration test pastes them into a
running lab."""

from __future__ import annotations

import re
from dataclasses import dataclass

PROMPT = "lvs-testbed> "
SECOND_TERMINAL = "sudo lvs-testbed "
PASTED_SECTIONS = ("Steps", "Hand-in")


@dataclass(frozen=True)
class Block:
    section: str  # the ## heading it is under
    lines: tuple[str, ...]

    @property
    def kind(self) -> str:
        """cli (every line for the lab's CLI), terminal (every line a `sudo lvs-testbed`
        command for a second terminal), or other (shell lines, a mix, a diagram)."""
        if self.lines and all(line.startswith(PROMPT) for line in self.lines):
            return "cli"
        if self.lines and all(line.startswith(SECOND_TERMINAL) for line in self.lines):
            return "terminal"
        return "other"

    @property
    def commands(self) -> list[str]:
        """The CLI commands of a cli block, without their prompt."""
        return [line[len(PROMPT) :] for line in self.lines]


def blocks(text: str) -> list[Block]:
    """Every fenced block, in order, with its lines unindented and blank lines dropped."""
    out, section, inside, lines = [], "", False, []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not inside and raw.startswith("## "):
            section = raw[3:].strip()
        elif stripped.startswith("```"):
            if inside:
                out.append(Block(section, tuple(lines)))
                lines = []
            inside = not inside
        elif inside and stripped:
            lines.append(stripped)
    return out


def pasted_blocks(text: str) -> list[Block]:
    """The blocks of the Steps and Hand-in sections a student pastes (CLI) or types in a
    second terminal, in order; a lab's own `lab start` is left out (the test has started it)."""
    return [
        b
        for b in blocks(text)
        if b.section in PASTED_SECTIONS
        and (
            b.kind == "cli"
            or (
                b.kind == "terminal" and not any(re.search(r" (lab start|up) ", x) for x in b.lines)
            )
        )
    ]
