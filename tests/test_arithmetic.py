"""The safe arithmetic evaluator: right values, and refusal of everything that is not arithmetic."""

import pytest

from qcrd_ray.arithmetic import MAX_DEPTH, evaluate_expression, numbers_equal


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("( 84.0 / 2.0 )", 42.0),
        ("( 10.0 - ( 6.0 + 3.0 ) )", 1.0),
        ("2 + 3 * 4", 14.0),
        ("(2 + 3) * 4", 20.0),
        ("10 - 4 - 3", 3.0),  # left-associative
        ("100 / 10 / 5", 2.0),
        ("-3 + 4 * (2 - 0.5)", 3.0),
        ("--2", 2.0),
        ("2 - -3", 5.0),
        ("+7", 7.0),
        (".5 + 1.", 1.5),
        ("  ((( 7 )))  ", 7.0),
        ("1/3", 1 / 3),
    ],
)
def test_values(text, value):
    assert evaluate_expression(text) == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "unexpected character '_'"),
        ("2**10", "expected a number or '('"),
        ("x + 1", "unexpected character 'x'"),
        ("abs(-1)", "unexpected character 'a'"),
        ("1e5", "unexpected character 'e'"),
        ("2 ^ 3", "unexpected character '^'"),
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("(1 + 2", "expected ')'"),
        ("1 + 2)", "expected an operator or the end"),
        ("1 2", "expected an operator or the end"),
        ("3 +", "found the end of the expression"),
        ("3 / 0", "division by zero"),
        ("3 / (2 - 2)", "division by zero"),
    ],
)
def test_rejects_what_is_not_arithmetic(text, message):
    with pytest.raises(ValueError, match="cannot evaluate") as info:
        evaluate_expression(text)
    assert message in str(info.value)


def test_error_names_the_position():
    with pytest.raises(ValueError, match="at position 4"):
        evaluate_expression("1 + x")


def test_deep_nesting_is_a_value_error_not_a_recursion_error():
    deep = "(" * (MAX_DEPTH + 5) + "1" + ")" * (MAX_DEPTH + 5)
    with pytest.raises(ValueError, match="nested deeper"):
        evaluate_expression(deep)
    with pytest.raises(ValueError, match="nested deeper"):
        evaluate_expression("-" * (MAX_DEPTH + 5) + "1")
    ok = "(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1)
    assert evaluate_expression(ok) == 1.0


def test_non_finite_results_are_refused():
    with pytest.raises(ValueError, match="not a finite number"):
        evaluate_expression("9" * 400)


def test_non_strings_are_refused():
    with pytest.raises(ValueError, match="expected a string"):
        evaluate_expression(42)  # type: ignore[arg-type]


def test_numbers_equal():
    assert numbers_equal(0.1 + 0.2, 0.3)
    assert numbers_equal(1_000_000.0, 1_000_050.0)  # relative above 1
    assert not numbers_equal(1.0, 1.001)
    assert not numbers_equal(0.0, 0.001)  # absolute below 1
    assert numbers_equal(1.0, 1.001, tol=1e-2)
    assert not numbers_equal(42.0, -42.0)
