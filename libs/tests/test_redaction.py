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


def test_mobiles_with_the_country_code_were_not_masked():
    for typed, shown in [
        ("+86 138 1234 5678", "+86 138****5678"),
        ("+86-13812345678", "+86-138****5678"),
        ("+8613812345678", "+86138****5678"),
        ("0086 13812345678", "0086 138****5678"),
        ("008613812345678", "0086138****5678"),
        ("138-1234-5678", "138****5678"),
        ("138 1234 5678", "138****5678"),
    ]:
        assert redact(f"电话：{typed}，请联系") == f"电话：{shown}，请联系", typed


def test_fifteen_digit_legacy_id_numbers_were_not_masked():
    assert redact("老身份证 370113800101123 已换发") == "老身份证 ***********1123 已换发"
    assert redact({"reason": "证号370113800101123"}) == {"reason": "证号***********1123"}


def test_numbers_of_other_lengths_are_left_alone():
    untouched = "单号 3701138001011 与 37011380010112345 及 2026-11-22 12:00"
    assert redact(untouched) == untouched
