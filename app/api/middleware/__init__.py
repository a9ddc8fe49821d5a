"""ASGI middleware, outermost first: access log and metrics, CORS, API key, in-flight bound, body size limit."""
