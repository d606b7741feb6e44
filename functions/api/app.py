"""API Lambda: HTTP API routes, thin. Parse, call one taskqueue function, shape the answer.

Cold start: Powertools' OpenAPI models (~100 ms to import) load only for /openapi.json and /docs
(request validation does not need them), and the X-Ray SDK is not loaded (~30 ms with botocore
patched): Lambda's own `Tracing: Active` segments time each invocation. The garbage collector
pauses while the modules load (below).
"""

# ruff: noqa: E402 - the collector is paused before the imports below
import gc

# A cold start creates some 90,000 objects that live as long as the process (boto3, pydantic,
# Powertools, ours); collecting while they pile up rescans them for nothing (~12% of the
# import's CPU, and a ~20 ms full collection at the first request). Collection resumes at the
# end of this module, with them frozen: out of every later collection's way.
gc.disable()

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    CORSConfig,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from taskqueue import wiring
from taskqueue.errors import (
    EnqueueFailed,
    InvalidRequest,
    InvalidTransition,
    PayloadTooLarge,
    QuotaExceeded,
    TaskNotFound,
    TaskQueueError,
    Unauthorized,
)
from taskqueue.models import (
    EVENT_KEY_PATTERN,
    BulkRequest,
    BulkResult,
    DeadLetterPage,
    ErrorResponse,
    IsoDateTime,
    ListTasksQuery,
    RedriveResult,
    RetryTaskRequest,
    Stats,
    SubmitTaskRequest,
    TaskDetail,
    TaskPage,
    TaskStatus,
    TaskTypeInfo,
    TaskView,
    UploadRequest,
    UploadTicket,
    validation_details,
)
from taskqueue.observability import logger, metrics

STATUS_OF: dict[type[TaskQueueError], int] = {
    TaskNotFound: 404,
    InvalidTransition: 409,
    InvalidRequest: 400,
    Unauthorized: 401,
    PayloadTooLarge: 413,
    EnqueueFailed: 503,
    QuotaExceeded: 429,
}

app = APIGatewayHttpResolver(
    enable_validation=True,
    cors=CORSConfig(
        allow_origin=wiring.settings().cors_allow_origin,
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        max_age=600,
    ),
)
JWT: list[dict[str, list[str]]] = [{"jwt": []}]
ADMIN_GROUP = "admin"  # the Cognito group of operators: global queue depths in /stats
ERROR_TEXT = {
    400: "malformed request (JSON, cursor)",
    401: "no identity: a JWT is required",
    404: "no such task for this caller",
    409: "the task's state does not allow it",
    413: "request body too large",
    415: "the body must be application/json",
    422: "validation failed; details list each field",
    429: "over one of the caller's quotas; Retry-After says when to try again",
    503: "the task queue is unavailable; try again",
}


def responses(
    ok: dict[int, str], *errors: int, protected: bool = True
) -> dict[int, OpenAPIResponse]:
    """The route's answers for the OpenAPI document, errors with their one JSON shape."""
    documented: dict[int, OpenAPIResponse] = {
        status: {"description": text} for status, text in ok.items()
    }
    for status in ((401,) if protected else ()) + (422, *errors):
        documented[status] = {
            "description": ERROR_TEXT[status],
            "content": {"application/json": {"model": ErrorResponse}},
        }
    return documented


def current_owner() -> str:
    """The caller's identity: the JWT `sub` claim, never anything from the request body."""
    authorizer = app.current_event.request_context.authorizer
    claims = (authorizer.jwt_claim if authorizer else None) or {}
    owner = claims.get("sub")
    if owner:
        return str(owner)
    dev_user = wiring.settings().dev_auth_user
    if dev_user:
        return dev_user
    raise Unauthorized("authentication required")


def current_verified_email() -> str | None:
    """The caller's own address, only when the identity provider says it is verified."""
    authorizer = app.current_event.request_context.authorizer
    claims = (authorizer.jwt_claim if authorizer else None) or {}
    email, verified = claims.get("email"), claims.get("email_verified")
    # HTTP API hands claims over as strings: "true", not true.
    if email and str(verified).lower() == "true":
        return str(email)
    return None


def current_is_admin() -> bool:
    """Whether the caller is in the operators' Cognito group `admin` (HTTP API hands the
    list claim over as "[admin other]"; a JSON list's text is read the same way)."""
    authorizer = app.current_event.request_context.authorizer
    claims = (authorizer.jwt_claim if authorizer else None) or {}
    groups = claims.get("cognito:groups") or []
    if isinstance(groups, str):
        groups = groups.strip("[]").replace(",", " ").replace('"', " ").split()
    return ADMIN_GROUP in groups


