"""The OpenAPI document lists every endpoint with its error responses."""

from __future__ import annotations

import httpx
import pytest

from tests.support.tenant import Tenant

ENDPOINTS = {
    ("/api/v1/public/customers", "post"): {"200", "201", "400", "401", "403", "409", "422"},
    ("/api/v1/public/customers", "get"): {"200", "400", "401", "403", "404", "422"},
    ("/api/v1/public/customers/transactions", "post"): {
        "201", "400", "401", "403", "404", "409", "422",
    },
    ("/api/v1/public/customers/transactions", "get"): {"200", "401", "403", "404", "422"},
    ("/api/v1/public/customers/rewards/redeemable", "get"): {"200", "401", "403", "404", "422"},
}  # fmt: skip


async def test_openapi_documents_every_endpoint_and_error(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    for (path, method), statuses in ENDPOINTS.items():
        operation = document["paths"][path][method]
        documented = set(operation["responses"])
        assert statuses <= documented | {"200"}, (path, method, statuses - documented)
        for status in documented - {"200", "201"}:
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            assert "ErrorEnvelope" in str(schema), (path, method, status)


async def test_transaction_request_schema_is_documented(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    create = schemas["CreateTransaction"]
    assert set(create["required"]) == {"points", "description"}
    assert create["properties"]["description"]["maxLength"] == 255


@pytest.mark.parametrize("path", ["/docs", "/healthz", "/readyz", "/openapi.json"])
async def test_public_paths_need_no_key(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200


async def test_docs_assets_are_served_locally(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text
    assert "/static/swagger-ui/swagger-ui-bundle.js" in page
    assert "cdn." not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        response = await client.get(f"/static/swagger-ui/{asset}")
        assert response.status_code == 200
        assert len(response.content) > 10_000


async def test_health_bodies(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_unknown_path_and_method_use_the_error_shape(tenant: Tenant) -> None:
    response = await tenant.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = await tenant.client.delete(
        "/api/v1/public/customers/transactions", headers=tenant.headers
    )
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id\n"})
    assert generated.headers["x-request-id"] != "bad id"


async def test_oversized_body_is_413(tenant: Tenant) -> None:
    response = await tenant.post(
        "/api/v1/public/customers",
        content=b'{"customer_id": "' + b"x" * 200_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/v1/public/customers", "DELETE, GET, OPTIONS, POST"),
        ("/api/v1/public/customers/transactions", "GET, OPTIONS, POST"),
        ("/api/v1/public/customers/rewards/redeemable", "GET, OPTIONS"),
    ],
)
async def test_options_lists_every_method(client: httpx.AsyncClient, path: str, allow: str) -> None:
    response = await client.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allow


async def test_security_is_declared_per_operation(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert "security" not in document
    assert "security" not in document["paths"]["/healthz"]["get"]
    assert "security" not in document["paths"]["/readyz"]["get"]
    for path in ("/api/v1/public/customers", "/api/v1/public/customers/transactions"):
        for operation in document["paths"][path].values():
            assert operation["security"] == [{"BearerAuth": []}]


async def test_points_have_one_json_type(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert schemas["Customer"]["properties"]["points_balance"] == {"type": "number"}
    assert schemas["Transaction"]["properties"]["points"] == {"type": "number"}
    assert schemas["CreateTransaction"]["properties"]["points"]["type"] == "number"


async def test_enrolment_documents_created_and_updated(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/api/v1/public/customers"]
    assert {"200", "201"} <= set(operation["post"]["responses"])
