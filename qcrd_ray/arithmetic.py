"""A safe evaluator for the arithmetic that answers are written in: ``( 84.0 / 2.0 )``, ``-3 + 4 * (2 - 0.5)``.

SVAMP labels are equations and DSS scores them by evaluating both sides numerically; the reference code does
that with Python's ``eval``, which would run any code a model writes. This is a small recursive-descent parser
over numbers, ``+ - * /``, unary minus and parentheses, and nothing else.

Grammar::

    expression := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary)*
    unary      := ("-" | "+") unary | primary
    primary    := NUMBER | "(" expression ")"
"""

from __future__ import annotations

import math
import re

# Nesting deeper than this (parentheses or unary signs) is refused rather than left to Python's recursion limit.
MAX_DEPTH = 100

_TOKEN = re.compile(r"\s*(?:(\d+\.\d*|\.\d+|\d+)|(\S))")


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """Split ``text`` into (kind, value, position) tokens; kind is "number" or the operator itself."""
    tokens = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:  # only whitespace is left
            break
        number, symbol = match.groups()
        start = match.start(1) if number is not None else match.start(2)
        if number is not None:
            tokens.append(("number", number, start))
        elif symbol in "+-*/()":
            tokens.append((symbol, symbol, start))
        else:
            raise ValueError(f"cannot evaluate {text!r}: unexpected character {symbol!r} at position {start}")
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    def fail(self, what: str) -> ValueError:
        if self.index < len(self.tokens):
            _, value, pos = self.tokens[self.index]
            return ValueError(f"cannot evaluate {self.text!r}: {what}, found {value!r} at position {pos}")
        return ValueError(f"cannot evaluate {self.text!r}: {what}, found the end of the expression")

    def peek(self) -> str | None:
        return self.tokens[self.index][0] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> float:
        if not self.tokens:
            raise ValueError(f"cannot evaluate {self.text!r}: empty expression")
        value = self.expression()
        if self.index != len(self.tokens):
            raise self.fail("expected an operator or the end")
        return value

    def expression(self) -> float:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[0]
            right = self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> float:
        value = self.unary()
        while self.peek() in ("*", "/"):
            op, _, pos = self.take()
            right = self.unary()
            if op == "*":
                value = value * right
            elif right == 0:
                raise ValueError(f"cannot evaluate {self.text!r}: division by zero at position {pos}")
            else:
                value = value / right
        return value

    def unary(self) -> float:
        if self.peek() in ("-", "+"):
            sign = self.take()[0]
            self.enter()
            value = self.unary()
            self.depth -= 1
            return -value if sign == "-" else value
        return self.primary()

    def primary(self) -> float:
        kind = self.peek()
        if kind == "number":
            return float(self.take()[1])
        if kind == "(":
            self.take()
            self.enter()
            value = self.expression()
            self.depth -= 1
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.take()
            return value
        raise self.fail("expected a number or '('")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ValueError(f"cannot evaluate {self.text[:40]!r}...: nested deeper than {MAX_DEPTH} levels")


def evaluate_expression(text: str) -> float:
    """The value of an arithmetic expression; raises ValueError on anything else or on division by zero."""
    if not isinstance(text, str):
        raise ValueError(f"cannot evaluate {text!r}: expected a string")
    value = _Parser(text).parse()
    if not math.isfinite(value):
        raise ValueError(f"cannot evaluate {text[:40]!r}: the result is not a finite number")
    return value


def numbers_equal(a: float, b: float, tol: float = 1e-4) -> bool:
    """True when ``a`` and ``b`` agree within ``tol``, absolute below 1 and relative above it."""
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