def json_response(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=payload,
        headers=headers,
    )


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    return json_response(
        status,
        ErrorResponse.model_validate(
            {"error": {"code": code, "message": message, "details": details}}
        ),
        headers,
    )


def check_body_size() -> None:
    limit = wiring.settings().max_body_bytes
    if len((app.current_event.body or "").encode()) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")


def body_is_unparsable() -> bool:
    """Not UTF-8, not JSON, nested past Python's recursion limit, or a number too long."""
    if not app.current_event.body:
        return False
    try:
        app.current_event.json_body  # noqa: B018 - parsing is the check
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return True
    return False


def check_body(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    check_body_size()
    content_type = (app.current_event.headers or {}).get("content-type", "")
    if (
        app.current_event.body
        and "json" in content_type
        and not body_is_unparsable()
        and isinstance(app.current_event.json_body, list)
    ):
        # Powertools' validation would take a list's first item for an object body.
        return error_response(400, "malformed_json", "request body is not a JSON object")
    return next_middleware(app)


app.use(middlewares=[check_body])


# ------------------------------------------------------------------ errors, in one place


@app.exception_handler(TaskQueueError)
def handle_domain_error(exc: TaskQueueError) -> Response[Any]:
    status = next((s for cls, s in STATUS_OF.items() if isinstance(exc, cls)), 400)
    if isinstance(exc, InvalidRequest) and isinstance(exc.details, list):
        status = 422
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QuotaExceeded) else None
    return error_response(status, exc.code, exc.message, exc.details, headers)


@app.exception_handler([ValueError, RecursionError])
def handle_unparsable_body(exc: Exception) -> Response[Any]:
    """Powertools parses the body before any route: a body it cannot parse is the caller's."""
    if body_is_unparsable():
        return error_response(400, "malformed_json", "request body is not valid UTF-8 JSON")
    raise exc


@app.exception_handler(RequestUnsupportedContentType)
def handle_unsupported_content_type(exc: RequestUnsupportedContentType) -> Response[Any]:
    return error_response(415, "unsupported_media_type", "send the body as application/json")


@app.exception_handler(RequestValidationError)
def handle_validation_error(exc: RequestValidationError) -> Response[Any]:
    try:
        check_body_size()  # request validation runs before any middleware
    except PayloadTooLarge as too_large:
        return handle_domain_error(too_large)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    if any(
        e["type"] in ("json_invalid", "model_attributes_type") and e["loc"][:1] == ["body"]
        for e in errors
    ):
        return error_response(400, "malformed_json", "request body is not a JSON object", errors)
    return error_response(422, "validation_error", "request is not valid", errors)


@app.not_found
def handle_not_found(exc: Exception) -> Response[Any]:
    return error_response(404, "not_found", "no such route")


# ------------------------------------------------------------------ routes


@app.post(
    "/tasks",
    security=JWT,
    responses=responses(
        {201: "created", 200: "idempotent replay: the task of this key"},
        400,
        409,
        413,
        415,
        429,
        503,
    ),
)
def submit_task(
    body: SubmitTaskRequest,
    idempotency_key: Annotated[
        str | None,
        Header(alias="idempotency-key", max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$"),
    ] = None,
) -> Response[TaskView]:
    task, created = wiring.service().submit(
        current_owner(), body, idempotency_key, verified_email=current_verified_email()
    )
    if created:
        metrics.add_metric(name="TasksSubmitted", unit="Count", value=1)
    return json_response(201 if created else 200, TaskView.of(task))


@app.get("/tasks", security=JWT, responses=responses({200: "a page of tasks"}, 400))
def list_tasks(
    status: Annotated[TaskStatus | None, Query()] = None,
    type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    created_after: Annotated[IsoDateTime | None, Query()] = None,
    created_before: Annotated[IsoDateTime | None, Query()] = None,
    id_prefix: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9a-f]{8,32}$",
            description="Find tasks by the first 8 or more characters of their id (alone)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> TaskPage:
    try:
        query = ListTasksQuery(
            status=status,
            type=type,
            created_after=created_after,
            created_before=created_before,
            id_prefix=id_prefix,
            limit=limit,
            cursor=cursor,
        )
    except ValidationError as exc:
        raise InvalidRequest("invalid query", validation_details(exc, ("query",))) from exc
    return wiring.service().list_tasks(current_owner(), query)


@app.post(
    "/tasks/bulk",
    security=JWT,
    responses=responses({200: "one result per task: applied, or why not"}, 400, 413, 415),
)
def bulk_tasks(body: BulkRequest) -> BulkResult:
    return wiring.service().bulk(current_owner(), body)


@app.get("/tasks/<task_id>", security=JWT, responses=responses({200: "the task"}, 404))
def get_task(
    task_id: Annotated[str, Path(max_length=64)],
    events_before: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=EVENT_KEY_PATTERN,
            description="The events_cursor of an earlier answer: the events before it",
        ),
    ] = None,
) -> TaskDetail:
    return wiring.service().get(current_owner(), task_id, events_before)


