"""The REST adapter (Falcon, WSGI): JSON and ``application/avro`` over HTTP, a thin layer over UnifiedAvroService."""

from proximadb.api.rest.app import ROUTES, create_app

__all__ = ["ROUTES", "create_app"]
