"""Tool registry: schemas derived from hints and docstrings (Annotated too), user tool folders,
and the built-in tools."""

from __future__ import annotations

import random
import textwrap
from datetime import datetime
from enum import Enum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import pytest

from backend.tools.builtin import (
    CalculatorError,
    builtin_registry,
    calculator,
    convert_units,
    current_datetime,
    random_number_generator,
    run_shell_command,
)
from backend.tools.registry import (
    TOOLS_DIR_ENV,
    ToolError,
    ToolRegistry,
    load_tools_dir,
    merge_user_tools,
    tool_schema,
    tools_dir,
)


class Unit(Enum):
    C = "celsius"
    F = "fahrenheit"


def get_weather(location: str, unit: Unit = Unit.C, days: list[int] | None = None) -> dict:
    """Get the current weather in a given location.

    Args:
        location: The city, e.g. Beijing
        unit: Temperature unit
        days: Which days ahead
    """
    return {}


def glm3_style(
    city: Annotated[str, "The city to look up", True],
    mode: Annotated[Literal["fast", "exact"], "How to look", False] = "fast",
) -> str:
    """Look a city up (ChatGLM3's register_tool style)."""
    return city


def test_schema_from_hints_and_google_docstring():
    schema = tool_schema(get_weather)
    assert schema["name"] == "get_weather"
    assert schema["description"] == "Get the current weather in a given location."
    props = schema["parameters"]["properties"]
    assert props["location"] == {"type": "string", "description": "The city, e.g. Beijing"}
    assert props["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert props["days"]["type"] == "array" and props["days"]["items"] == {"type": "integer"}
    assert props["days"].get("nullable") is True
    assert schema["parameters"]["required"] == ["location"]


def test_schema_from_chatglm3_annotated_parameters():
    schema = tool_schema(glm3_style)
    props = schema["parameters"]["properties"]
    assert props["city"] == {"type": "string", "description": "The city to look up"}
    assert props["mode"]["enum"] == ["fast", "exact"]
    assert props["mode"]["description"] == "How to look"
    assert schema["parameters"]["required"] == ["city"]


def test_annotated_required_flag_overrides_the_default():
    def f(a: Annotated[int, "first", False], b: Annotated[int, "second", True] = 1) -> int:
        """Add."""
        return a + b

    assert tool_schema(f)["parameters"]["required"] == ["b"]


def test_schema_errors_are_readable():
    def no_doc(x: int) -> int:
        return x

    def no_hint(x) -> int:
        """Doc."""
        return x

    def star(*args: int) -> int:
        """Doc."""
        return 0

    class Custom:
        pass

    def custom(x: Custom) -> int:
        """Doc.

        Args:
            x: a thing
        """
        return 0

    for func, fragment in ((no_doc, "no docstring"), (no_hint, "no type hint"),
                           (star, r"\*args"), (custom, "custom")):
        with pytest.raises(ToolError, match=fragment):
            tool_schema(func)


def test_registry_lists_schemas_in_both_shapes_and_refuses_clashes():
    registry = ToolRegistry()
    registry.register(get_weather)
    assert registry.schemas()[0]["name"] == "get_weather"
    assert registry.template_schemas()[0] == {"type": "function",
                                              "function": registry.schemas()[0]}
    with pytest.raises(ToolError, match="already registered"):
        registry.register(get_weather)
    manual = registry.with_schemas([{"name": "get_weather", "description": "w"},
                                    {"name": "typed_by_user", "description": "u"}])
    assert manual.get("get_weather").function is get_weather
    assert manual.get("typed_by_user").function is None


def test_builtin_registry_has_no_shell_by_default():
    assert builtin_registry().names() == ["calculator", "random_number_generator",
                                          "current_datetime", "convert_units"]
    with_shell = builtin_registry(include_shell=True)
    shell = with_shell.get("run_shell_command")
    assert shell is not None and shell.needs_confirmation and shell.timeout_s


# -- user tools folder --------------------------------------------------------------------------

def write(folder, name, source):
    (folder / name).write_text(textwrap.dedent(source))


def test_user_tools_load_from_the_folder_without_changes_to_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv(TOOLS_DIR_ENV, str(tmp_path))
    assert tools_dir() == tmp_path
    write(tmp_path, "greet.py", '''
        from typing import Annotated

        def greet(name: Annotated[str, "who", True]) -> str:
            """Say hello."""
            return "hello " + name

        def _helper():
            return 1
    ''')
    write(tmp_path, "listed.py", '''
        def shout(text: str) -> str:
            """Shout.

            Args:
                text: what to shout
            """
            return text.upper()

        def not_a_tool(x: int) -> int:
            """Not listed."""
            return x

        TOOLS = [shout]
    ''')
    write(tmp_path, "broken.py", "def oops(:\n")
    write(tmp_path, "raises.py", "raise RuntimeError('no config')\n")
    write(tmp_path, "exits.py", "import sys\nsys.exit(3)\n")
    write(tmp_path, "bad_schema.py", "def nodoc(x: int) -> int:\n    return x\n")
    write(tmp_path, "_private.py", "def hidden(x: int) -> int:\n    '''h'''\n    return x\n")
    write(tmp_path, "clash.py", '''
        def calculator(expression: str) -> str:
            """A second calculator."""
            return expression
    ''')
    loaded = load_tools_dir()
    names = sorted(t.name for t in loaded.tools)
    assert names == ["calculator", "greet", "shout"]
    text = "\n".join(loaded.errors)
    for fragment in ("broken.py (line 1): SyntaxError", "raises.py: RuntimeError: no config",
                     "exits.py: SystemExit", "bad_schema.py: Tool 'nodoc' has no docstring"):
        assert fragment in text
    registry = builtin_registry()
    errors = merge_user_tools(registry, loaded)
    assert "greet" in registry and "shout" in registry
    assert registry.get("calculator").source == "builtin"
    assert any("clash.py" in e and "already registered" in e for e in errors)
    assert registry.get("greet").function(name="Ada") == "hello Ada"


def test_user_tools_are_reread_when_a_file_changes(tmp_path):
    write(tmp_path, "t.py", 'def one(x: int) -> int:\n    """One."""\n    return 1\n')
    assert [t.name for t in load_tools_dir(tmp_path).tools] == ["one"]
    assert load_tools_dir(tmp_path) is load_tools_dir(tmp_path)  # cached while unchanged
    write(tmp_path, "t.py", 'def two(x: int) -> int:\n    """Two, longer."""\n    return 2\n')
    assert [t.name for t in load_tools_dir(tmp_path).tools] == ["two"]


def test_missing_tools_folder_is_no_error(tmp_path):
    loaded = load_tools_dir(tmp_path / "nope")
    assert loaded.tools == [] and loaded.errors == []


# -- built-in tools -----------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("2 ** 10", 1024), ("2 ^ 10", 1024), ("7 // 2", 3),
    ("7 % 4", 3), ("-3 + +1", -2), ("1 / 4", 0.25), ("sqrt(16)", 4), ("factorial(5)", 120),
    ("max(1, 9, 3)", 9), ("round(pi, 3)", 3.142), ("log(e)", 1), ("10 ** 1000 // 10 ** 999", 10),
])
def test_calculator(expression, expected):
    assert calculator(expression) == pytest.approx(expected)


