"""The contract's one exception: a payload or topic that breaks the wire contract."""


class ContractError(ValueError):
    """A topic or payload that does not follow the contract; `str(err)` is the reason."""
