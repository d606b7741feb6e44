"""SES v2 operations that moto 5.2.5 lacks, for the local stack and the in-process tests:
``SendBulkEmail`` (inline or stored templates, simple ``{{name}}`` substitution) and
``GetAccount`` (the send quota moto keeps for SES v1).

Each bulk entry becomes one message of moto's SES backend, exactly as ``SendEmail`` makes
it: an unverified sender is a MESSAGE_REJECTED entry, every other check is moto's own. Like
SES, the substitution escapes nothing. What moto cannot show (throttling, per-destination
transient failures) is tested against botocore's Stubber instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from moto.ses.exceptions import MessageRejectedError
from moto.ses.models import ses_backends
from moto.sesv2 import urls
from moto.sesv2.responses import SESV2Response

Patch = Callable[[Any, str, Any], None]
MAX_BULK_ENTRIES = 50
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")


def _substitute(text: str, data: dict[str, Any]) -> str:
    return _VARIABLE.sub(lambda match: str(data.get(match[1], "")), text)


def _template_content(backend: Any, template: dict[str, Any]) -> dict[str, str]:
    if "TemplateContent" in template:
        return dict(template["TemplateContent"])
    stored = backend.get_template(template["TemplateName"])
    return {"Subject": stored["subject_part"], "Text": stored.get("text_part") or ""}


def send_bulk_email(self: SESV2Response) -> str:
    params = json.loads(self.body)
    backend = ses_backends[self.current_account][self.region]
    entries = params.get("BulkEmailEntries") or []
    if not 1 <= len(entries) <= MAX_BULK_ENTRIES:
        raise MessageRejectedError(f"between 1 and {MAX_BULK_ENTRIES} entries, got {len(entries)}")
    template = params["DefaultContent"]["Template"]
    content = _template_content(backend, template)
    defaults = json.loads(template.get("TemplateData") or "{}")
    results = []
    for entry in entries:
        replacement = entry.get("ReplacementEmailContent", {}).get("ReplacementTemplate", {})
        data = defaults | json.loads(replacement.get("ReplacementTemplateData") or "{}")
        try:
            message = backend.send_email(
                source=params["FromEmailAddress"],
                destinations=entry["Destination"],
                subject=_substitute(content.get("Subject", ""), data),
                body=_substitute(content.get("Text") or content.get("Html") or "", data),
            )
        except MessageRejectedError as exc:
            results.append({"Status": "MESSAGE_REJECTED", "Error": exc.message})
            continue
        results.append({"Status": "SUCCESS", "MessageId": message.id})
    return json.dumps({"BulkEmailEntryResults": results})


def get_account(self: SESV2Response) -> str:
    quota = ses_backends[self.current_account][self.region].get_send_quota()
    return json.dumps(
        {
            "SendQuota": {
                "Max24HourSend": float(quota.max24_hour_send),
                "MaxSendRate": float(quota.max_send_rate),
                "SentLast24Hours": float(quota.sent_last24_hours),
            },
            "SendingEnabled": True,
            "ProductionAccessEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "DedicatedIpAutoWarmupEnabled": False,
        }
    )


# moto's server (the local stack) routes only the paths listed, as Flask rules: its catch-all
# "/v2/.*" is not a pattern there. In-process (mock_aws) the regex alone would do.
PATHS = {
    "{0}/v2/email/outbound-bulk-emails$": SESV2Response.dispatch,
    "{0}/v2/email/account$": SESV2Response.dispatch,
}


def bulk_email(patch: Patch = setattr) -> None:
    """Install both operations (``setattr`` for good, or a test's monkeypatch)."""
    patch(SESV2Response, "send_bulk_email", send_bulk_email)
    patch(SESV2Response, "get_account", get_account)
    patch(urls, "url_paths", {**urls.url_paths, **PATHS})
