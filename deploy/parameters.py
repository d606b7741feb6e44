"""The template parameters of `make deploy`: asked on a stack's first deploy, checked against
template.yaml, written for `sam deploy --parameter-overrides file://FILE`.

    python -m deploy.parameters ENV --stack S --region R --out FILE [Key=Value ...]

- First deploy (no stack, or one whose first create was rolled back): every parameter without
  a default (the SES sender) and the ones in QUESTIONS (the alarm address) are asked for,
  unless given as Key=Value; without a terminal, a missing one stops the deploy with the
  command line to give it.
- Later deploys ask nothing: parameters not given keep the stack's values (sam deploy passes
  UsePreviousValue), except a parameter without default the stack does not have yet.
- Every value is checked as CloudFormation would (AllowedPattern, AllowedValues), and an
  address at a reserved example domain is refused: SES can never verify it.
- Then the SES state of the sender and the account (sandbox or production) is read and
  printed with what to do before the first EMAIL task.

FILE gets samconfig.toml's parameter_overrides for ENV, then the answers, then Key=Value
(a value on the command line replaces samconfig's, which sam deploy would otherwise drop).
Messages and questions go to stderr.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.console import Ask, Say, ask_terminal, say_stderr
from deploy.samconfig import parameter_overrides

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
ATTEMPTS = 3  # per question, then the deploy stops


@dataclass(frozen=True)
class Question:
    """A parameter asked for on a first deploy even though it has a default."""

    name: str
    prompt: str
    empty_means: str = ""  # said when the answer is empty


# Parameters without a default are always asked for; these too, on a first deploy.
QUESTIONS = (
    Question(
        "AlarmEmail",
        "E-mail address that receives the alarms",
        empty_means="nobody is told of an alarm until an endpoint subscribes to AlertsTopic",
    ),
)
PROMPTS = {
    "EmailSender": "Sender address of EMAIL tasks (you verify it in SES)",
}
# Domains and top-level domains reserved for examples and tests (RFC 2606, RFC 6761): no one
# can verify an address there in SES or receive mail at it.
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_TLDS = ("example", "test", "invalid", "localhost")
# Stack statuses: the stack is not there for CloudFormation (a change set never executed).
NOT_CREATED = frozenset({"REVIEW_IN_PROGRESS"})
# A first create that failed and was rolled back: no resources left, but the name is taken
# until the stack is deleted.
ROLLED_BACK_CREATE = frozenset({"ROLLBACK_COMPLETE"})
# Needs a person: resources may be left over (see docs/deploy.md, "When a deploy fails").
STUCK = frozenset({"ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_ROLLBACK_FAILED"})


class ParameterError(RuntimeError):
    """A parameter value the deploy cannot go on with; the message says what to give."""


# ------------------------------------------------------------------------------- the template


@dataclass(frozen=True)
class Parameter:
    """One parameter of template.yaml, with the constraints CloudFormation checks."""

    name: str
    default: str | None
    description: str = ""
    allowed_pattern: str | None = None
    allowed_values: tuple[str, ...] = ()
    constraint: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    def problem(self, value: str) -> str | None:
        """Why CloudFormation (or SES) would refuse `value`, or None."""
        if self.allowed_values and value not in self.allowed_values:
            return f"{self.name} must be one of {', '.join(self.allowed_values)}"
        if self.allowed_pattern is not None and not re.fullmatch(self.allowed_pattern, value):
            return f"{self.name}: {value!r} is not {self.constraint or self.allowed_pattern}"
        if self.required and not value:
            return f"{self.name} needs a value"
        domain = value.rpartition("@")[2].lower() if "@" in value else ""
        if domain and (domain in RESERVED_DOMAINS or domain.rpartition(".")[2] in RESERVED_TLDS):
            return f"{self.name}: {domain} is reserved for examples; no one receives mail there"
        return None


def template_parameters(template: Mapping[str, Any]) -> dict[str, Parameter]:
    """The Parameters section of a loaded template."""
    parameters = {}
    for name, spec in (template.get("Parameters") or {}).items():
        default = spec.get("Default")
        parameters[name] = Parameter(
            name=name,
            default=None if default is None else str(default),
            description=" ".join(str(spec.get("Description", "")).split()),
            allowed_pattern=spec.get("AllowedPattern"),
            allowed_values=tuple(str(value) for value in spec.get("AllowedValues", ())),
            constraint=str(spec.get("ConstraintDescription", "")),
        )
    return parameters


def load_parameters(path: Path = TEMPLATE) -> dict[str, Parameter]:
    from devstack.resources import load_template

    return template_parameters(load_template(path))


# ------------------------------------------------------------------------------- the stack


@dataclass(frozen=True)
class Stack:
    """What CloudFormation has under the stack's name: its status and parameter values."""

    status: str | None  # None: no such stack
    parameters: dict[str, str]

    @property
    def first_deploy(self) -> bool:
        return self.status is None or self.status in NOT_CREATED | ROLLED_BACK_CREATE


