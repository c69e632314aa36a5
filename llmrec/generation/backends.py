"""One interface over the three ways llmrec asks an LLM for text: transformers in-process, vLLM in-process
(extra `gpu`), and any OpenAI-compatible HTTP endpoint (OpenAI, `vllm serve`, `transformers serve`,
llama.cpp's server) through the `openai` client.

`ChatBackend.complete(conversations, ...)` answers a list of chat conversations and reports each answer
through `on_answer(position, Completion)` as soon as it exists, so a caller can cache answers one by one
and an interrupted run loses at most the requests in flight. Constrained ranking over item tokens needs
the model's logits and lives in `llmrec.generation.recommend` (transformers).

A personalized LoRA folder (recipes/plora.py) answers each user with their own expert mixture, so its
backend is `personalized` and needs `users` (one `UserContext` per conversation): the transformers backend
gates each conversation on its user. vLLM refuses such a folder: its per-request LoRA would need one folded
adapter per user, which it does not build.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from llmrec.errors import LlmrecError

Conversation = list[dict[str, str]]  # [{"role": "user", "content": "..."}, ...]
OnAnswer = Callable[[int, "Completion"], None]


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # set when the endpoint refused this one request (e.g. prompt too long)


@dataclass(frozen=True)
class UserContext:
    """Who a conversation is for, for a personalized model's gate: the user and the items the prompt shows."""

    user_id: str
    history_item_ids: tuple[str, ...]


@dataclass
class GenerationSettings:
    max_tokens: int = 512
    temperature: float = 0.0  # 0: greedy, so a re-run asks the same question and gets the cached answer
    seed: int = 0


class ChatBackend(ABC):
    name: str
    model: str
    endpoint: str  # where answers come from: part of the response-cache key
    personalized: bool = False  # answers depend on the user: `complete` needs `users`, the cache keys them

    @abstractmethod
    def complete(self, conversations: Sequence[Conversation], settings: GenerationSettings,
                 on_answer: OnAnswer, users: Sequence[UserContext] | None = None) -> None:
        """Answer every conversation, calling `on_answer(position, completion)` as each one finishes. `users`:
        one per conversation; only a personalized backend reads them."""


