"""Edge sites: a leaf nats-server per site, registered at the hub, run from its bundle on the edge host."""
