"""deploy/parameters.py: what `make deploy` asks on a first deploy, what it refuses, what it
writes for sam deploy, and what it says about SES. CloudFormation and SES answers come from
botocore's Stubber; the parameters are template.yaml's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from moto import mock_aws

from deploy import parameters
from deploy.parameters import ParameterError, Stack

REGION = "us-east-1"
SENDER = "tasks@mail.acme.internal"
OPS = "ops@acme.internal"
NO_STACK = Stack(None, {})
DEPLOYED = Stack("UPDATE_COMPLETE", {"Stage": "dev", "EmailSender": SENDER, "AlarmEmail": OPS})


class Terminal:
    """Scripted answers; None stands for no terminal at all."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.said: list[str] = []

    def ask(self, prompt: str) -> str | None:
        self.prompts.append(prompt)
        return self.answers.pop(0) if self.answers else None

    def say(self, line: str) -> None:
        self.said.append(line)


@pytest.fixture(scope="module")
def template_parameters() -> dict[str, parameters.Parameter]:
    return parameters.load_parameters()


def resolve(
    template_parameters: dict[str, parameters.Parameter],
    terminal: Terminal,
    stack: Stack = NO_STACK,
    given: dict[str, str] | None = None,
) -> dict[str, str]:
    return parameters.resolve(
        template_parameters, stack, {"Stage": "dev"}, given or {}, terminal.ask, terminal.say
    )


# ------------------------------------------------------------------------------- asking


def test_a_first_deploy_asks_for_the_sender_and_the_alarm_address(
    template_parameters: dict[str, parameters.Parameter],
) -> None:
    terminal = Terminal(f"  {SENDER}\n", f"{OPS}\n")

    values = resolve(template_parameters, terminal)

    assert values == {"Stage": "dev", "EmailSender": SENDER, "AlarmEmail": OPS}
    assert [prompt.split(":")[0] for prompt in terminal.prompts] == ["EmailSender", "AlarmEmail"]


def test_every_parameter_without_a_default_is_asked_for_on_a_first_deploy(
    template_parameters: dict[str, parameters.Parameter],
) -> None:
    required = {name for name, p in template_parameters.items() if p.default is None}

    asked = set(parameters.to_ask(template_parameters, NO_STACK))

    assert required == {"EmailSender"}
    assert asked == required | {"AlarmEmail"}


def test_an_empty_alarm_address_is_accepted_and_its_meaning_said(
    template_parameters: dict[str, parameters.Parameter],
) -> None:
    terminal = Terminal(SENDER, "")

    values = resolve(template_parameters, terminal)

    assert values["AlarmEmail"] == ""
    assert any("nobody is told of an alarm" in line for line in terminal.said)


def test_a_placeholder_or_malformed_sender_is_asked_again(
    template_parameters: dict[str, parameters.Parameter],
) -> None:
    terminal = Terminal("noreply@example.com", "not an address", SENDER, OPS)

    values = resolve(template_parameters, terminal)

    assert values["EmailSender"] == SENDER
    assert terminal.said[0] == (
        "deploy: EmailSender: example.com is reserved for examples; no one receives mail there"
    )
    assert terminal.said[1].startswith("deploy: EmailSender: 'not an address' is not an e-mail")


def test_three_bad_answers_stop_the_deploy(
    template_parameters: dict[str, parameters.Parameter],
) -> None:
    terminal = Terminal("a", "b@c", "d@shop.test")

    with pytest.raises(ParameterError, match="no valid EmailSender after 3 tries"):
        resolve(template_parameters, terminal)


def test_without_a_terminal_a_missing_value_names_the_command_line(
    template_parameters: dict[str, parameters.Parameter],
) -> None:
    terminal = Terminal(None)

    with pytest.raises(ParameterError) as raised:
        resolve(template_parameters, terminal, given={"EmailSender": SENDER})

    assert str(raised.value) == (
        "AlarmEmail is needed on the first deploy and there is no terminal to ask: give it as "
        "make deploy PARAMS='AlarmEmail=...' (may be empty)"
    )


