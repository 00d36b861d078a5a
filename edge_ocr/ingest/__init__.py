"""`edge-ocr ingest`: the fleet's consumer. Results from every device's MQTT topics land in PostgreSQL
exactly once, and each device is told, on its retained acknowledgement topic, what is stored.

- `config`: the ingester's settings (typed, unknown keys refused), from flags or a YAML file.
- `store`: PostgreSQL: the tables, the idempotent batch insert, what to acknowledge, device and bridge state.
- `consumer`: the MQTT side: a persistent session, manual PUBACKs after the commit, validation.
- `health`: `/healthz` and `/metrics` (lag, rows/s, duplicates, rejected).
- `service`: wires them with one stop event and signals.
"""
