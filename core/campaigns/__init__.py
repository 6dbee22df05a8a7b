"""Fleet campaigns, the shared part: the spec, the states, the fold of a campaign's events (pure).

Kept import-light on purpose: core.events imports `spec` and `states` for its campaign
events, and `state` (the fold) imports core.events, so this package imports nothing itself.
"""
