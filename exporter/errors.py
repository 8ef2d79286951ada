"""The one exception family of the API client.

Each class maps onto one value of the `code` label of `cloudvod_concat_api_errors_total`.
"""

from __future__ import annotations


class ApiError(Exception):
    """A request to the Cloud VoD API that did not produce a valid answer."""

    label = "error"

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id

    @property
    def code(self) -> str:
        """The value of the `code` label this failure is counted under."""
        return self.label


class ApiCodeError(ApiError):
    """The API answered with a business error code (1601, 1602, 1603, …)."""

    def __init__(self, api_code: int, message: str, *, request_id: str | None = None) -> None:
        super().__init__(f"API error {api_code}: {message}", request_id=request_id)
        self.api_code = api_code

    @property
    def code(self) -> str:
        return str(self.api_code)


class ApiTimeout(ApiError):
    """The API did not answer within the configured timeout."""

    label = "timeout"


class ApiConnectionError(ApiError):
    """The connection to the API could not be made or broke."""

    label = "connection"


class ApiThrottled(ApiError):
    """The API refused the request because the account's rate limit was reached."""

    label = "throttled"

    def __init__(
        self, message: str, *, retry_after: float | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.retry_after = retry_after


class ApiHttpError(ApiError):
    """The API answered with an unexpected HTTP status."""

    def __init__(self, status: int, message: str, *, request_id: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}", request_id=request_id)
        self.status = status

    @property
    def code(self) -> str:
        return f"http_{self.status}"


class ApiInvalidResponse(ApiError):
    """The API's answer could not be understood (not JSON, wrong shape, too large)."""

    label = "invalid_response"