def test_values_on_the_command_line_are_not_asked_and_win_over_samconfig(
    template_parameters: dict[str, parameters.Parameter],
) -> None:
    terminal = Terminal()
    given = {"EmailSender": SENDER, "AlarmEmail": "", "Stage": "prod"}

    values = resolve(template_parameters, terminal, given=given)

    assert values == {"Stage": "prod", "EmailSender": SENDER, "AlarmEmail": ""}
    assert terminal.prompts == []


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"Stage": "staging"}, "Stage must be one of dev, prod"),
        ({"NoSuchParameter": "1"}, "template.yaml has no parameter NoSuchParameter"),
        ({"EmailSender": "ops@localhost"}, "EmailSender: 'ops@localhost' is not an e-mail"),
        ({"AllowedOrigin": "https://a.b/path"}, "AllowedOrigin: 'https://a.b/path' is not"),
        ({"SiteCertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/abc"}, "us-east-1"),
    ],
)
def test_values_cloudformation_would_refuse_stop_before_sam_deploy(
    template_parameters: dict[str, parameters.Parameter], given: dict[str, str], problem: str
) -> None:
    with pytest.raises(ParameterError, match=problem.replace("(", r"\(").replace(".", r"\.")):
        resolve(template_parameters, Terminal(), stack=DEPLOYED, given=given)


def test_a_later_deploy_asks_nothing_and_keeps_the_stacks_values(
    template_parameters: dict[str, parameters.Parameter],
) -> None:
    terminal = Terminal()

    values = resolve(template_parameters, terminal, stack=DEPLOYED)

    # Not passed: sam deploy sends UsePreviousValue for every parameter left out.
    assert values == {"Stage": "dev"}
    assert terminal.prompts == []


def test_a_later_deploy_asks_for_a_required_parameter_the_stack_lacks() -> None:
    template = {
        "Parameters": {
            "EmailSender": {"Type": "String"},
            "ReportBucket": {"Type": "String", "Description": "Bucket of the reports."},
            "AlarmEmail": {"Type": "String", "Default": ""},
        }
    }
    terminal = Terminal("reports-bucket")

    values = parameters.resolve(
        parameters.template_parameters(template), DEPLOYED, {}, {}, terminal.ask, terminal.say
    )

    assert values == {"ReportBucket": "reports-bucket"}
    assert terminal.prompts == ["ReportBucket: Bucket of the reports.: "]


def test_the_overrides_file_reads_back_as_the_same_values() -> None:
    values = {"Stage": "dev", "EmailSender": SENDER, "AlarmEmail": "", "Odd": 'a "b" c: d'}

    text = parameters.overrides_file(values)

    assert yaml.safe_load(text) == values


# ------------------------------------------------------------------------------- the stack


def stubbed_cloudformation() -> tuple[Any, Stubber]:
    client = boto3.client("cloudformation", region_name=REGION)
    return client, Stubber(client)


def stack_answer(status: str, values: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "taskqueue-dev",
                "CreationTime": "2026-01-01T00:00:00Z",
                "StackStatus": status,
                "Parameters": [
                    {"ParameterKey": key, "ParameterValue": value}
                    for key, value in (values or {}).items()
                ],
            }
        ]
    }


def missing_stack(stub: Stubber) -> None:
    stub.add_client_error(
        "describe_stacks",
        service_error_code="ValidationError",
        service_message="Stack with id taskqueue-dev does not exist",
    )


def test_no_stack_is_a_first_deploy() -> None:
    client, stub = stubbed_cloudformation()
    missing_stack(stub)

    with stub:
        stack = parameters.describe_stack(client, "taskqueue-dev")

    assert stack == NO_STACK and stack.first_deploy


def test_a_deployed_stack_gives_its_parameter_values() -> None:
    client, stub = stubbed_cloudformation()
    stub.add_response("describe_stacks", stack_answer("UPDATE_COMPLETE", {"EmailSender": SENDER}))

    with stub:
        stack = parameters.describe_stack(client, "taskqueue-dev")

    assert stack == Stack("UPDATE_COMPLETE", {"EmailSender": SENDER})
    assert not stack.first_deploy