def stack_missing(error: Exception) -> bool:
    """CloudFormation says "Stack with id X does not exist" (a ValidationError, no own code)."""
    return "does not exist" in str(error)


def describe_stack(cloudformation: Any, name: str) -> Stack:
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=name).get("Stacks") or []
    except ClientError as error:
        if stack_missing(error):
            return Stack(None, {})
        raise
    if not stacks:
        return Stack(None, {})
    stack = stacks[0]
    values = {
        item["ParameterKey"]: item.get("ResolvedValue", item.get("ParameterValue", ""))
        for item in stack.get("Parameters") or []
    }
    return Stack(stack["StackStatus"], values)


def clear_rolled_back_create(cloudformation: Any, name: str, stack: Stack, say: Say) -> None:
    """A stack whose first create was rolled back holds no resources but blocks a new create
    (sam deploy would try to update it and fail): delete it. Busy and stuck stacks stop here."""
    status = stack.status or ""
    if status in ROLLED_BACK_CREATE:
        say(f"deploy: stack {name} is {status} (its first create failed and left nothing);")
        say("deploy: deleting it so that it can be created again")
        cloudformation.delete_stack(StackName=name)
        cloudformation.get_waiter("stack_delete_complete").wait(
            StackName=name, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
        )
    elif status.endswith("_IN_PROGRESS") and status not in NOT_CREATED:
        raise ParameterError(f"stack {name} is {status}: wait until it settles, then deploy again")
    elif status in STUCK:
        raise ParameterError(
            f"stack {name} is {status}: some resources could not be deleted or rolled back; "
            "see docs/deploy.md, 'When a deploy fails'"
        )


# ------------------------------------------------------------------------------- asking


def to_ask(parameters: Mapping[str, Parameter], stack: Stack) -> list[str]:
    """Names to ask for: on a first deploy the required ones and QUESTIONS; later, only a
    required parameter the stack has no value for (one added to the template since)."""
    required = [name for name, parameter in parameters.items() if parameter.required]
    if stack.first_deploy:
        asked = [*required, *(q.name for q in QUESTIONS if q.name in parameters)]
    else:
        asked = [name for name in required if name not in stack.parameters]
    return list(dict.fromkeys(asked))


def ask_for(parameter: Parameter, ask: Ask, say: Say) -> str:
    """Ask until the answer passes the parameter's checks, at most ATTEMPTS times."""
    question = next((q for q in QUESTIONS if q.name == parameter.name), None)
    prompt = PROMPTS.get(parameter.name) or (question.prompt if question else "")
    prompt = prompt or parameter.description or parameter.name
    for _ in range(ATTEMPTS):
        answer = ask(f"{parameter.name}: {prompt}: ")
        if answer is None:
            break
        answer = answer.strip()
        problem = parameter.problem(answer)
        if problem is None:
            if not answer and question and question.empty_means:
                say(f"deploy: {parameter.name} left empty: {question.empty_means}")
            return answer
        say(f"deploy: {problem}")
    else:
        raise ParameterError(f"no valid {parameter.name} after {ATTEMPTS} tries")
    empty = " (may be empty)" if question and question.empty_means else ""
    raise ParameterError(
        f"{parameter.name} is needed on the first deploy and there is no terminal to ask: "
        f"give it as make deploy PARAMS='{parameter.name}=...'{empty}"
    )


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    values = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise ParameterError(f"{item!r} is not Key=Value")
        values[name] = value
    return values


def resolve(
    parameters: Mapping[str, Parameter],
    stack: Stack,
    configured: Mapping[str, str],
    given: Mapping[str, str],
    ask: Ask,
    say: Say,
) -> dict[str, str]:
    """samconfig's values, then the answers, then the command line's; every one checked."""
    values = {**configured, **given}
    for name in values:
        if name not in parameters:
            raise ParameterError(f"template.yaml has no parameter {name}")
    for name in to_ask(parameters, stack):
        if name not in values:
            values[name] = ask_for(parameters[name], ask, say)
    problems = [p for name, value in values.items() if (p := parameters[name].problem(value))]
    if problems:
        raise ParameterError("; ".join(problems))
    return values


