"""The device agent. Filled in by the devices issue."""

from edge.agent_config import AgentConfig, load_agent_config, render_agent_config
from edge.builtin import default_registry
from edge.errors import (
    AgentConfigError,
    CommandError,
    DuplicateHandler,
    EdgeError,
    InvalidArguments,
    StateError,
    UnknownCommand,
)
from edge.handlers import ConfigStore, Handler, HandlerContext, Registry
from edge.lifecycle import Admission, TimedOut, admit, execute, outcome_events, running_events
from edge.state import AgentState, OutboxItem

__all__ = [
    "Admission",
    "AgentConfig",
    "AgentConfigError",
    "AgentState",
    "CommandError",
    "ConfigStore",
    "DuplicateHandler",
    "EdgeError",
    "Handler",
    "HandlerContext",
    "InvalidArguments",
    "OutboxItem",
    "Registry",
    "StateError",
    "TimedOut",
    "UnknownCommand",
    "admit",
    "default_registry",
    "execute",
    "load_agent_config",
    "outcome_events",
    "render_agent_config",
    "running_events",
]
