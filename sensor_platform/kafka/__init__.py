"""Kafka ingestion ground floor: settings, offset planning, exact range reads, a local broker."""
