"""Built-in tools that work offline: calculator, random numbers, date and time, unit conversion.

None touches the network. The shell tool is not registered by default: `builtin_registry(
include_shell=True)` adds it, marked as needing the user's confirmation for every call, and each
command runs with a timeout (its whole process group is killed when it runs over).
"""

from __future__ import annotations

import ast
import math
import os
import random
import signal
import subprocess
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.tools.registry import ToolRegistry

# -- calculator ---------------------------------------------------------------------------------

MAX_EXPRESSION_CHARS = 500
MAX_NODES = 200
MAX_EXPONENT = 1000
MAX_INT_BITS = 10_000  # about 3,000 decimal digits
MAX_FACTORIAL = 1000

_FUNCTIONS = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "atan2": math.atan2, "hypot": math.hypot, "degrees": math.degrees,
    "radians": math.radians, "floor": math.floor, "ceil": math.ceil, "abs": abs, "round": round,
    "min": min, "max": max, "factorial": math.factorial,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


class CalculatorError(ValueError):
    """The expression is not allowed or cannot be computed; the message says why."""


def _check_size(value: float) -> float:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError("The result is too large (over about 3,000 digits).")
    if isinstance(value, complex):
        raise CalculatorError("The result is not a real number.")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("The result is too large for a floating-point number.")
    return value


def _power(base: float, exponent: float) -> float:
    if isinstance(exponent, int):
        if abs(exponent) > MAX_EXPONENT:
            raise CalculatorError(f"Exponents are limited to ±{MAX_EXPONENT}.")
        if isinstance(base, int) and exponent > 0 \
                and base.bit_length() * exponent > MAX_INT_BITS + 64:
            raise CalculatorError("The result is too large (over about 3,000 digits).")
    elif abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"Exponents are limited to ±{MAX_EXPONENT}.")
    return _check_size(base ** exponent)


def _binary(op: ast.operator, left: float, right: float) -> float:
    if isinstance(op, ast.Add):
        return left + right
    if isinstance(op, ast.Sub):
        return left - right
    if isinstance(op, ast.Mult):
        if isinstance(left, int) and isinstance(right, int) \
                and left.bit_length() + right.bit_length() > MAX_INT_BITS + 64:
            raise CalculatorError("The result is too large (over about 3,000 digits).")
        return _check_size(left * right)
    if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
        raise CalculatorError("Division by zero.")
    if isinstance(op, ast.Div):
        return left / right
    if isinstance(op, ast.FloorDiv):
        return left // right
    if isinstance(op, ast.Mod):
        return left % right
    if isinstance(op, (ast.Pow, ast.BitXor)):  # `^` is read as a power, as people write it
        return _power(left, right)
    raise CalculatorError(f"The operator {type(op).__name__} is not supported.")


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return _check_size(_binary(node.op, _evaluate(node.left), _evaluate(node.right)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in _FUNCTIONS and not node.keywords:
        args = [_evaluate(arg) for arg in node.args]
        if node.func.id == "factorial":
            if len(args) != 1 or not float(args[0]).is_integer() \
                    or not 0 <= args[0] <= MAX_FACTORIAL:
                raise CalculatorError(f"factorial takes a whole number from 0 to {MAX_FACTORIAL}.")
            args = [int(args[0])]
        return _check_size(_FUNCTIONS[node.func.id](*args))
    if isinstance(node, ast.Name):
        raise CalculatorError(f"Unknown name {node.id!r}. Known: "
                              f"{', '.join(sorted([*_FUNCTIONS, *_CONSTANTS]))}.")
    raise CalculatorError(f"{type(node).__name__} is not allowed in an arithmetic expression.")


def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression, such as "2 * (3 + 4) ** 2" or "sqrt(2) * pi".

    Args:
        expression: Numbers, + - * / // % ** (or ^), parentheses, pi, e, and the functions
            sqrt, exp, log, log10, log2, sin, cos, tan, asin, acos, atan, atan2, hypot,
            degrees, radians, floor, ceil, abs, round, min, max, factorial.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("The expression is empty.")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"The expression is longer than {MAX_EXPRESSION_CHARS} characters.")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalculatorError(f"{expression!r} is not a valid arithmetic expression.") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError("The expression is too long.")
    try:
        result = _evaluate(tree)
    except ZeroDivisionError:
        raise CalculatorError("Division by zero.") from None
    except OverflowError:
        raise CalculatorError("The result is too large for a floating-point number.") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, CalculatorError):
            raise
        raise CalculatorError(f"Cannot compute this: {exc}.") from None
    return _tidy(_check_size(result))


# -- random numbers (ChatGLM3's demo tool, with its Annotated parameters) -------------------------

def random_number_generator(
    seed: Annotated[int, "The random seed used by the generator", True],
    range: Annotated[tuple[int, int], "The range of the generated numbers", True],  # noqa: A002
) -> int:
    """Generates a random number x, s.t. range[0] <= x < range[1]"""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError("seed must be an integer.")
    if not isinstance(range, (list, tuple)) or len(range) != 2 \
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in range):
        raise ValueError("range must be two integers [low, high].")
    low, high = range
    if low >= high:
        raise ValueError(f"range must have low < high; got [{low}, {high}].")
    return random.Random(seed).randrange(low, high)


# -- date and time ------------------------------------------------------------------------------

