"""The field names of the event on the wire (SPEC §4), in one place.

If the live API spells a field differently, this module is the only one to change:
the transform stage and the sandbox both build and read bodies through these names.
"""

from __future__ import annotations

SOURCE = "source"
EVENT_NAME = "event_name"
OCCURRED_AT = "occurred_at"
ID = "id"
CUSTOMER = "customer"
PROPERTIES = "properties"

EXTERNAL_ID = "external_id"
EMAIL = "email"
PHONE_NUMBER = "phone_number"

#: Customer identifier fields, in the order they are tried.
CUSTOMER_IDENTIFIERS = (EXTERNAL_ID, EMAIL, PHONE_NUMBER)

TOKEN_HEADER = "X-Yotpo-Token"
DEFAULT_PATH = "/core/v3/stores/{store_id}/custom_events"
ACCESS_TOKEN_PATH = "/core/v3/stores/{store_id}/access_tokens"
