"""A FastAPI route whose endpoint takes the Request and returns the Response itself.

`/predict` reads its own multipart body and query options and answers with a `Response`
it has serialized, so FastAPI's request handler has nothing left to do for it, yet it
costs event-loop time on every request: dependency solving inside an exit stack and the
endpoint call wrapper, ~30-90 us per request measured in process (benchmarks/README.md).
`DirectRoute` is FastAPI's documented extension point for this (a custom `APIRoute`
class): the endpoint is called with the Request directly. Everything else stays
FastAPI's: path matching, exception handlers, and the OpenAPI operation built from the
route's response_model, responses and openapi_extra.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        parameters = list(inspect.signature(endpoint, eval_str=True).parameters.values())
        if not inspect.iscoroutinefunction(endpoint) or [p.annotation for p in parameters] != [Request]:
            # Anything else would need FastAPI's handler: declared parameters would silently stay unset.
            raise TypeError(f"{endpoint.__name__}: a DirectRoute endpoint is `async def f(request: Request)`")
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint
