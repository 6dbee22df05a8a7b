"""Who may connect to the mesh's nats-server, and as what: the server's auth callout (ADR 0012).

The server verifies every client certificate against the mesh CA; users it knows from its
configuration (the control services, operators, sites, MQTT devices) are mapped there. A
device's certificate is not in the configuration: the server asks this service, which
reads the certificate the server verified and answers with a user JWT holding exactly
that device's permissions, or a refusal. The server then enforces the permissions itself.
Enrolling one more device therefore changes no configuration and reloads nothing.
"""
