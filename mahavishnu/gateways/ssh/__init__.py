"""Hosts managed over SSH: pinned keys, credentials, the connection pool and the gateway that runs their commands."""
