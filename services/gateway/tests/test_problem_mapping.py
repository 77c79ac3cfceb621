"""How errors become problem documents: validation errors, domain errors and remote RPC errors."""

from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Query
from nameko.exceptions import serialize

from platform_contracts.errors import Forbidden, NotFound
from platform_contracts.problems import Rejected
from gateway.problems import install, validation_problem
from gateway.rpc import error_problem


def test_malformed_json_is_400():
    document = validation_problem([{"type": "json_invalid", "loc": ("body", 12), "msg": "JSON decode error"}])
    assert document["status"] == 400 and "errors" not in document


def test_validation_errors_name_each_field_without_the_input():
    document = validation_problem([
        {"type": "value_error", "loc": ("body", "credit_code"), "msg": "Value error, check character does not match",
         "input": "91370113MA3C8YWQ0X"},
        {"type": "less_than_equal", "loc": ("query", "limit"), "msg": "Input should be less than or equal to 500"},
        {"type": "int_parsing", "loc": ("body", "unit_ids", 0), "msg": "bad"},
    ])
    assert document["status"] == 422
    assert document["errors"] == [
        {"loc": ["body", "credit_code"], "msg": "check character does not match"},
        {"loc": ["query", "limit"], "msg": "Input should be less than or equal to 500"},
        {"loc": ["body", "unit_ids", 0], "msg": "bad"},
    ]
    assert "credit_code" in document["detail"] and "91370113MA3C8YWQ0X" not in str(document)


def test_remote_rejected_keeps_its_problem():
    # Exactly what nameko puts on the wire for a Rejected raised in a service.
    wire = serialize(Rejected.invalid(["body", "unit_ids", 1], "organization is dissolved"))
    assert wire["exc_type"] == "Rejected"
    problem = error_problem("organization", "attach_unit", wire)
    assert problem.status == 422
    assert problem.document["errors"] == [{"loc": ["body", "unit_ids", 1], "msg": "organization is dissolved"}]


def test_a_service_whose_dependency_is_away_answers_503():
    wire = serialize(Rejected.make(503, "the organization service did not answer in time"))
    problem = error_problem("member", "register_member", wire)
    assert problem.status == 503 and problem.document["title"] == "Service unavailable"


def test_other_remote_errors_are_502_without_internals():
    problem = error_problem("organization", "get_unit", serialize(KeyError("mongodb://user:secret@db")))
    assert problem.status == 502 and "secret" not in str(problem.document)
    # A "Rejected" without a usable problem is a fault too, not a 500.
    assert error_problem("organization", "x", {"exc_type": "Rejected", "exc_args": ["oops"]}).status == 502
    not_4xx = serialize(Rejected({"status": 500, "title": "t"}))
    assert error_problem("organization", "x", not_4xx).status == 502


async def test_a_domain_error_names_its_field_where_the_route_took_it_from():
    app = FastAPI()
    install(app)

    async def division_filter(division: Annotated[str | None, Query()] = None) -> str | None:
        return division

    @app.post("/units/{unit_id}")
    async def refuse(unit_id: str, division: Annotated[str | None, Depends(division_filter)], body: dict):
        raise NotFound("unit", unit_id, body["field"]) if body.get("missing") else Forbidden("refused", body["field"])

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as client:
        async def refused(**body) -> dict:
            return (await client.post("/units/u1", params={"division": "3701"}, json=body)).json()

        assert (await refused(field="division"))["errors"] == [{"loc": ["query", "division"], "msg": "refused"}]
        assert (await refused(field="unit_id"))["errors"] == [{"loc": ["path", "unit_id"], "msg": "refused"}]
        assert (await refused(field=["units", 3, "division"]))["errors"] == [
            {"loc": ["body", "units", 3, "division"], "msg": "refused"}]
        unlocated = await refused(field=None)
        assert unlocated["status"] == 403 and "errors" not in unlocated
        # As the services answer: a missing record the request addresses is a 404, one it refers to a 422.
        assert (await refused(field="unit_id", missing=True))["status"] == 404
        assert (await refused(field="organization_id", missing=True))["status"] == 422