def current_datetime(timezone: str = "UTC") -> str:
    """The current date and time in a time zone.

    Args:
        timezone: An IANA time zone name, such as "Europe/Paris", "Asia/Shanghai" or "UTC".
    """
    name = (timezone or "UTC").strip()
    try:
        if len(name) > 64 or name.startswith("/") or ".." in name:
            raise ValueError
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, KeyError):
        raise ValueError(f"Unknown time zone {name!r}: use an IANA name such as "
                         "'Europe/Paris', 'America/New_York' or 'UTC'.") from None
    now = datetime.now(zone)
    return f"{now:%Y-%m-%d %H:%M:%S} {now.tzname()} (UTC{now:%z}), {now:%A}, time zone {name}"


# -- unit conversion ----------------------------------------------------------------------------

_LENGTH = {  # metres per unit
    "m": 1.0, "km": 1000.0, "cm": 0.01, "mm": 0.001, "um": 1e-6, "nm": 1e-9,
    "mi": 1609.344, "yd": 0.9144, "ft": 0.3048, "in": 0.0254, "nmi": 1852.0,
}
_MASS = {  # kilograms per unit
    "kg": 1.0, "g": 0.001, "mg": 1e-6, "t": 1000.0, "lb": 0.45359237, "oz": 0.028349523125,
    "st": 6.35029318,
}
_ALIASES = {
    "meter": "m", "metre": "m", "kilometer": "km", "kilometre": "km", "centimeter": "cm",
    "centimetre": "cm", "millimeter": "mm", "millimetre": "mm", "micrometer": "um",
    "micrometre": "um", "µm": "um", "nanometer": "nm", "nanometre": "nm", "mile": "mi",
    "yard": "yd", "foot": "ft", "feet": "ft", "inch": "in", "inches": "in",
    "nautical mile": "nmi", "kilogram": "kg", "gram": "g", "milligram": "mg", "tonne": "t",
    "ton": "t", "metric ton": "t", "pound": "lb", "lbs": "lb", "ounce": "oz", "stone": "st",
    "celsius": "c", "°c": "c", "degc": "c", "fahrenheit": "f", "°f": "f", "degf": "f",
    "kelvin": "k",
}
_TEMPERATURE = ("c", "f", "k")


def _unit(name: str) -> str:
    key = " ".join(str(name).strip().lower().split())
    key = _ALIASES.get(key, _ALIASES.get(key.rstrip("s"), key))
    return key


def _to_kelvin(value: float, unit: str) -> float:
    return {"c": value + 273.15, "f": (value - 32) * 5 / 9 + 273.15, "k": value}[unit]


def _from_kelvin(value: float, unit: str) -> float:
    return {"c": value - 273.15, "f": (value - 273.15) * 9 / 5 + 32, "k": value}[unit]


def _tidy(number: float) -> float:
    """Whole floats as ints (1000.0 → 1000), the way people write them."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
        return int(number)
    return number


def convert_units(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a length, mass or temperature from one unit to another.

    Args:
        value: The quantity to convert.
        from_unit: Unit of the value: m, km, cm, mm, um, nm, mi, yd, ft, in, nmi;
            kg, g, mg, t, lb, oz, st; C, F, K (full names work too).
        to_unit: Unit to convert to, of the same kind.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("value must be a finite number.")
    source, target = _unit(from_unit), _unit(to_unit)
    if source in _TEMPERATURE and target in _TEMPERATURE:
        kelvin = _to_kelvin(float(value), source)
        if kelvin < 0:
            raise ValueError("That temperature is below absolute zero.")
        return _tidy(round(_from_kelvin(kelvin, target), 10))
    for table in (_LENGTH, _MASS):
        if source in table and target in table:
            return _tidy(round(value * table[source] / table[target], 12))
    known = sorted({*_LENGTH, *_MASS, *(u.upper() for u in _TEMPERATURE)})
    for unit, raw in ((source, from_unit), (target, to_unit)):
        if unit not in _LENGTH and unit not in _MASS and unit not in _TEMPERATURE:
            raise ValueError(f"Unknown unit {raw!r}. Known units: {', '.join(known)}.")
    raise ValueError(f"Cannot convert {from_unit!r} to {to_unit!r}: they measure different "
                     "things (length, mass, temperature).")


# -- shell (opt-in) -----------------------------------------------------------------------------

SHELL_TIMEOUT_S = 20.0
SHELL_MAX_OUTPUT_CHARS = 100_000


def run_shell_command(command: str) -> str:
    """Run a shell command on this computer and return its exit code and output.

    Args:
        command: The command line, run by /bin/sh.
    """
    if not isinstance(command, str) or not command.strip():
        raise ValueError("The command is empty.")
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=SHELL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        text = output.decode("utf-8", "replace")[:SHELL_MAX_OUTPUT_CHARS]
        return f"Timed out after {SHELL_TIMEOUT_S:.0f} s and was killed.\n{text}"
    text = output.decode("utf-8", "replace")
    if len(text) > SHELL_MAX_OUTPUT_CHARS:
        text = text[:SHELL_MAX_OUTPUT_CHARS] + "\n[output cut]"
    return f"exit code {proc.returncode}\n{text}"


DEFAULT_TOOLS = (calculator, random_number_generator, current_datetime, convert_units)


def builtin_registry(include_shell: bool = False) -> ToolRegistry:
    """The built-in tools; the shell tool only when asked for (each call then needs consent)."""
    registry = ToolRegistry()
    for func in DEFAULT_TOOLS:
        registry.register(func)
    if include_shell:
        registry.register(run_shell_command, needs_confirmation=True,
                          timeout_s=SHELL_TIMEOUT_S + 5)
    return registry
