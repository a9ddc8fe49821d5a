"""Client of the Grad-CAM sidecar: one shared `httpx.AsyncClient`, a hard deadline.

Every failure (down, slow, wrong answer) becomes a `GradcamUnavailable` whose message
is the warning `/predict` returns; the prediction itself never depends on the sidecar.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import numpy as np

from app.gradcam.circuit_breaker import CircuitBreaker
from app.gradcam.protocol import (
    ACTIVATIONS_PATH,
    IMAGE_PATH,
    LABELS,
    ProtocolError,
    decode_heatmap,
    encode_activations_request,
    encode_request,
)

# Keras and ONNX agree to 1e-4 at export; more than this means a different model.
PROBABILITY_TOLERANCE = 1e-3


class GradcamUnavailable(Exception):
    """No overlay this time; `reason` is a short machine label for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GradcamResult:
    heatmaps: dict[str, np.ndarray]  # per label: float32 (h, w) in [0, 1], the layer's grid
    empty: dict[str, bool]  # per label: no evidence for it, the map is all zeros
    layer: str
    probability: float


class GradcamClient:
    def __init__(self, base_url: str, timeout_s: float, breaker: CircuitBreaker | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.breaker = breaker or CircuitBreaker(0, 1.0)  # disabled unless given
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout_s))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def healthy(self, timeout_s: float = 0.5) -> tuple[bool, str]:
        """(answers, detail) from the sidecar's /health, with a short timeout."""
        try:
            response = await self._client.get("/health", timeout=timeout_s)
        except httpx.HTTPError as exc:
            return False, f"unreachable at {self.base_url} ({type(exc).__name__})"
        if response.status_code != 200:
            return False, f"/health answered HTTP {response.status_code}"
        return True, "ok"

    async def heatmap(self, model_input: np.ndarray, model_version: str) -> GradcamResult:
        """The maps of the enhanced uint8 model input (the sidecar runs the whole network); raise
        `GradcamUnavailable` with the reason on any failure."""
        return await self._guarded(IMAGE_PATH, *encode_request(model_input, model_version), model_version)

    async def heatmap_from_activations(self, activations: np.ndarray, model_version: str) -> GradcamResult:
        """The maps from the Grad-CAM layers' float32 (C, H, W) activations of the API's ONNX call (the
        sidecar runs only the rest of the network)."""
        return await self._guarded(ACTIVATIONS_PATH, *encode_activations_request(activations, model_version),
                                   model_version)

    async def _guarded(self, path: str, body: bytes, headers: dict[str, str], model_version: str
                       ) -> GradcamResult:
        """POST to the sidecar under the circuit breaker: while it is open the sidecar is not called at all."""
        breaker = self.breaker
        if not breaker.allow():
            raise GradcamUnavailable(
                "circuit_open", f"Grad-CAM skipped: the sidecar failed {breaker.threshold} times in a row; "
                f"next try in {breaker.retry_in_s():.0f} s")
        try:
            result = await self._post(path, body, headers, model_version)
        except GradcamUnavailable as exc:
            if exc.reason == "model_mismatch":  # the sidecar answers; it runs another model
                breaker.record_success()
            else:
                breaker.record_failure()
            raise
        except BaseException:  # cancelled, or a bug: no verdict on the sidecar
            breaker.release()
            raise
        breaker.record_success()
        return result

    async def _post(self, path: str, body: bytes, headers: dict[str, str], model_version: str) -> GradcamResult:
        try:
            async with asyncio.timeout(self.timeout_s):  # httpx timeouts are per phase, not total
                response = await self._client.post(path, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            message = f"Grad-CAM sidecar did not answer within {self.timeout_s:g} s"
            raise GradcamUnavailable("timeout", message) from None
        except httpx.HTTPError:
            # No address or library exception in the warning: it goes to clients.
            raise GradcamUnavailable("unreachable", "Grad-CAM sidecar unreachable") from None
        return self._parse(response, model_version)

    @staticmethod
    def _parse(response: httpx.Response, model_version: str) -> GradcamResult:
        if response.status_code != 200:
            raise GradcamUnavailable("http_error", f"Grad-CAM sidecar answered HTTP {response.status_code}")
        try:
            payload = response.json()
            result = GradcamResult(
                heatmaps={label: decode_heatmap(payload["heatmaps"][label]) for label in LABELS},
                empty={label: bool(payload["empty_heatmaps"][label]) for label in LABELS},
                layer=str(payload["layer"]),
                probability=float(payload["probability"]),
            )
            version = payload["model_version"]
        except (ValueError, KeyError, TypeError, ProtocolError):
            raise GradcamUnavailable("bad_response", "Grad-CAM sidecar sent an invalid response") from None
        if version != model_version:
            raise GradcamUnavailable(
                "model_mismatch", f"Grad-CAM sidecar runs model {version}, the API runs {model_version}"
            )
        return result


def check_agreement(result: GradcamResult, probability: float) -> None:
    """Raise if the sidecar's Keras model disagrees with the ONNX prediction."""
    if abs(result.probability - probability) > PROBABILITY_TOLERANCE:
        raise GradcamUnavailable(
            "model_mismatch",
            f"Grad-CAM sidecar's model gives P={result.probability:.4f}, the API's gives {probability:.4f}; "
            "overlay withheld",
        )
