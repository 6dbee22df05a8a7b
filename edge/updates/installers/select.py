"""The installer agent.toml's [update] names (pure choice, lazy imports: only the chosen one loads)."""

from __future__ import annotations

from edge.agent_config import UpdateConfig
from edge.updates.installers import Installer


def installer_for(settings: UpdateConfig) -> Installer:
    """The installer of `settings.installer` over `settings.folder`."""
    if settings.installer == "ab":
        from edge.updates.installers.ab import ABInstaller

        return ABInstaller(settings.folder)
    from edge.updates.installers.hooks import HooksInstaller

    return HooksInstaller(settings.folder, timeout=settings.hook_timeout)
