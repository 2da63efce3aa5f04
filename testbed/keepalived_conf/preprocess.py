"""keepalived.conf files into logical lines, as keepalived's lib/parser.c read_line() makes them.

What it does, in keepalived's order, per line:

* reads the file as UTF-8 (anything else is a `ConfigError` naming file and line) and drops
  comments: ``#`` or ``!`` outside double quotes starts one, ``\\#`` and ``\\!`` are the
  characters themselves;
* **conditional configuration**: a line ``@ID rest`` is kept (as ``rest``) only when ID is
  the configuration id, ``@^ID rest`` only when it is not (keepalived's ``-i ID``; with no
  id, ``@ID`` lines are dropped and ``@^ID`` lines kept);
* **parameters**: ``$NAME=VALUE`` defines one (a value ending in ``\\`` continues on the next
  lines: a multi-line definition); later, ``$NAME`` (followed by a blank, ``,``, ``)`` or the
  end) and ``${NAME}`` anywhere are replaced, recursively; an undefined name is left as it is.
  Predefined: ``${_PWD}`` (the current file's directory), ``${_INSTANCE}`` (the id),
  ``${_RANDOM [MIN [MAX]]}``, ``${_ENV NAME}``, ``${_HASH}`` (#) and ``${_BANG}`` (!);
* **sequences**: ``~SEQ(VAR, START, STEP, END) rest`` (``~SEQx``: hexadecimal) and
  ``~LST(VAR, V1, V2, ...)`` / ``~LST({A, B}, {1, 2}, {3, 4}) rest`` repeat ``rest`` with VAR set;
* **include** ``FILE`` (glob patterns and ``{a,b}`` braces), relative to the including file's
  directory; ``includer``/``includem``/``includew``/``includeb``/``includea`` turn an
  unreadable file (r) or a pattern that matches nothing (m, w, b, a) into errors, where plain
  ``include`` only warns, as in keepalived.

Bounds (a configuration is untrusted input): files of at most 4 MiB, at most 200,000 logical
lines after expansion, substitutions that stop within 1,000 steps, include and expansion
nesting at most 32 deep; beyond them, a `ConfigError` says which.

Not for: words and blocks (`lexer`) or what keywords mean (the parsers).
"""

from __future__ import annotations

import glob
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from testbed.keepalived_conf.common import ConfigError, ConfigWarning

MAX_FILE_BYTES = 4 << 20
MAX_LINES = 200_000
MAX_SUBSTITUTIONS = 1000
MAX_NESTING = 32
MAX_LINE_CHARS = 65536
RANDOM_MAX = 32767  # keepalived's default ${_RANDOM} range is 0..32767
INCLUDE_WORDS = {
    "include": "",
    "includer": "r",
    "includem": "rm",
    "includew": "rm",
    "includeb": "rm",
    "includea": "rm",
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEFINITION = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)=[ \t]*(.*)$", re.S)
_FIRST_WORD = re.compile(r"(\S+)[ \t]*(.*)$", re.S)


@dataclass(frozen=True)
class Line:
    """One logical line and where it came from (the line of its expansion's source)."""

    text: str
    file: str
    line: int


def decomment(text: str) -> tuple[str, bool]:
    """keepalived's decomment(): the line without its comment and surrounding blanks, and
    whether it ends in a ``\\`` (continues a multi-line definition)."""
    out: list[str] = []
    quote = False
    i = 0
    text = text.lstrip(" \t")
    continued = False
    while i < len(text):
        c = text[i]
        if c == '"':
            quote = not quote
        elif c == "\\":
            if i + 1 == len(text):
                continued = True
                break
            if not quote and text[i + 1] in "#!":
                out.append(text[i + 1])
            else:
                out.append(text[i : i + 2])
            i += 2
            continue
        elif not quote and c in "#!":
            break
        out.append(c)
        i += 1
    return "".join(out).rstrip(" \t\r"), continued


