"""The local stack's fair-queue emulation: which messages a batch takes, row by row of what
SQS documents (quiet tenants first while one is noisy; otherwise oldest first)."""

from __future__ import annotations

from typing import Any

from devstack.poller import NOISY_IN_FLIGHT, FairQueue, tenant


def message(group: str | None, number: int) -> Any:
    attributes = {"MessageGroupId": group} if group else {}
    return {"MessageId": f"m{number}", "Attributes": attributes}


def groups(chosen: list[Any]) -> list[str | None]:
    return [m["Attributes"].get("MessageGroupId") for m in chosen]


def test_without_a_noisy_tenant_the_oldest_messages_go_first() -> None:
    fair = FairQueue(clock=lambda: 100.0)
    backlog = [message("a", 1), message("a", 2), message("b", 3)]
    assert groups(fair.pick(backlog, 2)) == ["a", "a"]
    assert groups(backlog) == ["b"]


def test_a_tenant_with_most_of_the_recent_processing_time_yields_to_quiet_ones() -> None:
    # Given tenant a took all the recent processing time
    fair = FairQueue(clock=lambda: 100.0)
    fair.done([message("a", 0)], seconds=5.0)
    backlog = [*(message("a", n) for n in range(1, 20)), message("b", 20), message(None, 21)]
    # When a batch of 10 is picked
    chosen = fair.pick(backlog, 10)
    # Then the quiet tenants' messages come first, then a's oldest
    assert groups(chosen) == ["b", None, *["a"] * 8]
    assert [m["MessageId"] for m in chosen[2:4]] == ["m1", "m2"]


def test_noisy_by_concurrency_needs_its_share_and_thirty_in_flight() -> None:
    fair = FairQueue(clock=lambda: 100.0)
    fair.in_flight.update({"a": NOISY_IN_FLIGHT - 1})
    assert fair.noisy() == set()
    fair.in_flight.update({"a": 1})
    assert fair.noisy() == {"a"}


def test_among_noisy_tenants_the_one_with_fewest_in_flight_goes_first() -> None:
    fair = FairQueue(clock=lambda: 100.0)
    fair.in_flight.update({"a": 40, "b": 35})
    backlog = [message("a", 1), message("b", 2), message("a", 3)]
    assert groups(fair.pick(backlog, 1)) == ["b"]


def test_processing_time_older_than_the_window_is_forgotten() -> None:
    now = [100.0]
    fair = FairQueue(clock=lambda: now[0])
    fair.done([message("a", 0)], seconds=5.0)
    now[0] += 61
    assert fair.noisy() == set()


def test_a_message_without_a_group_is_a_tenant_of_its_own() -> None:
    assert tenant(message(None, 1)) != tenant(message(None, 2))
    assert tenant(message("owner-1", 1)) == tenant(message("owner-1", 2)) == "owner-1"
