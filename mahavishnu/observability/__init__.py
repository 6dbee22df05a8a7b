"""What `up` measures and reports: connected agents, command latency, connection audit, SLOs."""
