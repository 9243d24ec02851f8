"""warrenmq.exchanges: pure routing (exchange types and their binding tables), no I/O."""
