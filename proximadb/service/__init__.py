"""The service layer: one UnifiedAvroService over the engine, shared by REST and gRPC."""
