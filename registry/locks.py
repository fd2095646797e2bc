"""A lock in the ZenML store itself: a tag with a reserved name.

Tag names are unique in every ZenML store (a database constraint), so creating the tag is an
atomic test-and-set that every client of the store sees, on one machine (the local SQLite store)
or on many (a ZenML server and its database): two trainings on different machines promoting to
one server take turns. Deleting the tag (by its id) releases it. A holder that died leaves the
tag behind; a lock older than `stale_after` seconds is taken over, which is safe because the
old tag is deleted by id (only one taker's delete succeeds) before a new one is created.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone

from walsrec.errors import WalsrecError

logger = logging.getLogger(__name__)

LOCK_PREFIX = "walsrec-lock:"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _age_seconds(created: datetime) -> float:
    if created.tzinfo is None:  # ZenML stores naive UTC times
        created = created.replace(tzinfo=timezone.utc)
    return (_now() - created).total_seconds()


def _try_create(client, name: str):
    from zenml.exceptions import EntityExistsError

    try:
        return client.create_tag(name=name)
    except EntityExistsError:
        return None
    except Exception as error:  # SQLite's or MySQL's own IntegrityError, by message
        if "unique" in str(error).lower() or "duplicate" in str(error).lower():
            return None
        raise


def _existing(client, name: str):
    """The lock's tag, or None when nobody holds it (any more)."""
    try:
        return client.get_tag(name, allow_name_prefix_match=False, hydrate=False)
    except (KeyError, IndexError):
        # IndexError: ZenML 0.98 counts the matches, then lists them; a holder that deletes the
        # tag in between leaves an empty page (seen in CI: the promoter of a concurrent run died).
        return None


@contextlib.contextmanager
def store_lock(
    name: str, *, timeout: float = 600, stale_after: float = 900, poll: float = 0.25
) -> Iterator[None]:
    """Hold the store-wide lock `name` for the `with` block.

    Args:
        name: what is locked, e.g. "promotion:walsrec".
        timeout: seconds to wait for it.
        stale_after: a lock older than this is taken to belong to a dead holder and taken over
            (keep the guarded work well below it: a promotion takes about a second).
        poll: seconds between attempts.

    Raises:
        WalsrecError: not taken within `timeout` seconds.
    """
    from zenml.client import Client

    client = Client()
    tag_name = f"{LOCK_PREFIX}{name}"
    deadline = time.monotonic() + timeout
    while True:
        tag = _try_create(client, tag_name)
        if tag is not None:
            break
        current = _existing(client, tag_name)
        if current is not None and _age_seconds(current.created) > stale_after:
            logger.warning(
                "taking over lock %s: held since %s, longer than %.0f s (a dead holder)",
                tag_name,
                current.created,
                stale_after,
            )
            with contextlib.suppress(KeyError):
                client.delete_tag(current.id)
            continue
        if time.monotonic() >= deadline:
            raise WalsrecError(
                f"the ZenML lock {tag_name!r} has been held for more than {timeout:.0f} s by "
                "another run; if no run is promoting, delete it: zenml tag delete "
                f"'{tag_name}'"
            )
        time.sleep(poll)
    try:
        yield
    finally:
        try:
            client.delete_tag(tag.id)
        except KeyError:  # taken over as stale meanwhile: the guarded work took too long
            logger.warning("lock %s was taken over before it was released", tag_name)
