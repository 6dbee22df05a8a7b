"""The command line: `mahavishnu VERB ...`, one module per verb, each imported only when its verb runs."""
