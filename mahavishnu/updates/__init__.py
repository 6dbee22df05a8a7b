"""Software updates, the control side: the artifacts' store and their signed metadata (trust/)."""
