"""Valid data the platform's contracts accept, fresh on every call."""

import itertools
import random
import uuid
from datetime import date, timedelta

# Serial numbers from a random start: unique within a process, and across processes unless
# two runs issue hundreds of millions of codes.
_credit_serials = itertools.count(uuid.uuid4().int % (9 * 10**8))


def credit_code(division: str = "370113") -> str:
    """A fresh, valid unified social credit code for a unit in `division`."""
    from platform_contracts.codes import credit_code_check_character

    body = f"91{division[:6]}{next(_credit_serials) % 10**9:09d}"
    return body + credit_code_check_character(body)


def new_id_number(district: str = "370113") -> str:
    """A fresh, valid resident ID number (身份证号) registered in `district`."""
    from platform_contracts.member import id_number_check_character

    born = date(1970, 1, 1) + timedelta(days=random.randrange(15000))
    body = f"{district[:6]}{born:%Y%m%d}{random.randrange(1000):03d}"
    return body + id_number_check_character(body)


def new_phone() -> str:
    """A fresh mobile number."""
    return f"13{random.randrange(10**9):09d}"
