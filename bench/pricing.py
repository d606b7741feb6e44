"""us-east-1 list prices, in dollars, used by every cost figure (one table, one date).

Free tiers are ignored; first-tier prices are used where a service has tiers. Re-check the
AWS pricing pages and update PRICES_AS_OF when a price changes.
"""

from __future__ import annotations

PRICES_AS_OF = "2025-07 (DynamoDB on-demand after the 2024-11-01 reduction)"
REGION = "us-east-1"

MILLION = 1_000_000

PRICES: dict[str, float] = {
    # DynamoDB on-demand, Standard table class
    "dynamodb_wru": 0.625 / MILLION,  # per write request unit (1 KB)
    "dynamodb_rru": 0.125 / MILLION,  # per read request unit (4 KB strongly consistent)
    # SQS standard queue: per request (a batch of up to 10 messages of <= 64 KB is one)
    "sqs_request": 0.40 / MILLION,
    # Lambda, arm64
    "lambda_request": 0.20 / MILLION,
    "lambda_gb_second_arm64": 0.0000133334,
    # API Gateway HTTP API, first 300 million requests a month
    "http_api_request": 1.00 / MILLION,
    # Step Functions Standard workflows (retries are charged as transitions)
    "sfn_state_transition": 0.025 / 1000,
    # S3 Standard requests (for the DATA_PROCESSING figures)
    "s3_put_request": 0.005 / 1000,  # PUT, COPY, POST, LIST (and multipart calls)
    "s3_get_request": 0.0004 / 1000,  # GET, SELECT and all other requests (HEAD included)
}

PRICE_LABELS: dict[str, str] = {
    "dynamodb_wru": "DynamoDB on-demand, per million write request units",
    "dynamodb_rru": "DynamoDB on-demand, per million read request units",
    "sqs_request": "SQS standard, per million requests",
    "lambda_request": "Lambda, per million requests",
    "lambda_gb_second_arm64": "Lambda arm64, per GB-second",
    "http_api_request": "API Gateway HTTP API, per million requests",
    "sfn_state_transition": "Step Functions Standard, per 1,000 state transitions",
    "s3_put_request": "S3 Standard, per 1,000 PUT/LIST requests",
    "s3_get_request": "S3 Standard, per 1,000 GET/HEAD requests",
}
_UNIT = {"per million": MILLION, "per 1,000": 1000, "per GB": 1}


def price_table() -> list[tuple[str, str]]:
    """(label, price as the pricing page quotes it) for printing."""
    rows = []
    for name, label in PRICE_LABELS.items():
        scale = next(v for k, v in _UNIT.items() if k in label)
        rows.append((label, f"${PRICES[name] * scale:,.10g}"))
    return rows
