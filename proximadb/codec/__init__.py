"""Wire and payload codecs: versioned frame, Avro schemas, vector batches."""
