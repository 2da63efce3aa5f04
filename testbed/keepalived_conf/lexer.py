"""keepalived.conf logical lines into tokens and a tree of statements.

Words follow keepalived.conf(5): braces may be attached to words or stand alone (also on the
next line), and ``"..."`` or ``'...'`` quote strings, with backslash escapes inside quotes.
Comments, ``include``, conditional lines and parameters are gone by now (`preprocess`).
Blocks may nest at most `MAX_DEPTH` deep (keepalived's own grammar needs five); deeper is a
`ConfigError`, not a stack overflow.

Not for: the meaning of keywords (the parsers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from testbed.keepalived_conf.common import ConfigError
from testbed.keepalived_conf.preprocess import Line

WORD, OPEN, CLOSE, EOL = "word", "{", "}", "eol"
MAX_DEPTH = 16
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str
    file: str
    line: int


def error_at(tok: Tok, reason: str) -> ConfigError:
    return ConfigError(tok.file, tok.line, reason)


def split_line(text: str, file: str, line: int) -> list[Tok]:
    """One logical line into word and brace tokens; quotes join words."""
    toks: list[Tok] = []
    buf: list[str] = []
    started = False
    quote: str | None = None
    i = 0

    def flush() -> None:
        nonlocal started
        if started:
            toks.append(Tok(WORD, "".join(buf), file, line))
        buf.clear()
        started = False

    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and i + 1 < len(text):
                i += 1
                buf.append(_ESCAPES.get(text[i], text[i]))
            else:
                buf.append(c)
        elif c in "\"'":
            quote = c
            started = True
        elif c.isspace():
            flush()
        elif c in "{}":
            flush()
            toks.append(Tok(OPEN if c == "{" else CLOSE, c, file, line))
        else:
            buf.append(c)
            started = True
        i += 1
    if quote:
        raise ConfigError(file, line, "unterminated quoted string")
    flush()
    return toks


def tokenize(lines: Iterable[Line]) -> Iterator[Tok]:
    """Tokens of logical lines, each line ended by an EOL token."""
    for line in lines:
        toks = split_line(line.text, line.file, line.line)
        if toks:
            yield from toks
            yield Tok(EOL, "", line.file, line.line)


# ------------------------------------------------------------------ statement tree


@dataclass
class Stmt:
    words: list[Tok]
    block: list[Stmt] | None = None

    @property
    def head(self) -> Tok:
        return self.words[0]

    @property
    def keyword(self) -> str:
        return self.words[0].text

    @property
    def args(self) -> list[Tok]:
        return self.words[1:]


def parse_block(toks: list[Tok]) -> list[Stmt]:
    """The statements of a whole file; ``keyword ... {`` (or ``{`` on the next line) opens
    the block of the statement before it. Iterative, so nesting costs no Python stack."""
    top: list[Stmt] = []
    stack: list[tuple[list[Stmt], Tok]] = []  # enclosing statement lists and their '{'
    stmts = top
    words: list[Tok] = []
    for tok in toks:
        if tok.kind == WORD:
            words.append(tok)
            continue
        if words:
            stmts.append(Stmt(words))
            words = []
        if tok.kind == OPEN:
            if not stmts or stmts[-1].block is not None:
                raise error_at(tok, "'{' without a keyword before it")
            if len(stack) >= MAX_DEPTH:
                raise error_at(tok, f"blocks nested deeper than {MAX_DEPTH}")
            block: list[Stmt] = []
            stmts[-1].block = block
            stack.append((stmts, tok))
            stmts = block
        elif tok.kind == CLOSE:
            if not stack:
                raise error_at(tok, "unbalanced '}': no block is open")
            stmts, _ = stack.pop()
    if words:
        stmts.append(Stmt(words))
    if stack:
        raise error_at(stack[-1][1], "unbalanced '{': this block is never closed")
    return top
