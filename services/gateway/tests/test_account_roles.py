"""An account holds one of the account roles (platform_contracts.actors.ROLES): `open311_client`
is held by Open311 API keys, never by an account, so it is neither accepted for an account nor
offered for one in the OpenAPI document."""

import uuid

from platform_contracts.actors import ROLES, Role


def test_open311_client_is_not_an_account_role(gateway, admin):
    document = gateway.client().get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    offered = set(schemas["AccountRole"]["enum"])
    assert offered == {role.value for role in ROLES} and Role.open311_client.value not in offered
    for model in ("CreateUser", "User"):
        assert schemas[model]["properties"]["role"] == {"$ref": "#/components/schemas/AccountRole"}, model
    assert "Role" not in schemas

    username = f"app-{uuid.uuid4().hex[:8]}"
    refused = admin.post("/api/v1/users", json={"username": username, "password": "app-password-1234",
                                               "role": "open311_client", "scope": "key-1"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["body", "role"], refused.text
    handler = admin.post("/api/v1/users", json={"username": username, "password": "app-password-1234",
                                               "role": "handler", "scope": ["dept-1"]})
    assert handler.status_code == 201 and handler.json()["role"] == "handler", handler.text
    changed = admin.patch(f"/api/v1/users/{handler.json()['id']}", json={"role": "open311_client"})
    assert changed.status_code == 422 and changed.json()["errors"][0]["loc"] == ["body", "role"], changed.text
