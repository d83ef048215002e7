"""Framework integrations (optional extras): each submodule imports its framework when imported.

* :mod:`proximadb.integrations.langchain`: a LangChain ``VectorStore`` (``pip install 'proximadb[langchain]'``);
* :mod:`proximadb.integrations.llama_index`: a LlamaIndex ``BasePydanticVectorStore``
  (``pip install 'proximadb[llama-index]'``).

Both take any sync ProximaDB client (:func:`proximadb.connect`, :func:`proximadb.connect_embedded`);
what they share (lazy collections, splitting metadata into what ProximaDB stores as values and what
it cannot) is in :mod:`proximadb.integrations._store`.
"""
