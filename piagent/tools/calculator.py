"""The calculator tool: arithmetic on numbers, parsed with `ast`, never evaluated.

Only numbers, + - * / // % **, unary + and -, and parentheses; no names, no
calls, no attributes. Everything is bounded so a call takes microseconds and
cannot stall the worker's event loop: the expression's length and node count,
and the size of every intermediate result (an integer of more than
MAX_INT_BITS bits, or a float that overflows, is refused before it is built).
"""

from __future__ import annotations

import ast
import json
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from piagent.tools.base import ToolError, object_schema

NAME = "calculator"
SETTINGS: tuple[str, ...] = ()
MAX_CHARS = 200
MAX_NODES = 100
# About 10**120: far beyond anything a household question needs, and tiny
# for Python's integers (a multiplication of two such takes under a microsecond).
MAX_INT_BITS = 400
LARGEST = float(2**MAX_INT_BITS)
ALLOWED = "numbers, + - * / // % **, unary + and -, and parentheses"

Number = int | float
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class CalculatorTool:
    name = NAME
    description = (
        "Arithmetic on numbers: + - * / // % ** and parentheses, e.g. "
        '{"expression": "6*7+0.5"}. No functions or variables.'
    )
    parameters = object_schema(
        {
            "expression": {
                "type": "string",
                "description": "The arithmetic expression, e.g. (12.5 + 3) * 4",
                "maxLength": MAX_CHARS,
            }
        },
        required=["expression"],
    )

    def run(self, arguments: dict[str, Any]) -> str:
        return json.dumps({"result": calculate(arguments["expression"])})


def calculate(expression: str) -> Number:
    """The value of `expression`; ToolError for anything but bounded arithmetic."""
    if len(expression) > MAX_CHARS:
        raise ToolError(f"the expression is longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise ToolError(f"not an arithmetic expression; allowed: {ALLOWED}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError(f"the expression has more than {MAX_NODES} parts")
    value = _evaluate(tree.body)
    if isinstance(value, float):
        # 12 significant digits: 0.1 + 0.2 is 0.3, as a person would write it.
        value = float(f"{value:.12g}")
    return value


def _evaluate(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ToolError(f"only numbers are allowed, not {value!r}")
        return _checked(value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("the result is too large") from None
        return _checked(result)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ToolError("^ is not a power here; write ** (2**10)")
    raise ToolError(f"only {ALLOWED} are allowed")


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse a power whose result would be huge before computing it."""
    if abs(base) <= 1 or exponent <= 0:
        return
    if exponent * math.log2(abs(base)) > MAX_INT_BITS:
        raise ToolError("the result is too large")


def _checked(value: object) -> Number:
    """`value` if it is a real number within the bounds, else ToolError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError("the result is too large")
    if isinstance(value, float) and not abs(value) < LARGEST:
        raise ToolError("the result is too large")
    return value


def build(settings: Mapping[str, list[str]], **_: Any) -> CalculatorTool:
    """The calculator takes no settings."""
    return CalculatorTool()
