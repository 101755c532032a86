"""The contract's one exception: a payload or topic that breaks the wire contract."""


class ContractError(ValueError):
    """A topic or payload that does not follow the contract; `str(err)` is the reason."""


class UnknownToThisVersion(ContractError):
    """Something this version of the contract does not know (a kind, a field, a choice) and a
    newer one may: the sender may simply be newer. Unlike a malformed value, it may become
    readable after an upgrade, so a receiver must not settle it for good."""
