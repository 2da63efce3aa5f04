"""keepalived.conf text into tokens and a tree of statements.

Tokens follow keepalived.conf(5): ``#`` and ``!`` start a comment anywhere outside quotes,
braces may be attached to words or stand alone (also on the next line), and ``"..."`` or
``'...'`` quote strings, with backslash escapes inside quotes. ``include`` is expanded in
place, relative to the including file's directory.

Not for: the meaning of keywords (`parser`).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass

from testbed.keepalived_conf.model import ConfigError, ConfigWarning

WORD, OPEN, CLOSE, EOL = "word", "{", "}", "eol"
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
    """One line into word and brace tokens; quotes join, comments end the line."""
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
        elif c in "#!":
            break
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


def tokenize(
    text: str, file: str, warnings: list[ConfigWarning], stack: tuple[str, ...]
) -> Iterator[Tok]:
    """Tokens of a whole file, with ``include`` expanded in place (relative to ``file``)."""
    base_dir = os.path.dirname(file) if stack else os.getcwd()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        toks = split_line(raw, file, line_no)
        if not toks:
            continue
        first = toks[0]
        if first.kind == WORD and first.text[:1] in ("@", "$", "~"):
            warnings.append(
                ConfigWarning(
                    file,
                    line_no,
                    "conditional lines, $parameters and ~SEQ/~LST are not supported; line ignored",
                )
            )
            continue
        if first.kind == WORD and first.text == "include":
            if len(toks) < 2 or toks[1].kind != WORD:
                raise error_at(first, "'include' needs a file name")
            yield from include(toks[1], base_dir, warnings, stack)
            continue
        yield from toks
        yield Tok(EOL, "", file, line_no)


def include(
    tok: Tok, base_dir: str, warnings: list[ConfigWarning], stack: tuple[str, ...]
) -> Iterator[Tok]:
    pattern = os.path.join(base_dir, os.path.expanduser(tok.text))
    matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not matches:
        warnings.append(ConfigWarning(tok.file, tok.line, f"include {tok.text}: no file matches"))
    for path in matches:
        real = os.path.realpath(path)
        if real in stack:
            chain = " -> ".join([*stack[stack.index(real) :], real])
            raise error_at(tok, f"include loop: {chain}")
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            # keepalived's plain 'include' does not fail on unreadable files either.
            warnings.append(
                ConfigWarning(tok.file, tok.line, f"include {tok.text}: {exc.strerror}")
            )
            continue
        yield from tokenize(text, path, warnings, (*stack, real))


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


def parse_block(toks: list[Tok], i: int, opener: Tok | None) -> tuple[list[Stmt], int]:
    stmts: list[Stmt] = []
    words: list[Tok] = []
    while i < len(toks):
        tok = toks[i]
        if tok.kind == WORD:
            words.append(tok)
            i += 1
            continue
        if words:
            stmts.append(Stmt(words))
            words = []
        if tok.kind == OPEN:
            # Opens the block of the statement before it: "keyword {", or "keyword" with
            # the "{" on a line of its own after it.
            if not stmts or stmts[-1].block is not None:
                raise error_at(tok, "'{' without a keyword before it")
            stmts[-1].block, i = parse_block(toks, i + 1, tok)
            continue
        if tok.kind == CLOSE:
            if opener is None:
                raise error_at(tok, "unbalanced '}': no block is open")
            return stmts, i + 1
        i += 1  # end of line
    if words:
        stmts.append(Stmt(words))
    if opener is not None:
        raise error_at(opener, "unbalanced '{': this block is never closed")
    return stmts, i
