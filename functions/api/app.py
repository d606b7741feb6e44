"""API Lambda: HTTP API routes, thin. Parse, call one taskqueue function, shape the answer."""

from datetime import datetime
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    CORSConfig,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from taskqueue.config import get_settings
from taskqueue.models import (
    DeadLetterPage,
    ErrorResponse,
    InvalidRequest,
    InvalidTransition,
    ListTasksQuery,
    RedriveResult,
    RetryTaskRequest,
    Stats,
    SubmitTaskRequest,
    TaskDetail,
    TaskNotFound,
    TaskPage,
    TaskQueueError,
    TaskStatus,
    TaskTypeInfo,
    TaskView,
    UploadRequest,
    UploadTicket,
)
from taskqueue.observability import logger, metrics, tracer
from taskqueue.service import EnqueueFailed, TaskService


class Unauthorized(TaskQueueError):
    code = "unauthorized"


class PayloadTooLarge(TaskQueueError):
    code = "payload_too_large"


STATUS_OF: dict[type[TaskQueueError], int] = {
    TaskNotFound: 404,
    InvalidTransition: 409,
    InvalidRequest: 400,
    Unauthorized: 401,
    PayloadTooLarge: 413,
    EnqueueFailed: 503,
}

app = APIGatewayHttpResolver(
    enable_validation=True,
    cors=CORSConfig(
        allow_origin=get_settings().cors_allow_origin,
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        max_age=600,
    ),
)
app.enable_swagger(path="/docs", title="Serverless tasks API", version="1.0.0")


@cache
def service() -> TaskService:
    return TaskService.from_settings(get_settings())


def current_owner() -> str:
    """The caller's identity: the JWT `sub` claim, never anything from the request body."""
    authorizer = app.current_event.request_context.authorizer
    claims = (authorizer.jwt_claim if authorizer else None) or {}
    owner = claims.get("sub")
    if owner:
        return str(owner)
    dev_user = get_settings().dev_auth_user
    if dev_user:
        return dev_user
    raise Unauthorized("authentication required")


def json_response(status: int, payload: Any) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=payload)


def error_response(status: int, code: str, message: str, details: Any = None) -> Response[Any]:
    return json_response(
        status,
        ErrorResponse.model_validate(
            {"error": {"code": code, "message": message, "details": details}}
        ),
    )


def check_body_size() -> None:
    limit = get_settings().max_body_bytes
    if len(app.current_event.body or "") > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")


def limit_body_size(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    check_body_size()
    if app.current_event.body and isinstance(app.current_event.json_body, list):
        # Powertools' validation would take a list's first item for an object body.
        return error_response(400, "malformed_json", "request body is not a JSON object")
    return next_middleware(app)


app.use(middlewares=[limit_body_size])


# ------------------------------------------------------------------ errors, in one place


@app.exception_handler(TaskQueueError)
def handle_domain_error(exc: TaskQueueError) -> Response[Any]:
    status = next((s for cls, s in STATUS_OF.items() if isinstance(exc, cls)), 400)
    if isinstance(exc, InvalidRequest) and isinstance(exc.details, list):
        status = 422
    return error_response(status, exc.code, exc.message, exc.details)


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
    "/tasks", responses={201: {"description": "created"}, 200: {"description": "idempotent replay"}}
)
@tracer.capture_method
def submit_task(
    body: SubmitTaskRequest,
    idempotency_key: Annotated[
        str | None,
        Header(alias="idempotency-key", max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$"),
    ] = None,
) -> Response[TaskView]:
    task, created = service().submit(current_owner(), body, idempotency_key)
    if created:
        metrics.add_metric(name="TasksSubmitted", unit="Count", value=1)
    return json_response(201 if created else 200, TaskView.of(task))


@app.get("/tasks")
@tracer.capture_method
def list_tasks(
    status: Annotated[TaskStatus | None, Query()] = None,
    type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    created_after: Annotated[datetime | None, Query()] = None,
    created_before: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> TaskPage:
    query = ListTasksQuery(
        status=status,
        type=type,
        created_after=created_after,
        created_before=created_before,
        limit=limit,
        cursor=cursor,
    )
    return service().list_tasks(current_owner(), query)


@app.get("/tasks/<task_id>")
@tracer.capture_method
def get_task(task_id: Annotated[str, Path(max_length=64)]) -> TaskDetail:
    return service().get(current_owner(), task_id)


@app.delete("/tasks/<task_id>", responses={202: {"description": "cancel requested"}})
@tracer.capture_method
def cancel_task(task_id: Annotated[str, Path(max_length=64)]) -> Response[TaskView]:
    task = service().cancel(current_owner(), task_id)
    return json_response(200 if task.status == TaskStatus.CANCELLED else 202, TaskView.of(task))


@app.post("/tasks/<task_id>/retry")
@tracer.capture_method
def retry_task(
    task_id: Annotated[str, Path(max_length=64)],
    body: Annotated[RetryTaskRequest | None, Body()] = None,
) -> TaskView:
    restart = body.restart if body else False
    return TaskView.of(service().retry(current_owner(), task_id, restart))


@app.get("/stats")
@tracer.capture_method
def get_stats() -> Stats:
    return service().stats(current_owner())


@app.get("/dead-letters")
@tracer.capture_method
def list_dead_letters() -> DeadLetterPage:
    return service().dead_letters(current_owner())


@app.post("/dead-letters/redrive")
@tracer.capture_method
def redrive_dead_letters() -> RedriveResult:
    return service().redrive(current_owner())


@app.get("/task-types")
def list_task_types() -> list[TaskTypeInfo]:
    current_owner()
    return service().task_types()


@app.post("/uploads", responses={201: {"description": "upload URL"}})
def create_upload(body: UploadRequest) -> Response[UploadTicket]:
    return json_response(201, service().upload(current_owner(), body))


@app.get("/health")
def health() -> Response[dict[str, Any]]:
    checks = service().health()
    return json_response(200 if checks["ok"] else 503, checks)


@app.get("/openapi.json", include_in_schema=False)
def openapi_spec() -> Response[str]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(title="Serverless tasks API", version="1.0.0"),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
