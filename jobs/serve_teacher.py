"""Serve a transformers causal LM over an OpenAI-compatible API, to self-host a small teacher.

    python -m jobs.serve_teacher --model DIR --host 127.0.0.1 --port 8001 [--api-key-env NAME]

Answers ``POST /v1/completions`` and ``POST /v1/chat/completions`` with ``n`` samples, ``temperature``,
``top_p``, ``max_tokens``, ``seed`` and ``stop``, plus ``GET /v1/models`` and ``GET /health``. ``--model``
also takes ``builtin:stories`` or ``builtin:arith`` (the project's tiny teachers). With ``--api-key-env`` every request must carry
``Authorization: Bearer <the value of that variable>``. Requests are generated one at a time (the model is
not thread-safe); a teacher pool with several actors queues here, so give a busy server more replicas.
"""

import argparse
import hmac
import os
import threading
import time
import uuid
from typing import Any


def _truncate_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stop if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


class TeacherModel:
    """A causal LM and its tokenizer, generating under a lock."""

    def __init__(self, model: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from actors.teacher import resolve_model

        path = resolve_model(model)
        self.name = model
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
        self.lock = threading.Lock()

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        """The model's chat template when it has one; else the messages' contents, one per line."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n".join(str(m.get("content") or "") for m in messages)

    def complete(
        self,
        prompts: list[str],
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        stop: list[str],
    ) -> list[list[tuple[str, str]]]:
        """``n`` (text, finish_reason) per prompt."""
        from qcrd_ray.models import generate

        greedy = temperature == 0.0
        with self.lock:
            outputs = generate(
                self.model,
                self.tokenizer,
                prompts,
                max_new_tokens=max_tokens,
                do_sample=not greedy,
                temperature=temperature if not greedy else 1.0,
                top_p=top_p,
                num_return_sequences=1 if greedy else n,
                batch_size=len(prompts),
                seed=seed,
                max_input_length=4096,  # and no more than the model's positions leave beside max_tokens
            )
        if greedy:
            outputs = [out * n for out in outputs]
        result = []
        for texts in outputs:
            choices = []
            for text in texts:
                text, stopped = _truncate_at_stop(text, stop)
                full = not stopped and len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) >= max_tokens
                choices.append((text, "length" if full else "stop"))
            result.append(choices)
        return result


def create_app(model: str, api_key_env: str | None = None):
    """The FastAPI app serving ``model`` (a directory, hub name or ``builtin:<name>``)."""
    from fastapi import FastAPI, HTTPException, Request

    teacher = TeacherModel(model)
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise SystemExit(f"serve_teacher: --api-key-env {api_key_env}: that environment variable is not set")
    app = FastAPI(title="qcrd-ray teacher")

    def check_auth(request: Request) -> None:
        if key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            raise HTTPException(status_code=401, detail="invalid or missing API key")

    def sampling(body: dict[str, Any]) -> dict[str, Any]:
        try:
            n, max_tokens = int(body.get("n", 1)), int(body.get("max_tokens", 16))
            temperature, top_p = float(body.get("temperature", 1.0)), float(body.get("top_p", 1.0))
            seed = None if body.get("seed") is None else int(body["seed"])
        except (TypeError, ValueError) as err:
            raise HTTPException(status_code=400, detail=f"bad sampling parameter: {err}") from None
        if not 1 <= n <= 128 or max_tokens < 1 or temperature < 0 or not 0 < top_p <= 1:
            raise HTTPException(
                status_code=400, detail="need 1 <= n <= 128, max_tokens >= 1, temperature >= 0, 0 < top_p <= 1"
            )
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        return {
            "n": n,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "seed": seed,
            "stop": stop,
        }

    def usage(prompts: list[str], texts: list[str]) -> dict[str, int]:
        count = lambda s: len(teacher.tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
        prompt_tokens, completion_tokens = sum(map(count, prompts)), sum(map(count, texts))
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models(request: Request) -> dict[str, Any]:
        check_auth(request)
        return {"object": "list", "data": [{"id": teacher.name, "object": "model", "owned_by": "qcrd-ray"}]}

    @app.post("/v1/completions")
    def completions(body: dict[str, Any], request: Request) -> dict[str, Any]:
        check_auth(request)
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise HTTPException(status_code=400, detail="prompt: expected a string or a list of strings")
        params = sampling(body)
        outputs = teacher.complete(prompts, **params)
        choices = [
            {"text": text, "index": i * params["n"] + j, "logprobs": None, "finish_reason": reason}
            for i, out in enumerate(outputs)
            for j, (text, reason) in enumerate(out)
        ]
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model") or teacher.name,
            "choices": choices,
            "usage": usage(prompts, [c["text"] for c in choices]),
        }

    @app.post("/v1/chat/completions")
    def chat(body: dict[str, Any], request: Request) -> dict[str, Any]:
        check_auth(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise HTTPException(status_code=400, detail="messages: expected a non-empty list of {role, content}")
        prompt = teacher.chat_prompt(messages)
        params = sampling(body)
        (out,) = teacher.complete([prompt], **params)
        choices = [
            {"index": j, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
            for j, (text, reason) in enumerate(out)
        ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or teacher.name,
            "choices": choices,
            "usage": usage([prompt], [c["message"]["content"] for c in choices]),
        }

    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qcrd serve-teacher", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model directory, hub name, or builtin:<name>")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--api-key-env", help="require 'Authorization: Bearer $NAME' on every request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv)
    app = create_app(args.model, args.api_key_env)
    print(f"[serve_teacher] serving {args.model} on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
