"""The remote terminal: the broker in `up`, its pure session rules and transcript, and the operator's client."""
