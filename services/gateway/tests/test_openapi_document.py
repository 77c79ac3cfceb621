"""The OpenAPI document tells clients what the gateway answers: every operation's errors as
problem documents, and the field rules (patterns, lengths) a generated client can check first."""

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from gateway.app import create_app
from gateway.schemas import QueryBool, UpdateUser
from gateway.settings import Settings
from platform_contracts.codes import credit_code_check_character
from platform_contracts.member import RegisterMember, id_number_check_character, normalize_id_number
from platform_contracts.organization import CreateOrganization, RegisterUnit

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return create_app(Settings(mongodb_uri="mongodb://unused")).openapi()


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_every_api_operation_declares_its_errors_as_problem_documents(spec):
    for path, method, operation in operations(spec):
        errors = {int(status): response for status, response in operation["responses"].items()
                  if int(status) >= 400}
        if path.startswith("/api/"):
            assert 503 in errors, (method, path)
        for status, response in errors.items():
            assert response["content"] == PROBLEM, (method, path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert set(spec["components"]["schemas"]["Problem"]["required"]) == {"title", "status"}


def test_the_error_statuses_follow_what_an_operation_does(spec):
    responses = {(path, method): set(map(int, op["responses"])) for path, method, op in operations(spec)}
    assert {400, 401, 403, 409, 422, 503, 504} <= responses["/api/v1/units", "post"]
    assert {401, 403, 404, 422, 503, 504} <= responses["/api/v1/units/{unit_id}", "get"]
    assert 504 not in responses["/api/v1/users", "get"]  # the gateway's own accounts: no service call
    assert {401, 422, 429, 503} <= responses["/api/v1/auth/token", "post"]
    assert 409 not in responses["/api/v1/auth/token", "post"]
    assert 429 in responses["/api/v1/members", "post"]
    assert responses["/readyz", "get"] == {200, 503}
    unit_503 = spec["paths"]["/api/v1/units"]["post"]["responses"]["503"]
    assert "Retry-After" in unit_503["headers"]


def test_code_fields_state_their_form(spec):
    schemas = spec["components"]["schemas"]
    credit_code = schemas["RegisterUnit"]["properties"]["credit_code"]
    assert credit_code["pattern"] == "^[0-9A-HJ-NPQRTUWXY]{18}$"
    assert credit_code["minLength"] == credit_code["maxLength"] == 18
    assert schemas["RegisterUnit"]["properties"]["division"]["pattern"] == "^[0-9]{6}([0-9]{3}){0,2}$"
    assert schemas["RegisterMember"]["properties"]["id_number"]["pattern"] == "^[0-9]{17}[0-9X]$"
    division_filter = next(p for p in spec["paths"]["/api/v1/units"]["get"]["parameters"] if p["name"] == "division")
    assert any(s.get("pattern") for s in division_filter["schema"]["anyOf"])


def test_values_the_validators_accept_match_the_documented_patterns(spec):
    schemas = spec["components"]["schemas"]
    credit_code = "91350100M000100Y4"
    credit_code += credit_code_check_character(credit_code)
    id_number = "11010519491231002"
    id_number += id_number_check_character(id_number)
    unit = RegisterUnit(credit_code=credit_code, name="n", type="enterprise", industry="express",
                        division="350102001")
    assert re.fullmatch(schemas["RegisterUnit"]["properties"]["credit_code"]["pattern"], unit.credit_code)
    assert re.fullmatch(schemas["RegisterUnit"]["properties"]["division"]["pattern"], unit.division)
    assert re.fullmatch(schemas["RegisterMember"]["properties"]["id_number"]["pattern"], normalize_id_number(id_number))


@pytest.mark.parametrize("model, body, field", [
    (RegisterUnit, '{"above_scale": 1}', "above_scale"),
    (CreateOrganization, '{"online": 0}', "online"),
    (RegisterMember, '{"mobile": 1}', "mobile"),
    (UpdateUser, '{"active": 0}', "active"),
])
def test_boolean_fields_refuse_numbers(model, body, field):
    with pytest.raises(ValidationError) as refused:
        model.model_validate_json(body)
    assert any(err["loc"] == (field,) and err["type"] == "bool_type" for err in refused.value.errors())


@pytest.mark.parametrize("value", ["1", "0", "yes", "on", "True"])
def test_boolean_query_parameters_take_only_true_or_false(value):
    query_bool = TypeAdapter(QueryBool)
    assert query_bool.validate_python("true") is True and query_bool.validate_python("false") is False
    with pytest.raises(ValidationError):
        query_bool.validate_python(value)
