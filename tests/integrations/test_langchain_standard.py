"""LangChain's own standard suite for vector stores, every test sync and async, against a real daemon
(over gRPC and over REST) and against the embedded engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _frameworks import fresh_name
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from proximadb.client_api import ProximaDBAPI
from proximadb.integrations.langchain import ProximaDBVectorStore

# The suite's async tests carry no marker (LangChain runs them with asyncio_mode = "auto", not this
# project's setting): mark every test, and silence pytest-asyncio's note on the sync ones.
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'"),
]


class TestProximaDBStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, any_client: ProximaDBAPI) -> Iterator[ProximaDBVectorStore]:  # type: ignore[override]
        store = ProximaDBVectorStore(self.get_embeddings(), collection_name=fresh_name("lc"), client=any_client)
        try:
            yield store
        finally:
            store.delete_collection()
