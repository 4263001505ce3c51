"""Gradio's REST API as a raw client sends it (``curl``-style: POST ``call/NAME``, then read the
call's event stream), for tests of what the server does with hand-made requests."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any


class Rest:
    """One client of the app at ``url`` (its own session hash). ``address``: sent as
    X-Forwarded-For, as a proxy in front of the app would (for an app run with
    ``--trust-proxy``: one client address per simulated visitor)."""

    def __init__(
        self, url: str, session_hash: str | None = None, timeout: float = 60, address: str = ""
    ):
        import httpx

        headers = {"X-Forwarded-For": address} if address else None
        self.http = httpx.Client(
            base_url=url.rstrip("/") + "/gradio_api/", timeout=timeout, headers=headers
        )
        self.session_hash = session_hash or uuid.uuid4().hex

    def upload(self, path: Path | str, data: bytes | None = None) -> dict:
        """Send a file through Gradio's upload route: the file object a call then names."""
        name = Path(path).name
        body = data if data is not None else Path(path).read_bytes()
        response = self.http.post("upload", files={"files": (name, body)})
        response.raise_for_status()
        return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}}

    def stream(self, api_name: str, *data: Any):
        """Each event of a call as it comes: ("generating", output so far) while it streams,
        then ("complete", output) or ("error", message); ("http", (status, message)) when the
        call is refused before it runs."""
        job = self.http.post(
            f"call/{api_name}", json={"data": list(data), "session_hash": self.session_hash}
        )
        if job.status_code != 200:
            yield "http", (job.status_code, _message(job))
            return
        event = None
        with self.http.stream("GET", f"call/{api_name}/{job.json()['event_id']}") as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event in ("generating", "complete", "error"):
                    payload = json.loads(line[6:])
                    if event == "error":
                        yield (
                            "error",
                            (payload or {}).get("error") if isinstance(payload, dict) else payload,
                        )
                        return
                    if isinstance(payload, list) and len(payload) == 1:
                        payload = payload[0]
                    yield event, payload
                    if event == "complete":
                        return

    def call(self, api_name: str, *data: Any, raw: Any = None) -> tuple[str, Any]:
        """("complete", output), ("error", message) or ("http", (status, message)): how the call
        ended. ``raw``: the JSON body as is (instead of ``{"data": data}``)."""
        body = raw if raw is not None else {"data": list(data), "session_hash": self.session_hash}
        job = self.http.post(f"call/{api_name}", json=body)
        if job.status_code != 200:
            return "http", (job.status_code, _message(job))
        event = None
        with self.http.stream("GET", f"call/{api_name}/{job.json()['event_id']}") as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event in ("complete", "error"):
                    payload = json.loads(line[6:])
                    if event == "error":
                        return "error", (payload or {}).get("error") if isinstance(
                            payload, dict
                        ) else payload
                    if isinstance(payload, list) and len(payload) == 1:
                        payload = payload[0]  # one output: itself, several: their list
                    return "complete", payload
        return "none", None

    def close(self) -> None:
        self.http.close()


def _message(response) -> str:
    try:
        return response.json().get("error")
    except ValueError:
        return response.text
