"""Protocol adapters: REST (Falcon) and gRPC, both thin layers over UnifiedAvroService."""
