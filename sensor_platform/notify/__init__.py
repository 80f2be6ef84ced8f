"""Notifications: channels, payloads within each service's limits, retried delivery, the ledger."""