@pytest.mark.parametrize(("expression", "fragment"), [
    ("__import__('os').system('true')", "not allowed"), ("open('/etc/passwd')", "not allowed"),
    ("().__class__", "not allowed"), ("x + 1", "Unknown name"), ("9 ** 9 ** 9", "Exponents"),
    ("10 ** 5000", "Exponents"), ("(10 ** 1000) ** 10", "too large"),
    ("2 ** 999 * 2 ** 999 * 2 ** 999 * 2 ** 999 * 2 ** 999 * 2 ** 999 * 2 ** 999 * 2 ** 999 * "
     "2 ** 999 * 2 ** 999 * 2 ** 999", "too large"),
    ("1e308 * 10", "too large"), ("1 / 0", "Division by zero"), ("5 % 0", "Division by zero"),
    ("sqrt(-1)", "Cannot compute"), ("(-8) ** (1/3)", "not a real number"),
    ("factorial(100000)", "factorial"), ("1 +", "not a valid"), ("", "empty"),
    ("1" * 501, "longer than"), ("[1, 2]", "not allowed"), ("'a' * 3", "not allowed"),
    ("1 if 1 else 2", "not allowed"), ("lambda: 1", "not allowed"), ("1 < 2", "not allowed"),
])
def test_calculator_refuses_and_limits(expression, fragment):
    with pytest.raises(CalculatorError, match=fragment):
        calculator(expression)


def test_random_number_generator_is_seeded_and_checks_its_range():
    first = random_number_generator(7, (1, 1000))
    assert first == random_number_generator(7, [1, 1000]) == random.Random(7).randrange(1, 1000)
    assert 1 <= first < 1000
    for bad in ((1, (5, 5)), (1, (1,)), ("x", (1, 2)), (1, ("a", 2))):
        with pytest.raises(ValueError):
            random_number_generator(*bad)


def test_current_datetime_in_an_iana_zone():
    text = current_datetime("Asia/Shanghai")
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    assert now.strftime("%Y-%m-%d") in text or now.strftime("%Y") in text
    assert "UTC+0800" in text and "Asia/Shanghai" in text
    assert "UTC" in current_datetime()
    for bad in ("Mars/Olympus", "../../etc/passwd", "/etc/localtime", "x" * 100):
        with pytest.raises(ValueError, match="Unknown time zone"):
            current_datetime(bad)


@pytest.mark.parametrize(("value", "source", "target", "expected"), [
    (1, "km", "m", 1000), (1, "mile", "km", 1.609344), (12, "inches", "feet", 1),
    (1, "lb", "kg", 0.45359237), (1000, "g", "kg", 1), (1, "stone", "lb", 14),
    (100, "C", "F", 212), (32, "fahrenheit", "celsius", 0), (0, "K", "C", -273.15),
    (-40, "°C", "°F", -40),
])
def test_convert_units(value, source, target, expected):
    assert convert_units(value, source, target) == pytest.approx(expected, rel=1e-6)


def test_convert_units_errors():
    with pytest.raises(ValueError, match="different"):
        convert_units(1, "m", "kg")
    with pytest.raises(ValueError, match="Unknown unit 'parsec'"):
        convert_units(1, "parsec", "m")
    with pytest.raises(ValueError, match="absolute zero"):
        convert_units(-500, "C", "K")
    with pytest.raises(ValueError, match="finite"):
        convert_units(float("nan"), "m", "km")


def test_shell_tool_runs_with_a_timeout(tmp_path, monkeypatch):
    import backend.tools.builtin as builtin

    assert run_shell_command("echo hi; exit 3") == "exit code 3\nhi\n"
    monkeypatch.setattr(builtin, "SHELL_TIMEOUT_S", 0.5)
    marker = tmp_path / "late"
    text = run_shell_command(f"sleep 5; touch {marker}")
    assert text.startswith("Timed out")
    assert not marker.exists()
