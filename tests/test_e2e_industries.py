"""End to end, over HTTP: the industry registry (GET/POST /industries) and units that must
name a registered industry."""

import os
import uuid

import httpx
import pymongo
import pytest

from platform_testing import credit_code

pytestmark = pytest.mark.slow


def unit_body(division: str, **fields) -> dict:
    return {"credit_code": credit_code(division), "name": f"企业{uuid.uuid4().hex[:4]}", "type": "enterprise",
            "industry": "express", "division": division, **fields}


def problem_fields(response: httpx.Response) -> set:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return {tuple(e["loc"]) for e in response.json().get("errors") or []}


def counter_documents(platform) -> list:
    """The organization service's coverage counter documents, as stored."""
    uri = os.environ.get("MONGODB_URI") or f"mongodb://127.0.0.1:{platform.secantus_port}"
    with pymongo.MongoClient(uri) as client:
        return list(client[platform.organization_database].coverage_counters.find({}, sort=[("_id", 1)]))


def test_free_text_industry_is_refused_before_any_counter_document_grows(platform):
    division = "370113301"
    unregistered = f"made-up-{uuid.uuid4().hex[:8]}"
    with platform.client() as api:
        unit = api.post("/units", json=unit_body(division)).json()
        before = counter_documents(platform)
        for response, loc in (
            (api.post("/units", json=unit_body(division, industry=unregistered)), ("body", "industry")),
            (api.post("/units/bulk", json={"units": [unit_body(division), unit_body(division, industry=unregistered)]}),
             ("body", "units", 1, "industry")),
            (api.patch(f"/units/{unit['id']}", json={"industry": unregistered}), ("body", "industry")),
        ):
            assert response.status_code == 422 and problem_fields(response) == {loc}, response.text
        assert counter_documents(platform) == before
        assert api.get("/units", params={"division": division}).json()["items"] == [unit]


def test_an_admin_registers_an_industry_that_units_may_then_name(platform):
    code = f"drone-delivery-{uuid.uuid4().hex[:6]}"
    industry = {"code": code, "name": "无人机配送", "gb4754": "6090"}
    with platform.client() as api:
        seeded = {i["code"]: i for i in api.get("/industries").json()["items"]}
        assert seeded["food_delivery"] == {"code": "food_delivery", "name": "外卖送餐", "gb4754": "6242"}
        bad = api.post("/industries", json={**industry, "gb4754": "Z9"})
        assert bad.status_code == 422 and problem_fields(bad) == {("body", "gb4754")}
        response = api.post("/industries", json=industry)
        assert response.status_code == 201 and response.json() == industry, response.text
        assert industry in api.get("/industries").json()["items"]
        unit = api.post("/units", json=unit_body("370113302", industry=code))
        assert unit.status_code == 201, unit.text
        assert api.get("/coverage", params={"division": "370113302", "industry": code}).json()["units"] == 1

        name = f"op{uuid.uuid4().hex[:6]}"
        assert api.post("/users", json={"username": name, "password": "s3cret-pass", "role": "operator",
                                        "scope": "370113"}).status_code == 201
    with platform.client(platform.token(name, "s3cret-pass")) as operator:
        assert industry in operator.get("/industries").json()["items"]
        assert operator.post("/industries", json={**industry, "name": "改名"}).status_code == 403
