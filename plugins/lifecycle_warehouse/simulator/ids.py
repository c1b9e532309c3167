"""The shop's ids as a real shop writes them: numbers, text ids such as `ord_3f9a…`, or
uuids (`--shop-ids`); the model names its rows with them, the shop writer types the
columns."""

from __future__ import annotations

import hashlib
import uuid

# Prefixes of text ids, in the style of Stripe's (cus_…, sub_…).
_PREFIXES = {"customers": "cus", "orders": "ord", "refunds": "re", "subscriptions": "sub"}
_UUID_NAMESPACE = uuid.UUID("1b6f3c52-8d0e-4f7a-9c1e-5a2b7d9e0f43")
# The type of each id column in the shop database, by kind of id (columns in
# contract.SHOP_ID_COLUMNS; the raw layer keeps the text of any of them).
SOURCE_TYPES = {"integer": "bigint", "text": "text", "uuid": "uuid"}


def shop_id(kind: str, table: str, number: int) -> int | str:
    """The shop's id of the `number`-th row of `table`: the number itself, a text id such as
    `ord_3f9a1c0b2d4e6f70` (not in the numbers' order), or a uuid."""
    if kind == "integer":
        return number
    if kind == "uuid":
        return str(uuid.uuid5(_UUID_NAMESPACE, f"{table}:{number}"))
    digest = hashlib.blake2b(f"{table}:{number}".encode(), digest_size=8).hexdigest()
    return f"{_PREFIXES[table]}_{digest}"
