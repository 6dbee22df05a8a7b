"""Software updates, the control side: the artifact store (add, list, show, remove), and trust/,
the signed metadata devices verify artifacts by (TUF's roles and keys, ADR 0016).

An artifact's bytes go into the artifacts object store bucket (core.updates.naming),
written in the object store's own layout with pipelined chunks (objects.py); what was
added and removed, by whom, with which length and SHA-256, is recorded as events on
EVENTS and audited (artifacts.py), and folded back into the list of artifacts by a pure
function (catalog.py). Devices read the bytes with edge.updates.download.
"""
