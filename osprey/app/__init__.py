"""The product around a person: the session (data), mask prompts from clicks, the service that
returns data, drawing and export, the canvas page (server side, component, ``static/``), the
HTTP API and its gate, uploads, the page's layout, handlers and wiring, start-up and serving.
May import every layer below; the only layer that imports gradio."""