class OpenAIChat(ChatBackend):
    """An OpenAI-compatible /v1/chat/completions endpoint, `concurrency` requests in flight.

    Retries with exponential backoff on 408/409/429/5xx, connection errors and timeouts are the openai
    client's own (`max_retries`, honouring Retry-After). The first request goes alone, so an unreachable
    endpoint or a rejected key stops the run after one request's retries, before any fan-out.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4,
                 timeout: float = 60.0, max_retries: int = 3) -> None:
        from openai import OpenAI

        # Local servers ignore the key, but the client insists on one; the key itself is never stored.
        key = os.environ.get(api_key_env) or "unused"
        self.client = OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries)
        self.model, self.endpoint, self.api_key_env = model, base_url.rstrip("/"), api_key_env
        self.concurrency = concurrency

    def _one(self, conversation: Conversation, s: GenerationSettings) -> Completion:
        import openai

        try:
            r = self.client.chat.completions.create(model=self.model, messages=conversation, max_tokens=s.max_tokens,
                                                    temperature=s.temperature, seed=s.seed)
        except openai.AuthenticationError:
            raise LlmrecError(f"{self.endpoint} rejected the API key (401): check ${self.api_key_env}") from None
        except openai.PermissionDeniedError as e:
            raise LlmrecError(f"{self.endpoint} refused access to model {self.model!r} (403): {_brief(e)}") from None
        except openai.NotFoundError as e:
            raise LlmrecError(f"{self.endpoint}: no such route or model {self.model!r} (404): {_brief(e)}") from None
        except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
            return Completion("", error=f"request refused: {_brief(e)}")  # this request only: recorded
        except openai.APITimeoutError:
            raise LlmrecError(f"{self.endpoint}: timed out after {self.client.max_retries} retries "
                              f"(per-request timeout {self.client.timeout} s)") from None
        except openai.APIConnectionError as e:
            raise LlmrecError(f"cannot reach {self.endpoint}: {_brief(e.__cause__ or e)}") from None
        except openai.APIStatusError as e:
            raise LlmrecError(f"{self.endpoint}: HTTP {e.status_code} after {self.client.max_retries} retries: "
                              f"{_brief(e)}") from None
        choice = r.choices[0] if r.choices else None
        text = (choice.message.content or "") if choice is not None else ""
        usage = r.usage
        return Completion(text, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                          None if choice is not None else "no choices in the response")

    def complete(self, conversations: Sequence[Conversation], settings: GenerationSettings,
                 on_answer: OnAnswer, users: Sequence[UserContext] | None = None) -> None:
        if not conversations:
            return
        on_answer(0, self._one(conversations[0], settings))
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self._one, c, settings): n for n, c in enumerate(conversations) if n}
            try:
                for future in as_completed(futures):
                    on_answer(futures[future], future.result())
            except BaseException:
                for f in futures:
                    f.cancel()
                raise


class TransformersChat(ChatBackend):
    """A local causal LM with transformers' `generate`, batched with left padding. Loaded on the first
    question, so a run answered from the cache never loads it. A personalized LoRA folder generates each
    batch inside its users' gates (`Personalizer.gate_for`); `catalog` (the dataset's item ids in order) maps
    the shown items to the SASRec encoder's positions."""

    name = "hf"

    def __init__(self, model: str, batch_size: int = 8, catalog: Sequence[str] | None = None) -> None:
        from llmrec.hub.resolve import is_personalized, resolve_model

        self.path = resolve_model(model)
        self.model, self.endpoint, self.batch_size, self.lm = model, f"hf:{self.path}", batch_size, None
        self.personalized, self.catalog = is_personalized(self.path), catalog

    def _load(self) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path, padding_side="left")
        if self.personalized:
            from llmrec.plora.inference import load_personalized

            self.lm = load_personalized(self.path)
        else:
            from llmrec.hub.load import load_for_inference

            self.lm = load_for_inference(self.path)

    def _gate(self, users: Sequence[UserContext] | None, start: int, n: int) -> AbstractContextManager:
        """The users' gate for conversations [start, start + n) of a personalized model, else nothing."""
        if not self.personalized:
            return nullcontext()
        from llmrec.plora.users import SasrecUsers, user_inputs

        source = self.lm.personalizer.users
        if users is None:
            raise LlmrecError(f"{self.path} is a personalized LoRA: each answer depends on its user; pass users "
                              "(llmrec eval zeroshot does)")
        if isinstance(source, SasrecUsers) and self.catalog is None:
            raise LlmrecError(f"{self.path}: its SASRec gate reads item positions; give the backend the dataset's "
                              "catalog (TransformersChat(..., catalog=item ids))")
        batch = users[start : start + n]
        columns = {"user_id": [u.user_id for u in batch], "history_item_ids": [list(u.history_item_ids)
                                                                                for u in batch]}
        return self.lm.personalizer.gate_for(user_inputs(source, columns, self.catalog or []))

    def complete(self, conversations: Sequence[Conversation], settings: GenerationSettings,
                 on_answer: OnAnswer, users: Sequence[UserContext] | None = None) -> None:
        import torch

        if conversations and self.lm is None:
            self._load()
        for start in range(0, len(conversations), self.batch_size):
            texts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                     for c in conversations[start : start + self.batch_size]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.lm.device)
            sample = settings.temperature > 0
            torch.manual_seed(settings.seed)
            with torch.no_grad(), self._gate(users, start, len(texts)):
                out = self.lm.generate(**enc, max_new_tokens=settings.max_tokens, do_sample=sample,
                                       temperature=settings.temperature if sample else None, top_p=None, top_k=None,
                                       pad_token_id=self.tokenizer.pad_token_id)
            new = out[:, enc["input_ids"].shape[1] :]  # (B, T_new)
            for row, tokens in enumerate(new):
                n_new = int((tokens != self.tokenizer.pad_token_id).sum())
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                on_answer(start + row, Completion(text, int(enc["attention_mask"][row].sum()), n_new))


class VLLMChat(ChatBackend):
    """vLLM's offline engine (`pip install llmrec[gpu]`): one `LLM.chat` call schedules the whole batch."""

    name = "vllm"

    def __init__(self, model: str, **engine_args: Any) -> None:
        from llmrec.hub.resolve import is_personalized, resolve_model

        self.path, self.engine_args, self.llm = resolve_model(model), engine_args, None
        self.model, self.endpoint = model, f"vllm:{self.path}"
        if is_personalized(self.path):
            raise LlmrecError(f"{self.path} is a personalized LoRA: vLLM cannot apply a per-user expert mixture; "
                              "use --backend hf, which gates each answer on its user")
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise LlmrecError("--backend vllm needs vLLM: pip install 'llmrec[gpu]' (CUDA machines)") from None

    def complete(self, conversations: Sequence[Conversation], settings: GenerationSettings,
                 on_answer: OnAnswer, users: Sequence[UserContext] | None = None) -> None:
        from vllm import LLM, SamplingParams

        if not conversations:
            return
        if self.llm is None:
            self.llm = LLM(model=self.path, **self.engine_args)
        params = SamplingParams(max_tokens=settings.max_tokens, temperature=settings.temperature, seed=settings.seed)
        for n, out in enumerate(self.llm.chat(list(conversations), params)):
            answer = out.outputs[0]
            on_answer(n, Completion(answer.text, len(out.prompt_token_ids or []), len(answer.token_ids)))


def _brief(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]
