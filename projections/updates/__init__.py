"""Software updates, read side: the artifacts, each device's installed versions, and the fleet's compliance.

readmodel.py keeps the `updates` read model (artifacts from their events, each device's
installed versions from its reported state); queries.py answers `artifacts.list|get` and
`updates.compliance`, reading the `commands` read model too for the updates under way.
"""
