"""An on-disk cache of LLM answers, so interrupted runs resume and re-runs make zero requests.

One JSON file per request, named by the sha256 of (endpoint, model, conversation, generation settings, and
the user for a personalized model):
written atomically the moment its answer arrives. Nothing secret is part of a request, so nothing
secret reaches the cache (API keys stay in the client).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llmrec.artifacts import write_json
from llmrec.errors import LlmrecError
from llmrec.generation.backends import ChatBackend, Completion, Conversation, GenerationSettings, UserContext


class ResponseCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def key(backend: ChatBackend, conversation: Conversation, settings: GenerationSettings,
            user: UserContext | None = None) -> str:
        request = {"endpoint": backend.endpoint, "model": backend.model, "messages": conversation,
                   "settings": dataclasses.asdict(settings)}
        if backend.personalized:  # the same question gets another answer for another user
            request["user"] = dataclasses.asdict(user) if user else None
        return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return Completion(**json.loads(path.read_text(encoding="utf-8"))["completion"])
        except (json.JSONDecodeError, KeyError, TypeError):
            return None  # a damaged entry is asked again, not trusted

    def put(self, key: str, completion: Completion, conversation: Conversation) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"messages": conversation, "completion": dataclasses.asdict(completion)})


def answer_all(backend: ChatBackend, conversations: Sequence[Conversation], settings: GenerationSettings,
               cache: ResponseCache | None, progress: bool = True,
               users: Sequence[UserContext] | None = None) -> tuple[list[Completion], dict[str, Any]]:
    """Every conversation's answer, from the cache where possible; returns them and the request counts.
    `users`: one per conversation, for a personalized backend."""
    keys = [ResponseCache.key(backend, c, settings, users[n] if users else None) for n, c in enumerate(conversations)]
    answers: list[Completion | None] = [cache.get(k) if cache else None for k in keys]
    missing = [n for n, a in enumerate(answers) if a is None]
    bar = tqdm(total=len(missing), desc=f"asking {backend.model}", unit="req", disable=not progress or not missing)

    def on_answer(position: int, completion: Completion) -> None:
        n = missing[position]
        answers[n] = completion
        if cache is not None:
            cache.put(keys[n], completion, conversations[n])
        bar.update(1)

    try:
        backend.complete([conversations[n] for n in missing], settings, on_answer,
                         [users[n] for n in missing] if users else None)
    finally:
        bar.close()
    if any(a is None for a in answers):
        raise LlmrecError(f"{backend.endpoint} returned no answer for {sum(a is None for a in answers)} requests")
    done: list[Completion] = [a for a in answers if a is not None]
    stats = {
        "n_requests": len(missing),
        "n_cache_hits": len(conversations) - len(missing),
        "n_refused_requests": sum(1 for a in done if a.error),
        "prompt_tokens": sum(a.prompt_tokens for a in done),
        "completion_tokens": sum(a.completion_tokens for a in done),
    }
    return done, stats
