"""The wire contract shared by edge and hub: topics and messages (standard library only).

Exceptions: `ContractError` (a ValueError) is raised for any topic or payload that breaks
the contract; its text is the reason stored with a quarantined payload. `NAME_RE` is the
pattern of a site or node name (use it with fullmatch()); the modules starting with `_` are
the package's own.
"""

from contract._fields import NAME_RE
from contract.errors import ContractError, UnknownToThisVersion
from contract.messages import (
    BIRTH_NOTICE_MAX_CHARS,
    BIRTH_NOTICES_MAX,
    COMMANDS,
    EVENT_TYPES,
    MAX_EVENTS_PER_BATCH,
    MAX_PAYLOAD_BYTES,
    MESSAGE_TYPES,
    SCAN_MODES,
    SCHEMA_VERSION,
    SEQ_MAX,
    SHELF_FAULTS,
    Ack,
    BinConfig,
    Birth,
    Command,
    CommandReply,
    DeviceChange,
    DeviceInfo,
    Event,
    EventBase,
    EventBatch,
    HubState,
    NodeConfig,
    NodeState,
    ScanEvent,
    ScanRejected,
    ShelfCount,
    ShelfFault,
    event_from_dict,
    load_payload,
    notice_is_all_clear,
    read_batch_envelope,
)
from contract.topics import (
    HUB_NODE,
    RESEND_PROPERTY,
    Channel,
    TopicAddress,
    check_name,
    check_node_name,
    check_site_name,
    hub_state_topic,
    node_topic,
    parse_topic,
    subscription,
)

__all__ = [
    "COMMANDS", "EVENT_TYPES", "HUB_NODE", "NAME_RE", "RESEND_PROPERTY", "MAX_EVENTS_PER_BATCH", "MAX_PAYLOAD_BYTES", "MESSAGE_TYPES",
    "BIRTH_NOTICE_MAX_CHARS", "BIRTH_NOTICES_MAX", "SCAN_MODES", "SCHEMA_VERSION", "SEQ_MAX", "SHELF_FAULTS", "Ack", "BinConfig", "Birth", "Channel", "Command",
    "CommandReply", "ContractError", "DeviceChange", "DeviceInfo", "Event", "EventBase", "EventBatch",
    "HubState", "NodeConfig", "NodeState", "ScanEvent", "ScanRejected", "ShelfCount", "ShelfFault",
    "TopicAddress", "UnknownToThisVersion", "check_name", "check_node_name", "check_site_name", "event_from_dict", "hub_state_topic", "load_payload", "node_topic", "notice_is_all_clear", "parse_topic",
    "read_batch_envelope", "subscription",
]
