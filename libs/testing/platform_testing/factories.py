"""Valid data the platform's contracts accept, fresh on every call."""

import itertools
import uuid

# Serial numbers from a random start: unique within a process, and across processes unless
# two runs issue hundreds of millions of codes.
_credit_serials = itertools.count(uuid.uuid4().int % (9 * 10**8))


def credit_code(division: str = "370113") -> str:
    """A fresh, valid unified social credit code for a unit in `division`."""
    from platform_contracts.codes import credit_code_check_character

    body = f"91{division[:6]}{next(_credit_serials) % 10**9:09d}"
    return body + credit_code_check_character(body)
