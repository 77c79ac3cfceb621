"""A member registered through the gateway with an Idempotency-Key: the fingerprint the member
service keeps in its command log beside the result is keyed, so the database alone does not
give back the ID number and phone of the body it was taken of."""

import hashlib
import json
import os
import random
import uuid

import pymongo
import pytest

from gateway.idempotency import canonical_request
from platform_testing import credit_code, new_id_number

pytestmark = pytest.mark.slow


def test_idempotency_fingerprint_at_rest_is_not_a_plain_sha256_of_the_body(platform):
    key = uuid.uuid4().hex
    with platform.client() as api:
        unit = api.post("/units", json={"credit_code": credit_code("370113301"), "name": f"外卖站{key[:4]}",
                                        "type": "platform_company", "industry": "delivery",
                                        "division": "370113301"}).json()
        organization = api.post("/organizations", json={
            "name": f"骑手支部{key[:4]}", "kind": "branch", "formation": "standalone", "division": "370113301",
            "unit_ids": [unit["id"]]}).json()
        body = {"name": "刘骑手", "id_number": new_id_number(), "phone": f"139{random.randrange(10**8):08d}",
                "organization_id": organization["id"], "stage": "applicant"}
        response = api.post("/members", json=body, headers={"Idempotency-Key": key})
        assert response.status_code == 201, response.text

    plain = hashlib.sha256(canonical_request("POST", "/api/v1/members", [], json.dumps(body).encode())).hexdigest()
    uri = os.environ.get("MONGODB_URI") or f"mongodb://127.0.0.1:{platform.secantus_port}"
    with pymongo.MongoClient(uri) as client:
        logs = [client[name].commands for name in client.list_database_names()
                if name == "member" or name.startswith("member_")]
        records = [record for log in logs for record in log.find({"_id": f"admin:{key}"})]
        assert len(records) == 1 and len(records[0]["request"]) == 64
        assert plain not in json.dumps([record for log in logs for record in log.find({}, {"request": 1})])
