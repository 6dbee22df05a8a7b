"""Software updates on the device: verify the signed metadata, download, install, commit or roll back.

Loaded only while an update runs (the `update.install` command), so an idle agent pays
nothing for it: python-tuf and the installers are imported here, never by edge.agent.
"""
