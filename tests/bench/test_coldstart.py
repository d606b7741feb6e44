"""What the API handler's cold start loads, in a fresh interpreter as bench/coldstart.py runs it:
the figures themselves are machine-dependent, the modules behind them are not."""

from __future__ import annotations

from bench import coldstart

XRAY_SDK = "aws_xray_sdk"
OPENAPI_MODELS = "aws_lambda_powertools.event_handler.openapi.models"


def test_api_first_request_loads_neither_xray_sdk_nor_openapi_models() -> None:
    # Given a fresh interpreter, when it imports the API handler and answers GET /tasks/{id}
    loaded = coldstart.loaded_modules(coldstart.FIRST_REQUEST)
    # Then the task was read through the handler, without the two heaviest optional imports
    assert "taskqueue.store" in loaded
    assert XRAY_SDK not in loaded
    assert OPENAPI_MODELS not in loaded


def test_worker_keeps_its_xray_tracer() -> None:
    assert XRAY_SDK in coldstart.loaded_modules("worker")
