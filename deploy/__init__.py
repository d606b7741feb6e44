"""Deployment helpers run by `make deploy` after `sam deploy` (see deploy/site.py)."""
