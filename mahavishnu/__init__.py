"""The command line and the supervisor that compose the other packages."""
