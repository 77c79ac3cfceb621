"""Asserting on refusals: the problem document a call was refused with, and the fields it names."""

import pytest

from platform_contracts.problems import Rejected


def rejected(call, *args, **kwargs) -> dict:
    """The problem document `call(*args, **kwargs)` is refused with (it must be refused)."""
    with pytest.raises(Rejected) as caught:
        call(*args, **kwargs)
    return caught.value.problem


def fields_named(problem: dict) -> set:
    """The request locations a problem document names, as tuples: {("body", "division"), ...}."""
    return {tuple(e["loc"]) for e in problem.get("errors", [])}
