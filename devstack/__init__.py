"""Local stack: moto, resources from template.yaml, a local gateway and an SQS poller."""
