"""The code index's pure building blocks: what a file holds, with its secrets redacted."""