def overrides_file(values: Mapping[str, str]) -> str:
    """YAML that `--parameter-overrides file://` reads (a JSON string is a YAML scalar)."""
    return "".join(f"{name}: {json.dumps(value)}\n" for name, value in values.items())


# ------------------------------------------------------------------------------- SES


def ses_report(sesv2: Any, sender: str, region: str) -> list[str]:
    """What SES says of the sender and the account, and what to do before the first EMAIL
    task. Read-only; without permission to read, the checklist without the answers."""
    from botocore.exceptions import BotoCoreError, ClientError

    lines = [f"SES in {region}, before the first EMAIL task:"]
    domain = sender.rpartition("@")[2]
    verify = (
        f"aws sesv2 create-email-identity --region {region} --email-identity {sender} "
        "(then open the link AWS mails to it), or verify the whole domain"
    )
    try:
        verified = _identity_verified(sesv2, sender) or _identity_verified(sesv2, domain)
        account = sesv2.get_account()
    except (ClientError, BotoCoreError) as error:
        return [
            *lines,
            f"  (could not read SES: {error})",
            f"  - the sender {sender} (or its domain {domain}) must be a verified identity: {verify}",
            "  - in the SES sandbox, each recipient must be verified too, at most 200 mails a "
            "day and 1 a second: request production access for real recipients",
        ]
    if verified:
        lines.append(f"  ok: {sender} may send (the address or {domain} is verified)")
    else:
        lines.append(f"  TO DO: {sender} is not verified; every EMAIL task would fail: {verify}")
    quota = account.get("SendQuota") or {}
    if not account.get("ProductionAccessEnabled"):
        lines.append(
            "  TO DO: the account is in the SES sandbox: mail goes only to verified "
            f"recipients, {quota.get('Max24HourSend', 200):g} a day, "
            f"{quota.get('MaxSendRate', 1):g} a second. Verify your test recipients, and "
            "request production access (SES console, Account dashboard) before real use"
        )
    else:
        lines.append(
            f"  ok: production access, {quota.get('Max24HourSend', 0):g} mails a day, "
            f"{quota.get('MaxSendRate', 0):g} a second"
        )
    if account.get("SendingEnabled") is False:
        lines.append("  TO DO: sending is paused for this account (SES console, Account dashboard)")
    return lines


def _identity_verified(sesv2: Any, identity: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        answer = sesv2.get_email_identity(EmailIdentity=identity)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NotFoundException":
            return False
        raise
    return bool(answer.get("VerifiedForSendingStatus"))


# ------------------------------------------------------------------------------- CLI


def aws_problem(error: Exception) -> str:
    """One line for an AWS error that stops make deploy or make destroy."""
    from botocore.exceptions import NoCredentialsError, NoRegionError

    if isinstance(error, NoCredentialsError | NoRegionError):
        return f"{error}: sign in first (aws configure, aws sso login, or AWS_PROFILE=...)"
    return f"AWS answered: {error}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Parameters of make deploy.")
    parser.add_argument("env", help="samconfig.toml environment (dev, prod)")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--out", type=Path, required=True, help="overrides file to write")
    parser.add_argument("assignments", nargs="*", metavar="Key=Value")
    args = parser.parse_intermixed_args(argv)

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    say = say_stderr
    session = boto3.Session(region_name=args.region)
    cloudformation = session.client("cloudformation")
    try:
        stack = describe_stack(cloudformation, args.stack)
        clear_rolled_back_create(cloudformation, args.stack, stack, say)
        say(
            f"deploy: {'first deploy of' if stack.first_deploy else 'updating'} "
            f"{args.stack} in {args.region}"
        )
        values = resolve(
            load_parameters(),
            stack,
            parameter_overrides(args.env),
            parse_assignments(args.assignments),
            ask_terminal,
            say,
        )
    except ParameterError as error:
        say(f"deploy: {error}")
        return 1
    except (BotoCoreError, ClientError) as error:
        say(f"deploy: {aws_problem(error)}")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(overrides_file(values), encoding="utf-8")
    sender = values.get("EmailSender") or stack.parameters.get("EmailSender")
    if sender:
        for line in ses_report(session.client("sesv2"), sender, args.region):
            say(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
