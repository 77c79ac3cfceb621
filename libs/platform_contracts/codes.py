"""Validation of the national identifier codes the platform receives.

- Unified social credit code, GB 32100-2015: 18 characters, the last a check character.
- Administrative division code, GB/T 2260 and its street/community extension: 6 digits for a
  district, 9 for a street or town, 12 for a community.
"""

CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # I, O, S, V, Z are never used
CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

# GB/T 2260 province-level codes: the first two digits of every division code.
PROVINCE_CODES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82".split()
)
DIVISION_CODE_LENGTHS = (6, 9, 12)
# A filter may also name a province (2) or a city (4); counters are kept at every level.
DIVISION_PREFIX_LENGTHS = (2, 4, 6, 9, 12)


def credit_code_check_character(first_17: str) -> str:
    total = sum(CREDIT_CODE_ALPHABET.index(c) * w for c, w in zip(first_17, CREDIT_CODE_WEIGHTS))
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def normalize_credit_code(value: str) -> str:
    """Return the code upper-cased, or raise ValueError saying what is wrong with it."""
    code = value.strip().upper()
    if len(code) != 18:
        raise ValueError("a unified social credit code has 18 characters")
    bad = sorted({c for c in code if c not in CREDIT_CODE_ALPHABET})
    if bad:
        raise ValueError(f"character(s) {''.join(bad)!r} cannot appear in a unified social credit code")
    if not is_ascii_digits(code[2:8]):
        raise ValueError("characters 3-8 of a unified social credit code are a division code")
    if credit_code_check_character(code[:17]) != code[17]:
        raise ValueError("check character does not match (GB 32100-2015)")
    return code


def is_ascii_digits(value: str) -> bool:
    """0-9 only: str.isdigit() also accepts full-width (３) and other Unicode digits."""
    return value.isascii() and value.isdigit()


def division_level(code: str) -> str:
    return {2: "province", 4: "city", 6: "district", 9: "street", 12: "community"}[len(code)]


def normalize_division_code(value: str) -> str:
    """A unit's or organization's division: a district, street or community code."""
    code = value.strip()
    if not is_ascii_digits(code) or len(code) not in DIVISION_CODE_LENGTHS:
        raise ValueError("a division code has 6 (district), 9 (street) or 12 (community) digits (0-9)")
    return _check_segments(_check_province(code))


def normalize_division_prefix(value: str) -> str:
    """A division filter: any level from province (2 digits) to community (12)."""
    code = value.strip()
    if not is_ascii_digits(code) or len(code) not in DIVISION_PREFIX_LENGTHS:
        raise ValueError("a division filter has 2, 4, 6, 9 or 12 digits (0-9)")
    return _check_segments(_check_province(code))


def _check_province(code: str) -> str:
    if code[:2] not in PROVINCE_CODES:
        raise ValueError(f"{code[:2]} is not a province code (GB/T 2260)")
    return code


def _check_segments(code: str) -> str:
    # Street and community serials start at 001: "000" is the level above, never a code itself.
    for start, level in ((6, "street"), (9, "community")):
        if code[start:start + 3] == "000":
            raise ValueError(f"digits {start + 1}-{start + 3} are 000, which is no {level} code (GB/T 2260)")
    return code


def division_chain(code: str) -> list[str]:
    """Every prefix a division rolls up into, province first, the code itself last."""
    return [code[:n] for n in DIVISION_PREFIX_LENGTHS if n <= len(code)]


def district_of(code: str) -> str:
    return code[:6]


def parent_division(code: str) -> str | None:
    shorter = [n for n in DIVISION_PREFIX_LENGTHS if n < len(code)]
    return code[: shorter[-1]] if shorter else None


def child_level_length(code: str | None) -> int | None:
    """Length of the next level below a division prefix (None: below a community)."""
    current = len(code) if code else 0
    longer = [n for n in DIVISION_PREFIX_LENGTHS if n > current]
    return longer[0] if longer else None


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return phone
    return phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:] if len(phone) > 7 else "*" * len(phone)
