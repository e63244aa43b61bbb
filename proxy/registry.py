"""Which upstream serves which client-facing model name."""

from __future__ import annotations

from proxy.errors import ModelNotFound
from proxy.upstream import Upstream


class UpstreamRegistry:
    def __init__(self, upstreams: list[Upstream]):
        self._by_name = {u.config.name: u for u in upstreams}

    def get(self, name: str) -> Upstream:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise ModelNotFound(f"The model '{name}' does not exist on this gateway "
                                f"(known: {known})", param="model") from None

    def names(self) -> list[str]:
        return list(self._by_name)
