"""One short log line for a rejected request instead of BentoML's traceback.

BentoML's API wrapper logs every pydantic validation error (and every 4xx BentoMLException) with
`logger.error(..., exc_info=True)`: a 1.9 KB traceback quoting the client's values, about
5.7 MB/s of log from a flood of `k: 0`. This filter rewrites those records into one INFO line
naming the endpoint, the status and the number of errors: no traceback, no client data. Real
failures (any other exception, any 5xx) keep their traceback.
"""

from __future__ import annotations

import logging

__all__ = ["BENTOML_API_LOGGER", "RejectedRequestFilter", "quiet_rejected_requests"]

# The logger of `bentoml._internal.server.http_app.log_exception`, which the wrapper calls.
BENTOML_API_LOGGER = "bentoml._internal.server.http_app"


def _client_error(exc: BaseException) -> tuple[int, str] | None:
    """(status, summary) for a client's mistake, None for anything else."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        count = exc.error_count()
        return 400, f"{count} validation error{'s' if count != 1 else ''}"
    if isinstance(exc, BentoMLException) and exc.error_code.value < 500:
        return exc.error_code.value, type(exc).__name__
    return None


class RejectedRequestFilter(logging.Filter):
    """Turns a client-error traceback record into one short INFO line (see module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        rejected = _client_error(record.exc_info[1])
        if rejected is None:
            return True
        status, summary = rejected
        # The record's args are (path, method) of a routed endpoint: the service's own names.
        args = record.args if isinstance(record.args, tuple) else ()
        path, method = (*args, "?", "?")[:2]
        record.msg = "rejected %s %s: %d (%s)"
        record.args = (method, path, status, summary)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_rejected_requests() -> None:
    """Install the filter on BentoML's API logger (once)."""
    logger = logging.getLogger(BENTOML_API_LOGGER)
    if not any(isinstance(existing, RejectedRequestFilter) for existing in logger.filters):
        logger.addFilter(RejectedRequestFilter())
