from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import Parameter

from loyalty.http.dependencies import CurrentCaller
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.imports import jobs
from loyalty.imports.schemas import ImportJobEnvelope


class ImportController(Controller):
    """CSV imports of customers and balances (IMPORT.md)."""

    path = "/api/v1/imports"
    security = BEARER_SECURITY
    tags = ["Imports"]

    @post(
        "/",
        opt={"scope": "customers:write", "also_scopes": ("transactions:write",)},
        status_code=202,
        # The CSV streams into storage; its own limit is LOYALTY_IMPORT_BYTES_MAX.
        request_max_body_size=None,
        summary="Import customers and balances from a CSV file",
        description=(
            "The body is the CSV file itself (`Content-Type: text/csv`, UTF-8, a header "
            "row; columns `customer_id` (required), `email`, `first_name`, `last_name`, "
            "`date_of_birth`, `status`, `points`, `description`, `apply_to_lifetime`, "
            "`expires_at`, `idempotency_key`), at most LOYALTY_IMPORT_BYTES_MAX bytes "
            "(default 100 MiB; larger: 413). Answers 202 with the job: the whole file is "
            "validated first (an invalid file ends `failed` with its errors, nothing "
            "written), then applied; follow it with `GET /api/v1/imports/{id}`. Every row's "
            "points carry an idempotency key, so the same file imported again moves nothing "
            "twice, and a job whose process dies is finished by another. Needs the scopes "
            "`customers:write` and `transactions:write`."
        ),
        responses=error_responses(404, 413, 415, 422),
    )
    async def create_import(
        self, request: Request[Any, Any, Any], caller: CurrentCaller
    ) -> ImportJobEnvelope:
        length = request.headers.get("content-length")
        job = await jobs.start_api_import(
            caller.database,
            caller.merchant_id,
            request.stream(),
            content_type=request.headers.get("content-type", ""),
            content_length=int(length) if length and length.isdigit() else None,
            bytes_max=request.app.state.settings.import_bytes_max,
        )
        return ImportJobEnvelope(data=job)

    @get(
        "/{import_id:str}",
        opt={"scope": "customers:read"},
        summary="An import's progress and figures",
        responses=error_responses(404),
    )
    async def get_import(
        self,
        caller: CurrentCaller,
        import_id: str = Parameter(description="The import's id."),
    ) -> ImportJobEnvelope:
        job = await jobs.get_job(caller.database, caller.merchant_id, jobs.parse_id(import_id))
        return ImportJobEnvelope(data=job)
