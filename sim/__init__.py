"""Hardware models and simulators."""

__all__: list[str] = []
