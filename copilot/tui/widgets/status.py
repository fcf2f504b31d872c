"""One line under the conversation: model, scope, index size, search engine state, and either the
answer in flight's progress or the last answer's timings."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from copilot.tui.state import (
    MODEL_ERROR,
    MODEL_MISSING,
    MODEL_OFFLINE,
    MODEL_OK,
    StatusInfo,
    format_timings,
)

_SEP = Content.styled(" │ ", "$text-muted")
_SEARCH_STYLES = {"ok": "$text-success", "rate-limited": "$text-warning", "offline": "$text-error",
                  "failed": "$text-error", "off": "$text-muted"}


def status_content(info: StatusInfo) -> Content:
    parts: list[Content] = []
    model = info.model or ("model auto" if info.model_auto else "")
    if info.model_state == MODEL_OFFLINE:
        parts.append(Content.assemble(("● ", "$text-error"), (model or "model", ""),
                                      (" · Ollama offline", "$text-error")))
    elif info.model_state == MODEL_MISSING:
        parts.append(Content.assemble(("● ", "$text-error"), (model, ""), (" missing", "$text-error")))
    elif info.model_state == MODEL_ERROR:
        parts.append(Content.assemble(("● ", "$text-warning"), (model, ""), (" · error", "$text-warning")))
    elif info.model_state == MODEL_OK:
        parts.append(Content.assemble(("● ", "$text-success"), model))
    else:
        parts.append(Content.assemble(("○ ", "$text-muted"), model or "model …"))
    parts.append(Content.styled(info.scope, "bold"))
    if info.index_chunks is not None:
        parts.append(Content.styled(f"index {info.index_chunks:,}", ""))
    if info.search is not None and info.search.state:
        style = _SEARCH_STYLES.get(info.search.state, "")
        text = Content.assemble(("search ", "$text-muted"), (info.search.state, style))
        if info.search.detail:
            text += Content.styled(f" ({info.search.detail})", "$text-muted")
        parts.append(text)
    if info.activity:
        parts.append(Content.styled(info.activity, "italic $text-accent"))
    elif info.timings is not None:
        parts.append(Content.styled(format_timings(info.timings), "$text-muted"))
    return _SEP.join(parts)


class StatusBar(Static):
    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.info = StatusInfo()

    def on_mount(self) -> None:
        self.show()

    def show(self, **changes) -> None:
        for k, v in changes.items():
            setattr(self.info, k, v)
        self.update(status_content(self.info))
