"""Fleet campaigns, the control plane's part: the rules a campaign obeys and the operators' steps.

    specfile.py   a campaign file (TOML) into a checked CampaignSpec; each refusal one line
    pace.py       how many devices may be notified now (maximum per minute, exponential rate)
    rules.py      which abort rule fired, from the counts per execution state
    gates.py      whether the newest open wave's success or error gate is met, and what follows
    windows.py    whether the schedule lets a device be notified now (start, end, maintenance windows)
    targets.py    which devices a campaign's filter matches, and each target's wave
    control.py    the operators' steps: create, pause, resume, next wave, cancel (events, audited)

The first six are pure: the orchestrator in `up` asks them, and so do the command line and
the tests. The shared vocabulary (the spec, the states, the fold of a campaign's events)
lives in core.campaigns. Nothing is imported here, so a module of this package loads alone.
"""