def test_a_rolled_back_first_create_is_deleted_and_deployed_afresh() -> None:
    client, stub = stubbed_cloudformation()
    stub.add_response("describe_stacks", stack_answer("ROLLBACK_COMPLETE"))
    stub.add_response("delete_stack", {}, {"StackName": "taskqueue-dev"})
    missing_stack(stub)  # what the delete waiter sees once the stack is gone
    terminal = Terminal()

    with stub:
        stack = parameters.describe_stack(client, "taskqueue-dev")
        parameters.clear_rolled_back_create(client, "taskqueue-dev", stack, terminal.say)
        stub.assert_no_pending_responses()

    assert stack.first_deploy
    assert "its first create failed and left nothing" in terminal.said[0]


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        ("UPDATE_IN_PROGRESS", "wait until it settles"),
        ("ROLLBACK_FAILED", "could not be deleted or rolled back"),
        ("DELETE_FAILED", "could not be deleted or rolled back"),
    ],
)
def test_a_busy_or_stuck_stack_stops_the_deploy(status: str, problem: str) -> None:
    client, stub = stubbed_cloudformation()

    with stub, pytest.raises(ParameterError, match=problem):
        parameters.clear_rolled_back_create(
            client, "taskqueue-dev", Stack(status, {}), Terminal().say
        )


def test_the_command_writes_the_overrides_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "parameters-dev.yaml"
    checked: list[str] = []

    def ses_report(sesv2: Any, sender: str, region: str) -> list[str]:
        checked.append(sender)
        return ["SES: checked"]

    monkeypatch.setattr(parameters, "ses_report", ses_report)
    with mock_aws():
        args = ["dev", "--stack", "taskqueue-dev", "--region", REGION, "--out", str(out)]
        code = parameters.main([*args, f"EmailSender={SENDER}", "AlarmEmail="])

    assert code == 0, capsys.readouterr().err
    assert yaml.safe_load(out.read_text()) == {
        "Stage": "dev",
        "EmailSender": SENDER,
        "AlarmEmail": "",
    }
    assert checked == [SENDER]
    assert "first deploy of taskqueue-dev" in capsys.readouterr().err


# ------------------------------------------------------------------------------- SES


@pytest.fixture
def sesv2() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sesv2", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def identity(stub: Stubber, name: str, verified: bool | None) -> None:
    if verified is None:
        stub.add_client_error(
            "get_email_identity", service_error_code="NotFoundException", http_status_code=404
        )
    else:
        stub.add_response(
            "get_email_identity", {"VerifiedForSendingStatus": verified}, {"EmailIdentity": name}
        )


def account(stub: Stubber, production: bool) -> None:
    quota = {
        "Max24HourSend": 50000.0 if production else 200.0,
        "MaxSendRate": 14.0 if production else 1.0,
    }
    stub.add_response(
        "get_account",
        {"ProductionAccessEnabled": production, "SendingEnabled": True, "SendQuota": quota},
    )


def test_an_unverified_sender_in_the_sandbox_gets_two_things_to_do(
    sesv2: tuple[Any, Stubber],
) -> None:
    client, stub = sesv2
    identity(stub, SENDER, None)
    identity(stub, "mail.acme.internal", None)
    account(stub, production=False)

    lines = parameters.ses_report(client, SENDER, REGION)

    todo = [line for line in lines if line.startswith("  TO DO")]
    assert len(todo) == 2
    assert f"--email-identity {SENDER}" in todo[0]
    assert "sandbox" in todo[1] and "200 a day, 1 a second" in todo[1]


def test_a_verified_domain_in_production_needs_nothing(sesv2: tuple[Any, Stubber]) -> None:
    client, stub = sesv2
    identity(stub, SENDER, None)
    identity(stub, "mail.acme.internal", True)
    account(stub, production=True)

    lines = parameters.ses_report(client, SENDER, REGION)

    assert [line for line in lines if "TO DO" in line] == []
    assert lines[1] == f"  ok: {SENDER} may send (the address or mail.acme.internal is verified)"
    assert lines[2] == "  ok: production access, 50000 mails a day, 14 a second"


def test_without_permission_to_read_ses_the_checklist_is_printed(
    sesv2: tuple[Any, Stubber],
) -> None:
    client, stub = sesv2
    stub.add_client_error("get_email_identity", service_error_code="AccessDeniedException")

    lines = parameters.ses_report(client, SENDER, REGION)

    assert "could not read SES" in lines[1]
    assert f"the sender {SENDER} (or its domain mail.acme.internal)" in lines[2]
    assert "sandbox" in lines[3]


def test_without_credentials_the_command_says_how_to_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    code = parameters.main(
        ["dev", "--stack", "taskqueue-dev", "--region", REGION, "--out", str(tmp_path / "o")]
    )

    assert code == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("sign in first (aws configure, aws sso login, or AWS_PROFILE=...)")
    )
    assert not (tmp_path / "o").exists()
