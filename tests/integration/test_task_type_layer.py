"""The TaskTypeLayerArn parameter: a layer of one's own task types reaches the two functions
that use the registry (the API lists and validates types, the worker runs them), no other."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.parameters import template_parameters
from devstack.resources import LocalResources, template_resolver

LAYER = "arn:aws:lambda:eu-west-1:123456789012:layer:my-task-types:7"
REGISTRY_USERS = {"ApiFunction", "WorkerFunction"}


def layers(transformed: dict[str, Any], layer_arn: str) -> dict[str, list[str]]:
    """Each function's layers once CloudFormation has evaluated them for `layer_arn`."""
    resolver = template_resolver(
        transformed, LocalResources(prefix="local", parameters={"TaskTypeLayerArn": layer_arn})
    )
    return {
        name: resolver.resolve(resource["Properties"].get("Layers", []))
        for name, resource in transformed["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }


def test_without_a_layer_every_function_has_the_core_layer_only(
    transformed_template: dict[str, Any],
) -> None:
    found = layers(transformed_template, "")
    assert len(found) >= 7
    assert all(len(given) == 1 and "CoreLayer" in given[0] for given in found.values()), found


def test_a_task_type_layer_is_added_to_the_api_and_the_worker_only(
    transformed_template: dict[str, Any],
) -> None:
    found = layers(transformed_template, LAYER)
    with_layer = {name for name, given in found.items() if LAYER in given}
    assert with_layer == REGISTRY_USERS
    assert all(found[name][1:] == [LAYER] for name in REGISTRY_USERS)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        (LAYER, True),
        ("arn:aws-cn:lambda:cn-north-1:123456789012:layer:types:1", True),
        ("arn:aws:lambda:eu-west-1:123456789012:layer:my-task-types", False),  # no version
        ("arn:aws:lambda:eu-west-1:123456789012:function:api", False),
        ("my-task-types", False),
    ],
)
def test_the_parameter_takes_a_layer_version_arn_or_nothing(
    sam_template: dict[str, Any], value: str, accepted: bool
) -> None:
    parameter = template_parameters(sam_template)["TaskTypeLayerArn"]
    assert (parameter.problem(value) is None) is accepted