def read_text(path: str) -> str:
    """A configuration file as text; ConfigError for what is not UTF-8 or too big."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(path, 1, f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8-sig")  # a byte order mark is not a keyword
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            path,
            line,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8 or ASCII",
        ) from None


def brace_expand(pattern: str) -> list[str]:
    """csh-style ``{a,b}`` alternatives (nested too), as glob(GLOB_BRACE) does."""
    depth = 0
    start = -1
    for i, c in enumerate(pattern):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                parts, level, last = [], 0, start + 1
                for j in range(start + 1, i):
                    if pattern[j] == "{":
                        level += 1
                    elif pattern[j] == "}":
                        level -= 1
                    elif pattern[j] == "," and level == 0:
                        parts.append(pattern[last:j])
                        last = j + 1
                parts.append(pattern[last:i])
                if len(parts) == 1:
                    continue  # "{x}" is not an alternative
                head, tail = pattern[:start], pattern[i + 1 :]
                return [e for p in parts for e in brace_expand(head + p + tail)]
    return [pattern]


class Preprocessor:
    """Turns one top-level file (and what it includes) into `Line` values."""

    def __init__(
        self,
        warnings: list[ConfigWarning],
        config_id: str | None = None,
        *,
        rng: Callable[[int, int], int] = random.randint,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.warnings = warnings
        self.config_id = config_id
        self.rng = rng
        self.environ = os.environ if environ is None else environ
        self.defs: dict[str, list[str]] = {}  # name -> lines (one for a plain definition)
        self._collecting: str | None = None  # the multi-line definition being read
        self._lines = 0
        self._pwd = os.getcwd()
        self.ids_seen: dict[str, Line] = {}  # ids of @ID (not @^ID) lines, and the first of each

    # ----- files

    def lines(self, text: str, source: str, stack: tuple[str, ...]) -> Iterator[Line]:
        """Logical lines of ``text`` read from ``source`` (``stack``: the include chain)."""
        if len(stack) > MAX_NESTING:
            raise ConfigError(source, 1, f"includes nested deeper than {MAX_NESTING}")
        saved_pwd = self._pwd
        if stack:
            self._pwd = os.path.dirname(os.path.abspath(source))
        try:
            for number, raw in enumerate(text.split("\n"), start=1):
                yield from self._raw_line(raw, Line(raw, source, number), stack)
            if self._collecting is not None:
                self._collecting = None  # keepalived ends a definition at the end of a file
        finally:
            self._pwd = saved_pwd

    def _raw_line(self, raw: str, where: Line, stack: tuple[str, ...]) -> Iterator[Line]:
        if len(raw) > MAX_LINE_CHARS:
            raise ConfigError(where.file, where.line, f"line longer than {MAX_LINE_CHARS} chars")
        text, continued = decomment(raw)
        if self._collecting is not None:
            if text:
                self.defs[self._collecting].append(text)
            if not continued:
                self._collecting = None
            return
        if continued:
            text += "\\"
        if text:
            yield from self._logical(text, where, stack, 0)

    # ----- one logical line

    def _logical(
        self, text: str, where: Line, stack: tuple[str, ...], depth: int
    ) -> Iterator[Line]:
        if depth > MAX_NESTING:
            raise ConfigError(
                where.file, where.line, f"~SEQ/~LST or definitions nested deeper than {MAX_NESTING}"
            )
        extra: list[str] = []
        for _ in range(MAX_SUBSTITUTIONS):
            if text.startswith("@"):
                text = self._conditional(text, where)
                if not text:
                    return
            if text.startswith("$") and self._define(text, where):
                return
            if text.startswith(("~SEQ", "~LST")):
                yield from self._sequence(text, where, stack, depth)
                return
            if "$" not in text:
                break
            replaced, more = self._substitute(text, where)
            if replaced is None:
                break
            text, extra = replaced, more + extra
            if not (text.startswith("@") or "$" in text):
                break
        else:
            raise ConfigError(
                where.file, where.line, "parameter substitution does not end (a loop?)"
            )
        text = text.rstrip(" \t")
        if text:
            yield from self._emit(text, where, stack)
        for line in extra:
            yield from self._logical(line, where, stack, depth + 1)

    def _emit(self, text: str, where: Line, stack: tuple[str, ...]) -> Iterator[Line]:
        match = _FIRST_WORD.match(text)
        word, rest = (match.group(1), match.group(2).strip()) if match else ("", "")
        if word in INCLUDE_WORDS:
            if not rest:
                raise ConfigError(where.file, where.line, f"'{word}' needs a file name")
            yield from self._include(rest, INCLUDE_WORDS[word], where, stack)
            return
        self._lines += 1
        if self._lines > MAX_LINES:
            raise ConfigError(
                where.file, where.line, f"more than {MAX_LINES} lines after ~SEQ/~LST expansion"
            )
        yield Line(text, where.file, where.line)

    def _conditional(self, text: str, where: Line) -> str:
        """keepalived: ``@ID rest`` kept when ID is the config id; ``@^ID`` when it is not."""
        negate = text.startswith("@^")
        match = _FIRST_WORD.match(text[2 if negate else 1 :])
        if match is None or not match.group(2).strip():
            return ""  # keepalived needs something after the id
        if not negate:
            self.ids_seen.setdefault(match.group(1), where)
        matches = self.config_id is not None and match.group(1) == self.config_id
        return match.group(2).strip(" \t") if matches != negate else ""

    def _define(self, text: str, where: Line) -> bool:
        match = _DEFINITION.fullmatch(text)
        if match is None:
            return False
        name, value = match.groups()
        if value.endswith("\\"):
            first = value[:-1].rstrip(" \t")
            self.defs[name] = [first] if first else []
            self._collecting = name
        else:
            self.defs[name] = [value]
        return True

    # ----- $NAME and ${NAME}

    def _value(self, name: str, params: str) -> list[str] | None:
        if name in self.defs:
            return self.defs[name]
        if name == "_PWD":
            return [self._pwd]
        if name == "_INSTANCE":
            return [self.config_id or ""]
        if name == "_HASH":
            return ["#"]
        if name == "_BANG":
            return ["!"]
        if name == "_RANDOM":
            bounds = [int(p) for p in params.split()] if params else []
            lo = bounds[0] if bounds else 0
            hi = bounds[1] if len(bounds) > 1 else RANDOM_MAX
            return [str(self.rng(lo, max(lo, hi)))]
        if name == "_ENV" and params:
            return [self.environ.get(params.strip(), "")]
        return None

    def _substitute(self, text: str, where: Line) -> tuple[str | None, list[str]]:
        """Replace the first definitions found, rescanning what they bring (keepalived's
        replace_param); (None, []) when nothing was replaced."""
        pos = 0
        changed = False
        extra: list[str] = []
        for _ in range(MAX_SUBSTITUTIONS):
            pos = text.find("$", pos)
            if pos < 0 or pos + 1 >= len(text):
                break
            found = self._reference(text, pos)
            if found is None:
                pos += 1
                continue
            end, name, params = found
            value = self._value(name, params)
            if value is None:
                pos += 1
                continue
            changed = True
            if len(value) > 1:
                if end != len(text.rstrip(" \t")):
                    raise ConfigError(
                        where.file,
                        where.line,
                        f"multi-line definition ${name} must end its line",
                    )
                text = text[:pos] + value[0]
                extra = value[1:]
                break
            replacement = value[0] if value else ""
            text = text[:pos] + replacement + text[end:]
            if len(text) > MAX_LINE_CHARS:
                raise ConfigError(where.file, where.line, "line too long after substitution")
            if replacement.lstrip(" \t").startswith("~"):
                break
        else:
            raise ConfigError(
                where.file, where.line, "parameter substitution does not end (a loop?)"
            )
        return (text if changed else None), extra

    @staticmethod
    def _reference(text: str, pos: int) -> tuple[int, str, str] | None:
        """``$NAME`` or ``${NAME [params]}`` at ``pos``: (end, name, params)."""
        if text[pos + 1] == "{":
            close = text.find("}", pos + 2)
            if close < 0:
                return None
            inner = text[pos + 2 : close]
            name_match = _NAME.match(inner)
            if name_match is None:
                return None
            params = inner[name_match.end() :]
            if params and not params[0].isspace():
                return None
            return close + 1, name_match.group(), params.strip()
        name_match = _NAME.match(text, pos + 1)
        if name_match is None:
            return None
        end = name_match.end()
        if end < len(text) and text[end] not in " \t,)":
            return None
        return end, name_match.group(), ""

    # ----- ~SEQ and ~LST

    def _sequence(
        self, text: str, where: Line, stack: tuple[str, ...], depth: int
    ) -> Iterator[Line]:
        close = text.find(")")
        if close < 0 or "(" not in text[:close]:
            raise ConfigError(where.file, where.line, f"~SEQ/~LST needs (...): '{text}'")
        head = text[: text.index("(")].strip()
        inside = text[text.index("(") + 1 : close]
        rest = text[close + 1 :].strip(" \t")
        if head in ("~SEQ", "~SEQx"):
            var, values = self._seq_values(inside, head == "~SEQx", where)
            assignments = [{var: v} for v in values]
        elif head == "~LST":
            assignments, rest = self._lst_values(text[text.index("(") + 1 :], where)
        else:
            raise ConfigError(where.file, where.line, f"unknown sequence '{head}'")
        if len(assignments) > MAX_LINES:
            raise ConfigError(where.file, where.line, f"{head} makes more than {MAX_LINES} lines")
        for assignment in assignments:
            for name, value in assignment.items():
                self.defs[name] = [value]
            if rest:
                yield from self._logical(rest, where, stack, depth + 1)

    def _seq_values(self, inside: str, hexadecimal: bool, where: Line) -> tuple[str, list[str]]:
        substituted, _ = self._substitute(inside, where) if "$" in inside else (None, [])
        words = [w.strip() for w in (substituted or inside).split(",")]
        var, numbers = words[0], words[1:]
        if not _NAME.fullmatch(var) or not 1 <= len(numbers) <= 3:
            raise ConfigError(where.file, where.line, f"invalid ~SEQ specification '({inside})'")
        try:
            values = [int(n, 0) for n in numbers]
        except ValueError:
            raise ConfigError(
                where.file, where.line, f"~SEQ needs whole numbers, got '({inside})'"
            ) from None
        if len(values) == 1:
            end = values[0]
            start, step = (-1 if end < 0 else 1), (-1 if end < 1 else 1)
        elif len(values) == 2:
            start, end = values
            step = 1 if start <= end else -1
        else:
            start, step, end = values
            if not step or (start < end and step < 0) or (start > end and step > 0):
                raise ConfigError(where.file, where.line, f"invalid ~SEQ values '({inside})'")
        if hexadecimal and (start < 0 or end < 0):
            raise ConfigError(where.file, where.line, "~SEQx is only for positive numbers")
        count = (end - start) // step + 1
        if count > MAX_LINES:
            raise ConfigError(where.file, where.line, f"~SEQ makes more than {MAX_LINES} lines")
        seq = range(start, end + (1 if step > 0 else -1), step)
        return var, [format(v, "x") if hexadecimal else str(v) for v in seq]

    @staticmethod
    def _lst_values(body: str, where: Line) -> tuple[list[dict[str, str]], str]:
        """``~LST(VAR, v1, v2)`` or ``~LST({A, B}, {1, 2}, {3})``: one dict per value set
        (missing values are blank, as in keepalived) and the text after the ``)``."""
        groups: list[list[str]] = []
        i = 0
        while True:
            while i < len(body) and body[i] in " \t":
                i += 1
            if i >= len(body):
                raise ConfigError(where.file, where.line, "~LST missing its closing ')'")
            if body[i] == "{":
                close = body.find("}", i)
                if close < 0:
                    raise ConfigError(where.file, where.line, "~LST missing a closing '}'")
                groups.append([w.strip() for w in body[i + 1 : close].split(",")])
                i = close + 1
            else:
                end = min(
                    (p for p in (body.find(",", i), body.find(")", i)) if p >= 0),
                    default=-1,
                )
                if end < 0:
                    raise ConfigError(where.file, where.line, "~LST missing its closing ')'")
                groups.append([body[i:end].strip()])
                i = end
            while i < len(body) and body[i] in " \t":
                i += 1
            if i < len(body) and body[i] == ")":
                rest = body[i + 1 :].strip(" \t")
                break
            if i >= len(body) or body[i] != ",":
                raise ConfigError(where.file, where.line, "invalid ~LST specification")
            i += 1
        names, value_sets = groups[0], groups[1:]
        if not value_sets or not all(_NAME.fullmatch(n) for n in names):
            raise ConfigError(where.file, where.line, "invalid ~LST specification")
        out = []
        for values in value_sets:
            if len(values) > len(names):
                raise ConfigError(where.file, where.line, "~LST specification has too many values")
            values = values + [""] * (len(names) - len(values))
            out.append(dict(zip(names, values, strict=True)))
        return out, rest

    # ----- include

    def _include(
        self, pattern_text: str, checks: str, where: Line, stack: tuple[str, ...]
    ) -> Iterator[Line]:
        base_dir = self._pwd
        pattern = os.path.join(base_dir, os.path.expanduser(pattern_text))
        matches: list[str] = []
        for alternative in brace_expand(pattern):
            if glob.has_magic(alternative):
                matches += sorted(glob.glob(alternative))
            elif os.path.exists(alternative) or "r" in checks:
                matches.append(alternative)
        if not matches:
            if "m" in checks:
                raise ConfigError(
                    where.file, where.line, f"include {pattern_text}: no file matches"
                )
            self.warnings.append(
                ConfigWarning(where.file, where.line, f"include {pattern_text}: no file matches")
            )
        for path in matches:
            real = os.path.realpath(path)
            if real in stack:
                chain = " -> ".join([*stack[stack.index(real) :], real])
                raise ConfigError(where.file, where.line, f"include loop: {chain}")
            try:
                text = read_text(path)
            except OSError as exc:
                if "r" in checks:
                    raise ConfigError(
                        where.file, where.line, f"include {pattern_text}: {exc.strerror}"
                    ) from None
                # keepalived's plain 'include' does not fail on unreadable files either.
                self.warnings.append(
                    ConfigWarning(where.file, where.line, f"include {pattern_text}: {exc.strerror}")
                )
                continue
            yield from self.lines(text, path, (*stack, real))
