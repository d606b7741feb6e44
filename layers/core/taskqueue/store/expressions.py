"""Builds one UpdateItem's expressions, names and values, without string juggling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskqueue.store.items import event_line, serialize


@dataclass
class Update:
    """The SET / REMOVE expression of one write, its condition parts and their placeholders.

    Every attribute is named through a placeholder (`#name`, `:name`), so reserved words
    (`status`, `owner`, `log`, ...) need no special care.
    """

    sets: list[str] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def set(self, **attributes: Any) -> Update:
        for name, value in attributes.items():
            clause = f"#{name} = :{name}"
            if clause not in self.sets:  # setting an attribute again replaces its value
                self.sets.append(clause)
            self.names[f"#{name}"] = name
            self.values[f":{name}"] = value
        return self

    def set_expression(self, attribute: str, expression: str, **values: Any) -> Update:
        """`#attribute = <expression>`, e.g. `#attempts + :one`: computed by DynamoDB from the
        item as it is at the write, not from a copy read before."""
        self.names[f"#{attribute}"] = attribute
        self.value(**values)
        self.sets.append(f"#{attribute} = {expression}")
        return self

    def remove(self, *attributes: str) -> Update:
        for name in attributes:
            self.names[f"#{name}"] = name
            self.removes.append(f"#{name}")
        return self

    def append(self, attribute: str, entries: list[Any]) -> Update:
        """Append to a list attribute, creating it on first use."""
        self.names[f"#{attribute}"] = attribute
        self.values[f":{attribute}_new"] = entries
        self.values[":empty_list"] = []
        self.sets.append(
            f"#{attribute} = list_append(if_not_exists(#{attribute}, :empty_list), :{attribute}_new)"
        )
        return self

    def log(self, time: str, message: str, level: str = "INFO") -> Update:
        """An event line kept on the task item itself: it costs no extra request."""
        return self.append("log", [event_line(time, message, level)])

    def require(self, condition: str, **values: Any) -> Update:
        """A part of the write's condition (all parts must hold)."""
        self.conditions.append(condition)
        return self.value(**values)

    def value(self, **values: Any) -> Update:
        self.values.update({f":{name}": value for name, value in values.items()})
        return self

    def name(self, *names: str) -> Update:
        self.names.update({f"#{name}": name for name in names})
        return self

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)

    def request(self, key: dict[str, Any]) -> dict[str, Any]:
        """UpdateItem's parameters (those of a transaction's Update as well)."""
        request: dict[str, Any] = {
            "Key": key,
            "UpdateExpression": self.expression(),
            "ExpressionAttributeNames": self.names,
        }
        if self.conditions:
            request["ConditionExpression"] = " AND ".join(f"({c})" for c in self.conditions)
        if self.values:
            request["ExpressionAttributeValues"] = serialize(self.values)
        return request
