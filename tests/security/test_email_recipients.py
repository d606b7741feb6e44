"""EMAIL is no open relay: recipients are the sender's own verified address, the operator's
allow-list or the SES mailbox simulator; anything else is refused at submit (422, naming it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from taskqueue import wiring
from taskqueue.task_types.base import Submitter
from taskqueue.task_types.email import EmailParams, may_email
from tests.helpers import call_api, http_event

OWNER = "user-mallory"


@pytest.fixture
def api_env(
    function_env: Callable[[str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    env = function_env("ApiFunction")
    # The deployed default: nobody but the simulator and the sender's own verified address,
    # plus one allowed domain and one allowed address, as an operator would open it.
    monkeypatch.setenv("EMAIL_ALLOWED_RECIPIENTS", "partners.example.org,ops@example.net")
    wiring.reset()
    return env


def submit(recipients: list[str], claims: dict[str, str] | None = None) -> Any:
    body = {"type": "EMAIL", "params": {"recipients": recipients, "subject": "s", "body": "b"}}
    event = http_event("POST", "/tasks", body=body, sub=OWNER)
    event["requestContext"]["authorizer"]["jwt"]["claims"].update(claims or {})
    return call_api(event)


def test_an_outside_address_is_refused_with_422_naming_it(api_env: dict[str, str]) -> None:
    response = submit(["friend@partners.example.org", "victim@elsewhere.example"])
    assert response.status == 422
    assert response.body["error"]["message"] == "recipient victim@elsewhere.example is not allowed"
    (detail,) = response.body["error"]["details"]
    assert detail["loc"] == ["body", "params", "recipients", 1]
    assert detail["type"] == "recipient_not_allowed"
    # Nothing was written: no task
    listed = call_api(http_event("GET", "/tasks", sub=OWNER))
    assert listed.body["items"] == []


def test_the_senders_own_verified_address_is_allowed(api_env: dict[str, str]) -> None:
    claims = {"email": "Mallory@Home.example", "email_verified": "true"}
    response = submit(["mallory@home.example"], claims)
    assert response.status == 201


def test_an_unverified_own_address_is_refused(api_env: dict[str, str]) -> None:
    claims = {"email": "mallory@home.example", "email_verified": "false"}
    response = submit(["mallory@home.example"], claims)
    assert response.status == 422


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("success@simulator.amazonses.com", True),
        ("bounce+7@simulator.amazonses.com", True),
        ("anyone@partners.example.org", True),
        ("ANYONE@PARTNERS.EXAMPLE.ORG", True),
        ("anyone@sub.partners.example.org", False),  # a domain entry is that domain exactly
        ("ops@example.net", True),
        ("other@example.net", False),
        ("me@home.example", True),
        ("me@home.example.evil", False),
        ("simulator.amazonses.com@evil.example", False),
    ],
)
def test_who_may_be_mailed_row_by_row(address: str, allowed: bool) -> None:
    submitter = Submitter("owner", "me@home.example", ("partners.example.org", "ops@example.net"))
    assert may_email(address, submitter) is allowed


def test_generated_recipients_never_leave_the_simulator() -> None:
    params = EmailParams(recipient_count=10_000, subject="s", body="b")
    domains = {params.recipient(i).rsplit("@", 1)[1] for i in range(params.total)}
    assert domains == {"simulator.amazonses.com"}


def test_the_deployed_default_allows_no_outside_domain(sam_template: dict[str, Any]) -> None:
    parameter = sam_template["Parameters"]["EmailAllowedRecipients"]
    assert parameter["Default"] == ""
    variables = sam_template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["EMAIL_ALLOWED_RECIPIENTS"] == {"Ref": "EmailAllowedRecipients"}
