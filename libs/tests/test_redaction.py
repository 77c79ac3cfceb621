"""Masking personal data wherever it stands in a message that was refused."""

from service_kit.pii import redact


def test_id_numbers_and_mobiles_are_masked_in_any_field_and_any_depth():
    value = {"phone": "13812345678", "nested": [{"text": "身份证 11010519491231002X 电话13812345678。"}], "n": 3}
    assert redact(value) == {"phone": "138****5678", "n": 3,
                             "nested": [{"text": "身份证 **************002X 电话138****5678。"}]}


def test_ids_and_codes_that_merely_contain_digits_are_left_alone():
    untouched = {"id": "6f1d3c2e13812345678a47", "credit_code": "91350100M000100Y43", "division": "370113001001",
                 "time": "2026-11-22T08:00:00+00:00", "seq": 13812345678901}
    assert redact(untouched) == untouched
