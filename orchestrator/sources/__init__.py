"""Where observations come from: Prometheus (fleet-wide queries) and Alertmanager payloads."""
