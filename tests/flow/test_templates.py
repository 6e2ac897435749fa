"""The sandbox: templates render, expressions keep types, escapes and resource abuse are refused."""

from __future__ import annotations

import pytest

from ivr.flow.templates import TemplateError, evaluate, render, resolve_value, whole_expression


def test_render_and_filters() -> None:
    ctx = {"name": "Ana", "account": "1234", "amount": 12.5, "card": "4111111111111111"}
    assert render("Hi {{ name }}", ctx) == "Hi Ana"
    assert render("{{ account | spell }}", ctx) == "1 2 3 4"
    assert render("{{ amount | money }}", ctx) == "12.50"
    assert render("ending {{ card | last }}", ctx) == "ending 1111"
    assert render("{% if amount > 10 %}big{% else %}small{% endif %}", ctx) == "big"


def test_expressions_keep_python_types() -> None:
    assert evaluate("balance > 100", {"balance": 50}) is False
    assert evaluate("balance > 100", {"balance": 500}) is True
    assert evaluate("items | length", {"items": [1, 2]}) == 2
    assert evaluate("x is defined and x", {}) is False
    assert bool(render("{{ balance > 100 }}", {"balance": 50}))  # why conditions are never rendered strings


def test_resolve_value_keeps_types_of_whole_expressions() -> None:
    ctx = {"n": 2, "name": "Bo"}
    assert resolve_value(
        {"a": "{{ n + 1 }}", "b": "x{{ n }}", "c": ["{{ name }}", 5, True], "d": None}, ctx
    ) == {
        "a": 3,
        "b": "x2",
        "c": ["Bo", 5, True],
        "d": None,
    }
    assert whole_expression("{{ a }}{{ b }}") is None
    assert whole_expression("  {{ a + 1 }} ") == "a + 1"


def test_undefined_names_raise() -> None:
    with pytest.raises(TemplateError, match="undefined"):
        render("Hi {{ nobody }}", {})
    with pytest.raises(TemplateError, match="undefined"):
        evaluate("result.status == 'ok'", {"result": {}})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__class__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'].system('id') }}",
        "{{ request.application.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ [].append(1) }}",
        "{{ {}.update(a=1) }}",
        "{{ 2 ** 100000 }}",
        "{{ 'x' * 100000000 }}",
        "{{ range(10 ** 8) | list }}",
        "{% for i in range(100000000) %}{% endfor %}",
    ],
)
def test_sandbox_escapes_and_abuse_are_refused(source: str) -> None:
    with pytest.raises(TemplateError):
        render(source, {"name": "x", "request": None})


def test_output_is_capped() -> None:
    with pytest.raises(TemplateError, match="longer than"):
        render("{% for i in range(2000) %}{{ text }}{% endfor %}", {"text": "0123456789"})


def test_syntax_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="syntax"):
        render("{{ unclosed", {})
    with pytest.raises(TemplateError, match="syntax"):
        evaluate("a >", {})
