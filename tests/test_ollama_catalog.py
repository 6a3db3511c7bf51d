"""The model catalog /ollama's metadata reads: the model server is asked at most
once per answer and window, also when it fails."""

from __future__ import annotations

from piagent.catalog import TTL_SECONDS, ModelCatalog
from piagent.errors import ProviderUnreachable


class Provider:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []
        self.down = False

    def catalog(self, what, model=None):
        self.asked.append((what, model))
        if self.down:
            raise ProviderUnreachable("down")
        return {"m:latest": {"name": "m:latest"}} if what != "show" else {"x": 1}


def test_answers_are_reused_within_the_window_and_asked_again_after():
    provider, now = Provider(), [0.0]
    catalog = ModelCatalog(provider, clock=lambda: now[0])
    for _ in range(5):  # Home Assistant's polls, and other clients'
        assert "m:latest" in catalog.tags()
        assert catalog.loaded() == {"m:latest": {"name": "m:latest"}}
        assert catalog.show("m") == {"x": 1}
    assert provider.asked == [("tags", None), ("ps", None), ("show", "m")]
    now[0] += TTL_SECONDS
    catalog.tags()
    assert provider.asked[-1] == ("tags", None) and len(provider.asked) == 4


def test_a_model_server_that_is_down_is_not_asked_on_every_poll():
    provider, now = Provider(), [0.0]
    provider.down = True
    catalog = ModelCatalog(provider, clock=lambda: now[0])
    assert catalog.tags() == {} and catalog.loaded() == {} and catalog.show("m") == {}
    catalog.tags()
    assert len(provider.asked) == 3
