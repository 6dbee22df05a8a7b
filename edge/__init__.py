"""The device agent. Filled in by the devices issue."""
