"""Incident collection: the bundle for failures no remediation handles: logs in a window, their templates and graph, the cloud's records, the effort it asks."""