@app.delete(
    "/tasks/<task_id>",
    security=JWT,
    responses=responses(
        {
            200: "cancelled (it had not started)",
            202: "cancel requested: it stops at its next checkpoint",
        },
        404,
        409,
    ),
)
def cancel_task(task_id: Annotated[str, Path(max_length=64)]) -> Response[TaskView]:
    task = wiring.service().cancel(current_owner(), task_id)
    return json_response(200 if task.status == TaskStatus.CANCELLED else 202, TaskView.of(task))


@app.post(
    "/tasks/<task_id>/retry",
    security=JWT,
    responses=responses({200: "queued again"}, 400, 404, 409, 413, 415, 429, 503),
)
def retry_task(
    task_id: Annotated[str, Path(max_length=64)],
    body: Annotated[RetryTaskRequest | None, Body()] = None,
) -> TaskView:
    restart = body.restart if body else False
    return TaskView.of(wiring.service().retry(current_owner(), task_id, restart))


@app.get(
    "/stats",
    security=JWT,
    responses=responses({200: "your counts and throughput; queue depths for operators only"}),
)
def get_stats() -> Stats:
    return wiring.service().stats(current_owner(), operator=current_is_admin())


@app.get("/dead-letters", security=JWT, responses=responses({200: "the caller's dead letters"}))
def list_dead_letters() -> DeadLetterPage:
    return wiring.service().dead_letters(current_owner())


@app.post(
    "/dead-letters/redrive", security=JWT, responses=responses({200: "what was sent back"}, 503)
)
def redrive_dead_letters() -> RedriveResult:
    return wiring.service().redrive(current_owner())


@app.get("/task-types", security=JWT, responses=responses({200: "the registered types"}))
def list_task_types() -> list[TaskTypeInfo]:
    current_owner()
    return wiring.service().task_types()


@app.post(
    "/uploads",
    security=JWT,
    responses=responses({201: "a presigned PUT URL under your own prefix"}, 400, 413, 415, 429),
)
def create_upload(body: UploadRequest) -> Response[UploadTicket]:
    return json_response(201, wiring.service().upload(current_owner(), body))


@app.get(
    "/health",
    responses=responses({200: "table and queue reachable", 503: "one is not"}, protected=False),
)
def health() -> Response[dict[str, Any]]:
    checks = wiring.service().health()
    return json_response(200 if checks["ok"] else 503, checks)


# ------------------------------------------------------------------ the API's own documents


def openapi_json() -> str:
    """The OpenAPI document, built from the routes when first asked for."""
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    return app.get_openapi_json_schema(
        title="Serverless tasks API",
        version="1.0.0",
        security_schemes={"jwt": HTTPBearer(bearerFormat="JWT")},
    )


@app.get("/openapi.json", include_in_schema=False)
def openapi_spec() -> Response[str]:
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json()
    )


@app.get("/docs", include_in_schema=False)
def swagger_ui() -> Response[str]:
    """Powertools' Swagger UI page, as `app.enable_swagger(path="/docs")` serves it, built here so
    that its OpenAPI models are imported by this route only, not at every cold start."""
    from importlib import resources

    from aws_lambda_powertools.event_handler.openapi.swagger_ui import (
        generate_oauth2_redirect_html,
        generate_swagger_html,
    )

    query = app.current_event.query_string_parameters or {}
    if query.get("format") == "oauth2-redirect":
        return Response(
            status_code=200, content_type="text/html", body=generate_oauth2_redirect_html()
        )
    spec = openapi_json().replace("</", "<\\/")  # no "</script>" inside the page's script
    if query.get("format") == "json":
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=spec)
    bundle = resources.files("aws_lambda_powertools.event_handler.openapi.swagger_ui")
    page = generate_swagger_html(
        spec,
        (bundle / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (bundle / "swagger-ui.min.css").read_text(encoding="utf-8"),
        swagger_base_url="",
        oauth2_config=None,
    )
    return Response(status_code=200, content_type="text/html", body=page)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


# The modules and objects made above stay for the life of the process: no collection scans them.
gc.freeze()
gc.enable()
