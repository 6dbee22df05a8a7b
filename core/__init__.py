"""Event schemas, the event store over JetStream, configuration, logging and metrics.

`core` imports no other Mahavishnu package.
"""
