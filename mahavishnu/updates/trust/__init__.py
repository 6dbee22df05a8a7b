"""The signed metadata of software updates, TUF's way (ADR 0016): roles, keys, thresholds, expiry, publishing.

    policy.py    the roles, how long each file lives, when to re-sign; k-of-n plans (pure)
    metadata.py  the four files made and checked with python-tuf's Metadata API (pure)
    keys.py      ed25519 key files (0600), online under $MAHAVISHNU_HOME/trust/keys or offline
    local.py     the signer's copy under $MAHAVISHNU_HOME/trust (stdlib only: enrolment reads root.json)
    publish.py   the signed files into the tuf bucket, each with TrustMetadataPublished
    control.py   the operations: initialise, stage/withdraw a target, sign offline, add signatures, refresh
    rotation.py  root rotation: root N+1 replacing one role's keys, and what that role signs re-signed
    refresher.py `up`'s hourly refresh of what would expire

Nothing is imported here, so enrolment loads local.py alone (no python-tuf).
"""
